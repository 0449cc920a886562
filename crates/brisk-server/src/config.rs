//! The configuration file, its embedded default, and how it turns into the
//! engine's model specs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use brisk_core::ModelSource;
use brisk_engine::cache::{DiskSettings, RedisSettings};
use brisk_engine::{BatchLimits, CacheSettings, EngineSettings, LoadPolicy, ModelSpec};
use serde::Deserialize;

/// Used when no `--config`/`BRISK_CONFIG` is given: serve every model found
/// under the models folder, loaded on first request.
pub const EMBEDDED_DEFAULT: &str = include_str!("../default.toml");

/// The least batch delay of a model whose backend batches transcription
/// requests ([`brisk_backends::batches_requests`]), unless the model sets
/// its own `max_batch_delay_ms`.
pub const AUDIO_BATCH_DELAY_MS: u64 = 25;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("model '{model}': {reason}")]
    Model { model: String, reason: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub engine: EngineConfig,
    /// Settings every model starts from; a model's own table overrides them.
    pub defaults: ModelDefaults,
    pub models: BTreeMap<String, ModelConfig>,
    /// Named graphs of model steps, served at `/v1/pipelines/{name}`.
    pub pipelines: BTreeMap<String, brisk_engine::pipeline::PipelineConfig>,
    pub cache: CacheConfig,
    /// `[jobs]`: async jobs stored in SQLite.
    pub jobs: JobsConfig,
    /// `[stream]`: live transcription over WebSocket.
    pub stream: StreamConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
}

/// `[limits]`: what one request may ask for. Each violation is a 400 that
/// names the limit; body and audio sizes are in `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Texts in one embeddings request.
    pub max_inputs: usize,
    /// Characters in one input text, prompt or chat message.
    pub max_input_chars: usize,
    /// Largest `max_tokens` a generation request may ask for.
    pub max_tokens: usize,
    /// Messages in one chat request.
    pub max_messages: usize,
    /// Documents in one topics request (`POST /v1/topics`, pipeline steps
    /// with `task = "topics"`).
    pub max_topic_documents: usize,
}

impl LimitsConfig {
    /// A 400 when `text` (called `label()` in the message) is longer than
    /// `max_input_chars`. The label is built only for the error.
    pub fn check_chars(
        &self,
        label: impl FnOnce() -> String,
        text: &str,
        param: &'static str,
    ) -> Result<(), crate::error::AppError> {
        let n = text.chars().count();
        if n <= self.max_input_chars {
            return Ok(());
        }
        Err(crate::error::AppError::bad(
            format!(
                "{} has {n} characters; at most {} are accepted",
                label(),
                self.max_input_chars
            ),
            param,
        ))
    }

    /// A 400 when the list `param` has more than `max_items` texts, or one
    /// of them (`param[i]`) is over `max_input_chars`.
    pub fn check_list<'a, I>(
        &self,
        param: &'static str,
        max_items: usize,
        texts: I,
    ) -> Result<(), crate::error::AppError>
    where
        I: IntoIterator<Item = &'a str>,
        I::IntoIter: ExactSizeIterator,
    {
        let texts = texts.into_iter();
        if texts.len() > max_items {
            return Err(crate::error::AppError::bad(
                format!(
                    "'{param}' has {} items; at most {max_items} are accepted per request",
                    texts.len()
                ),
                param,
            ));
        }
        for (i, t) in texts.enumerate() {
            self.check_chars(|| format!("{param}[{i}]"), t, param)?;
        }
        Ok(())
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_inputs: 2048,
            max_input_chars: 100_000,
            max_tokens: 4096,
            max_messages: 512,
            max_topic_documents: 10_000,
        }
    }
}

