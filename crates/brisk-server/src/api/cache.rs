//! The result cache at the HTTP edge: `Cache-Control` in, `x-brisk-cache`
//! out, the stats/clear endpoints, and prewarming.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use brisk_engine::{CacheMode, CacheStatus, Registry};
use serde_json::json;
use tower::ServiceExt;

use crate::config::PrewarmItem;
use crate::error::AppError;
use crate::AppState;

pub const HEADER: &str = "x-brisk-cache";

/// `Cache-Control: no-store` skips the cache; `no-cache` (or the old
/// `Pragma: no-cache`) recomputes and refreshes the stored entry.
pub fn mode(headers: &HeaderMap) -> CacheMode {
    let directives = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .chain(headers.get_all(header::PRAGMA).iter())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
        .collect::<Vec<_>>();
    if directives.iter().any(|d| d == "no-store") {
        CacheMode::Skip
    } else if directives.iter().any(|d| d == "no-cache") {
        CacheMode::Refresh
    } else {
        CacheMode::Use
    }
}

/// Adds `x-brisk-cache: hit|miss|bypass`.
pub fn tag(mut response: Response, status: CacheStatus) -> Response {
    response
        .headers_mut()
        .insert(HEADER, HeaderValue::from_static(status.as_str()));
    response
}

/// `GET /v1/cache/stats`.
#[utoipa::path(get, path = "/v1/cache/stats", tag = "operations",
    responses((status = 200, description = "Hits, misses and each tier's size", body = crate::openapi::schemas::CacheStats),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn stats(State(s): State<AppState>) -> Response {
    match s.registry.cache() {
        Some(c) => axum::Json(c.stats().await).into_response(),
        None => axum::Json(json!({ "enabled": false })).into_response(),
    }
}

/// `DELETE /v1/cache`: empties every tier.
#[utoipa::path(delete, path = "/v1/cache", tag = "operations",
    responses((status = 200, description = "Every tier emptied (an admin key when keys are set)", body = crate::openapi::schemas::CacheCleared),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn clear(State(s): State<AppState>) -> Result<Response, AppError> {
    let Some(c) = s.registry.cache() else {
        return Ok(
            axum::Json(json!({ "cleared": false, "reason": "cache disabled" })).into_response(),
        );
    };
    let errors = c.clear().await;
    tracing::info!(?errors, "cache cleared");
    Ok(axum::Json(json!({ "cleared": errors.is_empty(), "errors": errors })).into_response())
}

fn multipart(
    fields: &serde_json::Map<String, serde_json::Value>,
    file: &[u8],
    name: &str,
) -> (String, Vec<u8>) {
    let boundary = "brisk-prewarm-boundary-7d1f";
    let mut body = Vec::new();
    for (k, v) in fields {
        let v = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend(file);
    body.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The HTTP requests one prewarm item stands for.
fn requests(
    item: &PrewarmItem,
    models_dir: &std::path::Path,
) -> Result<Vec<Request<Body>>, String> {
    let post = |content_type: &str, body: Vec<u8>| {
        Request::builder()
            .method(Method::POST)
            .uri(&item.endpoint)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .map_err(|e| e.to_string())
    };
    if let Some(file) = &item.file {
        let path = if file.is_absolute() {
            file.clone()
        } else {
            models_dir.join(file)
        };
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        let (ct, body) = multipart(&item.body, &bytes, &name);
        return Ok(vec![post(&ct, body)?]);
    }
    if !item.inputs.is_empty() {
        return item
            .inputs
            .iter()
            .map(|text| {
                let mut body = item.body.clone();
                body.insert("input".into(), text.clone().into());
                post(
                    "application/json",
                    serde_json::Value::Object(body).to_string().into_bytes(),
                )
            })
            .collect();
    }
    Ok(vec![post(
        "application/json",
        serde_json::Value::Object(item.body.clone())
            .to_string()
            .into_bytes(),
    )?])
}

/// Computes the configured prewarm requests in the background, after the
/// server is ready, one at a time: a low-priority trickle that never holds
/// readiness back and leaves the queues to real clients. Each request goes
/// through the router like a client's, so it lands under the same key.
pub fn spawn_prewarm(
    router: Router,
    registry: Registry,
    items: Vec<PrewarmItem>,
    models_dir: PathBuf,
) {
    if items.is_empty() || registry.cache().is_none() {
        return;
    }
    tokio::spawn(async move {
        registry.wait_ready().await;
        let started = Instant::now();
        let (mut ok, mut failed) = (0u64, 0u64);
        for item in &items {
            let reqs = match requests(item, &models_dir) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(endpoint = %item.endpoint, error = %e, "prewarm item skipped");
                    failed += 1;
                    continue;
                }
            };
            for req in reqs {
                let status = match router.clone().oneshot(req).await {
                    Ok(resp) => resp.status(),
                    Err(never) => match never {},
                };
                if status == StatusCode::OK {
                    ok += 1;
                    metrics::counter!("brisk_cache_prewarm_total", "outcome" => "ok").increment(1);
                } else {
                    failed += 1;
                    metrics::counter!("brisk_cache_prewarm_total", "outcome" => "failed")
                        .increment(1);
                    tracing::warn!(endpoint = %item.endpoint, %status, "prewarm request failed");
                }
                // Yield between items so prewarming never starves clients.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        tracing::info!(
            ok,
            failed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "cache prewarm done"
        );
    });
}
