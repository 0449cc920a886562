//! `POST /v1/embeddings` (OpenAI) and `POST /v2/models/{m}/infer` (Open
//! Inference Protocol) for embedding models.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use base64::Engine as _;
use brisk_core::{Request, Response};
use brisk_engine::{CacheMode, CacheStatus};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{AppError, Json};
use crate::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"model": "all-minilm-l6-v2", "input": ["I eat food", "I eat bread"]}))]
pub struct EmbeddingsRequest {
    /// A string or an array of strings; validated by hand for clear errors.
    #[schema(required = true)]
    pub input: Option<Value>,
    #[schema(required = true)]
    pub model: Option<String>,
    #[serde(default)]
    pub encoding_format: Option<String>,
    #[serde(default)]
    pub dimensions: Option<usize>,
    #[serde(default)]
    pub user: Option<String>,
    /// Cut over-long inputs to the model's length instead of failing.
    #[serde(default)]
    pub truncate: bool,
    #[serde(flatten)]
    #[schema(ignore)]
    pub rest: serde_json::Map<String, Value>,
}

/// Turns OpenAI's `input` into a list of texts, or says precisely what is wrong.
pub fn parse_input(input: Option<Value>) -> Result<Vec<String>, AppError> {
    let bad = |m: String| AppError::bad(m, "input");
    match input {
        None | Some(Value::Null) => Err(bad("'input' is required".into())),
        Some(Value::String(s)) => Ok(vec![s]),
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(bad("'input' must not be an empty list".into()));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s),
                    Value::Number(_) | Value::Array(_) => Err(bad(format!(
                        "input[{i}]: token-id input is not supported; send text"
                    ))),
                    other => Err(bad(format!(
                        "input[{i}] must be a string, got {}",
                        json_type(&other)
                    ))),
                })
                .collect()
        }
        Some(other) => Err(bad(format!(
            "'input' must be a string or an array of strings, got {}",
            json_type(&other)
        ))),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

async fn embed(
    state: &AppState,
    model: &str,
    texts: Vec<String>,
    truncate: bool,
    mode: CacheMode,
) -> Result<(Vec<Vec<f32>>, usize, CacheStatus), AppError> {
    match state
        .registry
        .infer_with(model, Request::Embed { texts, truncate }, mode)
        .await?
    {
        (
            Response::Embed {
                vectors,
                prompt_tokens,
            },
            status,
        ) => Ok((vectors, prompt_tokens, status)),
        other => Err(AppError::Engine(brisk_engine::EngineError::Backend(
            brisk_core::BackendError::Inference(format!("unexpected reply {other:?}")),
        ))),
    }
}

#[utoipa::path(post, path = "/v1/embeddings", tag = "embeddings",
    request_body = EmbeddingsRequest,
    responses((status = 200, description = "One vector per input", headers(("x-brisk-cache" = String, description = "hit, miss or bypass")), body = crate::openapi::schemas::EmbeddingsResponse),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<EmbeddingsRequest>,
) -> Result<axum::response::Response, AppError> {
    super::openai_fields::refuse(super::openai_fields::EMBEDDINGS, &req.rest)?;
    let model = req
        .model
        .filter(|m| !m.is_empty())
        .ok_or_else(|| AppError::bad("'model' is required", "model"))?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(AppError::bad(
                format!("encoding_format must be 'float' or 'base64', got '{other}'"),
                "encoding_format",
            ))
        }
    };
    let texts = parse_input(req.input)?;
    state.config.limits.check_list(
        "input",
        state.config.limits.max_inputs,
        texts.iter().map(String::as_str),
    )?;
    let (vectors, prompt_tokens, status) = embed(
        &state,
        &model,
        texts,
        req.truncate,
        super::cache::mode(&headers),
    )
    .await?;
    if let (Some(want), Some(have)) = (req.dimensions, vectors.first().map(Vec::len)) {
        if want != have {
            return Err(AppError::bad(
                format!("model '{model}' produces {have} dimensions and cannot change that (asked {want})"),
                "dimensions",
            ));
        }
    }
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    let body = axum::Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": { "prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens },
    }));
    Ok(super::cache::tag(body.into_response(), status))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hello"]}]}))]
pub struct V2InferRequest {
    #[serde(default)]
    pub id: Option<String>,
    pub inputs: Vec<V2Tensor>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct V2Tensor {
    pub name: String,
    #[serde(default)]
    pub datatype: Option<String>,
    #[serde(default)]
    pub shape: Vec<i64>,
    /// The texts (BYTES).
    pub data: Value,
}

/// Open Inference Protocol: one BYTES input of texts, one FP32 output of
/// shape `[n, dim]`, flattened row-major as the protocol asks.
#[utoipa::path(post, path = "/v2/models/{model}/infer", tag = "embeddings",
    params(("model" = String, Path, description = "An embedding model")),
    request_body = V2InferRequest,
    responses((status = 200, description = "One FP32 output of shape [inputs, dimensions]", headers(("x-brisk-cache" = String, description = "hit, miss or bypass")), body = crate::openapi::schemas::V2InferResponse),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn v2_infer(
    State(state): State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
    Json(req): Json<V2InferRequest>,
) -> Result<axum::response::Response, AppError> {
    let [input] = req.inputs.as_slice() else {
        return Err(AppError::bad(
            "exactly one input tensor (of texts) is expected",
            "inputs",
        ));
    };
    if let Some(dt) = input.datatype.as_deref().filter(|d| *d != "BYTES") {
        return Err(AppError::bad(
            format!("input '{}' must have datatype BYTES, got {dt}", input.name),
            "inputs",
        ));
    }
    let texts = parse_input(Some(input.data.clone()))?;
    state.config.limits.check_list(
        "input",
        state.config.limits.max_inputs,
        texts.iter().map(String::as_str),
    )?;
    let (vectors, _, status) =
        embed(&state, &model, texts, false, super::cache::mode(&headers)).await?;
    let dim = vectors.first().map(Vec::len).unwrap_or(0);
    let rows = vectors.len();
    let flat: Vec<f32> = vectors.into_iter().flatten().collect();
    let body = axum::Json(json!({
        "model_name": model,
        "id": req.id,
        "outputs": [{ "name": "embedding", "datatype": "FP32", "shape": [rows, dim], "data": flat }],
    }));
    Ok(super::cache::tag(body.into_response(), status))
}
