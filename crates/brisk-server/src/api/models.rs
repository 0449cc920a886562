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
pub async fn list_models(State(s): State<AppState>) -> impl IntoResponse {
    let data: Vec<_> = s.registry.status().iter().map(model_object).collect();
    axum::Json(json!({ "object": "list", "data": data }))
}

pub async fn get_model(
    State(s): State<AppState>,
    Path(model): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok(axum::Json(model_object(&s.registry.model_status(&model)?)))
}

pub async fn load_model(
    State(s): State<AppState>,
    Path(model): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok(axum::Json(model_object(&s.registry.load(&model).await?)))
}

pub async fn unload_model(
    State(s): State<AppState>,
    Path(model): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok(axum::Json(model_object(&s.registry.unload(&model)?)))
}
