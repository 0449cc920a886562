//! The `[pipelines.NAME]` tables of the configuration file, as written.
//! [`super::Pipelines::build`] checks them against the served models.

use serde::Deserialize;

/// One `[pipelines.NAME]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    #[serde(default)]
    pub description: Option<String>,
    /// When a step's model is not served (e.g. not fetched), skip this
    /// pipeline with a warning instead of refusing to start. Meant for
    /// shipped examples; a user's own pipeline should fail loudly.
    #[serde(default)]
    pub optional: bool,
    pub steps: Vec<StepConfig>,
}

/// One `[[pipelines.NAME.steps]]` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    pub name: String,
    /// A served model; the step's task is the model's task.
    pub model: String,
    /// Field selection: `request.FIELD` or `STEP.FIELD[.FIELD...]`.
    pub input: Option<String>,
    /// Template for the text: the user message of a generation step, the
    /// text of an embedding step.
    pub prompt: Option<String>,
    /// Template for the system message of a generation step.
    pub system: Option<String>,
    /// Task options: generation `max_tokens`, `temperature`, `top_p`,
    /// `top_k`, `seed`, `stop`; embeddings `truncate`; transcription
    /// `language`, `prompt`, `temperature`, `translate`; rerank `documents`
    /// (a selection of a list of strings), `top_n`, `truncate`.
    #[serde(default)]
    pub options: toml::Table,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GenerationOptions {
    pub(super) max_tokens: Option<usize>,
    pub(super) temperature: Option<f64>,
    pub(super) top_p: Option<f64>,
    pub(super) top_k: Option<usize>,
    pub(super) seed: Option<u64>,
    #[serde(default)]
    pub(super) stop: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EmbeddingOptions {
    #[serde(default)]
    pub(super) truncate: bool,
}

/// A rerank step: its `input`/`prompt` is the query, and `documents`
/// selects the list to score (`request.FIELD` or `STEP.FIELD...`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RerankOptions {
    pub(super) documents: String,
    pub(super) top_n: Option<usize>,
    #[serde(default)]
    pub(super) truncate: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SpeechOptions {
    pub(super) voice: Option<String>,
    pub(super) speed: Option<f32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TranscriptionOptions {
    pub(super) language: Option<String>,
    pub(super) prompt: Option<String>,
    #[serde(default)]
    pub(super) temperature: f32,
    #[serde(default)]
    pub(super) translate: bool,
}
