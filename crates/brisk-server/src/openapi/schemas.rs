//! The shapes of answers that handlers build as JSON values (and of the
//! multipart forms they read field by field), written out for the OpenAPI
//! document. Request bodies read through serde use their own structs
//! (`ChatRequest`, `EmbeddingsRequest`, ...) instead.
//!
//! These types are never built: they only describe. Schemathesis (scripts/
//! test-openapi) checks live answers against them, so a handler that
//! changes its answer without changing its schema fails CI.

#![allow(dead_code)]

use serde_json::Value;
use utoipa::ToSchema;

/// Every error answer: OpenAI's shape.
#[derive(ToSchema)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

#[derive(ToSchema, serde::Serialize)]
pub struct ErrorObject {
    pub message: String,
    /// `invalid_request_error` or `server_error` (OpenAI's types).
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    /// A stable machine-readable code, e.g. `not_found`, `model_loading`.
    pub code: String,
}

/// One server-sent event. Chat and completions send `data:` lines whose
/// text is a JSON chunk (OpenAI's `chat.completion.chunk` or
/// `text_completion`), then `data: [DONE]`; pipelines send named events
/// (`step`, `done`, `error`) whose data is JSON.
#[derive(ToSchema)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
}

#[derive(ToSchema)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub total_tokens: u64,
}

// ---- embeddings and Open Inference Protocol -------------------------------

#[derive(ToSchema)]
pub struct EmbeddingsResponse {
    /// `list`
    pub object: String,
    pub data: Vec<Embedding>,
    pub model: String,
    pub usage: Usage,
}

#[derive(ToSchema)]
pub struct Embedding {
    /// `embedding`
    pub object: String,
    pub index: u64,
    /// Floats, or their little-endian f32 bytes in base64 with
    /// `encoding_format: "base64"`.
    pub embedding: EmbeddingData,
}

#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
#[allow(clippy::enum_variant_names)]
pub enum EmbeddingData {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(ToSchema)]
pub struct V2InferResponse {
    pub model_name: String,
    pub id: Option<String>,
    pub outputs: Vec<V2Output>,
}

#[derive(ToSchema)]
pub struct V2Output {
    pub name: String,
    /// `FP32`
    pub datatype: String,
    /// `[inputs, dimensions]`
    pub shape: Vec<u64>,
    /// Row-major.
    pub data: Vec<f32>,
}

/// A tensor as model metadata describes it (no data).
#[derive(ToSchema)]
pub struct V2TensorMetadata {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

#[derive(ToSchema)]
pub struct V2ModelMetadata {
    pub name: String,
    /// The backend that serves the model.
    pub platform: String,
    pub versions: Vec<String>,
    pub inputs: Vec<V2TensorMetadata>,
    pub outputs: Vec<V2TensorMetadata>,
}

#[derive(ToSchema)]
pub struct V2ModelReady {
    pub name: String,
    pub ready: bool,
    /// `ready`, `loading`, `unloaded`, `failed`, ...
    pub state: String,
}

// ---- rerank and topics ------------------------------------------------------

#[derive(ToSchema)]
pub struct RerankResponse {
    /// `list`
    pub object: String,
    pub model: String,
    /// Most relevant first, cut to `top_n`.
    pub results: Vec<RerankResult>,
    pub usage: Usage,
}

#[derive(ToSchema)]
pub struct RerankResult {
    /// Position of the document in the request.
    pub index: u64,
    pub relevance_score: f64,
    /// With `return_documents: true`.
    pub document: Option<RerankDocument>,
}

#[derive(ToSchema)]
pub struct RerankDocument {
    pub text: String,
}

#[derive(ToSchema)]
pub struct TopicsResponse {
    /// `topics`
    pub object: String,
    pub model: String,
    /// Topics with keywords (c-TF-IDF), sizes and representative documents;
    /// id −1 holds the outliers.
    #[schema(value_type = Vec<Object>)]
    pub topics: Vec<Value>,
    /// One per document, in request order: its topic and membership
    /// probability.
    #[schema(value_type = Vec<Object>)]
    pub documents: Vec<Value>,
    pub usage: TopicsUsage,
}

#[derive(ToSchema)]
pub struct TopicsUsage {
    pub documents: u64,
}

// ---- chat and completions ---------------------------------------------------

#[derive(ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    /// `chat.completion`
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: GenerationUsage,
    /// llama.cpp server's timing block (prompt and generation speed).
    #[schema(value_type = Object)]
    pub timings: Value,
}

