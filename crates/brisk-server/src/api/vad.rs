//! `POST /v1/audio/vad`: where in an audio upload someone speaks.
//!
//! Multipart like `/v1/audio/transcriptions`: `file`, `model`, and optional
//! `threshold`, `min_silence_duration_ms`, `min_speech_duration_ms` and
//! `speech_pad_ms` (silero's parameter names). The reply lists speech
//! segments in seconds.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use brisk_core::{Request, Task, VadParams, VadRequest};
use serde_json::json;

use super::{decode, uploads};
use crate::error::AppError;
use crate::AppState;

fn params(fields: &std::collections::HashMap<String, String>) -> Result<VadParams, AppError> {
    let mut p = VadParams::default();
    if let Some(t) = fields.get("threshold") {
        p.threshold = t
            .parse()
            .ok()
            .filter(|v: &f32| *v > 0.0 && *v < 1.0)
            .ok_or_else(|| {
                AppError::bad(
                    format!("threshold must be a number in (0, 1), got '{t}'"),
                    "threshold",
                )
            })?;
    }
    let ms = |name: &'static str, slot: &mut u32| -> Result<(), AppError> {
        if let Some(v) = fields.get(name) {
            *slot = v
                .parse()
                .ok()
                .filter(|n: &u32| *n <= 60_000)
                .ok_or_else(|| {
                    AppError::bad(
                        format!("{name} must be an integer from 0 to 60000, got '{v}'"),
                        name,
                    )
                })?;
        }
        Ok(())
    };
    ms("min_silence_duration_ms", &mut p.min_silence_ms)?;
    ms("min_speech_duration_ms", &mut p.min_speech_ms)?;
    ms("speech_pad_ms", &mut p.speech_pad_ms)?;
    Ok(p)
}

#[utoipa::path(post, path = "/v1/audio/vad", tag = "audio",
    request_body(content = crate::openapi::schemas::VadForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "Speech segments in seconds", headers(("x-brisk-cache" = String, description = "hit, miss or bypass")), body = crate::openapi::schemas::VadResponse),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn detect(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    crate::error::Multipart(mp): crate::error::Multipart,
) -> Result<Response, AppError> {
    let upload = uploads::read(mp).await?;
    let params = params(&upload.fields)?;
    uploads::check_task(&state, &upload.model, Task::Vad)?;
    let max_seconds = state.config.server.max_audio_seconds;
    let bytes = upload.file;
    let audio = decode::blocking(move || decode::decode_audio(&bytes, max_seconds)).await?;
    let request = Request::Vad(VadRequest { audio, params });
    let mode = super::cache::mode(&headers);
    match state
        .registry
        .infer_with(&upload.model, request, mode)
        .await?
    {
        (brisk_core::Response::Vad(r), status) => Ok(super::cache::tag(
            axum::Json(json!({
            "object": "audio.vad",
            "model": upload.model,
            "duration": r.duration,
            "speech_duration": r.segments.iter().map(|s| s.end - s.start).sum::<f64>(),
            "segments": r.segments,
            }))
            .into_response(),
            status,
        )),
        (other, _) => Err(uploads::unexpected(&other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_and_validate() {
        let mut f = std::collections::HashMap::new();
        assert_eq!(params(&f).expect("defaults"), VadParams::default());
        f.insert("threshold".to_string(), "0.7".to_string());
        f.insert("speech_pad_ms".to_string(), "0".to_string());
        let p = params(&f).expect("valid");
        assert_eq!((p.threshold, p.speech_pad_ms), (0.7, 0));
        f.insert("threshold".to_string(), "1".to_string());
        assert!(params(&f).is_err());
        f.insert("threshold".to_string(), "0.5".to_string());
        f.insert("min_silence_duration_ms".to_string(), "-3".to_string());
        assert!(params(&f).is_err());
    }
}
