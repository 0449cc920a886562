//! The one place where errors become HTTP responses, in OpenAI's shape:
//! `{"error": {"message", "type", "param", "code"}}`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use brisk_core::BackendError;
use brisk_engine::EngineError;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The request is malformed; `param` names the offending field.
    #[error("{message}")]
    BadRequest {
        message: String,
        param: Option<&'static str>,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// No or an unknown API key.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid key without the rights the endpoint needs.
    #[error("{0}")]
    Forbidden(String),
    /// A server-side store (e.g. the jobs database) cannot answer now.
    #[error("{0}")]
    Unavailable(String),
    /// An error the HTTP layer answered itself (a rejection, a wrong
    /// method, a timeout), reshaped by [`uniform`].
    #[error("{message}")]
    Http { status: StatusCode, message: String },
    /// A pipeline step failed; status and code are the step's own error's.
    #[error("pipeline step '{step}' failed: {source}")]
    Step { step: String, source: Box<AppError> },
}

impl AppError {
    pub fn bad(message: impl Into<String>, param: &'static str) -> Self {
        AppError::BadRequest {
            message: message.into(),
            param: Some(param),
        }
    }

    /// Status, OpenAI error type and code: the whole error table.
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use EngineError as E;
        const INVALID: &str = "invalid_request_error";
        const SERVER: &str = "server_error";
        match self {
            AppError::Step { source, .. } => source.parts(),
            AppError::BadRequest { .. } => (StatusCode::BAD_REQUEST, INVALID, "invalid_request"),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, INVALID, "not_found"),
            AppError::PayloadTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, INVALID, "payload_too_large")
            }
            AppError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, INVALID, "invalid_api_key"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, INVALID, "permission_denied"),
            AppError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, SERVER, "unavailable"),
            AppError::Http { status, .. } => {
                let code = match *status {
                    StatusCode::BAD_REQUEST => "invalid_request",
                    StatusCode::NOT_FOUND => "not_found",
                    StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
                    StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => "timeout",
                    StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                    StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
                    StatusCode::TOO_MANY_REQUESTS => "rate_limited",
                    s if s.is_server_error() => "internal_error",
                    _ => "http_error",
                };
                let kind = if status.is_server_error() {
                    SERVER
                } else {
                    INVALID
                };
                (*status, kind, code)
            }
            AppError::Engine(e) => match e {
                E::UnknownModel(_) => (StatusCode::NOT_FOUND, INVALID, "model_not_found"),
                E::WrongTask { .. } => (StatusCode::BAD_REQUEST, INVALID, "wrong_model_task"),
                E::InvalidInput(_) => (StatusCode::BAD_REQUEST, INVALID, "invalid_input"),
                E::QueueFull { .. } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "queue_full",
                ),
                E::Cooldown { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, SERVER, "model_load_failed")
                }
                E::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, SERVER, "shutting_down"),
                E::DeadlineExceeded { .. } => {
                    (StatusCode::GATEWAY_TIMEOUT, SERVER, "deadline_exceeded")
                }
                E::Panicked { .. } => (StatusCode::INTERNAL_SERVER_ERROR, SERVER, "backend_panic"),
                E::Backend(b) => match b {
                    BackendError::InvalidInput(_) => {
                        (StatusCode::BAD_REQUEST, INVALID, "invalid_input")
                    }
                    BackendError::Unsupported(_) => {
                        (StatusCode::BAD_REQUEST, INVALID, "unsupported")
                    }
                    BackendError::NotFound(_) | BackendError::InvalidModel(_) => {
                        (StatusCode::SERVICE_UNAVAILABLE, SERVER, "model_unavailable")
                    }
                    BackendError::Inference(_) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        SERVER,
                        "inference_failed",
                    ),
                },
            },
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    message: String,
    r#type: &'a str,
    param: Option<&'a str>,
    code: &'a str,
    /// The pipeline step that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<&'a str>,
}

impl AppError {
    /// The innermost error: a failed pipeline step's own error.
    fn root(&self) -> &AppError {
        match self {
            AppError::Step { source, .. } => source.root(),
            other => other,
        }
    }

    fn body(&self) -> ErrorBody<'_> {
        let (_, kind, code) = self.parts();
        let param = match self.root() {
            AppError::BadRequest { param, .. } => *param,
            _ => None,
        };
        let step = match self {
            AppError::Step { step, .. } => Some(step.as_str()),
            _ => None,
        };
        ErrorBody {
            error: ErrorDetail {
                message: self.to_string(),
                r#type: kind,
                param,
                code,
                step,
            },
        }
    }

    /// The error body as JSON, for errors sent inside an event stream.
    pub fn error_object(&self) -> serde_json::Value {
        serde_json::to_value(self.body()).unwrap_or_default()
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, _, _) = self.parts();
        if status.is_server_error() {
            tracing::warn!(error = %self, status = status.as_u16(), "request failed");
        }
        let retry_after = match self.root() {
            AppError::Engine(e) => e.retry_after(),
            _ => None,
        };
        let mut resp = (status, axum::Json(self.body())).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(after) = retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// `axum::Json`, but a body that is not valid JSON, or not of the expected
/// shape, is answered in our error shape instead of axum's plain text.
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(
                AppError::PayloadTooLarge("request body is larger than the server accepts".into()),
            ),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(AppError::Http {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message: "expected a JSON body with Content-Type: application/json".into(),
            }),
            Err(rejection) => Err(AppError::BadRequest {
                message: rejection.body_text(),
                param: None,
            }),
        }
    }
}

/// A multipart body that cannot be read: too large (413) or malformed (400).
pub fn multipart_error(e: axum::extract::multipart::MultipartError) -> AppError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        AppError::PayloadTooLarge(format!("upload is larger than the server accepts: {e}"))
    } else {
        AppError::BadRequest {
            message: format!("invalid multipart body: {}", e.body_text()),
            param: None,
        }
    }
}

/// Answers every error in OpenAI's shape, including those that never reach
/// a handler's `AppError`: axum's own rejections (query, path, WebSocket
/// upgrade), 405 for a wrong method, body limits hit by extractors that
/// answer in plain text, and any empty-bodied 4xx/5xx. A response that is
/// already JSON passes untouched, so handler errors keep their `param`.
/// Headers the status relies on (`Allow`, `Retry-After`,
/// `WWW-Authenticate`) are kept.
pub async fn uniform(req: Request, next: axum::middleware::Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    // Rejection texts are short; a huge plain-text error body is cut.
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let allow = parts
        .headers
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        format!("{method} is not allowed on {path}; allowed: {allow}")
    } else if text.is_empty() {
        format!(
            "{} ({method} {path})",
            status.canonical_reason().unwrap_or("error")
        )
    } else {
        text
    };
    let mut out = AppError::Http { status, message }.into_response();
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

/// axum's `Multipart`, with its rejection in our shape: a body that is not
/// `multipart/form-data` (JSON sent to an upload endpoint, say) is a 415
/// that says what was expected.
pub struct Multipart(pub axum::extract::Multipart);

impl<S: Send + Sync> FromRequest<S> for Multipart {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_string();
        axum::extract::Multipart::from_request(req, state)
            .await
            .map(Multipart)
            .map_err(|_| AppError::Http {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message: format!(
                    "expected a multipart/form-data body (with a boundary), got \
                     Content-Type: {content_type}"
                ),
            })
    }
}
