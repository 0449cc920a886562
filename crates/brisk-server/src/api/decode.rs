//! Audio and image decoding for the upload endpoints, when the build has it.

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

/// Decodes a png, jpeg or webp upload to RGB for OCR.
#[cfg(feature = "onnx")]
pub fn decode_image(bytes: &[u8]) -> Result<brisk_core::OcrRequest, AppError> {
    brisk_backends::onnx::ocr::decode_image(bytes)
        .map_err(|e| AppError::Engine(brisk_engine::EngineError::Backend(e)))
}

#[cfg(not(feature = "onnx"))]
pub fn decode_image(_bytes: &[u8]) -> Result<brisk_core::OcrRequest, AppError> {
    Err(AppError::bad(
        "this build of brisk has no image decoder (feature 'onnx')",
        "file",
    ))
}

/// Resamples mono audio (for OpenAI's 24 kHz `pcm` speech format).
#[cfg(feature = "whisper")]
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, AppError> {
    brisk_backends::whisper::audio::resample(samples, from, to)
        .map_err(|e| AppError::Engine(brisk_engine::EngineError::Backend(e)))
}

#[cfg(not(feature = "whisper"))]
pub fn resample(_samples: &[f32], _from: u32, _to: u32) -> Result<Vec<f32>, AppError> {
    Err(AppError::bad(
        "this build of brisk cannot resample audio (feature 'whisper'); use response_format wav",
        "response_format",
    ))
}

/// Runs CPU-heavy decoding off the async runtime (and off the model thread,
/// so the model keeps serving others meanwhile).
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        AppError::Engine(brisk_engine::EngineError::Backend(
            brisk_core::BackendError::Inference(e.to_string()),
        ))
    })?
}

/// This build's audio codec, for pipeline steps run by the engine.
pub struct Codec;

impl brisk_engine::pipeline::AudioCodec for Codec {
    fn decode(
        &self,
        bytes: &[u8],
        max_seconds: f64,
    ) -> Result<Vec<f32>, brisk_engine::pipeline::StepError> {
        use brisk_engine::pipeline::StepError;
        decode_audio(bytes, max_seconds).map_err(|e| match e {
            AppError::Engine(e) => StepError::Engine(e),
            other => StepError::BadInput(other.to_string()),
        })
    }

    #[cfg(feature = "whisper")]
    fn encode_wav(&self, samples: &[f32], sample_rate: u32) -> Vec<u8> {
        brisk_backends::whisper::audio::encode_wav_i16(samples, sample_rate, 1)
    }

    #[cfg(not(feature = "whisper"))]
    fn encode_wav(&self, _samples: &[f32], _sample_rate: u32) -> Vec<u8> {
        Vec::new()
    }

    fn analysis_key(
        &self,
        bytes: &[u8],
        features: &str,
    ) -> Result<brisk_engine::cache::Key, brisk_engine::pipeline::StepError> {
        super::analysis::key_of(bytes, features)
            .map_err(brisk_engine::pipeline::StepError::BadInput)
    }

    fn analyze(
        &self,
        bytes: Vec<u8>,
        features: &str,
        max_seconds: f64,
    ) -> Result<String, brisk_engine::pipeline::StepError> {
        use brisk_engine::pipeline::StepError;
        super::analysis::analyze_bytes(bytes, features, max_seconds).map_err(|e| match e {
            brisk_audio::AnalysisError::InvalidInput(m) => StepError::BadInput(m),
            brisk_audio::AnalysisError::Io(e) => {
                StepError::Engine(brisk_engine::EngineError::Backend(
                    brisk_core::BackendError::Inference(e.to_string()),
                ))
            }
        })
    }
}
