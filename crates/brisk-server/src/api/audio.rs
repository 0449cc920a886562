//! `POST /v1/audio/transcriptions` and `/v1/audio/translations` (OpenAI,
//! multipart), with json, text, srt, vtt and verbose_json responses.

use axum::extract::{Multipart, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use brisk_core::{Request, TranscribeRequest, Transcript};
use brisk_engine::{CacheMode, CacheStatus};
use serde_json::json;

use crate::error::{multipart_error, AppError};
use crate::AppState;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Json,
    Text,
    Srt,
    Vtt,
    VerboseJson,
}

impl Format {
    fn parse(s: &str) -> Result<Self, AppError> {
        Ok(match s {
            "json" => Format::Json,
            "text" => Format::Text,
            "srt" => Format::Srt,
            "vtt" => Format::Vtt,
            "verbose_json" => Format::VerboseJson,
            other => {
                return Err(AppError::bad(
                    format!(
                    "response_format must be json, text, srt, vtt or verbose_json, got '{other}'"
                ),
                    "response_format",
                ))
            }
        })
    }
}

/// The multipart fields OpenAI defines, and faster-whisper's `beam_size`
/// and `vad_filter`. A field OpenAI defines that brisk lacks is refused
/// (openai_fields); other unknown fields are ignored.
struct Form {
    file: Vec<u8>,
    model: String,
    language: Option<String>,
    prompt: Option<String>,
    temperature: f32,
    format: Format,
    /// `chunking_strategy`: cut at silences found by a VAD model.
    chunking: Option<brisk_core::VadParams>,
    /// `timestamp_granularities[]=word`.
    words: bool,
    /// `beam_size` (faster-whisper's option): beam search width.
    beam_size: Option<usize>,
    /// `vad_filter` (faster-whisper's option): `None` means on for audio
    /// over 30 s when a VAD model is configured.
    vad_filter: Option<bool>,
}

async fn read_form(mut mp: Multipart, translate: bool) -> Result<Form, AppError> {
    use super::openai_fields::{refuse_names, TRANSCRIPTIONS, TRANSLATIONS};
    let table = if translate {
        TRANSLATIONS
    } else {
        TRANSCRIPTIONS
    };
    let bad = |m: String, p: &'static str| AppError::bad(m, p);
    let mut file = None;
    let mut model = None;
    let mut language = None;
    let mut prompt = None;
    let mut temperature = 0.0f32;
    let mut format = Format::Json;
    let mut chunking = None;
    let mut words = false;
    let mut beam_size = None;
    let mut vad_filter = None;
    while let Some(field) = mp.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            file = Some(field.bytes().await.map_err(multipart_error)?.to_vec());
            continue;
        }
        let text = field.text().await.map_err(multipart_error)?;
        match super::openai_fields::form_name(&name) {
            "model" => model = Some(text),
            "language" if !text.is_empty() => language = Some(text),
            "prompt" if !text.is_empty() => prompt = Some(text),
            "temperature" => {
                temperature = text
                    .parse()
                    .ok()
                    .filter(|t: &f32| (0.0..=1.0).contains(t))
                    .ok_or_else(|| {
                        bad(
                            format!("temperature must be a number in [0, 1], got '{text}'"),
                            "temperature",
                        )
                    })?;
            }
            "response_format" => format = Format::parse(&text)?,
            "chunking_strategy" if !text.is_empty() => {
                chunking = Some(
                    brisk_engine::speech::chunking::parse(&text)
                        .map_err(|m| AppError::bad(m, "chunking_strategy"))?,
                )
            }
            "timestamp_granularities" if !translate => {
                match text.as_str() {
                    // Segments are in verbose_json already.
                    "segment" | "" => {}
                    "word" => words = true,
                    other => {
                        return Err(bad(
                            format!(
                                "timestamp_granularities[] must be segment or word, got '{other}'"
                            ),
                            "timestamp_granularities",
                        ))
                    }
                }
            }
            "beam_size" => {
                beam_size = Some(
                    text.parse()
                        .ok()
                        .filter(|b: &usize| (1..=16).contains(b))
                        .ok_or_else(|| {
                            bad(
                                format!("beam_size must be an integer from 1 to 16, got '{text}'"),
                                "beam_size",
                            )
                        })?,
                );
            }
            "vad_filter" => {
                vad_filter = Some(match text.as_str() {
                    "true" => true,
                    "false" => false,
                    other => {
                        return Err(bad(
                            format!("vad_filter must be true or false, got '{other}'"),
                            "vad_filter",
                        ))
                    }
                });
            }
            "stream" if !translate => {
                if text == "true" {
                    return Err(bad(
                        "stream: live transcription is the WebSocket at \
                         /v1/audio/transcriptions/stream; this endpoint answers whole"
                            .into(),
                        "stream",
                    ));
                }
            }
            other => refuse_names(table, [(other, text.is_empty())])?,
        }
    }
    let file = file.ok_or_else(|| bad("'file' is required".into(), "file"))?;
    if file.is_empty() {
        return Err(bad("the uploaded file is empty".into(), "file"));
    }
    let model = model
        .filter(|m| !m.is_empty())
        .ok_or_else(|| bad("'model' is required".into(), "model"))?;
    if let Some(l) = &language {
        if l.len() != 2 || !l.chars().all(|c| c.is_ascii_lowercase()) {
            return Err(bad(
                format!("language must be an ISO-639-1 code such as 'en', got '{l}'"),
                "language",
            ));
        }
    }
    if words && format != Format::VerboseJson {
        // As OpenAI: the words have nowhere to go in the other formats.
        return Err(bad(
            "timestamp_granularities[]=word needs response_format=verbose_json".into(),
            "timestamp_granularities",
        ));
    }
    if vad_filter == Some(false) && chunking.is_some() {
        return Err(bad(
            "vad_filter=false contradicts chunking_strategy, which cuts at the VAD's silences"
                .into(),
            "vad_filter",
        ));
    }
    Ok(Form {
        file,
        model,
        language,
        prompt,
        temperature,
        format,
        chunking,
        words,
        beam_size,
        vad_filter,
    })
}

