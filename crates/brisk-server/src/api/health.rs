//! Health (Open Inference Protocol v2 liveness and readiness), the
//! startup timeline and Prometheus `/metrics`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::AppError;
use crate::AppState;

/// Live as soon as the server accepts connections, whatever models do.
#[utoipa::path(get, path = "/v2/health/live", tag = "operations",
    responses((status = 200, description = "The server accepts connections", body = crate::openapi::schemas::Liveness)))]
pub async fn live() -> impl IntoResponse {
    axum::Json(json!({ "live": true }))
}

/// 503 until every preload model has settled; the body says which wait.
#[utoipa::path(get, path = "/v2/health/ready", tag = "operations",
    responses((status = 200, description = "Every preload model has settled", body = crate::openapi::schemas::Readiness),
              (status = 503, description = "Preload models still loading: the body says which", body = crate::openapi::schemas::Readiness),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn ready(State(s): State<AppState>) -> Response {
    let r = s.registry.readiness();
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let reason =
        (!r.ready).then(|| format!("loading preload models: {}", r.waiting_for.join(", ")));
    (
        status,
        axum::Json(json!({
            "ready": r.ready,
            "reason": reason,
            "waiting_for": r.waiting_for,
            "failed_preloads": r.failed,
        })),
    )
        .into_response()
}

/// Process start, listening, readiness and each model's load, in ms.
#[utoipa::path(get, path = "/v1/startup", tag = "operations",
    responses((status = 200, description = "The startup timeline in ms", body = crate::openapi::schemas::Startup),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn startup(State(s): State<AppState>) -> impl IntoResponse {
    axum::Json(json!({
        "uptime_ms": s.timeline().start().elapsed().as_millis() as u64,
        "events": s.timeline().events(),
    }))
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format; every metric is prefixed brisk_", content_type = "text/plain", body = String),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn metrics(State(s): State<AppState>) -> Response {
    match &s.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => AppError::NotFound("metrics recorder is not installed".into()).into_response(),
    }
}
