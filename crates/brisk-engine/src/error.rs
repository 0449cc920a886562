use std::time::Duration;

use brisk_core::{BackendError, Task};

/// Everything that can go wrong between a request entering the engine and
/// its reply. The HTTP edge owns the single mapping of these to status codes.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum EngineError {
    #[error("model '{0}' does not exist")]
    UnknownModel(String),
    #[error("model '{model}' serves {serves}, not {asked}")]
    WrongTask {
        model: String,
        serves: Task,
        asked: Task,
    },
    #[error("model '{model}' is at capacity ({capacity} queued requests); retry later")]
    QueueFull { model: String, capacity: usize },
    /// The last load failed; loading is not retried before the cooldown ends.
    #[error("model '{model}' failed to load ({reason}); retry after {}s", retry_after.as_secs().max(1))]
    Cooldown {
        model: String,
        reason: String,
        retry_after: Duration,
    },
    #[error("request to model '{model}' exceeded its deadline of {}ms", deadline.as_millis())]
    DeadlineExceeded { model: String, deadline: Duration },
    #[error("{0}")]
    InvalidInput(String),
    #[error("backend of model '{model}' panicked; the model will be reloaded")]
    Panicked { model: String },
    #[error("server is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl EngineError {
    /// Seconds a client should wait before retrying, for errors where a retry
    /// can succeed (sent as `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            EngineError::QueueFull { .. } => Some(Duration::from_secs(1)),
            EngineError::Cooldown { retry_after, .. } => Some(*retry_after),
            EngineError::ShuttingDown => Some(Duration::from_secs(5)),
            _ => None,
        }
    }
}
