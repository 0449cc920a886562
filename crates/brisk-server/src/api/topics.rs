//! `POST /v1/topics`: topic analysis over documents, BERTopic's steps
//! (embed → UMAP → HDBSCAN → class-based TF-IDF keywords). The documents are
//! embedded by an embeddings model through the registry, so the result cache
//! and batching apply; the rest runs in `brisk-topics` on a blocking thread.
//! As a job (`/v1/jobs`), the run reports its fraction done.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use brisk_engine::topics::{NrTopics, StopWords, TopicParams};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{AppError, Json};
use crate::AppState;

fn default_stop_words() -> Value {
    Value::String("english".into())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"model": "all-minilm-l6-v2", "documents": ["The match ended in a draw.", "Stocks fell sharply today."], "min_topic_size": 2}))]
pub struct TopicsRequest {
    /// The embedding model.
    #[schema(required = true)]
    pub model: Option<String>,
    #[schema(required = true, value_type = Vec<String>)]
    pub documents: Option<Vec<Value>>,
    pub min_topic_size: Option<usize>,
    /// `"auto"`, a number, or null (keep HDBSCAN's topics).
    #[serde(default)]
    pub nr_topics: Value,
    pub top_n_words: Option<usize>,
    /// `"english"` (default), a list of words, or null (none).
    #[serde(default = "default_stop_words")]
    pub stop_words: Value,
    pub seed: Option<u64>,
}

/// The request as engine parameters, or a 400 naming the field.
pub fn parse(req: TopicsRequest) -> Result<(String, Vec<String>, TopicParams), AppError> {
    let model = req
        .model
        .filter(|m| !m.is_empty())
        .ok_or_else(|| AppError::bad("'model' is required", "model"))?;
    let documents = req
        .documents
        .ok_or_else(|| AppError::bad("'documents' is required", "documents"))?
        .into_iter()
        .enumerate()
        .map(|(i, d)| match d {
            Value::String(s) => Ok(s),
            _ => Err(AppError::bad(
                format!("documents[{i}] must be a string"),
                "documents",
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let nr_topics = match &req.nr_topics {
        Value::Null => NrTopics::Keep,
        Value::String(s) if s == "auto" => NrTopics::Auto,
        Value::Number(n) => match n.as_u64() {
            Some(n) if n >= 1 => NrTopics::Count(n as usize),
            _ => {
                return Err(AppError::bad(
                    "'nr_topics' must be \"auto\", a positive integer or null",
                    "nr_topics",
                ))
            }
        },
        _ => {
            return Err(AppError::bad(
                "'nr_topics' must be \"auto\", a positive integer or null",
                "nr_topics",
            ))
        }
    };
    let stop_words = match req.stop_words {
        Value::Null => StopWords::None,
        Value::String(s) if s == "english" => StopWords::English,
        Value::Array(items) => StopWords::List(
            items
                .into_iter()
                .map(|w| match w {
                    Value::String(s) => Ok(s),
                    _ => Err(AppError::bad(
                        "'stop_words' items must be strings",
                        "stop_words",
                    )),
                })
                .collect::<Result<_, _>>()?,
        ),
        _ => {
            return Err(AppError::bad(
                "'stop_words' must be \"english\", a list of words or null",
                "stop_words",
            ))
        }
    };
    let defaults = TopicParams::default();
    let params = TopicParams {
        min_topic_size: req.min_topic_size.unwrap_or(defaults.min_topic_size),
        nr_topics,
        top_n_words: req.top_n_words.unwrap_or(defaults.top_n_words),
        stop_words,
        seed: req.seed.unwrap_or(defaults.seed),
        ..defaults
    };
    let param_of = |message: &str| {
        if message.contains("documents") {
            "documents"
        } else if message.contains("min_topic_size") {
            "min_topic_size"
        } else if message.contains("top_n_words") {
            "top_n_words"
        } else if message.contains("nr_topics") {
            "nr_topics"
        } else {
            "documents"
        }
    };
    brisk_engine::topics::validate(&documents, &params).map_err(|e| {
        let message = e.to_string();
        AppError::bad(message.clone(), param_of(&message))
    })?;
    Ok((model, documents, params))
}

#[utoipa::path(post, path = "/v1/topics", tag = "embeddings",
    request_body = TopicsRequest,
    responses((status = 200, description = "Topics (BERTopic's method) and each document's topic", body = crate::openapi::schemas::TopicsResponse),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<TopicsRequest>,
) -> Result<axum::response::Response, AppError> {
    let (model, documents, params) = parse(req)?;
    let limits = &state.config.limits;
    if documents.len() > limits.max_topic_documents {
        return Err(AppError::bad(
            format!(
                "'documents' has {} items; at most {} are accepted per request ([limits] max_topic_documents)",
                documents.len(),
                limits.max_topic_documents
            ),
            "documents",
        ));
    }
    limits.check_list(
        "documents",
        limits.max_topic_documents,
        documents.iter().map(String::as_str),
    )?;
    // Run as a job (the job store sends its id in `x-brisk-job`): report
    // progress to the store.
    let job = headers
        .get("x-brisk-job")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let progress: brisk_engine::topics::Progress = match (job, state.jobs.clone()) {
        (Some(id), Some(jobs)) => Arc::new(move |f: f32| jobs.report_progress(&id, f64::from(f))),
        _ => Arc::new(|_| ()),
    };
    let n = documents.len();
    let out =
        brisk_engine::topics::analyze(&state.registry, &model, documents, params, progress).await?;
    let mut body = serde_json::to_value(&out).unwrap_or_else(|_| json!({}));
    body["object"] = json!("topics");
    body["model"] = json!(model);
    body["usage"] = json!({ "documents": n });
    Ok(axum::Json(body).into_response())
}