#[utoipa::path(post, path = "/v1/audio/transcriptions", tag = "audio",
    request_body(content = crate::openapi::schemas::TranscriptionForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "The transcript: JSON, verbose JSON, text, SRT or VTT by `response_format`", headers(("x-brisk-cache" = String, description = "hit, miss or bypass")),
               content((crate::openapi::schemas::Transcription = "application/json"), (String = "text/plain"), (String = "application/x-subrip"), (String = "text/vtt"))),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn transcriptions(
    state: State<AppState>,
    headers: HeaderMap,
    crate::error::Multipart(mp): crate::error::Multipart,
) -> Result<Response, AppError> {
    run(state, &headers, mp, false).await
}

#[utoipa::path(post, path = "/v1/audio/translations", tag = "audio",
    request_body(content = crate::openapi::schemas::TranscriptionForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "The English translation of the speech, shaped by `response_format`", headers(("x-brisk-cache" = String, description = "hit, miss or bypass")),
               content((crate::openapi::schemas::Transcription = "application/json"), (String = "text/plain"), (String = "application/x-subrip"), (String = "text/vtt"))),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn translations(
    state: State<AppState>,
    headers: HeaderMap,
    crate::error::Multipart(mp): crate::error::Multipart,
) -> Result<Response, AppError> {
    run(state, &headers, mp, true).await
}

