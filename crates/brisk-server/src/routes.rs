//! The router: every route and the layers around them (body limits,
//! auth, CORS, metrics). The handlers live in [`crate::api`].

use axum::http::header;
use axum::routing::{get, post};
use axum::Router;

use crate::api::health::{live, metrics, ready, startup};
use crate::api::models::{
    get_model, list_models, load_model, model_metadata, model_ready, unload_model,
};
use crate::api::{
    analysis, audio, cache, chat, dashboard, embeddings, ocr, pipelines, rerank, speech, topics,
    translate, vad,
};
use crate::error::AppError;
use crate::{auth, jobs, observe, stream, AppState};

/// Every route the router serves, as (method, path). The router below is
/// written out by hand (each handler has its own type); this table is what
/// tests walk to check each route's errors, and a unit test checks it
/// against the router: each entry answers, and a method not listed is 405.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/audio/transcriptions"),
    ("POST", "/v1/audio/translations"),
    ("POST", "/v1/pipelines/{name}"),
    ("POST", "/v1/audio/vad"),
    ("POST", "/v1/ocr"),
    ("POST", "/v1/jobs"),
    ("POST", "/v1/audio/analysis"),
    ("GET", "/"),
    ("GET", "/playground"),
    ("GET", "/v2/health/live"),
    ("GET", "/v2/health/ready"),
    ("GET", "/v2/models/{model}/ready"),
    ("GET", "/v2/models/{model}"),
    ("POST", "/v2/models/{model}/infer"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model}"),
    ("POST", "/v1/models/{model}/load"),
    ("POST", "/v1/models/{model}/unload"),
    ("POST", "/v1/embeddings"),
    ("POST", "/v1/rerank"),
    ("POST", "/v1/topics"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("GET", "/v1/pipelines"),
    ("POST", "/v1/audio/speech"),
    ("GET", "/v1/startup"),
    ("GET", "/v1/audio/transcriptions/stream"),
    ("GET", "/v1/jobs/{id}"),
    ("DELETE", "/v1/jobs/{id}"),
    ("GET", "/v1/cache/stats"),
    ("DELETE", "/v1/cache"),
    ("GET", "/metrics"),
    ("POST", "/translate"),
    ("GET", "/languages"),
    ("POST", "/detect"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/{asset}"),
];

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
    // Analysis uploads are spooled to disk: their own, larger limit.
    let analysis = Router::new()
        .route("/v1/audio/analysis", post(analysis::analyze))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.server.max_analysis_bytes,
        ));
    Router::new()
        .route("/", get(dashboard::page))
        .route("/playground", get(dashboard::playground))
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
        .route("/v1/rerank", post(rerank::create))
        .route("/v1/topics", post(topics::create))
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
        .route("/translate", post(translate::translate))
        .route("/languages", get(translate::languages))
        .route("/detect", post(translate::detect_language))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .route("/docs", get(crate::openapi::docs_page))
        .route("/docs/{asset}", get(crate::openapi::docs_asset))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .merge(uploads)
        .merge(analysis)
        .fallback(not_found)
        // Auth runs inside `track`, so refused requests are still counted.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::check,
        ))
        .layer(cors(&state.config.server.cors_origins))
        // Outside auth and the routes, so every error anything below
        // answers (rejections, 405, body limits) leaves in OpenAI's shape.
        .layer(axum::middleware::from_fn(crate::error::uniform))
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
        .expose_headers([HeaderName::from_static(cache::HEADER)])
}

async fn not_found() -> AppError {
    AppError::NotFound("no such endpoint".into())
}