#[derive(ToSchema)]
pub struct ChatChoice {
    pub index: u64,
    pub message: AssistantMessage,
    /// `stop`, `length` or `tool_calls`.
    pub finish_reason: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
}

#[derive(ToSchema)]
pub struct AssistantMessage {
    /// `assistant`
    pub role: String,
    pub content: Option<String>,
    pub tool_calls: Option<Vec<ToolCall>>,
}

#[derive(ToSchema, serde::Serialize)]
pub struct ToolCall {
    pub id: String,
    /// `function`
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionCall,
}

#[derive(ToSchema, serde::Serialize)]
pub struct FunctionCall {
    pub name: String,
    /// The arguments as a JSON text (valid under the tool's schema).
    pub arguments: String,
}

#[derive(ToSchema)]
pub struct GenerationUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(ToSchema)]
pub struct PromptTokensDetails {
    /// Prompt tokens reused from the slot's KV cache (prefix cache).
    pub cached_tokens: u64,
}

#[derive(ToSchema)]
pub struct TextCompletion {
    pub id: String,
    /// `text_completion`
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<TextChoice>,
    pub usage: GenerationUsage,
    #[schema(value_type = Object)]
    pub timings: Value,
}

#[derive(ToSchema)]
pub struct TextChoice {
    pub index: u64,
    pub text: String,
    pub finish_reason: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
}

// ---- audio ------------------------------------------------------------------

/// `multipart/form-data` of `/v1/audio/transcriptions` (and, without
/// `language` and `timestamp_granularities[]`, of `/v1/audio/translations`).
#[derive(ToSchema)]
pub struct TranscriptionForm {
    /// The audio file: wav, mp3, flac or ogg.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    pub model: String,
    /// ISO-639-1 code; detected when absent.
    pub language: Option<String>,
    /// Text that conditions the first window (vocabulary, style).
    pub prompt: Option<String>,
    /// `json` (default), `text`, `srt`, `vtt` or `verbose_json`.
    pub response_format: Option<String>,
    /// 0 for greedy; above, sampling with faster-whisper's fallback.
    pub temperature: Option<f32>,
    /// `segment` or `word` (words need `verbose_json`).
    #[serde(rename = "timestamp_granularities[]")]
    pub timestamp_granularities: Option<Vec<String>>,
    /// `auto`, or a JSON `server_vad` object: cut at silences.
    pub chunking_strategy: Option<String>,
    /// faster-whisper's beam width (1–16).
    pub beam_size: Option<u32>,
    /// faster-whisper's VAD filter; default on for audio over 30 s when a
    /// VAD model is configured.
    pub vad_filter: Option<bool>,
}

#[derive(ToSchema)]
pub struct Transcription {
    pub text: String,
}

#[derive(ToSchema)]
pub struct VerboseTranscription {
    /// `transcribe` or `translate`
    pub task: String,
    pub language: Option<String>,
    /// Seconds.
    pub duration: f64,
    pub text: String,
    #[schema(value_type = Vec<Object>)]
    pub segments: Vec<Value>,
    /// With `timestamp_granularities[]=word`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub words: Option<Vec<Value>>,
}

/// `multipart/form-data` with an uploaded `file` and the `model` to run.
#[derive(ToSchema)]
pub struct UploadForm {
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    pub model: String,
}

/// `multipart/form-data` of `/v1/audio/vad` (silero's parameter names).
#[derive(ToSchema)]
pub struct VadForm {
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    pub model: String,
    /// Speech probability threshold in (0, 1).
    pub threshold: Option<f32>,
    pub min_silence_duration_ms: Option<u32>,
    pub min_speech_duration_ms: Option<u32>,
    pub speech_pad_ms: Option<u32>,
}

#[derive(ToSchema)]
pub struct VadResponse {
    /// `audio.vad`
    pub object: String,
    pub model: String,
    pub duration: f64,
    pub speech_duration: f64,
    pub segments: Vec<Segment>,
}

#[derive(ToSchema)]
pub struct Segment {
    /// Seconds.
    pub start: f64,
    pub end: f64,
}

