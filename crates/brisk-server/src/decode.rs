//! Audio decoding for the transcription endpoints, when the build has it.

use crate::error::AppError;

/// Decodes any supported container/codec to 16 kHz mono; refuses audio
/// longer than `max_seconds` while decoding, so memory stays bounded.
#[cfg(feature = "whisper")]
pub fn decode_audio(bytes: &[u8], max_seconds: f64) -> Result<Vec<f32>, AppError> {
    brisk_backends::whisper::audio::decode_to_mono_16k(bytes, max_seconds)
        .map_err(|e| AppError::Engine(brisk_engine::EngineError::Backend(e)))
}

#[cfg(not(feature = "whisper"))]
pub fn decode_audio(_bytes: &[u8], _max_seconds: f64) -> Result<Vec<f32>, AppError> {
    Err(AppError::bad(
        "this build of brisk has no audio decoder (feature 'whisper')",
        "file",
    ))
}
