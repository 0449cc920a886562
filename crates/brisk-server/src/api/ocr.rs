//! `POST /v1/ocr`: the text lines in an uploaded image (png, jpeg or webp).
//!
//! Multipart: `file` and `model`. The reply has the whole text (lines joined
//! by newlines) and every line with its confidence and box corners (pixels:
//! top-left, top-right, bottom-right, bottom-left).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use brisk_core::{Request, Task};
use serde_json::json;

use super::{decode, uploads};
use crate::error::AppError;
use crate::AppState;

#[utoipa::path(post, path = "/v1/ocr", tag = "vision",
    request_body(content = crate::openapi::schemas::UploadForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "The text lines with confidences and boxes", headers(("x-brisk-cache" = String, description = "hit, miss or bypass")), body = crate::openapi::schemas::OcrResponse),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn recognize(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    crate::error::Multipart(mp): crate::error::Multipart,
) -> Result<Response, AppError> {
    let upload = uploads::read(mp).await?;
    uploads::check_task(&state, &upload.model, Task::Ocr)?;
    let bytes = upload.file;
    let image = decode::blocking(move || decode::decode_image(&bytes)).await?;
    match state
        .registry
        .infer_with(
            &upload.model,
            Request::Ocr(image),
            super::cache::mode(&headers),
        )
        .await?
    {
        (brisk_core::Response::Ocr(r), status) => {
            let text = r
                .lines
                .iter()
                .map(|l| l.text.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            let body = axum::Json(json!({
                "object": "ocr",
                "model": upload.model,
                "width": r.width,
                "height": r.height,
                "text": text,
                "lines": r.lines,
            }));
            Ok(super::cache::tag(body.into_response(), status))
        }
        (other, _) => Err(uploads::unexpected(&other)),
    }
}
