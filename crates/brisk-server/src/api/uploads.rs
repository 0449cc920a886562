//! Multipart reading shared by the VAD and OCR endpoints: a `file`, a
//! `model` and plain text fields.

use std::collections::HashMap;

use axum::extract::Multipart;

use crate::error::{multipart_error, AppError};

pub struct Upload {
    pub file: Vec<u8>,
    pub model: String,
    /// The other fields, by name (unknown ones are kept and ignored).
    pub fields: HashMap<String, String>,
}

pub async fn read(mut mp: Multipart) -> Result<Upload, AppError> {
    let mut file = None;
    let mut fields = HashMap::new();
    while let Some(field) = mp.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            file = Some(field.bytes().await.map_err(multipart_error)?.to_vec());
        } else {
            let text = field.text().await.map_err(multipart_error)?;
            fields.insert(name, text);
        }
    }
    let file = file.ok_or_else(|| AppError::bad("'file' is required", "file"))?;
    if file.is_empty() {
        return Err(AppError::bad("the uploaded file is empty", "file"));
    }
    let model = fields
        .remove("model")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| AppError::bad("'model' is required", "model"))?;
    Ok(Upload {
        file,
        model,
        fields,
    })
}

/// Fails unless `model` serves `task`, before any upload is decoded.
pub fn check_task(
    state: &crate::AppState,
    model: &str,
    task: brisk_core::Task,
) -> Result<(), AppError> {
    let got = state.registry.task_of(model)?;
    if got != task {
        return Err(AppError::bad(
            format!("model '{model}' serves {got}, not {task}"),
            "model",
        ));
    }
    Ok(())
}

/// An unexpected reply kind from the engine: a server bug, not the caller's.
pub fn unexpected(other: &brisk_core::Response) -> AppError {
    AppError::Engine(brisk_engine::EngineError::Backend(
        brisk_core::BackendError::Inference(format!("unexpected reply {other:?}")),
    ))
}
