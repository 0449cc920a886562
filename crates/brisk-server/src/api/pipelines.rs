//! `GET /v1/pipelines` and `POST /v1/pipelines/{name}`: reading a pipeline
//! request (JSON, or multipart when audio is uploaded) and shaping the
//! answer as JSON or as server-sent events, one per finished step. The
//! pipelines themselves are built and executed by
//! [`brisk_engine::pipeline`].

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Path, State};
use axum::http::header;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use brisk_engine::pipeline::{execute, timing_json, PipelineInput, RunError, StepError};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::error::{multipart_error, AppError};
use crate::AppState;

fn bad_input(message: String) -> AppError {
    AppError::BadRequest {
        message,
        param: None,
    }
}

impl From<StepError> for AppError {
    fn from(e: StepError) -> Self {
        match e {
            StepError::BadInput(message) => bad_input(message),
            StepError::Engine(e) => AppError::Engine(e),
        }
    }
}

/// A failed step keeps its own status and code; the body names the step.
impl From<RunError> for AppError {
    fn from(e: RunError) -> Self {
        AppError::Step {
            step: e.step,
            source: Box::new(e.source.into()),
        }
    }
}

/// `GET /v1/pipelines`: the pipelines this server runs.
#[utoipa::path(get, path = "/v1/pipelines", tag = "pipelines",
    responses((status = 200, description = "The pipelines this server runs", body = crate::openapi::schemas::PipelineList),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn list(State(state): State<AppState>) -> impl IntoResponse {
    let data: Vec<Value> = state
        .pipelines
        .all()
        .map(|p| p.describe(&state.registry))
        .collect();
    axum::Json(json!({ "object": "list", "data": data }))
}

/// Reads a JSON object or a multipart form into the pipeline's input, and
/// whether the client asked for a stream (`stream` field or query).
async fn read_input(
    state: &AppState,
    req: axum::extract::Request,
) -> Result<(PipelineInput, bool), AppError> {
    let query_stream = req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "stream=true" || kv == "stream=1")
    });
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("multipart/form-data"));
    let mut input = PipelineInput::default();
    if is_multipart {
        let mut mp = Multipart::from_request(req, state)
            .await
            .map_err(|e| bad_input(format!("invalid multipart body: {}", e.body_text())))?;
        while let Some(field) = mp.next_field().await.map_err(multipart_error)? {
            let name = field.name().unwrap_or_default().to_string();
            if field.file_name().is_some() {
                let bytes = field.bytes().await.map_err(multipart_error)?;
                input.files.insert(name, bytes.to_vec());
            } else {
                let text = field.text().await.map_err(multipart_error)?;
                input.fields.insert(name, Value::String(text));
            }
        }
    } else {
        let crate::error::Json(body) =
            crate::error::Json::<Value>::from_request(req, state).await?;
        match body {
            Value::Object(fields) => input.fields = fields,
            _ => return Err(bad_input("the request body must be a JSON object".into())),
        }
    }
    let body_stream = match input.fields.get("stream") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true" || s == "1",
        _ => false,
    };
    Ok((input, query_stream || body_stream))
}

/// Aborts the run when the SSE stream is dropped (client went away).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `POST /v1/pipelines/{name}`: JSON, or multipart when audio is uploaded.
#[utoipa::path(post, path = "/v1/pipelines/{name}", tag = "pipelines",
    params(("name" = String, Path, description = "A pipeline of GET /v1/pipelines"),
           ("stream" = Option<bool>, Query, description = "Answer as server-sent events: one `step` event per finished step, then `done` or `error`")),
    request_body(content((crate::openapi::schemas::PipelineInput = "application/json"), (crate::openapi::schemas::UploadForm = "multipart/form-data"))),
    responses((status = 200, description = "Every step's output and timing, or their events",
               content((crate::openapi::schemas::PipelineRun = "application/json"), (crate::openapi::schemas::SseEvent = "text/event-stream"))),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn run(
    State(state): State<AppState>,
    Path(name): Path<String>,
    req: axum::extract::Request,
) -> Result<Response, AppError> {
    let pipeline = state.pipelines.get(&name).ok_or_else(|| {
        AppError::NotFound(format!(
            "pipeline '{name}' does not exist (served: {})",
            state.pipelines.names().join(", ")
        ))
    })?;
    let (input, stream) = read_input(&state, req).await?;
    let input = Arc::new(input);
    if !stream {
        let outcome = execute(&state.pipeline_runner(), &pipeline, input, |_, _, _| {}).await?;
        return Ok(axum::Json(outcome.to_json(&pipeline.name)).into_response());
    }
    // One event per finished step, then `done` (or `error`, naming the
    // step). The run is a task of its own so events leave as steps finish.
    let (tx, rx) = mpsc::unbounded_channel::<Event>();
    let task = tokio::spawn(async move {
        let step_tx = tx.clone();
        let result = execute(
            &state.pipeline_runner(),
            &pipeline,
            input,
            |step, model, r| {
                let data = json!({
                    "step": step,
                    "output": *r.output,
                    "timing": timing_json(model, &r.timing),
                });
                let _ = step_tx.send(Event::default().event("step").data(data.to_string()));
            },
        )
        .await;
        let last = match result {
            Ok(o) => Event::default().event("done").data(
                json!({ "pipeline": pipeline.name, "timings": o.timings_json() }).to_string(),
            ),
            Err(e) => Event::default()
                .event("error")
                .data(AppError::from(e).error_object().to_string()),
        };
        let _ = tx.send(last);
    });
    let guard = AbortOnDrop(task.abort_handle());
    let events = futures_util::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        let ev = rx.recv().await?;
        Some((Ok::<_, Infallible>(ev), (rx, guard)))
    });
    Ok(Sse::new(events.boxed()).into_response())
}
