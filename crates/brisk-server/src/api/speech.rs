//! `POST /v1/audio/speech` (OpenAI): JSON `{model, input, voice,
//! response_format, speed}` → audio bytes.
//!
//! Formats: `wav` (16-bit PCM at the voice's own rate; the default, since
//! brisk has no mp3 encoder) and `pcm` (raw 16-bit little-endian mono at
//! 24 kHz, as OpenAI defines it). Other OpenAI formats are refused with 400.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use brisk_core::{Request, SpeakRequest, Task};
use serde::Deserialize;

use super::{decode, uploads};
use crate::error::{AppError, Json};
use crate::AppState;

/// OpenAI's rate for `pcm`.
const PCM_RATE: u32 = 24_000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"model": "piper-joe-medium", "input": "Hello from brisk.", "response_format": "wav"}))]
pub struct SpeechRequest {
    #[schema(required = true)]
    pub model: Option<String>,
    #[schema(required = true)]
    pub input: Option<String>,
    /// Speaker of a multi-speaker model; any name for single-speaker ones.
    #[serde(default)]
    pub voice: Option<String>,
    #[serde(default)]
    pub response_format: Option<String>,
    #[serde(default)]
    pub speed: Option<f32>,
    /// OpenAI's style prompt: piper voices take none, so only empty.
    #[serde(default)]
    pub instructions: Option<String>,
    /// Only `audio` (the whole file in the body).
    #[serde(default)]
    pub stream_format: Option<String>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Wav,
    Pcm,
}

fn format(f: Option<&str>) -> Result<Format, AppError> {
    match f.unwrap_or("wav") {
        "wav" => Ok(Format::Wav),
        "pcm" => Ok(Format::Pcm),
        other @ ("mp3" | "opus" | "aac" | "flac") => Err(AppError::bad(
            format!("response_format '{other}' is not supported by brisk; use wav or pcm"),
            "response_format",
        )),
        other => Err(AppError::bad(
            format!("response_format must be wav or pcm, got '{other}'"),
            "response_format",
        )),
    }
}

/// 16-bit signed little-endian samples.
fn pcm16(samples: &[f32]) -> Vec<u8> {
    samples
        .iter()
        .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
        .collect()
}

/// A mono 16-bit PCM WAV file.
fn wav(samples: &[f32], rate: u32) -> Vec<u8> {
    let data = pcm16(samples);
    let mut out = Vec::with_capacity(44 + data.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

#[utoipa::path(post, path = "/v1/audio/speech", tag = "audio",
    request_body = SpeechRequest,
    responses((status = 200, description = "The speech: a WAV file, or raw 16-bit PCM at 24 kHz (`pcm`)", headers(("x-brisk-cache" = String, description = "hit, miss or bypass")),
               content((Vec<u8> = "audio/wav"), (Vec<u8> = "audio/pcm"))),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn speech(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Json(req): Json<SpeechRequest>,
) -> Result<Response, AppError> {
    super::openai_fields::refuse(super::openai_fields::SPEECH, &req.rest)?;
    if req
        .instructions
        .as_deref()
        .is_some_and(|i| !i.trim().is_empty())
    {
        return Err(AppError::bad(
            "instructions: piper voices take no style instructions",
            "instructions",
        ));
    }
    match req.stream_format.as_deref() {
        None | Some("audio") => {}
        Some(other) => {
            return Err(AppError::bad(
                format!("stream_format: only 'audio' is served, got '{other}'"),
                "stream_format",
            ))
        }
    }
    let model = req
        .model
        .filter(|m| !m.is_empty())
        .ok_or_else(|| AppError::bad("'model' is required", "model"))?;
    let input = req
        .input
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| AppError::bad("'input' is required and must contain text", "input"))?;
    let fmt = format(req.response_format.as_deref())?;
    let speed = req.speed.unwrap_or(1.0);
    if !(0.25..=4.0).contains(&speed) {
        return Err(AppError::bad(
            format!("speed must be between 0.25 and 4.0, got {speed}"),
            "speed",
        ));
    }
    uploads::check_task(&state, &model, Task::Speech)?;
    let request = Request::Speak(SpeakRequest {
        text: input,
        voice: req.voice.filter(|v| !v.is_empty()),
        speed,
    });
    let mode = super::cache::mode(&headers);
    let (audio, status) = match state.registry.infer_with(&model, request, mode).await? {
        (brisk_core::Response::Speech(a), status) => (a, status),
        (other, _) => return Err(uploads::unexpected(&other)),
    };
    let rate = audio.sample_rate;
    let (body, content_type, out_rate) = decode::blocking(move || match fmt {
        Format::Wav => Ok((wav(&audio.samples, rate), "audio/wav", rate)),
        Format::Pcm => {
            let resampled = decode::resample(&audio.samples, rate, PCM_RATE)?;
            Ok((pcm16(&resampled), "audio/pcm", PCM_RATE))
        }
    })
    .await?;
    let response = (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::HeaderName::from_static("x-brisk-sample-rate"),
                out_rate.to_string(),
            ),
        ],
        body,
    )
        .into_response();
    Ok(super::cache::tag(response, status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_header_is_well_formed() {
        let w = wav(&[0.0, 1.0, -1.0], 22_050);
        assert_eq!(&w[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes([w[4], w[5], w[6], w[7]]), 36 + 6);
        assert_eq!(u32::from_le_bytes([w[24], w[25], w[26], w[27]]), 22_050);
        assert_eq!(&w[44..], &[0, 0, 0xff, 0x7f, 0x01, 0x80]);
    }

    #[test]
    fn formats() {
        assert_eq!(format(None).ok(), Some(Format::Wav));
        assert_eq!(format(Some("pcm")).ok(), Some(Format::Pcm));
        let e = format(Some("mp3")).expect_err("mp3").to_string();
        assert!(e.contains("use wav or pcm"), "{e}");
        assert!(format(Some("ogg")).is_err());
    }
}
