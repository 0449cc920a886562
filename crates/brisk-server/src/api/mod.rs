//! The HTTP API, one module per endpoint family. Each handler extracts and
//! validates the request, calls the registry (or the engine's pipelines)
//! and shapes the answer; errors go through [`crate::error::AppError`].
//!
//! | route | module |
//! |---|---|
//! | `/v1/chat/completions`, `/v1/completions` | [`chat`] |
//! | `/v1/embeddings`, `/v2/models/{m}/infer` | [`embeddings`] |
//! | `/v1/rerank` | [`rerank`] |
//! | `/v1/topics` | [`topics`] |
//! | `/v1/audio/transcriptions`, `/v1/audio/translations` | [`audio`] |
//! | `/v1/audio/speech` | [`speech`] |
//! | `/v1/audio/analysis` | [`analysis`] |
//! | `/v1/audio/vad` | [`vad`] |
//! | `/v1/ocr` | [`ocr`] |
//! | `/translate`, `/languages`, `/detect` (LibreTranslate) | [`translate`] |
//! | `/v1/pipelines[/{name}]` | [`pipelines`] |
//! | `/v1/cache[/stats]`, prewarm | [`cache`] |
//! | `/` (dashboard), `/playground` | [`dashboard`] |
//! | `/v1/models[/{m}[/load|/unload]]`, `/v2/models/{m}[/ready]` | [`models`] |
//! | `/v2/health/{live,ready}`, `/v1/startup`, `/metrics` | [`health`] |
//!
//! The router is [`crate::routes`]; jobs and the live transcription
//! WebSocket are [`crate::jobs`] and [`crate::stream`].

pub mod analysis;
pub mod audio;
pub mod cache;
pub mod chat;
pub mod dashboard;
pub mod decode;
pub mod embeddings;
pub mod health;
pub mod models;
pub mod ocr;
pub mod openai_fields;
pub mod pipelines;
pub mod rerank;
pub mod speech;
pub mod topics;
pub mod translate;
mod uploads;
pub mod vad;
