//! Speech recognition with Whisper on candle — backend `candle-whisper`.
//!
//! Models come as CTranslate2 folders (`model.bin` with a `WhisperSpec`
//! header, `config.json`, `tokenizer.json`), e.g. faster-whisper
//! conversions. The weights are read by [`ct2`], renamed to what
//! `candle_transformers::models::whisper` expects (fused q|k|v split, no k
//! bias) and run in f32 on the CPU.
//!
//! Entry points: [`WhisperModel::load`], [`WhisperModel::transcribe`] (mono
//! 16 kHz samples) and [`audio::decode_to_mono_16k`] (file bytes to samples).
//! Long audio is transcribed in consecutive 30-second windows, one at a
//! time, so memory stays bounded by the window size plus the input.

pub mod audio;
pub mod ct2;
pub mod decode;
mod decoder;
pub mod mel;
pub mod model;

use std::path::Path;

pub use model::WhisperModel;

/// How to transcribe.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscribeOptions {
    /// ISO 639-1 code (`en`, `de`, ...). `None`: English for English-only
    /// models, detected from the first window for multilingual ones.
    pub language: Option<String>,
    /// Text that conditions the decoder (spelling of names, style); as
    /// Whisper's `initial_prompt`.
    pub prompt: Option<String>,
    /// 0 = greedy decoding; above 0 tokens are sampled (deterministically
    /// seeded) at this temperature.
    pub temperature: f32,
    /// Decode with timestamp tokens: segments then carry the times the
    /// model predicted instead of the window bounds.
    pub timestamps: bool,
    /// Translate to English (multilingual models) instead of transcribing.
    pub translate: bool,
}

impl Default for TranscribeOptions {
    fn default() -> Self {
        Self {
            language: None,
            prompt: None,
            temperature: 0.0,
            timestamps: false,
            translate: false,
        }
    }
}

/// A piece of the transcript with its time span, in seconds from the start.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub start_s: f64,
    pub end_s: f64,
    pub text: String,
}

/// The result of [`WhisperModel::transcribe`].
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// All segments' text, joined with single spaces.
    pub text: String,
    pub segments: Vec<Segment>,
    /// The language transcribed (given, implied, or detected).
    pub language: String,
    /// Length of the input audio in seconds.
    pub duration_s: f64,
}

/// Does `dir` hold a CTranslate2 Whisper model? Reads only the header of
/// `model.bin` (its spec name must be `WhisperSpec`) and checks that the
/// tokenizer or config is next to it.
pub fn looks_like_whisper(dir: &Path) -> bool {
    let bin = dir.join("model.bin");
    if !bin.is_file()
        || !(dir.join("tokenizer.json").is_file() || dir.join("config.json").is_file())
    {
        return false;
    }
    matches!(ct2::read_spec(&bin), Some((_, spec)) if spec == "WhisperSpec")
}

/// candle-whisper reads CTranslate2 folders only: a transformers
/// checkpoint, or a LoRA adapter, is refused with the backend that serves
/// it (ct2-whisper converts the checkpoint and merges the adapter at load)
/// instead of failing on a missing model.bin.
pub fn refuse_transformers(
    dir: &Path,
    options: &std::collections::BTreeMap<String, String>,
) -> Result<(), brisk_core::BackendError> {
    let refuse = |what: String| {
        Err(brisk_core::BackendError::InvalidModel(format!(
            "{what}: candle-whisper reads CTranslate2 folders (model.bin) only; \
             use backend ct2-whisper, which converts transformers checkpoints \
             and merges LoRA adapters at load"
        )))
    };
    if let Some(a) = options.get("adapter") {
        return refuse(format!("adapter {a}"));
    }
    let model_type = std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|c| c.get("model_type")?.as_str().map(str::to_string));
    if !dir.join("model.bin").is_file() && model_type.as_deref() == Some("whisper") {
        return refuse(format!("{} is a transformers checkpoint", dir.display()));
    }
    Ok(())
}

/// Expected resident size: the weights are held as f32, twice the size of
/// the usual float16 `model.bin`.
pub fn estimate_bytes(dir: &Path) -> Option<u64> {
    let len = std::fs::metadata(dir.join("model.bin")).ok()?.len();
    Some(len.saturating_mul(2))
}
