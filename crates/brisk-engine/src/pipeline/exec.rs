//! Running pipelines: configured steps checked against the served models,
//! then executed through the registry (lazy load, admission, batching and
//! the result cache apply to each step exactly as to a direct call). The
//! HTTP edge only reads the request and shapes the answer (JSON or SSE).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use brisk_core::Response as TaskResponse;
use brisk_core::{
    ChatMessage, GenerateParams, GenerateRequest, Prompt, Request, Task, TokenSink,
    TranscribeRequest,
};
use serde_json::{json, Map, Value};

use super::config::{
    AnalysisOptions, EmbeddingOptions, GenerationOptions, PipelineConfig, RerankOptions,
    SpeechOptions, TopicOptions, TranscriptionOptions, TranslationOptions,
};
use super::graph::{self as dag, Dag, DagError, StepFailure, StepResult, StepTiming};
use crate::{CacheMode, CancelOnDrop, EngineError, Registry};

/// Audio decoding and encoding for transcription and speech steps. They
/// live in the backends, which the engine does not depend on; the server
/// hands in its implementation.
pub trait AudioCodec: Send + Sync + 'static {
    /// Any supported container/codec to 16 kHz mono, refusing audio longer
    /// than `max_seconds`.
    fn decode(&self, bytes: &[u8], max_seconds: f64) -> Result<Vec<f32>, StepError>;
    /// 16-bit mono WAV.
    fn encode_wav(&self, samples: &[f32], sample_rate: u32) -> Vec<u8>;
    /// The result-cache key of an audio analysis of `bytes` for `features`
    /// (comma-separated names; empty = all), the same key
    /// `POST /v1/audio/analysis` uses, so both share results. Fails on an
    /// unknown feature name.
    fn analysis_key(&self, bytes: &[u8], features: &str) -> Result<crate::cache::Key, StepError>;
    /// Music/audio analysis of an audio file, as the JSON text
    /// `POST /v1/audio/analysis` answers. Blocking (CPU-bound).
    fn analyze(
        &self,
        bytes: Vec<u8>,
        features: &str,
        max_seconds: f64,
    ) -> Result<String, StepError>;
}

/// What running steps needs. Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    pub registry: Registry,
    pub codec: Arc<dyn AudioCodec>,
    /// Longest audio a transcription step accepts.
    pub max_audio_seconds: f64,
    /// Most documents a topics step accepts (the server's `[limits]
    /// max_topic_documents`).
    pub max_topic_documents: usize,
}

/// Why one step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The request lacks what the step reads, or holds the wrong kind of value.
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// A failed run, naming the step whose error ended it.
#[derive(Debug, thiserror::Error)]
#[error("pipeline step '{step}' failed: {source}")]
pub struct RunError {
    pub step: String,
    pub source: StepError,
}

/// A pipeline that cannot be served, with the pipeline and step named.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("pipeline '{pipeline}', step '{step}': model '{model}' is not served (known models: {known})")]
    UnknownModel {
        pipeline: String,
        step: String,
        model: String,
        known: String,
    },
    #[error("pipeline '{pipeline}', step '{step}': {reason}")]
    Step {
        pipeline: String,
        step: String,
        reason: String,
    },
    #[error("pipeline '{pipeline}': {source}")]
    Graph { pipeline: String, source: DagError },
}

/// Where a step's text or audio comes from.
#[derive(Debug, Clone)]
enum Source {
    /// `root.path...`: `root` is `request` or a step.
    Select { root: String, path: Vec<String> },
    /// A minijinja template over `request` and the steps it names.
    Template(String),
}

#[derive(Debug, Clone)]
enum Kind {
    /// Reads the audio from this request field.
    Transcribe {
        field: String,
        options: TranscriptionOptions,
    },
    Embed(EmbeddingOptions),
    Generate {
        params: GenerateParams,
        system: Option<String>,
    },
    /// Text to speech (the tutor's spoken feedback in seed 002).
    Speak(SpeechOptions),
    /// Scores the selected documents against the step's text (the query).
    Rerank {
        documents: Source,
        top_n: Option<usize>,
        truncate: bool,
    },
    /// Machine translation of the step's text (the tutor's two
    /// translations in seed 002).
    Translate,
    /// Topic analysis of the selected list of documents, embedded by the
    /// step's (embeddings) model: `task = "topics"`.
    Topics(crate::topics::TopicParams),
    /// Music/audio features of the audio in this request field, no model:
    /// `task = "audio_analysis"`. `features`: comma-separated, empty = all.
    AudioAnalysis {
        field: String,
        features: String,
    },
}

#[derive(Debug, Clone)]
struct Step {
    name: String,
    model: String,
    source: Source,
    kind: Kind,
}

/// A validated pipeline, ready to run.
#[derive(Debug)]
pub struct Pipeline {
    pub name: String,
    pub description: Option<String>,
    dag: Dag,
    steps: Vec<Step>,
}

/// Every servable pipeline, built once at startup.
#[derive(Debug, Default)]
pub struct Pipelines {
    map: BTreeMap<String, Arc<Pipeline>>,
}