/// `[cache]`: the result cache in front of every model with `cache = true`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub enabled: bool,
    /// Memory tier budget, in bytes.
    pub max_bytes: u64,
    pub ttl_s: u64,
    /// Values at least this large are stored lz4-compressed.
    pub compress_min_bytes: usize,
    /// SQLite file of the persistent tier; unset = no disk tier.
    pub disk_path: Option<PathBuf>,
    pub disk_max_bytes: u64,
    /// `redis://host:port[/db]`; unset = no Redis tier.
    pub redis_url: Option<String>,
    /// Bound on each Redis exchange; past it the request goes on without.
    pub redis_timeout_ms: u64,
    /// After a Redis failure, Redis is skipped for this long.
    pub redis_retry_s: u64,
    /// Requests computed in the background after startup.
    pub prewarm: Vec<PrewarmItem>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        let d = CacheSettings::default();
        Self {
            enabled: true,
            max_bytes: d.max_bytes,
            ttl_s: d.ttl.as_secs(),
            compress_min_bytes: d.compress_min_bytes,
            disk_path: None,
            disk_max_bytes: 1 << 30,
            redis_url: None,
            redis_timeout_ms: 50,
            redis_retry_s: 5,
            prewarm: Vec::new(),
        }
    }
}

impl CacheConfig {
    /// The engine's settings, or `None` when the cache is off.
    pub fn settings(&self) -> Option<CacheSettings> {
        self.enabled.then(|| CacheSettings {
            max_bytes: self.max_bytes,
            ttl: Duration::from_secs(self.ttl_s.max(1)),
            compress_min_bytes: self.compress_min_bytes,
            disk: self.disk_path.clone().map(|path| DiskSettings {
                path,
                max_bytes: self.disk_max_bytes,
            }),
            redis: self
                .redis_url
                .clone()
                .filter(|u| !u.is_empty())
                .map(|url| RedisSettings {
                    url,
                    timeout: Duration::from_millis(self.redis_timeout_ms.max(1)),
                    retry_after: Duration::from_secs(self.redis_retry_s),
                }),
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub models_dir: PathBuf,
    /// Where brisk keeps its state (the jobs database, the disk cache):
    /// relative `[jobs] db_path` and `[cache] disk_path` resolve against it.
    /// `None`: `$XDG_STATE_HOME/brisk`, else `~/.local/state/brisk`
    /// ([`default_state_dir`]); never the working directory.
    pub state_dir: Option<PathBuf>,
    /// Also serve every model found under `models_dir` (with the defaults).
    pub discover: bool,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Time in-flight requests get to finish after SIGTERM.
    pub shutdown_timeout_s: u64,
    /// Threads for inference kernels; 0 = one per core.
    pub inference_threads: usize,
    /// Largest audio upload accepted, in bytes.
    pub max_audio_bytes: usize,
    /// Longest audio accepted, in seconds (checked while decoding).
    pub max_audio_seconds: f64,
    /// Largest upload to `/v1/audio/analysis`, in bytes (spooled to disk,
    /// analysed in a stream, so memory does not grow with it); 413 past it.
    pub max_analysis_bytes: usize,
    /// Browser origins allowed by CORS (exact, e.g. `https://app.example`).
    /// Empty: no CORS headers at all, so browsers refuse cross-origin calls.
    pub cors_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            models_dir: PathBuf::from("./models"),
            state_dir: None,
            discover: true,
            max_body_bytes: 2 * 1024 * 1024,
            shutdown_timeout_s: 30,
            inference_threads: 0,
            max_audio_bytes: 100 * 1024 * 1024,
            max_audio_seconds: 3.0 * 3600.0,
            max_analysis_bytes: 512 * 1024 * 1024,
            cors_origins: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    pub load_concurrency: usize,
    pub load_retries: u32,
    pub retry_backoff_ms: u64,
    pub failure_cooldown_s: u64,
    /// 0 = no budget.
    pub memory_budget_bytes: u64,
    /// How often idle models are checked against their keep-alive.
    pub reap_interval_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        let d = EngineSettings::default();
        Self {
            load_concurrency: d.load_concurrency,
            load_retries: d.load_retries,
            retry_backoff_ms: d.retry_backoff.as_millis() as u64,
            failure_cooldown_s: d.failure_cooldown.as_secs(),
            memory_budget_bytes: 0,
            reap_interval_ms: 1000,
        }
    }
}

impl EngineConfig {
    pub fn settings(&self) -> EngineSettings {
        EngineSettings {
            load_concurrency: self.load_concurrency,
            load_retries: self.load_retries,
            retry_backoff: Duration::from_millis(self.retry_backoff_ms),
            failure_cooldown: Duration::from_secs(self.failure_cooldown_s),
            memory_budget_bytes: (self.memory_budget_bytes > 0).then_some(self.memory_budget_bytes),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    Lazy,
    Preload,
    Background,
}

impl From<Policy> for LoadPolicy {
    fn from(p: Policy) -> Self {
        match p {
            Policy::Lazy => LoadPolicy::Lazy,
            Policy::Preload => LoadPolicy::Preload,
            Policy::Background => LoadPolicy::Background,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelDefaults {
    pub policy: Policy,
    /// Seconds without requests before unloading; 0 = keep loaded.
    pub keep_alive_s: u64,
    pub max_queue: usize,
    pub max_batch_requests: usize,
    pub max_batch_tokens: usize,
    pub max_batch_delay_ms: u64,
    pub request_timeout_ms: u64,
    /// Use the result cache for deterministic requests.
    pub cache: bool,
}

impl Default for ModelDefaults {
    fn default() -> Self {
        let b = BatchLimits::default();
        Self {
            policy: Policy::Lazy,
            keep_alive_s: 0,
            max_queue: 256,
            max_batch_requests: b.max_requests,
            max_batch_tokens: b.max_tokens,
            max_batch_delay_ms: b.max_delay.as_millis() as u64,
            request_timeout_ms: 30_000,
            cache: true,
        }
    }
}

/// One `[models.NAME]` table. Unset fields take the `[defaults]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Backend name; when absent it is detected from the files.
    pub backend: Option<String>,
    /// Local path (relative paths resolve against `models_dir`) or
    /// `hf://org/name`, resolved in the local Hugging Face cache.
    pub source: String,
    pub policy: Option<Policy>,
    /// Never evicted or unloaded for idleness. Default: true for preload.
    pub pinned: Option<bool>,
    pub keep_alive_s: Option<u64>,
    pub max_queue: Option<usize>,
    pub max_batch_requests: Option<usize>,
    pub max_batch_tokens: Option<usize>,
    pub max_batch_delay_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub cache: Option<bool>,
    #[serde(default)]
    pub options: BTreeMap<String, toml::Value>,
    /// LoRA adapters (`adapters = { NAME = "file.gguf" }`), served as the
    /// models `X:NAME`. A relative path is found beside the model: in its
    /// folder, or in the folder of a model given as a file.
    #[serde(default)]
    pub adapters: BTreeMap<String, String>,
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Ok(toml::from_str(text)?)
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// The model specs for the engine: configured models first, then, when
    /// `discover` is on, every other model found under `models_dir`.
    pub fn model_specs(&self) -> Result<Vec<ModelSpec>, ConfigError> {
        let mut specs = Vec::new();
        for (name, m) in &self.models {
            let path = resolve_source(&m.source, &self.server.models_dir).map_err(|reason| {
                ConfigError::Model {
                    model: name.clone(),
                    reason,
                }
            })?;
            let backend = match &m.backend {
                Some(b) => b.clone(),
                None => brisk_backends::detect(&path)
                    .ok_or_else(|| ConfigError::Model {
                        model: name.clone(),
                        reason: format!("no backend given and none recognises {}", path.display()),
                    })?
                    .to_string(),
            };
            let options = m
                .options
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect();
            let adapters =
                resolve_adapters(&m.adapters, &path).map_err(|reason| ConfigError::Model {
                    model: name.clone(),
                    reason,
                })?;
            specs.push(self.spec(
                name,
                ModelSource {
                    backend,
                    path,
                    options,
                    adapters,
                },
                m,
            ));
        }
        if self.server.discover {
            let configured: Vec<PathBuf> = specs.iter().map(|s| s.source.path.clone()).collect();
            for found in brisk_backends::discover(&self.server.models_dir) {
                let taken = self.models.contains_key(&found.name)
                    || configured.iter().any(|p| same_path(p, &found.source.path));
                if !taken {
                    specs.push(self.spec(&found.name, found.source, &ModelConfig::default()));
                }
            }
        }
        // A translation model's language pair is known before it loads (from
        // its folder), so requests pick a model by pair and `/languages`
        // answers without loading anything.
        for spec in &mut specs {
            if let Some((source, target)) = brisk_backends::language_pair(&spec.source) {
                let o = &mut spec.source.options;
                o.entry("source_language".into()).or_insert(source);
                o.entry("target_language".into()).or_insert(target);
            }
        }
        Ok(specs)
    }

    fn spec(&self, name: &str, source: ModelSource, m: &ModelConfig) -> ModelSpec {
        let d = &self.defaults;
        let policy = m.policy.unwrap_or(d.policy);
        let keep_alive_s = m.keep_alive_s.unwrap_or(d.keep_alive_s);
        let max_delay_ms = m.max_batch_delay_ms.unwrap_or_else(|| {
            // The pieces of a long file reach a batching transcription
            // model a few ms apart (each is hashed for the cache first):
            // wait long enough to decode them as one batch.
            if brisk_backends::batches_requests(&source.backend) {
                d.max_batch_delay_ms.max(AUDIO_BATCH_DELAY_MS)
            } else {
                d.max_batch_delay_ms
            }
        });
        ModelSpec {
            name: name.to_string(),
            source,
            policy: policy.into(),
            keep_alive: (keep_alive_s > 0).then(|| Duration::from_secs(keep_alive_s)),
            pinned: m.pinned.unwrap_or(policy == Policy::Preload),
            max_queue: m.max_queue.unwrap_or(d.max_queue),
            batch: BatchLimits {
                max_requests: m.max_batch_requests.unwrap_or(d.max_batch_requests),
                max_tokens: m.max_batch_tokens.unwrap_or(d.max_batch_tokens),
                max_delay: Duration::from_millis(max_delay_ms),
            },
            request_timeout: Duration::from_millis(
                m.request_timeout_ms.unwrap_or(d.request_timeout_ms),
            ),
            cache: m.cache.unwrap_or(d.cache),
        }
    }
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Turns a configured source into a local path. `hf://org/name[@rev]` is
/// looked up in the local Hugging Face cache (`$HF_HOME/hub`, default
/// `~/.cache/huggingface/hub`); brisk never downloads at run time.
/// The adapter files of a model at `model_path`, checked to exist; names
/// must be usable after `model:` in a request.
fn resolve_adapters(
    adapters: &BTreeMap<String, String>,
    model_path: &Path,
) -> Result<BTreeMap<String, PathBuf>, String> {
    let base = if model_path.is_dir() {
        model_path
    } else {
        model_path.parent().unwrap_or(Path::new("."))
    };
    adapters
        .iter()
        .map(|(name, file)| {
            if name.is_empty() || name.contains(':') || name.contains('/') {
                return Err(format!(
                    "adapter name {name:?} must be non-empty, without ':' or '/'"
                ));
            }
            let path = base.join(file);
            if !path.is_file() {
                return Err(format!("adapter {name}: no file at {}", path.display()));
            }
            Ok((name.clone(), path))
        })
        .collect()
}

pub fn resolve_source(source: &str, models_dir: &Path) -> Result<PathBuf, String> {
    if let Some(repo) = source.strip_prefix("hf://") {
        let (repo, rev) = repo.split_once('@').unwrap_or((repo, "main"));
        if repo.split('/').count() != 2 || repo.split('/').any(str::is_empty) {
            return Err(format!("hf source must be hf://org/name, got {source:?}"));
        }
        let hub = std::env::var_os(crate::env::HF_HOME)
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface"))
            })
            .unwrap_or_else(|| PathBuf::from(".cache/huggingface"))
            .join("hub");
        let dir = hub.join(format!("models--{}", repo.replace('/', "--")));
        // A ref names a snapshot; a full commit hash names one directly.
        let commit = std::fs::read_to_string(dir.join("refs").join(rev))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| rev.to_string());
        let snapshot = dir.join("snapshots").join(commit);
        return if snapshot.is_dir() {
            Ok(snapshot)
        } else {
            Err(format!(
                "{source} is not in the local Hugging Face cache ({}); fetch it first",
                snapshot.display()
            ))
        };
    }
    if source.is_empty() {
        return Err("'source' is required".into());
    }
    let p = Path::new(source.strip_prefix("file://").unwrap_or(source));
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        models_dir.join(p)
    })
}

/// The state dir when none is configured: `$XDG_STATE_HOME/brisk`, else
/// `$HOME/.local/state/brisk` (the XDG base-directory default), else a
/// `brisk-state` folder in the temp dir for a process without a home.
pub fn default_state_dir() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(x) = var("XDG_STATE_HOME").filter(|p| p.is_absolute()) {
        return x.join("brisk");
    }
    match var("HOME") {
        Some(home) => home.join(".local/state/brisk"),
        None => std::env::temp_dir().join("brisk-state"),
    }
}

/// `[jobs]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    pub enabled: bool,
    /// The SQLite file; a relative path resolves against the state dir
    /// (`[server] state_dir`) when the server starts.
    pub db_path: PathBuf,
    /// Jobs run at the same time.
    pub workers: usize,
    /// How long a finished job's result can be fetched.
    pub result_ttl_s: u64,
    /// Starts (including restarts after a crash) before a job is failed.
    pub max_attempts: u32,
    /// Connections in the pool.
    pub pool_size: usize,
    /// Wait for a locked database before retrying.
    pub busy_timeout_ms: u64,
    /// Largest stored request body (JSON or multipart upload).
    pub max_body_bytes: usize,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            db_path: PathBuf::from("jobs.sqlite"),
            workers: 2,
            result_ttl_s: 24 * 3600,
            max_attempts: 3,
            pool_size: 4,
            busy_timeout_ms: 5000,
            max_body_bytes: 100 * 1024 * 1024,
        }
    }
}