/// `multipart/form-data` of `/v1/audio/analysis`.
#[derive(ToSchema)]
pub struct AnalysisForm {
    /// The audio file (spooled to disk: long files are fine).
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// Comma-separated subset of the features (default: all), e.g.
    /// `tempo,key,loudness`.
    pub features: Option<String>,
}

/// Tempo and beats, key, loudness (EBU R128), spectral features and
/// danceability;
/// fields not asked for are absent.
#[derive(ToSchema)]
pub struct AnalysisResponse {
    /// Seconds.
    pub duration: f64,
    #[schema(value_type = Option<Object>)]
    pub tempo: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub key: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub loudness: Option<Value>,
    /// Essentia's danceability (about 0 to 3); `null` under 1 s or for silence.
    pub danceability: Option<f64>,
}

// ---- OCR ----------------------------------------------------------------------

#[derive(ToSchema)]
pub struct OcrResponse {
    /// `ocr`
    pub object: String,
    pub model: String,
    pub width: u32,
    pub height: u32,
    /// The lines joined by newlines.
    pub text: String,
    /// Each line with its confidence and box corners in pixels.
    #[schema(value_type = Vec<Object>)]
    pub lines: Vec<Value>,
}

// ---- models and health --------------------------------------------------------

#[derive(ToSchema)]
pub struct ModelList {
    /// `list`
    pub object: String,
    pub data: Vec<Model>,
}

#[derive(ToSchema)]
pub struct Model {
    pub id: String,
    /// `model`
    pub object: String,
    pub created: u64,
    pub owned_by: String,
    /// brisk's view: task, backend, load policy and state, memory, errors.
    #[schema(value_type = Object)]
    pub brisk: Value,
}

#[derive(ToSchema)]
pub struct Liveness {
    pub live: bool,
}

#[derive(ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub reason: Option<String>,
    /// Preload models still loading.
    pub waiting_for: Vec<String>,
    #[schema(value_type = Vec<Object>)]
    pub failed_preloads: Vec<Value>,
}

#[derive(ToSchema)]
pub struct Startup {
    pub uptime_ms: u64,
    /// Process start, listening, readiness and each model's load, in ms.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
}

// ---- pipelines, jobs, cache ---------------------------------------------------

#[derive(ToSchema)]
pub struct PipelineList {
    /// `list`
    pub object: String,
    /// Each pipeline with its steps, their models and inputs.
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<Value>,
}

/// A pipeline's input: JSON, or multipart when audio is uploaded (`file`).
#[derive(ToSchema)]
pub struct PipelineInput {
    /// Text input of the first steps.
    pub input: Option<String>,
    /// Answer as server-sent events, one per finished step.
    pub stream: Option<bool>,
}

#[derive(ToSchema)]
pub struct PipelineRun {
    /// `pipeline.run`
    pub object: String,
    pub pipeline: String,
    /// Each step's output, by step name.
    #[schema(value_type = Object)]
    pub outputs: Value,
    #[schema(value_type = Object)]
    pub timings: Value,
}

/// `{"endpoint": "/v1/embeddings", "body": {...}}`; uploads instead send the
/// endpoint's own multipart form with `?endpoint=` in the query.
#[derive(ToSchema)]
pub struct JobSubmit {
    pub endpoint: String,
    #[schema(value_type = Object)]
    pub body: Value,
}

#[derive(ToSchema)]
pub struct Job {
    pub id: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    pub endpoint: String,
}

#[derive(ToSchema)]
pub struct CacheStats {
    /// False when the server runs without a result cache.
    pub enabled: bool,
}

#[derive(ToSchema)]
pub struct CacheCleared {
    pub cleared: bool,
}

// ---- translation (LibreTranslate's shapes) ---------------------------------

#[derive(ToSchema, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TranslateResponse {
    /// A string, or a list when `q` was a list.
    pub translated_text: TextOrList,
    /// With `source: "auto"`: `{language, confidence}` (a list of them
    /// when `q` was a list).
    pub detected_language: Option<Value>,
}

#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
pub enum TextOrList {
    One(String),
    Many(Vec<String>),
}

#[derive(ToSchema)]
pub struct Language {
    /// ISO 639-1.
    pub code: String,
    pub name: String,
    pub targets: Vec<String>,
}

#[derive(ToSchema)]
pub struct DetectedLanguage {
    pub language: String,
    /// 0–100.
    pub confidence: f64,
}
