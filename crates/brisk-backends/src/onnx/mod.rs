//! ONNX models on ONNX Runtime: BERT sentence embeddings ([`bert`], the
//! graph built by brisk from safetensors weights, see [`graph`]), silero VAD
//! ([`vad`]), piper text to speech ([`piper`]) and PP-OCR ([`ocr`]).
//!
//! ONNX Runtime is not linked: `ort` loads `libonnxruntime.so` at run time
//! (see [`runtime`]), so the build stays free of C++ and of build-time
//! downloads, and a build without the library still serves other models.

pub mod bert;
pub mod graph;
pub mod ocr;
pub mod piper;
pub mod runtime;
pub mod vad;

use std::path::Path;

use brisk_core::BackendError;

/// Backend names, as used in configuration.
pub const BERT: &str = "onnx-bert";
pub const VAD: &str = "onnx-silero-vad";
pub const PIPER: &str = "onnx-piper";
pub const OCR: &str = "onnx-ppocr";

/// Which ONNX backend serves the model folder at `path`, if any.
pub fn detect(path: &Path) -> Option<&'static str> {
    if !path.is_dir() {
        return None;
    }
    if bert::looks_like_bert(path) && runtime_installed(path) {
        Some(BERT)
    } else if vad::looks_like_silero(path) {
        Some(VAD)
    } else if piper::looks_like_piper(path) {
        Some(PIPER)
    } else if ocr::looks_like_ppocr(path) {
        Some(OCR)
    } else {
        None
    }
}

/// True when an ONNX Runtime library is known for a model at `path`: a
/// BERT folder is then served by [`bert`], else by candle.
fn runtime_installed(path: &Path) -> bool {
    runtime::library_candidates(path, &Default::default())
        .iter()
        .any(|p| p.is_file())
}

/// Sum of the `.onnx` file sizes under `path`: ONNX Runtime keeps about
/// one copy of the weights resident.
pub fn estimate_bytes(path: &Path) -> Option<u64> {
    let total: u64 = std::fs::read_dir(path)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "onnx"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    (total > 0).then_some(total)
}

/// Maps an `ort` error to an inference failure.
pub(crate) fn ort_err(what: &str) -> impl Fn(ort::Error) -> BackendError + '_ {
    move |e| BackendError::Inference(format!("{what}: {e}"))
}
