//! Types shared by every brisk crate.
//!
//! This crate is deliberately free of any async runtime or HTTP types: a
//! [`Backend`] is a plain synchronous object that owns a loaded model and runs
//! on a dedicated thread. The engine decides *when* it runs; the backend only
//! decides *how*.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What a model does. One model serves exactly one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Embeddings,
    Generation,
    Transcription,
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Task::Embeddings => "embeddings",
            Task::Generation => "generation",
            Task::Transcription => "transcription",
        })
    }
}

/// One inference request, as the engine hands it to a backend.
#[derive(Debug)]
pub enum Request {
    /// Embed every text; the reply carries one vector per text, in order.
    /// Texts longer than the model accepts are an error, unless `truncate`
    /// is set: then they are cut to the model's length, as
    /// sentence-transformers does.
    Embed { texts: Vec<String>, truncate: bool },
    /// Generate text from a chat or a raw prompt.
    Generate(GenerateRequest),
    /// Transcribe (or translate to English) 16 kHz mono audio.
    Transcribe(TranscribeRequest),
}

impl Request {
    /// The task this request needs; a model of another task refuses it.
    pub fn task(&self) -> Task {
        match self {
            Request::Embed { .. } => Task::Embeddings,
            Request::Generate(_) => Task::Generation,
            Request::Transcribe(_) => Task::Transcription,
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` (validated at the HTTP edge).
    pub role: String,
    pub content: String,
}

/// What to continue: a chat (rendered with the model's own chat template)
/// or a raw text prompt used as is.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Chat(Vec<ChatMessage>),
    Text(String),
}

/// Sampling and stopping. `temperature == 0` means greedy decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    pub max_tokens: usize,
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    pub seed: Option<u64>,
    /// Generation stops before any of these strings; they are not returned.
    pub stop: Vec<String>,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.0,
            top_p: None,
            top_k: None,
            seed: None,
            stop: Vec::new(),
        }
    }
}

/// Receives generated text pieces as they are produced. Returns `false`
/// when nobody listens any more, and generation should stop.
pub type TokenSink = Box<dyn FnMut(&str) -> bool + Send>;

pub struct GenerateRequest {
    pub prompt: Prompt,
    pub params: GenerateParams,
    /// Set for streaming requests.
    pub sink: Option<TokenSink>,
}

impl fmt::Debug for GenerateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerateRequest")
            .field("prompt", &self.prompt)
            .field("params", &self.params)
            .field("streaming", &self.sink.is_some())
            .finish()
    }
}

/// Why generation ended, as OpenAI's `finish_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` or the context length was reached.
    Length,
    /// The sink stopped listening (client went away).
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    pub text: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub finish_reason: FinishReason,
    /// Time spent on the prompt (prefill), in seconds.
    pub prompt_eval_s: f64,
    /// Time spent generating tokens after the prompt, in seconds.
    pub eval_s: f64,
}

/// Audio to transcribe, already decoded to 16 kHz mono samples in [-1, 1].
pub struct TranscribeRequest {
    pub audio: Vec<f32>,
    /// ISO-639-1 code; `None` lets a multilingual model detect it.
    pub language: Option<String>,
    /// Text that conditions the decoder (names, spelling, style).
    pub prompt: Option<String>,
    pub temperature: f32,
    /// Translate to English instead of transcribing (multilingual models).
    pub translate: bool,
}

impl fmt::Debug for TranscribeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TranscribeRequest")
            .field("samples", &self.audio.len())
            .field("language", &self.language)
            .field("prompt", &self.prompt)
            .field("temperature", &self.temperature)
            .field("translate", &self.translate)
            .finish()
    }
}

/// One timed piece of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub id: usize,
    pub start: f64,
    pub end: f64,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    pub text: String,
    pub language: Option<String>,
    /// Seconds of audio.
    pub duration: f64,
    pub segments: Vec<Segment>,
}

/// The answer to one [`Request`]. Serializable so the result cache can
/// store it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Embed {
        vectors: Vec<Vec<f32>>,
        /// Tokens actually fed to the model (for `usage`).
        prompt_tokens: usize,
    },
    Generate(Generation),
    Transcribe(Transcript),
}

/// Errors a backend reports. The HTTP edge maps each variant to one status.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum BackendError {
    /// The model files are missing or unreadable.
    #[error("model files not found: {0}")]
    NotFound(String),
    /// The model files exist but cannot be parsed.
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// The request is well-formed JSON but this model cannot take it.
    #[error("{0}")]
    InvalidInput(String),
    /// The request asks for something this model does not do.
    #[error("model does not support {0}")]
    Unsupported(String),
    /// Inference itself failed.
    #[error("inference failed: {0}")]
    Inference(String),
}

/// Counts tokens without touching the model. It is shared with the engine so
/// that over-long inputs are refused, and batches sized, before queueing.
pub trait TokenCounter: Send + Sync {
    fn count(&self, text: &str) -> Result<usize, BackendError>;
    /// The longest input (in tokens) the model accepts.
    fn max_input_tokens(&self) -> usize;
}

/// A loaded model. Owned by exactly one thread, so `&mut self` is fine and
/// backends need no internal locking.
pub trait Backend: Send {
    fn task(&self) -> Task;

    /// Resident memory attributed to this model, for budgets and `/v1/models`.
    fn memory_bytes(&self) -> u64;

    /// Run a batch. Replies come back in the same order, one per request, so a
    /// single bad input fails only its own request.
    fn infer(&mut self, batch: Vec<Request>) -> Vec<Result<Response, BackendError>>;

    /// A token counter usable from other threads, when the model has one.
    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        None
    }
}

/// Where a model comes from and which backend loads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSource {
    /// Backend name, e.g. `candle-bert`, `sim`.
    pub backend: String,
    /// Local path of the model folder or file.
    pub path: PathBuf,
    /// Free-form backend options (e.g. simulated load time).
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
}

/// Loads models. Called on a blocking thread, never on the async runtime.
pub trait Loader: Send + Sync {
    fn load(&self, name: &str, source: &ModelSource) -> Result<Box<dyn Backend>, BackendError>;

    /// Expected resident size before loading (for the memory budget), when
    /// it can be known cheaply (usually the weight file size).
    fn estimate_bytes(&self, source: &ModelSource) -> Option<u64>;

    /// The task a source will serve, known without loading it.
    fn task(&self, source: &ModelSource) -> Result<Task, BackendError>;
}

/// L2-normalise in place; a zero vector stays zero.
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Cosine similarity of two equally long vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_gives_unit_length() {
        let mut v = vec![3.0, 4.0];
        l2_normalize(&mut v);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let mut z = vec![0.0, 0.0];
        l2_normalize(&mut z);
        assert_eq!(z, vec![0.0, 0.0]);
    }

    #[test]
    fn cosine_of_parallel_and_orthogonal() {
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
    }
}