async fn run(
    State(state): State<AppState>,
    headers: &HeaderMap,
    mp: Multipart,
    translate: bool,
) -> Result<Response, AppError> {
    let mut form = read_form(mp, translate).await?;
    // Fail fast on an unknown model or task before decoding any audio.
    let task = state.registry.task_of(&form.model)?;
    if task != brisk_core::Task::Transcription {
        return Err(AppError::bad(
            format!("model '{}' serves {task}, not transcription", form.model),
            "model",
        ));
    }
    let max_seconds = state.config.server.max_audio_seconds;
    let bytes = std::mem::take(&mut form.file);
    // Decoding and resampling are CPU work: off the async runtime, and off
    // the model thread so the model keeps serving others meanwhile.
    let audio =
        tokio::task::spawn_blocking(move || super::decode::decode_audio(&bytes, max_seconds))
            .await
            .map_err(|e| {
                AppError::Engine(brisk_engine::EngineError::Backend(
                    brisk_core::BackendError::Inference(e.to_string()),
                ))
            })??;
    let mode = super::cache::mode(headers);
    // faster-whisper's vad_filter: on request, or by default past 30 s of
    // audio when a VAD model is there to find the silences (cutting there
    // keeps a 30 s window from ending mid-word, and skips the silences).
    let vad = vad_model(&state);
    if form.chunking.is_none() {
        let long = audio.len() > 30 * 16_000;
        form.chunking = match (form.vad_filter, &vad) {
            (Some(true), None) => {
                return Err(AppError::bad(
                    "vad_filter needs a voice activity detection model; none is configured",
                    "vad_filter",
                ))
            }
            (Some(true), Some(_)) => Some(brisk_core::VadParams::default()),
            (None, Some(_)) if long => Some(brisk_core::VadParams::default()),
            _ => None,
        };
    }
    let (t, status) = match form.chunking {
        None => transcribe(&state, &form, audio, translate, mode).await?,
        Some(params) => {
            transcribe_chunked(&state, &form, vad, audio, translate, params, mode).await?
        }
    };
    Ok(super::cache::tag(
        render(&t, form.format, translate),
        status,
    ))
}

async fn transcribe(
    state: &AppState,
    form: &Form,
    audio: Vec<f32>,
    translate: bool,
    mode: CacheMode,
) -> Result<(Transcript, CacheStatus), AppError> {
    let request = transcribe_request(form, audio, translate);
    let (response, status) = state
        .registry
        .infer_with(&form.model, request, mode)
        .await?;
    Ok((transcript(response)?, status))
}

/// The engine request for (a piece of) the form's audio.
fn transcribe_request(form: &Form, audio: Vec<f32>, translate: bool) -> Request {
    Request::Transcribe(TranscribeRequest {
        audio,
        language: form.language.clone(),
        prompt: form.prompt.clone(),
        temperature: form.temperature,
        translate,
        word_timestamps: form.words,
        beam_size: form.beam_size,
    })
}

fn transcript(response: brisk_core::Response) -> Result<Transcript, AppError> {
    match response {
        brisk_core::Response::Transcribe(t) => Ok(t),
        other => Err(AppError::Engine(brisk_engine::EngineError::Backend(
            brisk_core::BackendError::Inference(format!("unexpected reply {other:?}")),
        ))),
    }
}

/// Finds the speech with `vad` (the first VAD model), transcribes each piece of
/// speech (concurrently: the pieces batch) and stitches the transcripts.
/// Each piece is cached on its own; the response is a hit only when every
/// piece was.
async fn transcribe_chunked(
    state: &AppState,
    form: &Form,
    vad: Option<String>,
    audio: Vec<f32>,
    translate: bool,
    params: brisk_core::VadParams,
    mode: CacheMode,
) -> Result<(Transcript, CacheStatus), AppError> {
    let vad_model = vad.ok_or_else(|| {
        AppError::bad(
            "chunking_strategy needs a voice activity detection model; none is configured",
            "chunking_strategy",
        )
    })?;
    let duration = audio.len() as f64 / 16_000.0;
    // The VAD gets its own copy: the pieces are cut from `audio` afterwards.
    let request = Request::Vad(brisk_core::VadRequest {
        audio: audio.clone(),
        params,
    });
    let segments = match state.registry.infer(&vad_model, request).await? {
        brisk_core::Response::Vad(v) => v.segments,
        other => {
            return Err(AppError::Engine(brisk_engine::EngineError::Backend(
                brisk_core::BackendError::Inference(format!("unexpected reply {other:?}")),
            )))
        }
    };
    let pieces = brisk_engine::speech::chunking::plan(&segments);
    let at = |s: f64| ((s * 16_000.0) as usize).min(audio.len());
    // All pieces go to the engine at once: those the cache lacks reach the
    // model together and share batches (the CTranslate2 engine decodes them
    // as one, as faster-whisper's BatchedInferencePipeline does).
    let requests = pieces
        .iter()
        .map(|&(start, end)| {
            transcribe_request(form, audio[at(start)..at(end)].to_vec(), translate)
        })
        .collect();
    let results = state.registry.infer_many(&form.model, requests, mode).await;
    let mut done = Vec::with_capacity(pieces.len());
    let mut statuses = Vec::with_capacity(pieces.len());
    for (piece, result) in pieces.into_iter().zip(results) {
        let (response, status) = result?;
        statuses.push(status);
        done.push((piece, transcript(response)?));
    }
    let status = if !statuses.is_empty() && statuses.iter().all(|s| *s == CacheStatus::Hit) {
        CacheStatus::Hit
    } else if statuses.contains(&CacheStatus::Miss) {
        CacheStatus::Miss
    } else {
        CacheStatus::Bypass
    };
    Ok((
        brisk_engine::speech::chunking::stitch(done, duration),
        status,
    ))
}

