//! Async jobs: `POST /v1/jobs` stores a request for any endpoint (a task,
//! a pipeline, a long audio upload) and answers at once with a job id;
//! workers run it later; `GET /v1/jobs/{id}` reports status and result;
//! `DELETE /v1/jobs/{id}` cancels it.
//!
//! Jobs live in one SQLite file (WAL) so they survive a crash: on start-up,
//! jobs a dead process left `running` are requeued (or failed once they have
//! used `max_attempts`), and queued ones simply run. Claiming is one
//! `UPDATE ... WHERE status = 'queued' RETURNING`, so a job is taken by
//! exactly one worker however many poll.
//!
//! A job is run by sending its stored request through the in-process router
//! (like cache prewarming does), so every endpoint works as a job with the
//! same validation, cache and registry path as a direct call.
//!
//! One process per database file is assumed: start-up recovery treats every
//! `running` row as orphaned.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::Deserialize;
use serde_json::Value;

use crate::error::AppError;
use crate::AppState;

mod store;

pub use store::{now_ms, Jobs, JobsError};

/// Opens the job store and puts it in the state, so the router built next
/// serves `/v1/jobs`. Then [`spawn_workers`] with that router.
pub fn open(state: &mut AppState) -> Result<(), JobsError> {
    if state.config.jobs.enabled {
        state.jobs = Some(Arc::new(Jobs::open(&state.config.jobs)?));
    }
    Ok(())
}

/// Starts the workers, which run each job's request through `router` (the
/// served one, in process), and the purge of expired results. Call inside
/// the runtime.
pub fn spawn_workers(state: &AppState, router: Router) {
    let Some(jobs) = state.jobs.clone() else {
        return;
    };
    let config = &state.config.jobs;
    for _ in 0..config.workers.max(1) {
        tokio::spawn(jobs.clone().work(router.clone()));
    }
    let every = Duration::from_secs(config.result_ttl_s.clamp(1, 60));
    let weak = Arc::downgrade(&jobs);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(jobs) = weak.upgrade() else { return };
            if let Err(e) = jobs.purge().await {
                tracing::warn!(error = %e, "purging expired jobs failed");
            }
        }
    });
    tracing::info!(db = %config.db_path.display(), workers = config.workers, "jobs started");
}

fn store(s: &AppState) -> Result<&Arc<Jobs>, AppError> {
    s.jobs
        .as_ref()
        .ok_or_else(|| AppError::NotFound("jobs are disabled on this server".into()))
}

#[derive(Deserialize)]
pub struct SubmitQuery {
    endpoint: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonJob {
    endpoint: String,
    #[serde(default)]
    body: Value,
}

/// Only task endpoints of this server may be jobs (not jobs themselves).
fn check_endpoint(endpoint: &str) -> Result<(), AppError> {
    // `/translate` is LibreTranslate's path (no version prefix).
    let ok =
        (endpoint.starts_with("/v1/") || endpoint.starts_with("/v2/") || endpoint == "/translate")
            && !endpoint.starts_with("/v1/jobs")
            && !endpoint.contains("..")
            && endpoint.parse::<axum::http::Uri>().is_ok();
    if ok {
        Ok(())
    } else {
        Err(AppError::bad(
            format!("'{endpoint}' is not an endpoint a job can run (e.g. /v1/embeddings)"),
            "endpoint",
        ))
    }
}

/// `POST /v1/jobs`. JSON: `{"endpoint": "/v1/embeddings", "body": {...}}`.
/// Uploads: the multipart form the endpoint itself takes, with the endpoint
/// in the query (`/v1/jobs?endpoint=/v1/audio/transcriptions`).
#[utoipa::path(post, path = "/v1/jobs", tag = "pipelines",
    params(("endpoint" = Option<String>, Query, description = "The endpoint of a multipart job, e.g. /v1/audio/transcriptions")),
    request_body(content((crate::openapi::schemas::JobSubmit = "application/json"), (crate::openapi::schemas::UploadForm = "multipart/form-data"))),
    responses((status = 202, description = "Accepted: the job, queued; it survives restarts", body = crate::openapi::schemas::Job),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn submit(
    State(s): State<AppState>,
    Query(q): Query<SubmitQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let jobs = store(&s)?;
    if body.len() > jobs.config().max_body_bytes {
        return Err(AppError::PayloadTooLarge(format!(
            "job body is {} bytes; the limit is {}",
            body.len(),
            jobs.config().max_body_bytes
        )));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (endpoint, content_type, body) = if content_type.starts_with("multipart/form-data") {
        let endpoint = q.endpoint.ok_or_else(|| {
            AppError::bad(
                "a multipart job names its endpoint in the query: /v1/jobs?endpoint=...",
                "endpoint",
            )
        })?;
        (endpoint, content_type, body.to_vec())
    } else {
        let job: JsonJob = serde_json::from_slice(&body).map_err(|e| AppError::BadRequest {
            message: format!("expected {{\"endpoint\": ..., \"body\": {{...}}}}: {e}"),
            param: None,
        })?;
        if !job.body.is_object() {
            return Err(AppError::bad("body must be a JSON object", "body"));
        }
        (
            job.endpoint,
            "application/json".to_string(),
            job.body.to_string().into_bytes(),
        )
    };
    check_endpoint(&endpoint)?;
    let job = jobs.submit(endpoint, content_type, body).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(job)).into_response())
}

/// `GET /v1/jobs/{id}`.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "pipelines",
    params(("id" = String, Path, description = "The job id")),
    responses((status = 200, description = "The job: status, progress, and its result once finished", body = crate::openapi::schemas::Job),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, AppError> {
    match store(&s)?.get(&id).await? {
        Some(job) => Ok(axum::Json(job).into_response()),
        None => Err(AppError::NotFound(format!(
            "no job '{id}' (or its result expired)"
        ))),
    }
}

/// `DELETE /v1/jobs/{id}`.
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "pipelines",
    params(("id" = String, Path, description = "The job id")),
    responses((status = 200, description = "The job, cancelled", body = crate::openapi::schemas::Job),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn cancel(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, AppError> {
    match store(&s)?.cancel(&id).await? {
        Some(job) => Ok(axum::Json(job).into_response()),
        None => Err(AppError::NotFound(format!("no job '{id}'"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_task_endpoints_can_be_jobs() {
        assert!(check_endpoint("/v1/embeddings").is_ok());
        assert!(check_endpoint("/v1/pipelines/voice").is_ok());
        assert!(check_endpoint("/v1/jobs").is_err());
        assert!(check_endpoint("/v1/jobs/x").is_err());
        assert!(check_endpoint("http://evil/v1/embeddings").is_err());
        assert!(check_endpoint("/v1/../metrics").is_err());
    }
}
