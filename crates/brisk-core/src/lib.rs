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

pub mod tools;
pub use tools::{Tool, ToolCall, ToolChoice};

/// What a model does. One model serves exactly one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Embeddings,
    Generation,
    Transcription,
    /// Voice activity detection: where in audio someone speaks.
    Vad,
    /// Text to speech.
    Speech,
    /// Optical character recognition: text lines in an image.
    Ocr,
    /// Scoring documents for relevance to a query (a cross-encoder).
    Rerank,
    /// Text to text machine translation; one model serves one language
    /// pair (one direction).
    Translation,
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Task::Embeddings => "embeddings",
            Task::Generation => "generation",
            Task::Transcription => "transcription",
            Task::Vad => "vad",
            Task::Speech => "speech",
            Task::Ocr => "ocr",
            Task::Rerank => "rerank",
            Task::Translation => "translation",
        })
    }
}

/// One inference request, as the engine hands it to a backend.
// A generation request (with its tools) is the large variant; a request is
// built once and moved a few times on its way to the model thread, so the
// size costs nothing that boxing (an allocation per request) would save.
#[allow(clippy::large_enum_variant)]
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
    /// Find the speech in 16 kHz mono audio.
    Vad(VadRequest),
    /// Synthesize speech from text.
    Speak(SpeakRequest),
    /// Read the text lines in an image.
    Ocr(OcrRequest),
    /// Score each document's relevance to the query; the reply carries one
    /// score per document, in order. `truncate` as for `Embed`: a (query,
    /// document) pair over the model's length is cut, or refused.
    Rerank {
        query: String,
        documents: Vec<String>,
        truncate: bool,
    },
    /// Translate each text (a sentence or a short paragraph) with the
    /// model's language pair; the reply carries one text per input, in
    /// order. Texts over the model's length are refused: the HTTP edge
    /// splits long texts at sentence boundaries first.
    Translate { texts: Vec<String> },
}

