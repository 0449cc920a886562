//! Health (Open Inference Protocol v2), model management, metrics and the
//! startup timeline. Task endpoints live in their own modules.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

use crate::error::AppError;
use crate::{
    audio, auth, cache, chat, embeddings, jobs, observe, ocr, pipelines, speech, stream, vad,
    AppState,
};

pub fn router(state: AppState) -> Router {
    let max_body = state.config.server.max_body_bytes;
    let max_audio = state.config.server.max_audio_bytes;
    // Uploads get their own, larger limit; everything else the default.
    let uploads = Router::new()
        .route("/v1/audio/transcriptions", post(audio::transcriptions))
        .route("/v1/audio/translations", post(audio::translations))
        .route("/v1/pipelines/{name}", post(pipelines::run))
        .route("/v1/audio/vad", post(vad::detect))
        .route("/v1/ocr", post(ocr::recognize))
        .route("/v1/jobs", post(jobs::submit))
        .layer(axum::extract::DefaultBodyLimit::max(max_audio));
    Router::new()
        .route("/", get(crate::dashboard::page))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route("/v2/models/{model}", get(model_metadata))
        .route("/v2/models/{model}/infer", post(embeddings::v2_infer))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{model}", get(get_model))
        .route("/v1/models/{model}/load", post(load_model))
        .route("/v1/models/{model}/unload", post(unload_model))
        .route("/v1/embeddings", post(embeddings::create))
        .route("/v1/chat/completions", post(chat::chat))
        .route("/v1/completions", post(chat::completion))
        .route("/v1/pipelines", get(pipelines::list))
        .route("/v1/audio/speech", post(speech::speech))
        .route("/v1/startup", get(startup))
        .route("/v1/audio/transcriptions/stream", get(stream::handler))
        .route("/v1/jobs/{id}", get(jobs::get).delete(jobs::cancel))
        .route("/v1/cache/stats", get(cache::stats))
        .route("/v1/cache", axum::routing::delete(cache::clear))
        .route("/metrics", get(metrics))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .merge(uploads)
        .fallback(not_found)
        // Auth runs inside `track`, so refused requests are still counted.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::check,
        ))
        .layer(cors(&state.config.server.cors_origins))
        .layer(axum::middleware::from_fn(observe::track))
        .with_state(state)
}

/// CORS only for the configured origins; none configured, no CORS layer
/// effect (an empty allow-list answers no origin).
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderName, HeaderValue, Method};
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    tower_http::cors::CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::CACHE_CONTROL,
        ])
        .expose_headers([HeaderName::from_static(crate::cache::HEADER)])
}

async fn not_found() -> AppError {
    AppError::NotFound("no such endpoint".into())
}

/// Live as soon as the server accepts connections, whatever models do.
async fn live() -> impl IntoResponse {
    axum::Json(json!({ "live": true }))
}

/// 503 until every preload model has settled; the body says which wait.
async fn ready(State(s): State<AppState>) -> Response {
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

/// 200 when the model is loaded and can answer without a load; 503 with its
/// state otherwise; 404 for an unknown model.
async fn model_ready(
    State(s): State<AppState>,
    Path(model): Path<String>,
) -> Result<Response, AppError> {
    let st = s.registry.model_status(&model)?;
    let status = if st.state == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((
        status,
        axum::Json(json!({ "name": model, "ready": st.state == "ready", "state": st.state })),
    )
        .into_response())
}

async fn model_metadata(
    State(s): State<AppState>,
    Path(model): Path<String>,
) -> Result<Response, AppError> {
    let st = s.registry.model_status(&model)?;
    Ok(axum::Json(json!({
        "name": st.name,
        "platform": st.backend,
        "versions": ["1"],
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "embedding", "datatype": "FP32", "shape": [-1, -1]}],
    }))
    .into_response())
}

fn model_object(st: &brisk_engine::ModelStatus) -> serde_json::Value {
    json!({
        "id": st.name,
        "object": "model",
        "created": 0,
        "owned_by": "brisk",
        "brisk": st,
    })
}

/// OpenAI's model list, each entry extended with brisk's load status.
async fn list_models(State(s): State<AppState>) -> impl IntoResponse {
    let data: Vec<_> = s.registry.status().iter().map(model_object).collect();
    axum::Json(json!({ "object": "list", "data": data }))
}

async fn get_model(
    State(s): State<AppState>,
    Path(model): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok(axum::Json(model_object(&s.registry.model_status(&model)?)))
}

async fn load_model(
    State(s): State<AppState>,
    Path(model): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok(axum::Json(model_object(&s.registry.load(&model).await?)))
}

async fn unload_model(
    State(s): State<AppState>,
    Path(model): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok(axum::Json(model_object(&s.registry.unload(&model)?)))
}

/// Process start, listening, readiness and each model's load, in ms.
async fn startup(State(s): State<AppState>) -> impl IntoResponse {
    axum::Json(json!({
        "uptime_ms": s.timeline().start().elapsed().as_millis() as u64,
        "events": s.timeline().events(),
    }))
}

async fn metrics(State(s): State<AppState>) -> Response {
    match &s.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => AppError::NotFound("metrics recorder is not installed".into()).into_response(),
    }
}
