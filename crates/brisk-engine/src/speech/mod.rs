//! Speech-side logic that needs no model and no HTTP: cutting long audio
//! into pieces and stitching their transcripts ([`chunking`]), and the
//! energy-based voice detector and utterance segmenter of live
//! transcription ([`energy_vad`]). The model-based VAD (Silero) is a
//! backend: `brisk-backends/src/onnx/vad.rs`.

pub mod chunking;
pub mod energy_vad;
