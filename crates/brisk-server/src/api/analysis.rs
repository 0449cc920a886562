//! `POST /v1/audio/analysis` (multipart `file`, optional `features`): music
//! and audio features for playlist apps, computed by `brisk-audio`.
//!
//! Memory stays bounded whatever the upload's length: the file is spooled
//! to a temporary file chunk by chunk (hashed on the way for the cache key)
//! and analysed in a stream from there. The upload limit is
//! `server.max_analysis_bytes` (413 past it). Results go through the result
//! cache, keyed by the content hash and the requested features; run as a
//! job (`/v1/jobs?endpoint=/v1/audio/analysis`), the job reports the
//! fraction of the file analysed as its `progress`.

use std::io::Write;
use std::path::PathBuf;

use axum::extract::{Multipart, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use brisk_audio::{AnalysisError, AnalyzeOptions, FeatureSet};
use brisk_engine::CacheStatus;

use super::{cache, decode, uploads};
use crate::error::{multipart_error, AppError};
use crate::AppState;

/// Bumped when the analysis output changes, so stored results are not reused.
const CACHE_VERSION: &[u8] = b"brisk-audio-analysis-v2";

/// The upload on disk; removed when dropped.
struct Spooled {
    path: PathBuf,
    len: u64,
    hash: [u8; 32],
}

impl Drop for Spooled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn io_error(e: std::io::Error) -> AppError {
    AppError::Engine(brisk_engine::EngineError::Backend(
        brisk_core::BackendError::Inference(format!("cannot spool the upload: {e}")),
    ))
}

fn spool_path() -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("brisk-analysis-{}-{n}-{nanos}", std::process::id()))
}

async fn read_form(mut mp: Multipart, limit: usize) -> Result<(Spooled, FeatureSet), AppError> {
    let mut spooled = None;
    let mut features = FeatureSet::all();
    while let Some(mut field) = mp.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "file" => {
                let path = spool_path();
                let mut file = std::fs::File::create(&path).map_err(io_error)?;
                let mut sp = Spooled {
                    path,
                    len: 0,
                    hash: [0; 32],
                };
                let mut hasher = blake3::Hasher::new();
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    sp.len += chunk.len() as u64;
                    if sp.len > limit as u64 {
                        return Err(AppError::PayloadTooLarge(format!(
                            "the audio file is larger than the limit of {limit} bytes"
                        )));
                    }
                    hasher.update(&chunk);
                    file.write_all(&chunk).map_err(io_error)?;
                }
                file.flush().map_err(io_error)?;
                sp.hash = *hasher.finalize().as_bytes();
                spooled = Some(sp);
            }
            "features" => {
                let text = field.text().await.map_err(multipart_error)?;
                features = FeatureSet::parse(&text)
                    .map_err(|e| AppError::bad(e.to_string(), "features"))?;
            }
            // SDKs send a model with every audio call; none is needed here.
            "model" => {
                let _ = field.text().await.map_err(multipart_error)?;
            }
            other => {
                return Err(AppError::BadRequest {
                    message: format!(
                        "unknown field '{other}' (this endpoint takes 'file' and 'features')"
                    ),
                    param: None,
                })
            }
        }
    }
    let spooled = spooled.ok_or_else(|| AppError::bad("'file' is required", "file"))?;
    if spooled.len == 0 {
        return Err(AppError::bad("the uploaded file is empty", "file"));
    }
    Ok((spooled, features))
}

/// The features a request names: comma-separated (or a JSON list); empty
/// means all.
fn features_of(list: &str) -> Result<FeatureSet, AnalysisError> {
    if list.trim().is_empty() {
        Ok(FeatureSet::all())
    } else {
        FeatureSet::parse(list)
    }
}

/// The result-cache key of an analysis, for [`crate::api::decode::Codec`]
/// (pipeline steps): the same key as this endpoint's, so both share results.
pub(crate) fn key_of(bytes: &[u8], features: &str) -> Result<brisk_engine::cache::Key, String> {
    let set = features_of(features).map_err(|e| e.to_string())?;
    Ok(cache_key(blake3::hash(bytes).as_bytes(), set))
}

/// Analyses an in-memory file (a pipeline step's upload) to the JSON this
/// endpoint answers. Blocking.
pub(crate) fn analyze_bytes(
    bytes: Vec<u8>,
    features: &str,
    max_seconds: f64,
) -> Result<String, AnalysisError> {
    let opts = AnalyzeOptions {
        features: features_of(features)?,
        max_seconds,
    };
    let len = bytes.len() as u64;
    let a = brisk_audio::analyze(std::io::Cursor::new(bytes), Some(len), &opts, &mut |_| {})?;
    serde_json::to_string(&a).map_err(|e| AnalysisError::Io(std::io::Error::other(e)))
}

fn cache_key(hash: &[u8; 32], features: FeatureSet) -> brisk_engine::cache::Key {
    let mut h = blake3::Hasher::new();
    h.update(CACHE_VERSION);
    h.update(hash);
    for name in features.names() {
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
    }
    *h.finalize().as_bytes()
}

/// `POST /v1/audio/analysis`.
#[utoipa::path(post, path = "/v1/audio/analysis", tag = "audio",
    request_body(content = crate::openapi::schemas::AnalysisForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "Tempo, beats, key, loudness and spectral features", headers(("x-brisk-cache" = String, description = "hit, miss or bypass")), body = crate::openapi::schemas::AnalysisResponse),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn analyze(
    State(s): State<AppState>,
    headers: HeaderMap,
    crate::error::Multipart(mp): crate::error::Multipart,
) -> Result<Response, AppError> {
    let (spooled, features) = read_form(mp, s.config.server.max_analysis_bytes).await?;
    let opts = AnalyzeOptions {
        features,
        max_seconds: s.config.server.max_audio_seconds,
    };
    let job = headers
        .get("x-brisk-job")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let jobs = s.jobs.clone();
    let key = cache_key(&spooled.hash, features);
    let compute = move || async move {
        decode::blocking(move || {
            let mut progress = |p: f64| {
                if let (Some(jobs), Some(id)) = (jobs.as_ref(), job.as_deref()) {
                    jobs.report_progress(id, p);
                }
            };
            let a = brisk_audio::analyze_file(&spooled.path, &opts, &mut progress).map_err(
                |e| match e {
                    AnalysisError::InvalidInput(m) => AppError::bad(m, "file"),
                    AnalysisError::Io(e) => io_error(e),
                },
            )?;
            let json = serde_json::to_string(&a).map_err(|e| io_error(std::io::Error::other(e)))?;
            Ok(brisk_core::Response::AudioAnalysis(json))
        })
        .await
    };
    let (resp, status) = match s.registry.cache() {
        Some(c) => {
            c.get_or_compute(key, cache::mode(&headers), compute)
                .await?
        }
        None => (compute().await?, CacheStatus::Bypass),
    };
    let json = match resp {
        brisk_core::Response::AudioAnalysis(json) => json,
        other => return Err(uploads::unexpected(&other)),
    };
    let body = (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json,
    )
        .into_response();
    Ok(cache::tag(body, status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_covers_content_and_features() {
        let all = FeatureSet::all();
        let some = FeatureSet::parse("tempo").expect("parse");
        assert_ne!(cache_key(&[1; 32], all), cache_key(&[2; 32], all));
        assert_ne!(cache_key(&[1; 32], all), cache_key(&[1; 32], some));
        assert_eq!(cache_key(&[1; 32], some), cache_key(&[1; 32], some));
    }
}
