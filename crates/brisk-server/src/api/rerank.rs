//! `POST /v1/rerank` (the Cohere/Jina request and response shape) for
//! cross-encoder models: scores each document's relevance to the query.
//!
//! Request: `model`, `query`, `documents` (strings), optional `top_n`,
//! `return_documents` (default false) and `truncate` (as for embeddings).
//! Answer: `results: [{index, relevance_score, document?}]`, most relevant
//! first, cut to `top_n`, and `usage`. Goes through the engine like
//! embeddings: result cache, batching, admission, length checks.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use brisk_core::{Request, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{AppError, Json};
use crate::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"model": "cross-encoder", "query": "what do pandas eat?", "documents": ["Pandas eat bamboo.", "Paris is in France."], "top_n": 1}))]
pub struct RerankRequest {
    #[schema(required = true)]
    pub model: Option<String>,
    #[schema(required = true)]
    pub query: Option<String>,
    /// Strings (or `{text}` objects); validated by hand for clear errors.
    #[schema(required = true, value_type = Vec<String>)]
    pub documents: Option<Value>,
    #[serde(default)]
    pub top_n: Option<usize>,
    #[serde(default)]
    pub return_documents: bool,
    /// Cut over-long (query, document) pairs to the model's length instead
    /// of failing.
    #[serde(default)]
    pub truncate: bool,
}

fn parse_documents(documents: Option<Value>) -> Result<Vec<String>, AppError> {
    let bad = |m: String| AppError::bad(m, "documents");
    match documents {
        None | Some(Value::Null) => Err(bad("'documents' is required".into())),
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(bad("'documents' must not be an empty list".into()));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s),
                    Value::Object(o) if o.get("text").is_some_and(Value::is_string) => Ok(o
                        .get("text")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()),
                    _ => Err(bad(format!(
                        "documents[{i}] must be a string (or an object with a 'text' string)"
                    ))),
                })
                .collect()
        }
        Some(_) => Err(bad("'documents' must be an array of strings".into())),
    }
}

#[utoipa::path(post, path = "/v1/rerank", tag = "embeddings",
    request_body = RerankRequest,
    responses((status = 200, description = "Documents by relevance to the query", headers(("x-brisk-cache" = String, description = "hit, miss or bypass")), body = crate::openapi::schemas::RerankResponse),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<RerankRequest>,
) -> Result<axum::response::Response, AppError> {
    let model = req
        .model
        .filter(|m| !m.is_empty())
        .ok_or_else(|| AppError::bad("'model' is required", "model"))?;
    let query = req
        .query
        .ok_or_else(|| AppError::bad("'query' is required", "query"))?;
    if query.trim().is_empty() {
        return Err(AppError::bad("'query' must contain text", "query"));
    }
    let documents = parse_documents(req.documents)?;
    let limits = &state.config.limits;
    if documents.len() > limits.max_inputs {
        return Err(AppError::bad(
            format!(
                "'documents' has {} items; at most {} are accepted per request ([limits] max_inputs)",
                documents.len(),
                limits.max_inputs
            ),
            "documents",
        ));
    }
    limits.check_list(
        "documents",
        limits.max_inputs,
        documents.iter().map(String::as_str),
    )?;
    limits.check_chars(|| "query".to_string(), &query, "query")?;
    if req.top_n == Some(0) {
        return Err(AppError::bad("'top_n' must be at least 1", "top_n"));
    }
    let request = Request::Rerank {
        query,
        documents: documents.clone(),
        truncate: req.truncate,
    };
    let (scores, prompt_tokens, status) = match state
        .registry
        .infer_with(&model, request, super::cache::mode(&headers))
        .await?
    {
        (
            Response::Rerank {
                scores,
                prompt_tokens,
            },
            status,
        ) => (scores, prompt_tokens, status),
        other => {
            return Err(AppError::Engine(brisk_engine::EngineError::Backend(
                brisk_core::BackendError::Inference(format!("unexpected reply {other:?}")),
            )))
        }
    };
    let results: Vec<Value> = brisk_core::rank_order(&scores, req.top_n)
        .into_iter()
        .map(|i| {
            let mut r = json!({ "index": i, "relevance_score": scores[i] });
            if req.return_documents {
                r["document"] = json!({ "text": documents[i] });
            }
            r
        })
        .collect();
    let body = axum::Json(json!({
        "object": "list",
        "model": model,
        "results": results,
        "usage": { "prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens },
    }));
    Ok(super::cache::tag(body.into_response(), status))
}
