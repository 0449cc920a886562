/// Every failure on user input is `InvalidInput` (a 400 at the edge).
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("cannot read the audio: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) fn invalid(msg: impl Into<String>) -> AnalysisError {
    AnalysisError::InvalidInput(msg.into())
}