/// The VAD model long audio is cut with: the first by name, if any.
fn vad_model(state: &AppState) -> Option<String> {
    state
        .registry
        .status()
        .into_iter()
        .filter(|m| m.task == brisk_core::Task::Vad)
        .map(|m| m.name)
        .min()
}

fn render(t: &Transcript, format: Format, translate: bool) -> Response {
    match format {
        Format::Json => axum::Json(json!({ "text": t.text })).into_response(),
        Format::Text => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", t.text),
        )
            .into_response(),
        Format::Srt => ([(header::CONTENT_TYPE, "application/x-subrip")], srt(t)).into_response(),
        Format::Vtt => ([(header::CONTENT_TYPE, "text/vtt")], vtt(t)).into_response(),
        Format::VerboseJson => {
            let mut body = json!({
                "task": if translate { "translate" } else { "transcribe" },
                "language": t.language,
                "duration": t.duration,
                "text": t.text,
                "segments": t.segments,
            });
            // `words` only when asked for, as OpenAI answers.
            if !t.words.is_empty() {
                body["words"] = json!(t.words);
            }
            axum::Json(body).into_response()
        }
    }
}

/// `HH:MM:SS,mmm` (SRT) or `HH:MM:SS.mmm` (VTT).
fn timestamp(seconds: f64, sep: char) -> String {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}{sep}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

pub fn srt(t: &Transcript) -> String {
    t.segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "{}\n{} --> {}\n{}\n\n",
                i + 1,
                timestamp(s.start, ','),
                timestamp(s.end, ','),
                s.text.trim()
            )
        })
        .collect()
}

pub fn vtt(t: &Transcript) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for s in &t.segments {
        out.push_str(&format!(
            "{} --> {}\n{}\n\n",
            timestamp(s.start, '.'),
            timestamp(s.end, '.'),
            s.text.trim()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use brisk_core::Segment;

    fn transcript() -> Transcript {
        Transcript {
            text: "Ever tried. Ever failed.".into(),
            language: Some("en".into()),
            duration: 3725.5,
            segments: vec![
                Segment {
                    id: 0,
                    start: 0.0,
                    end: 1.5,
                    text: " Ever tried.".into(),
                },
                Segment {
                    id: 1,
                    start: 3723.25,
                    end: 3725.5,
                    text: " Ever failed.".into(),
                },
            ],
            words: Vec::new(),
        }
    }

    #[test]
    fn srt_and_vtt_timestamps() {
        assert_eq!(timestamp(3723.25, ','), "01:02:03,250");
        let s = srt(&transcript());
        assert!(
            s.starts_with("1\n00:00:00,000 --> 00:00:01,500\nEver tried.\n\n2\n01:02:03,250"),
            "{s}"
        );
        let v = vtt(&transcript());
        assert!(
            v.starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nEver tried.\n"),
            "{v}"
        );
    }

    #[test]
    fn unknown_format_is_rejected() {
        assert!(Format::parse("xml").is_err());
        assert_eq!(
            Format::parse("verbose_json").ok(),
            Some(Format::VerboseJson)
        );
    }
}
