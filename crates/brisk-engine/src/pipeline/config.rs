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
    /// A served model; the step's task is the model's task, unless `task`
    /// names another one the model's outputs feed. Empty for
    /// `task = "audio_analysis"`, which needs no model.
    #[serde(default)]
    pub model: String,
    /// `"topics"`: topic analysis of the selected list of documents with
    /// this (embeddings) model, as `POST /v1/topics`; options as that
    /// request's fields (`stop_words = "none"` for null).
    /// `"audio_analysis"`: music/audio features of the uploaded file the
    /// input selects (`request.FIELD`), as `POST /v1/audio/analysis`; no
    /// model; option `features` (a list of names, default all).
    pub task: Option<String>,
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
    /// (a selection of a list of strings), `top_n`, `truncate`; topics
    /// `min_topic_size`, `nr_topics`, `top_n_words`, `stop_words`, `seed`.
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

/// A translation step: its `input`/`prompt` is the text. The model serves
/// one language pair; `source`/`target`, when set, must name it (checked at
/// startup, so a config that swapped two models fails loudly).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TranslationOptions {
    pub(super) source: Option<String>,
    pub(super) target: Option<String>,
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

/// A topics step (`task = "topics"`): the fields of `POST /v1/topics`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TopicOptions {
    min_topic_size: Option<usize>,
    /// "auto" or a number.
    nr_topics: Option<toml::Value>,
    top_n_words: Option<usize>,
    /// "english", "none" or a list of words.
    stop_words: Option<toml::Value>,
    seed: Option<u64>,
}

impl TopicOptions {
    pub(super) fn params(self) -> Result<crate::topics::TopicParams, String> {
        use crate::topics::{NrTopics, StopWords, TopicParams};
        let defaults = TopicParams::default();
        let nr_topics = match self.nr_topics {
            None => NrTopics::Keep,
            Some(toml::Value::String(s)) if s == "auto" => NrTopics::Auto,
            Some(toml::Value::Integer(n)) if n >= 1 => NrTopics::Count(n as usize),
            Some(other) => {
                return Err(format!(
                    "nr_topics must be \"auto\" or a positive integer, got {other}"
                ))
            }
        };
        let stop_words = match self.stop_words {
            None => StopWords::English,
            Some(toml::Value::String(s)) if s == "english" => StopWords::English,
            Some(toml::Value::String(s)) if s == "none" => StopWords::None,
            Some(toml::Value::Array(items)) => StopWords::List(
                items
                    .into_iter()
                    .map(|w| match w {
                        toml::Value::String(s) => Ok(s),
                        other => Err(format!("stop_words items must be strings, got {other}")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(other) => {
                return Err(format!(
                    "stop_words must be \"english\", \"none\" or a list, got {other}"
                ))
            }
        };
        let params = TopicParams {
            min_topic_size: self.min_topic_size.unwrap_or(defaults.min_topic_size),
            nr_topics,
            top_n_words: self.top_n_words.unwrap_or(defaults.top_n_words),
            stop_words,
            seed: self.seed.unwrap_or(defaults.seed),
            ..defaults
        };
        if params.min_topic_size < 2 || params.top_n_words == 0 || params.top_n_words > 100 {
            return Err("min_topic_size must be at least 2 and top_n_words in 1..=100".into());
        }
        Ok(params)
    }
}

/// An audio analysis step (`task = "audio_analysis"`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AnalysisOptions {
    /// Feature names (`POST /v1/audio/analysis`'s `features`); default all.
    pub(super) features: Option<Vec<String>>,
}