impl Request {
    /// The task this request needs; a model of another task refuses it.
    pub fn task(&self) -> Task {
        match self {
            Request::Embed { .. } => Task::Embeddings,
            Request::Generate(_) => Task::Generation,
            Request::Transcribe(_) => Task::Transcription,
            Request::Vad(_) => Task::Vad,
            Request::Speak(_) => Task::Speech,
            Request::Ocr(_) => Task::Ocr,
            Request::Rerank { .. } => Task::Rerank,
            Request::Translate { .. } => Task::Translation,
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool` (validated at the HTTP edge).
    pub role: String,
    pub content: String,
    /// The calls an assistant message made (OpenAI's `tool_calls`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a `tool` message: the call whose result it carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The participant's name (OpenAI's `name`), given to the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    /// A plain text message.
    pub fn new(role: String, content: String) -> Self {
        Self {
            role,
            content,
            ..Self::default()
        }
    }
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
    /// OpenAI's penalties in [-2, 2]: subtracted from a token's logit once
    /// it appeared (presence) and per appearance (frequency). 0 = off.
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// Log probabilities of the chosen tokens, with this many alternatives
    /// each (OpenAI's `logprobs` + `top_logprobs`); `None` = off.
    pub logprobs: Option<usize>,
    /// Constrains the text to JSON (OpenAI's `response_format`).
    pub response_format: Option<ResponseFormat>,
    /// A LoRA adapter of the model (`"model": "X:NAME"`), by name; `None`
    /// is the base model.
    pub adapter: Option<String>,
    /// Functions the model may call (OpenAI's `tools`), and whether and
    /// which it must call. Calls come back in the text in the syntax of
    /// [`tools`], which [`tools::ToolCallSplitter`] takes apart.
    pub tools: Vec<Tool>,
    pub tool_choice: ToolChoice,
    /// More than one call in one answer (OpenAI's `parallel_tool_calls`).
    pub parallel_tool_calls: bool,
    /// Added to these tokens' logits (OpenAI's `logit_bias`, token id to a
    /// bias in [-100, 100]).
    pub logit_bias: Vec<(i32, f32)>,
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
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logprobs: None,
            response_format: None,
            adapter: None,
            tools: Vec::new(),
            tool_choice: ToolChoice::Auto,
            parallel_tool_calls: true,
            logit_bias: Vec::new(),
        }
    }
}

/// OpenAI's `response_format` beyond plain text.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    /// Any JSON object.
    JsonObject,
    /// JSON valid under this JSON schema (its JSON text).
    JsonSchema(String),
}

/// One generated token's log probability (OpenAI's `logprobs.content[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    /// The most likely tokens at this position, most likely first.
    pub top: Vec<(String, f32)>,
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
    /// Leading prompt tokens whose KV cache was reused from an earlier
    /// request (OpenAI's `usage.prompt_tokens_details.cached_tokens`).
    #[serde(default)]
    pub cached_tokens: usize,
    /// Per-token log probabilities, when asked for.
    #[serde(default)]
    pub logprobs: Vec<TokenLogprob>,
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
    /// Time each word (`timestamp_granularities[]=word`); a model without
    /// alignment heads refuses it.
    pub word_timestamps: bool,
    /// Beam search width; `None` keeps the engine's default (greedy).
    pub beam_size: Option<usize>,
}

impl fmt::Debug for TranscribeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TranscribeRequest")
            .field("samples", &self.audio.len())
            .field("language", &self.language)
            .field("prompt", &self.prompt)
            .field("temperature", &self.temperature)
            .field("translate", &self.translate)
            .field("word_timestamps", &self.word_timestamps)
            .field("beam_size", &self.beam_size)
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

/// One timed word of a transcript (OpenAI's `verbose_json` `words`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Word {
    pub word: String,
    pub start: f64,
    pub end: f64,
    /// The aligner's confidence in the word, 0 to 1.
    pub probability: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    pub text: String,
    pub language: Option<String>,
    /// Seconds of audio.
    pub duration: f64,
    pub segments: Vec<Segment>,
    /// Word timings, when they were asked for (else empty).
    #[serde(default)]
    pub words: Vec<Word>,
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
    Vad(VadResult),
    Speech(SpeechAudio),
    Ocr(OcrResult),
    Rerank {
        /// Relevance of each document, in request order: the model's logit
        /// through a sigmoid, in [0, 1] (sentence-transformers' CrossEncoder
        /// default for one-label models).
        scores: Vec<f32>,
        /// Tokens actually fed to the model (for `usage`).
        prompt_tokens: usize,
    },
    Translate {
        /// One translation per input text, in order.
        texts: Vec<String>,
        /// Source tokens fed to the model (for `usage`).
        prompt_tokens: usize,
    },
    /// Music/audio analysis of an upload (no model): the JSON of
    /// `brisk_audio::Analysis`, kept as text so this crate needs no audio code.
    AudioAnalysis(String),
}

/// Document indices by relevance, most relevant first (equal scores keep
/// request order), cut to `top_n`: the order of a rerank answer.
pub fn rank_order(scores: &[f32], top_n: Option<usize>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // A stable sort keeps request order among equal scores.
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order.truncate(top_n.unwrap_or(usize::MAX));
    order
}

/// Audio to search for speech: 16 kHz mono samples in [-1, 1].
pub struct VadRequest {
    pub audio: Vec<f32>,
    pub params: VadParams,
}

impl fmt::Debug for VadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VadRequest")
            .field("samples", &self.audio.len())
            .field("params", &self.params)
            .finish()
    }
}

/// How speech probabilities become segments (silero's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VadParams {
    /// A frame whose speech probability reaches this is speech.
    pub threshold: f32,
    /// Silence shorter than this does not end a segment.
    pub min_silence_ms: u32,
    /// Segments shorter than this are dropped.
    pub min_speech_ms: u32,
    /// Padding added on both sides of each segment.
    pub speech_pad_ms: u32,
}

impl Default for VadParams {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            min_silence_ms: 100,
            min_speech_ms: 250,
            speech_pad_ms: 30,
        }
    }
}

/// One stretch of speech, in seconds from the start of the audio.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SpeechSegment {
    pub start: f64,
    pub end: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VadResult {
    /// Seconds of audio.
    pub duration: f64,
    pub segments: Vec<SpeechSegment>,
}

/// Text to synthesize.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeakRequest {
    pub text: String,
    /// A speaker of a multi-speaker voice; `None` = the model's default.
    pub voice: Option<String>,
    /// Speaking rate: 1.0 normal, 2.0 twice as fast.
    pub speed: f32,
}

/// Synthesized mono audio, samples in [-1, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeechAudio {
    pub sample_rate: u32,
    pub samples: Vec<f32>,
}