/// Output fields of each task, for checking selections at startup.
fn output_fields(task: Task) -> &'static [&'static str] {
    match task {
        Task::Transcription => &["text", "language", "duration", "segments"],
        Task::Embeddings => &["embeddings", "dimensions", "prompt_tokens"],
        Task::Generation => &["text", "finish_reason", "usage"],
        Task::Speech => &["audio", "sample_rate", "duration", "format"],
        Task::Rerank => &["results", "prompt_tokens"],
        Task::Translation => &["text", "source", "target", "prompt_tokens"],
        Task::Vad | Task::Ocr => &[],
    }
}

/// What a topics step outputs (`POST /v1/topics`'s answer).
const TOPIC_FIELDS: &[&str] = &["topics", "documents"];

/// What an audio analysis step outputs (`POST /v1/audio/analysis`'s answer;
/// features not asked for are absent).
const ANALYSIS_FIELDS: &[&str] = &[
    "duration",
    "sample_rate",
    "channels",
    "loudness",
    "tempo",
    "key",
    "rms",
    "spectral",
    "zero_crossing_rate",
    "mfcc",
    "chroma",
    "danceability",
];

/// Templates fail on undefined values: a typo in a field name is an error
/// naming the step, not a silently empty prompt.
fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env
}

impl Pipelines {
    /// Validates the configured pipelines against the models the registry
    /// serves. An optional pipeline whose models are missing is skipped
    /// with a warning; every other problem is an error naming the step.
    pub fn build(
        configs: &BTreeMap<String, PipelineConfig>,
        registry: &Registry,
    ) -> Result<Self, PipelineError> {
        let mut map = BTreeMap::new();
        for (name, config) in configs {
            match Pipeline::build(name, config, registry) {
                Ok(p) => {
                    map.insert(name.clone(), Arc::new(p));
                }
                Err(e @ PipelineError::UnknownModel { .. }) if config.optional => {
                    tracing::warn!(pipeline = %name, reason = %e, "optional pipeline skipped");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Self { map })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Pipeline>> {
        self.map.get(name).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.map.keys().cloned().collect()
    }

    /// Every pipeline, by name.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Pipeline>> {
        self.map.values()
    }
}

impl Pipeline {
    fn build(
        name: &str,
        config: &PipelineConfig,
        registry: &Registry,
    ) -> Result<Self, PipelineError> {
        let step_err = |step: &str, reason: String| PipelineError::Step {
            pipeline: name.to_string(),
            step: step.to_string(),
            reason,
        };
        // Tasks first: reading a step's fields needs the task of that step.
        let mut tasks = HashMap::new();
        // Steps with `task = "topics"` (their model serves embeddings).
        let mut topic_steps = std::collections::HashSet::new();
        // Steps with `task = "audio_analysis"` (no model, so no task here).
        let mut analysis_steps = std::collections::HashSet::new();
        for s in &config.steps {
            if s.name.is_empty() || s.name == "request" || !is_identifier(&s.name) {
                return Err(step_err(
                    &s.name,
                    "step names must be identifiers (letters, digits, _) other than 'request', so templates can read them".into(),
                ));
            }
            if s.task.as_deref() == Some("audio_analysis") {
                if !s.model.is_empty() {
                    return Err(step_err(
                        &s.name,
                        "an audio_analysis step uses no model; remove 'model'".into(),
                    ));
                }
                analysis_steps.insert(s.name.as_str());
                continue;
            }
            let task = registry
                .task_of(&s.model)
                .map_err(|_| PipelineError::UnknownModel {
                    pipeline: name.to_string(),
                    step: s.name.clone(),
                    model: s.model.clone(),
                    known: match registry.model_names() {
                        names if names.is_empty() => "none".into(),
                        names => names.join(", "),
                    },
                })?;
            match s.task.as_deref() {
                None => {}
                Some("topics") if task == Task::Embeddings => {
                    topic_steps.insert(s.name.as_str());
                }
                Some("topics") => {
                    return Err(step_err(
                        &s.name,
                        format!(
                            "a topics step needs an embeddings model; '{}' serves {task}",
                            s.model
                        ),
                    ))
                }
                Some(other) => {
                    return Err(step_err(
                        &s.name,
                        format!(
                        "task '{other}' is unknown; step tasks are 'topics' and 'audio_analysis'"
                    ),
                    ))
                }
            }
            tasks.insert(s.name.as_str(), task);
        }
        let env = environment();
        let mut steps = Vec::new();
        let mut graph = Vec::new();
        for s in &config.steps {
            let err = |reason: String| step_err(&s.name, reason);
            // (root, field) pairs the step reads, for the graph and checks.
            let mut reads: Vec<(String, Option<String>)> = Vec::new();
            let source = match (&s.input, &s.prompt) {
                (Some(sel), None) => {
                    let source = selection(sel).ok_or_else(|| {
                        err(format!("input '{sel}' must be request.FIELD or STEP.FIELD"))
                    })?;
                    if let Source::Select { root, path } = &source {
                        reads.push((root.clone(), path.first().cloned()));
                    }
                    source
                }
                (None, Some(t)) => {
                    reads.extend(template_reads(&env, t).map_err(|e| err(format!("prompt: {e}")))?);
                    Source::Template(t.clone())
                }
                (Some(_), Some(_)) => {
                    return Err(err("set either 'input' or 'prompt', not both".into()))
                }
                (None, None) => return Err(err("set 'input' or 'prompt'".into())),
            };
            if let Some(sys) = &s.system {
                reads.extend(template_reads(&env, sys).map_err(|e| err(format!("system: {e}")))?);
            }
            let options = toml::Value::Table(s.options.clone());
            if analysis_steps.contains(s.name.as_str()) {
                let field = match &source {
                    Source::Select { root, path } if root == "request" && path.len() == 1 => {
                        path[0].clone()
                    }
                    _ => {
                        return Err(err(
                            "an audio_analysis step reads audio from the request: input = \"request.FIELD\"".into(),
                        ))
                    }
                };
                if s.system.is_some() {
                    return Err(err("'system' is only for generation steps".into()));
                }
                let o: AnalysisOptions = options.try_into().map_err(|e: toml::de::Error| {
                    err(format!("options for audio_analysis: {}", e.message()))
                })?;
                let features = o.features.unwrap_or_default();
                if features
                    .iter()
                    .any(|f| f.trim().is_empty() || f.contains(','))
                {
                    return Err(err("features must be a list of feature names".into()));
                }
                graph.push((s.name.clone(), Vec::new()));
                steps.push(Step {
                    name: s.name.clone(),
                    model: String::new(),
                    source,
                    kind: Kind::AudioAnalysis {
                        field,
                        features: features.join(","),
                    },
                });
                continue;
            }
            let task = tasks[s.name.as_str()];
            let bad_options =
                |e: toml::de::Error| err(format!("options for {task}: {}", e.message()));
            let kind = match task {
                _ if topic_steps.contains(s.name.as_str()) => {
                    if !matches!(source, Source::Select { .. }) || s.system.is_some() {
                        return Err(err(
                            "a topics step reads a list of documents: input = \"request.FIELD\" or \"STEP.FIELD\"".into(),
                        ));
                    }
                    let o: TopicOptions = options.try_into().map_err(|e: toml::de::Error| {
                        err(format!("options for topics: {}", e.message()))
                    })?;
                    Kind::Topics(o.params().map_err(err)?)
                }
                Task::Transcription => {
                    let field = match &source {
                        Source::Select { root, path } if root == "request" && path.len() == 1 => {
                            path[0].clone()
                        }
                        _ => {
                            return Err(err(
                                "a transcription step reads audio from the request: input = \"request.FIELD\"".into(),
                            ))
                        }
                    };
                    if s.system.is_some() {
                        return Err(err("'system' is only for generation steps".into()));
                    }
                    Kind::Transcribe {
                        field,
                        options: options.try_into().map_err(bad_options)?,
                    }
                }
                Task::Embeddings => {
                    if s.system.is_some() {
                        return Err(err("'system' is only for generation steps".into()));
                    }
                    Kind::Embed(options.try_into().map_err(bad_options)?)
                }
                Task::Generation => {
                    let o: GenerationOptions = options.try_into().map_err(bad_options)?;
                    let params = GenerateParams {
                        max_tokens: o.max_tokens.unwrap_or(256),
                        temperature: o.temperature.unwrap_or(0.0),
                        top_p: o.top_p,
                        top_k: o.top_k,
                        seed: o.seed,
                        stop: o.stop,
                        ..Default::default()
                    };
                    if params.max_tokens == 0 || !(0.0..=2.0).contains(&params.temperature) {
                        return Err(err(
                            "max_tokens must be at least 1 and temperature in [0, 2]".into(),
                        ));
                    }
                    Kind::Generate {
                        params,
                        system: s.system.clone(),
                    }
                }
                Task::Speech => {
                    if s.system.is_some() {
                        return Err(err("'system' is only for generation steps".into()));
                    }
                    let o: SpeechOptions = options.try_into().map_err(bad_options)?;
                    if o.speed.is_some_and(|v| !(0.25..=4.0).contains(&v)) {
                        return Err(err("speed must be in [0.25, 4]".into()));
                    }
                    Kind::Speak(o)
                }
                Task::Rerank => {
                    if s.system.is_some() {
                        return Err(err("'system' is only for generation steps".into()));
                    }
                    let o: RerankOptions = options.try_into().map_err(bad_options)?;
                    let documents = selection(&o.documents).ok_or_else(|| {
                        err(format!(
                            "documents '{}' must be request.FIELD or STEP.FIELD",
                            o.documents
                        ))
                    })?;
                    if let Source::Select { root, path } = &documents {
                        reads.push((root.clone(), path.first().cloned()));
                    }
                    if o.top_n == Some(0) {
                        return Err(err("top_n must be at least 1".into()));
                    }
                    Kind::Rerank {
                        documents,
                        top_n: o.top_n,
                        truncate: o.truncate,
                    }
                }
                Task::Translation => {
                    if s.system.is_some() {
                        return Err(err("'system' is only for generation steps".into()));
                    }
                    let o: TranslationOptions = options.try_into().map_err(bad_options)?;
                    // The model serves one pair; options that name another
                    // pair are a mistake in the config, found at startup.
                    let (src, tgt) = registry.language_pair(&s.model).unwrap_or_default();
                    for (what, want, have) in
                        [("source", &o.source, &src), ("target", &o.target, &tgt)]
                    {
                        match want.as_deref() {
                            Some(w) if w != have => {
                                return Err(err(format!(
                                    "model '{}' translates {src} to {tgt}; options.{what} is '{w}'",
                                    s.model
                                )))
                            }
                            _ => {}
                        }
                    }
                    Kind::Translate
                }
                Task::Vad | Task::Ocr => {
                    return Err(err(format!(
                        "{task} models cannot be pipeline steps yet (use /v1/audio/vad or /v1/ocr)"
                    )))
                }
            };
            let mut inputs = Vec::new();
            for (root, field) in reads {
                if root == "request" {
                    continue;
                }
                // A root that is no step is reported by the graph, which
                // lists the steps; a known step's field is checked here.
                if let (true, Some(f)) = (analysis_steps.contains(root.as_str()), &field) {
                    if !ANALYSIS_FIELDS.contains(&f.as_str()) {
                        return Err(err(format!(
                            "reads '{root}.{f}', but an audio_analysis step outputs {}",
                            ANALYSIS_FIELDS.join(", ")
                        )));
                    }
                } else if let (true, Some(f)) = (topic_steps.contains(root.as_str()), &field) {
                    if !TOPIC_FIELDS.contains(&f.as_str()) {
                        return Err(err(format!(
                            "reads '{root}.{f}', but a topics step outputs {}",
                            TOPIC_FIELDS.join(", ")
                        )));
                    }
                } else if let (Some(&t), Some(f)) = (tasks.get(root.as_str()), &field) {
                    if !output_fields(t).contains(&f.as_str()) {
                        return Err(err(format!(
                            "reads '{root}.{f}', but a {t} step outputs {}",
                            output_fields(t).join(", ")
                        )));
                    }
                }
                inputs.push(root);
            }
            graph.push((s.name.clone(), inputs));
            steps.push(Step {
                name: s.name.clone(),
                model: s.model.clone(),
                source,
                kind,
            });
        }
        let dag = Dag::new(graph).map_err(|source| PipelineError::Graph {
            pipeline: name.to_string(),
            source,
        })?;
        Ok(Self {
            name: name.to_string(),
            description: config.description.clone(),
            dag,
            steps,
        })
    }

    /// The same steps run one after another (for `brisk bench pipeline`).
    pub fn one_by_one(&self) -> Pipeline {
        Pipeline {
            name: self.name.clone(),
            description: self.description.clone(),
            dag: self.dag.sequential(),
            steps: self.steps.clone(),
        }
    }

    /// The summary `GET /v1/pipelines` shows.
    pub fn describe(&self, registry: &Registry) -> Value {
        let steps: Vec<Value> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({
                    "name": s.name,
                    "model": s.model,
                    "task": match s.kind {
                        Kind::Topics(_) => Some("topics".to_string()),
                        Kind::AudioAnalysis { .. } => Some("audio_analysis".to_string()),
                        _ => registry.task_of(&s.model).ok().map(|t| t.to_string()),
                    },
                    "inputs": self.dag.deps(i).iter().map(|&d| self.dag.name(d)).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "id": self.name,
            "object": "pipeline",
            "description": self.description,
            "steps": steps,
        })
    }
}

/// `root.path...` as a [`Source::Select`], or `None` when a part is missing.
fn selection(sel: &str) -> Option<Source> {
    let mut parts = sel.split('.').map(str::to_string);
    let root = parts.next().unwrap_or_default();
    let path: Vec<String> = parts.collect();
    if root.is_empty() || path.is_empty() || path.iter().any(String::is_empty) {
        return None;
    }
    Some(Source::Select { root, path })
}

fn is_identifier(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// The `(variable, first attribute)` pairs a template reads, e.g.
/// `{{ transcript.text }}` reads `("transcript", Some("text"))`. Globals
/// such as `range` are not inputs.
fn template_reads(
    env: &minijinja::Environment<'static>,
    source: &str,
) -> Result<Vec<(String, Option<String>)>, String> {
    let t = env.template_from_str(source).map_err(|e| e.to_string())?;
    let globals: Vec<&str> = env.globals().map(|(n, _)| n).collect();
    let mut reads: Vec<(String, Option<String>)> = t
        .undeclared_variables(true)
        .into_iter()
        .filter_map(|v| {
            let mut parts = v.splitn(3, '.');
            let root = parts.next()?.to_string();
            (!globals.contains(&root.as_str())).then(|| (root, parts.next().map(str::to_string)))
        })
        .collect();
    reads.sort();
    Ok(reads)
}

/// What the client sent: JSON fields (or multipart text fields) and, for
/// multipart, uploaded files.
#[derive(Debug, Default)]
pub struct PipelineInput {
    pub fields: Map<String, Value>,
    pub files: HashMap<String, Vec<u8>>,
}

impl PipelineInput {
    /// The bytes of an audio field: an uploaded file, or base64 in JSON.
    fn audio(&self, field: &str) -> Result<Vec<u8>, StepError> {
        if let Some(bytes) = self.files.get(field) {
            return Ok(bytes.clone());
        }
        match self.fields.get(field) {
            Some(Value::String(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| {
                    bad_input(format!(
                        "request field '{field}' is not valid base64 audio: {e}"
                    ))
                }),
            _ => Err(bad_input(format!(
                "the request has no audio in '{field}': upload it as a multipart file field '{field}', or send it base64-encoded in JSON"
            ))),
        }
    }
}

fn json_to_jinja(v: &Value) -> minijinja::Value {
    match v {
        Value::Null => minijinja::Value::from(()),
        Value::Bool(b) => minijinja::Value::from(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => minijinja::Value::from(i),
            (None, Some(f)) => minijinja::Value::from(f),
            _ => minijinja::Value::from(n.to_string()),
        },
        Value::String(s) => minijinja::Value::from(s.as_str()),
        Value::Array(a) => minijinja::Value::from(a.iter().map(json_to_jinja).collect::<Vec<_>>()),
        Value::Object(o) => minijinja::Value::from(
            o.iter()
                .map(|(k, v)| (k.clone(), json_to_jinja(v)))
                .collect::<BTreeMap<String, minijinja::Value>>(),
        ),
    }
}

fn bad_input(message: String) -> StepError {
    StepError::BadInput(message)
}

/// What a step can read: the request and the outputs of its inputs.
struct StepContext {
    request: Arc<PipelineInput>,
    outputs: BTreeMap<String, Arc<Value>>,
}

impl StepContext {
    /// `root.path...`, where a numeric part indexes a list.
    fn select(&self, root: &str, path: &[String]) -> Result<Value, StepError> {
        let request;
        let mut v: &Value = if root == "request" {
            request = Value::Object(self.request.fields.clone());
            &request
        } else {
            self.outputs
                .get(root)
                .map(|v| v.as_ref())
                .ok_or_else(|| bad_input(format!("step '{root}' has no output")))?
        };
        for p in path {
            v = match v {
                Value::Array(a) => p.parse::<usize>().ok().and_then(|i| a.get(i)),
                other => other.get(p.as_str()),
            }
            .ok_or_else(|| bad_input(format!("{root}.{} does not exist", path.join("."))))?;
        }
        Ok(v.clone())
    }

    fn render(&self, template: &str) -> Result<String, StepError> {
        let mut ctx: BTreeMap<String, minijinja::Value> = self
            .outputs
            .iter()
            .map(|(k, v)| (k.clone(), json_to_jinja(v)))
            .collect();
        ctx.insert(
            "request".into(),
            json_to_jinja(&Value::Object(self.request.fields.clone())),
        );
        environment()
            .render_str(template, ctx)
            .map_err(|e| bad_input(format!("template: {e}")))
    }

    /// One text or a list of them: a selected string or list of strings,
    /// or the rendered template. `what` names the step's verb for errors.
    fn texts(&self, source: &Source, what: &str) -> Result<Vec<String>, StepError> {
        match source {
            Source::Template(t) => Ok(vec![self.render(t)?]),
            Source::Select { root, path } => match self.select(root, path)? {
                Value::String(s) => Ok(vec![s]),
                Value::Array(items) => items
                    .into_iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s),
                        other => Err(bad_input(format!("cannot {what} {other}"))),
                    })
                    .collect(),
                other => Err(bad_input(format!("cannot {what} {other}"))),
            },
        }
    }

    /// The step's text: a selected string, or the rendered template.
    fn text(&self, source: &Source) -> Result<String, StepError> {
        match source {
            Source::Template(t) => self.render(t),
            Source::Select { root, path } => match self.select(root, path)? {
                Value::String(s) => Ok(s),
                other => Err(bad_input(format!(
                    "{root}.{} is not text: {other}",
                    path.join(".")
                ))),
            },
        }
    }
}

/// Runs one step through the registry and shapes its output as JSON.
async fn run_step(runner: Runner, step: Step, ctx: StepContext) -> Result<Value, StepError> {
    let mut rerank_documents: Option<(Vec<String>, Option<usize>)> = None;
    let reply = match &step.kind {
        Kind::Topics(params) => {
            let documents = match &step.source {
                Source::Select { root, path } => match ctx.select(root, path)? {
                    Value::Array(items) => items
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| match v {
                            Value::String(s) => Ok(s),
                            other => Err(bad_input(format!(
                                "topics: document {i} must be text, got {other}"
                            ))),
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                    other => {
                        return Err(bad_input(format!(
                            "topics need a list of documents, got {other}"
                        )))
                    }
                },
                Source::Template(_) => {
                    return Err(bad_input("topics need a list of documents".into()))
                }
            };
            if documents.len() > runner.max_topic_documents {
                return Err(bad_input(format!(
                    "topics: {} documents; at most {} are accepted ([limits] max_topic_documents)",
                    documents.len(),
                    runner.max_topic_documents
                )));
            }
            let model = crate::topics::analyze(
                &runner.registry,
                &step.model,
                documents,
                params.clone(),
                Arc::new(|_| ()),
            )
            .await?;
            return serde_json::to_value(model).map_err(|e| {
                StepError::Engine(EngineError::Backend(brisk_core::BackendError::Inference(
                    e.to_string(),
                )))
            });
        }
        Kind::AudioAnalysis { field, features } => {
            let bytes = ctx.request.audio(field)?;
            let codec = runner.codec.clone();
            let key = codec.analysis_key(&bytes, features)?;
            let (features, max_seconds) = (features.clone(), runner.max_audio_seconds);
            let compute = move || async move {
                let json = tokio::task::spawn_blocking(move || {
                    codec.analyze(bytes, &features, max_seconds)
                })
                .await
                .map_err(|e| {
                    EngineError::Backend(brisk_core::BackendError::Inference(e.to_string()))
                })??;
                Ok::<_, StepError>(TaskResponse::AudioAnalysis(json))
            };
            // The same cache entries as `POST /v1/audio/analysis`.
            match runner.registry.cache() {
                Some(c) => c.get_or_compute(key, CacheMode::Use, compute).await?,
                None => (compute().await?, crate::CacheStatus::Bypass),
            }
        }
        Kind::Transcribe { field, options: o } => {
            let bytes = ctx.request.audio(field)?;
            let max_seconds = runner.max_audio_seconds;
            let codec = runner.codec.clone();
            let audio = tokio::task::spawn_blocking(move || codec.decode(&bytes, max_seconds))
                .await
                .map_err(|e| {
                    EngineError::Backend(brisk_core::BackendError::Inference(e.to_string()))
                })??;
            let req = Request::Transcribe(TranscribeRequest {
                audio,
                language: o.language.clone(),
                prompt: o.prompt.clone(),
                temperature: o.temperature,
                translate: o.translate,
                word_timestamps: false,
                beam_size: None,
            });
            runner
                .registry
                .infer_with(&step.model, req, CacheMode::Use)
                .await?
        }
        Kind::Embed(o) => {
            let texts = ctx.texts(&step.source, "embed")?;
            runner
                .registry
                .infer_with(
                    &step.model,
                    Request::Embed {
                        texts,
                        truncate: o.truncate,
                    },
                    CacheMode::Use,
                )
                .await?
        }
        Kind::Generate { params, system } => {
            let mut messages = Vec::new();
            if let Some(sys) = system {
                messages.push(ChatMessage::new("system".into(), ctx.render(sys)?));
            }
            messages.push(ChatMessage::new("user".into(), ctx.text(&step.source)?));
            // An aborted branch drops this future; the guard then stops the
            // generation at its next token instead of letting it run out.
            let cancelled = Arc::new(AtomicBool::new(false));
            let _guard = CancelOnDrop(cancelled.clone());
            let sink: TokenSink = Box::new(move |_| !cancelled.load(Ordering::Relaxed));
            let req = Request::Generate(GenerateRequest {
                prompt: Prompt::Chat(messages),
                params: params.clone(),
                sink: Some(sink),
            });
            runner
                .registry
                .infer_with(&step.model, req, CacheMode::Use)
                .await?
        }
        Kind::Speak(o) => {
            let req = Request::Speak(brisk_core::SpeakRequest {
                text: ctx.text(&step.source)?,
                voice: o.voice.clone(),
                speed: o.speed.unwrap_or(1.0),
            });
            runner
                .registry
                .infer_with(&step.model, req, CacheMode::Use)
                .await?
        }
        Kind::Translate => {
            let req = Request::Translate {
                texts: vec![ctx.text(&step.source)?],
            };
            runner
                .registry
                .infer_with(&step.model, req, CacheMode::Use)
                .await?
        }
        Kind::Rerank {
            documents,
            top_n,
            truncate,
        } => {
            let documents = ctx.texts(documents, "rerank")?;
            if documents.is_empty() {
                return Err(bad_input("rerank: the documents list is empty".into()));
            }
            // Kept for the results, which carry each document's text.
            rerank_documents = Some((documents.clone(), *top_n));
            let req = Request::Rerank {
                query: ctx.text(&step.source)?,
                documents,
                truncate: *truncate,
            };
            runner
                .registry
                .infer_with(&step.model, req, CacheMode::Use)
                .await?
        }
    };
    let (reply, cache) = reply;
    let mut out = match reply {
        TaskResponse::Transcribe(t) => json!({
            "text": t.text.trim(),
            "language": t.language,
            "duration": t.duration,
            "segments": t.segments,
        }),
        TaskResponse::Embed {
            vectors,
            prompt_tokens,
        } => json!({
            "dimensions": vectors.first().map_or(0, Vec::len),
            "embeddings": vectors,
            "prompt_tokens": prompt_tokens,
        }),
        TaskResponse::Generate(g) => json!({
            "text": g.text,
            "finish_reason": match g.finish_reason {
                brisk_core::FinishReason::Length => "length",
                _ => "stop",
            },
            "usage": {
                "prompt_tokens": g.prompt_tokens,
                "completion_tokens": g.completion_tokens,
                "total_tokens": g.prompt_tokens + g.completion_tokens,
            },
        }),
        TaskResponse::Rerank {
            scores,
            prompt_tokens,
        } => {
            let (documents, top_n) = rerank_documents.take().unwrap_or_default();
            json!({
                "results": ranked(&scores, &documents, top_n),
                "prompt_tokens": prompt_tokens,
            })
        }
        TaskResponse::Translate {
            texts,
            prompt_tokens,
        } => {
            let (source, target) = runner
                .registry
                .language_pair(&step.model)
                .unwrap_or_default();
            json!({
                "text": texts.into_iter().next().unwrap_or_default(),
                "source": source,
                "target": target,
                "prompt_tokens": prompt_tokens,
            })
        }
        TaskResponse::AudioAnalysis(json) => serde_json::from_str(&json).map_err(|e| {
            StepError::Engine(EngineError::Backend(brisk_core::BackendError::Inference(
                format!("analysis result is not JSON: {e}"),
            )))
        })?,
        TaskResponse::Speech(a) => {
            let wav = runner.codec.encode_wav(&a.samples, a.sample_rate);
            json!({
                "format": "wav",
                "sample_rate": a.sample_rate,
                "duration": a.samples.len() as f64 / f64::from(a.sample_rate.max(1)),
                "audio": base64::engine::general_purpose::STANDARD.encode(wav),
            })
        }
        other => {
            return Err(StepError::Engine(EngineError::Backend(
                brisk_core::BackendError::Inference(format!("unexpected reply {other:?}")),
            )))
        }
    };
    // Which steps the result cache answered (a repeated clip, say).
    out["cache"] = json!(cache.as_str());
    Ok(out)
}

/// `[{index, relevance_score, document}]`, best first (ties keep request
/// order), cut to `top_n`: the shape of `/v1/rerank`'s results, so a later
/// step reads `STEP.results.0.document`.
fn ranked(scores: &[f32], documents: &[String], top_n: Option<usize>) -> Vec<Value> {
    brisk_core::rank_order(scores, top_n)
        .into_iter()
        .map(|i| {
            json!({
                "index": i,
                "relevance_score": scores[i],
                "document": documents.get(i),
            })
        })
        .collect()
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn timing_json(model: &str, t: &StepTiming) -> Value {
    json!({
        "model": model,
        "start_ms": ms(t.start),
        "end_ms": ms(t.end),
        "duration_ms": ms(t.duration()),
    })
}

/// A finished run: each step's output and timing, in step order.
pub struct RunOutcome {
    pub steps: Vec<(String, String, StepResult<Value>)>,
    pub total: std::time::Duration,
}

impl RunOutcome {
    pub fn to_json(&self, pipeline: &str) -> Value {
        let outputs: Map<String, Value> = self
            .steps
            .iter()
            .map(|(name, _, r)| (name.clone(), (*r.output).clone()))
            .collect();
        json!({
            "object": "pipeline.run",
            "pipeline": pipeline,
            "outputs": outputs,
            "timings": self.timings_json(),
        })
    }

    pub fn timings_json(&self) -> Value {
        let steps: Map<String, Value> = self
            .steps
            .iter()
            .map(|(name, model, r)| (name.clone(), timing_json(model, &r.timing)))
            .collect();
        let sum: f64 = self
            .steps
            .iter()
            .map(|(_, _, r)| ms(r.timing.duration()))
            .sum();
        json!({
            "total_ms": ms(self.total),
            // What the steps would take one after another: total_ms below
            // this is the time won by running branches concurrently.
            "steps_sum_ms": sum,
            "steps": steps,
        })
    }
}

/// Runs a pipeline; `on_step` sees each step as it finishes. The error
/// names the failing step and carries its own status.
pub async fn execute(
    runner: &Runner,
    pipeline: &Arc<Pipeline>,
    input: Arc<PipelineInput>,
    mut on_step: impl FnMut(&str, &str, &StepResult<Value>),
) -> Result<RunOutcome, RunError> {
    let started = Instant::now();
    let p = pipeline.clone();
    let result = dag::run(
        &pipeline.dag,
        |i, outputs: &[Option<Arc<Value>>]| {
            let step = p.steps[i].clone();
            let ctx = StepContext {
                request: input.clone(),
                outputs: p
                    .dag
                    .deps(i)
                    .iter()
                    .filter_map(|&d| Some((p.dag.name(d).to_string(), outputs[d].clone()?)))
                    .collect(),
            };
            let runner = runner.clone();
            let span = tracing::info_span!("pipeline_step", pipeline = %p.name, step = %step.name, model = %step.model);
            tracing::Instrument::instrument(run_step(runner, step, ctx), span)
        },
        |i, r| {
            let s = &pipeline.steps[i];
            metrics::histogram!("brisk_pipeline_step_duration_seconds",
                "pipeline" => pipeline.name.clone(), "step" => s.name.clone())
            .record(r.timing.duration().as_secs_f64());
            on_step(&s.name, &s.model, r)
        },
    )
    .await;
    let outcome = match result {
        Ok(results) => RunOutcome {
            steps: results
                .into_iter()
                .zip(&pipeline.steps)
                .map(|(r, s)| (s.name.clone(), s.model.clone(), r))
                .collect(),
            total: started.elapsed(),
        },
        Err(StepFailure {
            step,
            error,
            cancelled,
            aborted,
            ..
        }) => {
            tracing::info!(pipeline = %pipeline.name, %step, error = %error, ?cancelled, ?aborted, "pipeline step failed");
            metrics::counter!("brisk_pipeline_runs_total", "pipeline" => pipeline.name.clone(), "outcome" => "error").increment(1);
            return Err(RunError {
                step,
                source: error,
            });
        }
    };
    metrics::counter!("brisk_pipeline_runs_total", "pipeline" => pipeline.name.clone(), "outcome" => "ok").increment(1);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, task: Option<&str>) -> crate::ModelSpec {
        crate::ModelSpec {
            name: name.into(),
            source: brisk_core::ModelSource {
                backend: "sim".into(),
                path: name.into(),
                options: task
                    .map(|t| ("task".to_string(), t.to_string()))
                    .into_iter()
                    .collect(),
                adapters: Default::default(),
            },
            policy: crate::LoadPolicy::Lazy,
            keep_alive: None,
            pinned: false,
            max_queue: 8,
            batch: crate::BatchLimits::default(),
            request_timeout: std::time::Duration::from_secs(10),
            cache: false,
        }
    }

    fn registry() -> Registry {
        let settings = crate::EngineSettings {
            load_concurrency: 2,
            load_retries: 0,
            retry_backoff: std::time::Duration::from_millis(5),
            failure_cooldown: std::time::Duration::from_millis(100),
            memory_budget_bytes: None,
        };
        Registry::new(
            vec![
                spec("stt", Some("transcription")),
                spec("emb", None),
                spec("llm", Some("generation")),
            ],
            Arc::new(brisk_backends::BriskLoader::new()),
            settings,
            crate::Timeline::new(Instant::now()),
        )
        .expect("registry")
    }

    fn build(toml_text: &str) -> Result<Pipelines, PipelineError> {
        #[derive(serde::Deserialize)]
        struct T {
            pipelines: BTreeMap<String, PipelineConfig>,
        }
        let t: T = toml::from_str(toml_text).expect("toml");
        Pipelines::build(&t.pipelines, &registry())
    }

    const GOOD: &str = r#"
        [[pipelines.p.steps]]
        name = "transcript"
        model = "stt"
        input = "request.audio"
        [[pipelines.p.steps]]
        name = "vec"
        model = "emb"
        input = "transcript.text"
        [[pipelines.p.steps]]
        name = "reply"
        model = "llm"
        system = "Be brief."
        prompt = "Reply to {{ transcript.text }} in {{ request.lang }}"
        options = { max_tokens = 8 }
    "#;

    #[test]
    fn inputs_come_from_selections_and_templates() {
        let ps = build(GOOD).expect("valid");
        let p = ps.get("p").expect("built");
        assert_eq!(p.dag.deps(1), &[0]);
        assert_eq!(p.dag.deps(2), &[0], "request is not a step");
    }

    fn err(toml_text: &str) -> String {
        build(toml_text).expect_err("must fail").to_string()
    }

    #[test]
    fn config_errors_name_the_step() {
        let e = err(&GOOD.replace("model = \"llm\"", "model = \"gpt-9\""));
        assert!(e.contains("step 'reply'") && e.contains("gpt-9"), "{e}");
        let e = err(&GOOD.replace("transcript.text }}", "transcrpt.text }}"));
        assert!(e.contains("step 'reply' reads 'transcrpt'"), "{e}");
        let e = err(&GOOD
            .replace("input = \"transcript.text\"", "input = \"reply.text\"")
            .replace("{{ transcript.text }}", "{{ vec.dimensions }}"));
        assert!(
            e.contains("cycle") && e.contains("vec") && e.contains("reply"),
            "{e}"
        );
        let e = err(&GOOD.replace("input = \"transcript.text\"", "input = \"transcript.txt\""));
        assert!(
            e.contains("step 'vec'") && e.contains("transcript.txt"),
            "{e}"
        );
        let e = err(&GOOD.replace("max_tokens = 8", "max_tokens = 8, colour = 1"));
        assert!(e.contains("step 'reply'") && e.contains("colour"), "{e}");
        let e = err(&GOOD.replace("input = \"request.audio\"", "prompt = \"{{ request.x }}\""));
        assert!(e.contains("step 'transcript'"), "{e}");
        let e = err(&GOOD.replace("{{ request.lang }}", "{{ request.lang "));
        assert!(e.contains("step 'reply'") && e.contains("prompt"), "{e}");
    }

    #[test]
    fn optional_pipeline_with_missing_model_is_skipped_not_fatal() {
        let text = format!(
            "[pipelines.p]\noptional = true\n{}",
            GOOD.replace("model = \"llm\"", "model = \"absent\"")
        );
        let ps = build(&text).expect("skipped, not an error");
        assert!(ps.get("p").is_none());
        // Optional does not excuse a broken graph.
        let text = format!(
            "[pipelines.p]\noptional = true\n{}",
            GOOD.replace("transcript.text }}", "nothing.text }}")
        );
        assert!(build(&text).is_err());
    }
}
