//! Models: OpenAI's `/v1/models` (extended with brisk's load status),
//! explicit load and unload, and the Open Inference Protocol's per-model
//! readiness and metadata.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::AppError;
use crate::AppState;

/// 200 when the model is loaded and can answer without a load; 503 with its
/// state otherwise; 404 for an unknown model.
#[utoipa::path(get, path = "/v2/models/{model}/ready", tag = "models",
    params(("model" = String, Path, description = "A model name")),
    responses((status = 200, description = "Loaded and ready (Open Inference Protocol)", body = crate::openapi::schemas::V2ModelReady),
              (status = 503, description = "Not loaded yet: the body has its state", body = crate::openapi::schemas::V2ModelReady),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn model_ready(
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

#[utoipa::path(get, path = "/v2/models/{model}", tag = "models",
    params(("model" = String, Path, description = "A model name")),
    responses((status = 200, description = "Open Inference Protocol model metadata", body = crate::openapi::schemas::V2ModelMetadata),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn model_metadata(
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
#[utoipa::path(get, path = "/v1/models", tag = "models",
    responses((status = 200, description = "Every configured model with its load state", body = crate::openapi::schemas::ModelList),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn list_models(State(s): State<AppState>) -> impl IntoResponse {
    let data: Vec<_> = s.registry.status().iter().map(model_object).collect();
    axum::Json(json!({ "object": "list", "data": data }))
}

#[utoipa::path(get, path = "/v1/models/{model}", tag = "models",
    params(("model" = String, Path, description = "A model name")),
    responses((status = 200, description = "The model with its load state", body = crate::openapi::schemas::Model),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn get_model(
    State(s): State<AppState>,
    Path(model): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok(axum::Json(model_object(&s.registry.model_status(&model)?)))
}

#[utoipa::path(post, path = "/v1/models/{model}/load", tag = "models",
    params(("model" = String, Path, description = "A model name")),
    responses((status = 200, description = "Loaded (waits for the load; an admin key when keys are set)", body = crate::openapi::schemas::Model),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn load_model(
    State(s): State<AppState>,
    Path(model): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok(axum::Json(model_object(&s.registry.load(&model).await?)))
}

#[utoipa::path(post, path = "/v1/models/{model}/unload", tag = "models",
    params(("model" = String, Path, description = "A model name")),
    responses((status = 200, description = "Unloaded (an admin key when keys are set)", body = crate::openapi::schemas::Model),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn unload_model(
    State(s): State<AppState>,
    Path(model): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok(axum::Json(model_object(&s.registry.unload(&model)?)))
}