/// A decoded image: `width * height` RGB pixels, row-major.
pub struct OcrRequest {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl fmt::Debug for OcrRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OcrRequest")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

/// One recognised line of text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OcrLine {
    pub text: String,
    /// Mean probability of the recognised characters, in [0, 1].
    pub confidence: f32,
    /// Corners in pixels of the input image: top-left, top-right,
    /// bottom-right, bottom-left.
    pub bbox: [[f32; 2]; 4],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OcrResult {
    pub width: u32,
    pub height: u32,
    /// Lines in reading order (top to bottom, then left to right).
    pub lines: Vec<OcrLine>,
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

/// What a model's tokenizer made of one request in the engine (see
/// [`TokenCounter::prepare`]), handed to the backend with the request so the
/// text is tokenized once. Only the backend that made it knows its type.
pub type Prepared = Box<dyn std::any::Any + Send>;

/// Counts tokens without touching the model. It is shared with the engine so
/// that over-long inputs are refused, and batches sized, before queueing.
pub trait TokenCounter: Send + Sync {
    fn count(&self, text: &str) -> Result<usize, BackendError>;
    /// The longest input (in tokens) the model accepts.
    fn max_input_tokens(&self) -> usize;

    /// Tokenizes a request once, for both the engine and the backend: its
    /// token count (after truncation, over-long input refused) and the
    /// tokenizer's output, which reaches [`Backend::infer_prepared`] with the
    /// request. `None`: this counter does not prepare that request (the
    /// engine counts with [`TokenCounter::count`]).
    fn prepare(&self, request: &Request) -> Option<Result<(usize, Prepared), BackendError>> {
        let _ = request;
        None
    }
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

    /// Like [`Backend::infer`], with what the model's token counter
    /// prepared for each request in the engine (`None` where it prepared
    /// nothing). Backends whose counter prepares requests override it.
    fn infer_prepared(
        &mut self,
        batch: Vec<(Request, Option<Prepared>)>,
    ) -> Vec<Result<Response, BackendError>> {
        self.infer(batch.into_iter().map(|(r, _)| r).collect())
    }

    /// A token counter usable from other threads, when the model has one.
    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        None
    }

    /// Backends that run many requests at once, which join and leave
    /// between steps (continuous batching), return themselves here; the
    /// model thread then drives them step by step instead of calling
    /// [`Backend::infer`] with whole batches.
    fn stepper(&mut self) -> Option<&mut dyn Stepper> {
        None
    }
}

/// Where a request started on a [`Stepper`] delivers its result.
pub trait Reply: Send {
    /// True once nobody waits for the result (the client went away): the
    /// backend may stop the request at its next step.
    fn is_closed(&self) -> bool;
    fn send(self: Box<Self>, result: Result<Response, BackendError>);
}

/// A backend driven step by step (see [`Backend::stepper`]). All calls come
/// from the model thread, in any interleaving.
pub trait Stepper {
    /// How many more requests [`Stepper::start`] takes right now.
    fn free_slots(&self) -> usize;
    /// Starts a request; it runs during the next steps and answers on
    /// `reply` when done (bad input: at once). Only called with a free slot.
    fn start(&mut self, request: Request, reply: Box<dyn Reply>);
    /// Runs one step over every running request. Returns false when there
    /// was nothing to run.
    fn step(&mut self) -> bool;
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
    /// LoRA adapters by name (`[models.X] adapters = { NAME = "file" }`):
    /// loaded with the base weights, picked per request as `X:NAME`.
    #[serde(default)]
    pub adapters: std::collections::BTreeMap<String, PathBuf>,
}

/// Loads models. Called on a blocking thread, never on the async runtime.
pub trait Loader: Send + Sync {
    fn load(&self, name: &str, source: &ModelSource) -> Result<Box<dyn Backend>, BackendError>;

    /// Expected resident size before loading (for the memory budget), when
    /// it can be known cheaply (usually the weight file size).
    fn estimate_bytes(&self, source: &ModelSource) -> Option<u64>;

    /// The task a source will serve, known without loading it.
    fn task(&self, source: &ModelSource) -> Result<Task, BackendError>;

    /// Whether the source's backend computes several requests together
    /// for a task the engine otherwise runs one request at a time
    /// (generation, transcription): then the engine batches it too.
    fn batches(&self, _source: &ModelSource) -> bool {
        false
    }
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
    fn rank_order_is_best_first_stable_and_cut() {
        let scores = [0.1, 0.9, 0.5, 0.9, -1.0];
        assert_eq!(rank_order(&scores, None), vec![1, 3, 2, 0, 4]);
        assert_eq!(rank_order(&scores, Some(2)), vec![1, 3]);
        assert_eq!(rank_order(&scores, Some(10)).len(), 5);
        assert!(rank_order(&[], Some(3)).is_empty());
    }

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