/// `[stream]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Model used when the client names none.
    pub default_model: Option<String>,
    /// Audio between two partial transcripts of an ongoing utterance;
    /// 0 = no partials.
    pub partial_interval_ms: u64,
    /// Longest utterance; longer speech is cut into several.
    pub max_utterance_s: f64,
    /// Utterances waiting for the model before the session is closed.
    pub max_pending_utterances: usize,
    /// Events waiting for a client that does not read.
    pub max_pending_events: usize,
    /// A send to the client that takes longer ends the session.
    pub send_timeout_ms: u64,
    /// A session that sends nothing this long is closed.
    pub idle_timeout_s: u64,
    /// Largest WebSocket message accepted.
    pub max_message_bytes: usize,
    /// Silence that ends an utterance.
    pub hangover_ms: usize,
    /// Voice detector: `auto` (the first silero VAD model configured, else
    /// the energy detector), `energy`, or the name of a silero VAD model.
    pub vad: String,
    /// Silero: a 32 ms window is speech at this probability or above.
    pub vad_threshold: f32,
    /// Energy VAD: speech is this many times louder than the noise floor.
    pub vad_ratio: f32,
    /// Energy VAD: and louder than this RMS (full scale 1.0).
    pub vad_min_rms: f32,
}

impl Default for StreamConfig {
    fn default() -> Self {
        let e = brisk_engine::speech::energy_vad::EnergySettings::default();
        Self {
            default_model: None,
            partial_interval_ms: 1000,
            max_utterance_s: 25.0,
            // Silero cuts at every phrase: a 10 s file streamed at 10x
            // real time queues 6 utterances at once.
            max_pending_utterances: 8,
            max_pending_events: 32,
            send_timeout_ms: 5000,
            idle_timeout_s: 60,
            max_message_bytes: 1 << 20,
            hangover_ms: brisk_engine::speech::energy_vad::SegmentSettings::default().hangover_ms,
            vad_ratio: e.ratio,
            vad_min_rms: e.min_rms,
            vad: "auto".into(),
            vad_threshold: brisk_core::VadParams::default().threshold,
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Keys for clients; also read from `BRISK_API_KEYS` (comma-separated).
    pub api_keys: Vec<String>,
    /// Keys for admin endpoints; also read from `BRISK_ADMIN_KEYS`.
    pub admin_keys: Vec<String>,
    /// Serve `/metrics` without a key (for Prometheus scrapers).
    pub public_metrics: bool,
}

/// One prewarm request: an endpoint of brisk's own API and the body a
/// client would send to it. Running it through the router (in process)
/// produces exactly the cache key a real client's request will have.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrewarmItem {
    /// e.g. `/v1/embeddings`, `/v1/chat/completions`,
    /// `/v1/audio/transcriptions`.
    pub endpoint: String,
    /// JSON body, or the form fields of a multipart endpoint.
    #[serde(default)]
    pub body: serde_json::Map<String, serde_json::Value>,
    /// For multipart endpoints: the file to upload (relative paths resolve
    /// against the models folder).
    pub file: Option<PathBuf>,
    /// Shorthand for embeddings: one request per text (what clients
    /// embedding single phrases send), with `body.model`.
    #[serde(default)]
    pub inputs: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses_and_discovers() {
        let c = Config::from_toml(EMBEDDED_DEFAULT).expect("default config parses");
        assert!(c.server.discover);
        assert_eq!(c.server.port, 8080);
        assert_eq!(c.defaults.policy, Policy::Lazy);
    }

    #[test]
    fn model_table_overrides_defaults() {
        let c = Config::from_toml(
            r#"
            [defaults]
            max_queue = 7
            keep_alive_s = 60
            [models.a]
            backend = "sim"
            source = "a"
            policy = "preload"
            max_queue = 3
            options = { load_ms = 5 }
            [models.b]
            backend = "sim"
            source = "/abs/b"
            "#,
        )
        .expect("parses");
        let specs = c.model_specs().expect("specs");
        let a = &specs[0];
        assert_eq!(a.max_queue, 3);
        assert!(a.pinned, "preload pins by default");
        assert_eq!(a.keep_alive, Some(Duration::from_secs(60)));
        assert_eq!(a.source.path, PathBuf::from("./models/a"));
        assert_eq!(a.source.options["load_ms"], "5");
        let b = &specs[1];
        assert_eq!(b.max_queue, 7);
        assert!(!b.pinned);
        assert_eq!(b.source.path, PathBuf::from("/abs/b"));
    }

    #[test]
    fn batching_whisper_models_wait_for_the_pieces_of_a_file() {
        let c = Config::from_toml(
            r#"
            [models.a]
            backend = "ct2-whisper"
            source = "a"
            [models.b]
            backend = "ct2-whisper"
            source = "b"
            max_batch_delay_ms = 1
            [models.c]
            backend = "sim"
            source = "c"
            "#,
        )
        .expect("parses");
        let specs = c.model_specs().expect("specs");
        let delay = |i: usize| specs[i].batch.max_delay;
        assert_eq!(delay(0), Duration::from_millis(AUDIO_BATCH_DELAY_MS));
        assert_eq!(
            delay(1),
            Duration::from_millis(1),
            "the model's own value wins"
        );
        assert_eq!(delay(2), BatchLimits::default().max_delay);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Config::from_toml("[server]\nprot = 1\n")
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("prot"), "{err}");
    }

    #[test]
    fn hf_source_resolves_in_local_cache_or_says_why() {
        let err = resolve_source("hf://org/missing-model", Path::new("m")).expect_err("must fail");
        assert!(err.contains("not in the local Hugging Face cache"), "{err}");
        assert!(resolve_source("hf://bad", Path::new("m")).is_err());
    }
}
