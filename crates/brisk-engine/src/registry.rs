//! The model registry: which models exist, their load state, and the rules
//! that move them between states.
//!
//! ```text
//! unloaded ──request/preload──▶ loading ──ok──▶ ready ──idle/evict/unload──▶ unloaded
//!                                  │                 └──backend panic──────▶ unloaded
//!                                  └──all retries failed──▶ failed (cooldown) ──cooldown over──▶ loading
//! ```
//!
//! Loads are single-flight: the first request that finds a model unloaded
//! starts one load task; everyone else, including later requests, waits on a
//! `watch` channel for it. The load task is spawned, not awaited in place, so
//! a client that disconnects never aborts a load others may be waiting for.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brisk_core::{Loader, ModelSource, Prepared, Request, Response, Task, TokenCounter};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{oneshot, watch, Semaphore};

use crate::batch::BatchLimits;
use crate::cache::{self, CacheMode, CacheStatus, ResultCache};
use crate::error::EngineError;
use crate::timeline::Timeline;
use crate::worker::{self, Job, WorkerExit};

/// When a model is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadPolicy {
    /// On first request.
    Lazy,
    /// Before the server reports ready.
    Preload,
    /// After start, without holding readiness back.
    Background,
}

/// Everything the engine needs to know about one model.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub name: String,
    pub source: ModelSource,
    pub policy: LoadPolicy,
    /// Unload after this long without requests; `None` keeps it loaded.
    pub keep_alive: Option<Duration>,
    /// Pinned models are never evicted for the memory budget or idleness.
    pub pinned: bool,
    /// Requests admitted at once (queued or running); beyond it: 429.
    pub max_queue: usize,
    pub batch: BatchLimits,
    /// Time a request may spend queued and running once the model is loaded.
    pub request_timeout: Duration,
    /// Answer deterministic requests from the result cache (when one is set).
    pub cache: bool,
}

/// Registry-wide settings.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Loads running at once.
    pub load_concurrency: usize,
    /// Attempts after the first failure, each after an exponential backoff.
    pub load_retries: u32,
    pub retry_backoff: Duration,
    /// After a failed load, requests get 503 for this long before a new try.
    pub failure_cooldown: Duration,
    /// Sum of loaded models' memory; least recently used unpinned models are
    /// evicted to make room. `None`: unbounded.
    pub memory_budget_bytes: Option<u64>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            load_concurrency: 2,
            load_retries: 2,
            retry_backoff: Duration::from_millis(200),
            failure_cooldown: Duration::from_secs(10),
            memory_budget_bytes: None,
        }
    }
}

/// A loaded model as requests see it: where to send jobs.
#[derive(Clone)]
struct Loaded {
    tx: std::sync::mpsc::Sender<Job>,
    counter: Option<Arc<dyn TokenCounter>>,
    memory_bytes: u64,
    /// Distinguishes this load from later ones, so a dying worker of an old
    /// load cannot reset the state of a new one.
    generation: u64,
}

#[derive(Clone)]
enum State {
    Unloaded,
    Loading { since: Instant },
    Ready(Loaded),
    Failed { reason: String, until: Instant },
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Unloaded => "unloaded",
            State::Loading { .. } => "loading",
            State::Ready(_) => "ready",
            State::Failed { .. } => "failed",
        }
    }
}

struct Inner {
    state: State,
    loads: u64,
    last_load: Option<Duration>,
    last_error: Option<String>,
    /// Why the model was last unloaded (idle, evicted, panic, request).
    last_unload: Option<&'static str>,
    /// Set once a preload/background attempt finished, either way.
    settled: bool,
}

struct Entry {
    spec: ModelSpec,
    task: Task,
    inner: Mutex<Inner>,
    /// Bumped on every state change; waiters watch it.
    changed: watch::Sender<u64>,
    admission: Arc<Semaphore>,
    /// Milliseconds since the registry's epoch at the last request.
    last_used_ms: AtomicU64,
    /// Content fingerprint of the model's files, part of every cache key;
    /// computed on first cached request, not at startup.
    revision: tokio::sync::OnceCell<String>,
}

impl Entry {
    fn set_state(&self, inner: &mut Inner, state: State) {
        let loaded = matches!(state, State::Ready(_));
        inner.state = state;
        metrics::gauge!("brisk_model_loaded", "model" => self.spec.name.clone()).set(if loaded {
            1.0
        } else {
            0.0
        });
        self.changed.send_modify(|v| *v += 1);
    }

    fn in_flight(&self) -> usize {
        self.spec.max_queue - self.admission.available_permits()
    }
}

/// Per-model status as reported by `/v1/models`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStatus {
    pub name: String,
    /// For a LoRA adapter's id (`X:NAME`): the model `X` whose loaded
    /// weights it runs on; the rest of the status is that model's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter_of: Option<String>,
    pub task: Task,
    pub backend: String,
    pub policy: LoadPolicy,
    pub pinned: bool,
    pub state: &'static str,
    pub load_duration_ms: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub loads: u64,
    pub in_flight: usize,
    pub queue_capacity: usize,
    pub keep_alive_s: Option<u64>,
    pub idle_s: u64,
    pub last_error: Option<String>,
    pub last_unload: Option<&'static str>,
    pub retry_after_s: Option<u64>,
}

/// Readiness: ready once every preload model has settled.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub waiting_for: Vec<String>,
    pub failed: Vec<String>,
}

struct Shared {
    models: BTreeMap<String, Arc<Entry>>,
    loader: Arc<dyn Loader>,
    settings: EngineSettings,
    load_slots: Arc<Semaphore>,
    epoch: Instant,
    generation: AtomicU64,
    timeline: Timeline,
    /// Serialises budget decisions so two loads cannot both claim the same room.
    budget: Mutex<()>,
    cache: std::sync::OnceLock<Arc<ResultCache>>,
}

/// The model registry. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
}

impl Registry {
    /// Builds the registry. Fails when a model's task cannot be determined
    /// (unknown backend), which is a configuration error.
    pub fn new(
        specs: Vec<ModelSpec>,
        loader: Arc<dyn Loader>,
        settings: EngineSettings,
        timeline: Timeline,
    ) -> Result<Self, EngineError> {
        let mut models = BTreeMap::new();
        for spec in specs {
            let task = loader.task(&spec.source)?;
            let mut spec = spec;
            if !matches!(task, Task::Embeddings | Task::Rerank) && !loader.batches(&spec.source) {
                // A generation or transcription holds the model for many
                // decoder steps; batching would make each wait for the longest.
                // Encoder-only models (embeddings, reranking) batch well, and
                // so does a backend that decodes a batch in one pass (the
                // CTranslate2 Whisper: the pieces of a long file).
                spec.batch.max_requests = 1;
            }
            let (changed, _) = watch::channel(0);
            let entry = Entry {
                admission: Arc::new(Semaphore::new(spec.max_queue.max(1))),
                spec: ModelSpec {
                    max_queue: spec.max_queue.max(1),
                    ..spec
                },
                task,
                inner: Mutex::new(Inner {
                    state: State::Unloaded,
                    loads: 0,
                    last_load: None,
                    last_error: None,
                    last_unload: None,
                    settled: false,
                }),
                changed,
                last_used_ms: AtomicU64::new(0),
                revision: tokio::sync::OnceCell::new(),
            };
            models.insert(entry.spec.name.clone(), Arc::new(entry));
        }
        let load_slots = Arc::new(Semaphore::new(settings.load_concurrency.max(1)));
        Ok(Self {
            shared: Arc::new(Shared {
                models,
                loader,
                settings,
                load_slots,
                epoch: Instant::now(),
                generation: AtomicU64::new(0),
                timeline,
                budget: Mutex::new(()),
                cache: std::sync::OnceLock::new(),
            }),
        })
    }

    pub fn timeline(&self) -> &Timeline {
        &self.shared.timeline
    }

    /// Puts the result cache in front of every model with `cache` on.
    /// Set once, before serving; later calls are ignored.
    pub fn set_cache(&self, cache: Arc<ResultCache>) {
        let _ = self.shared.cache.set(cache);
    }

    pub fn cache(&self) -> Option<&Arc<ResultCache>> {
        self.shared.cache.get()
    }

    /// Every servable model id: the models, then each model's adapters as
    /// `X:NAME`.
    pub fn model_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.shared.models.keys().cloned().collect();
        for (name, e) in &self.shared.models {
            for adapter in e.spec.source.adapters.keys() {
                names.push(format!("{name}:{adapter}"));
            }
        }
        names
    }

    fn entry(&self, model: &str) -> Result<&Arc<Entry>, EngineError> {
        self.resolve(model).map(|(e, _)| e)
    }

    /// A model id: a model's name, or `X:NAME` for adapter NAME of model X
    /// (which runs on X's loaded weights, so loads, readiness and queue are
    /// X's).
    fn resolve<'s, 'm>(
        &'s self,
        model: &'m str,
    ) -> Result<(&'s Arc<Entry>, Option<&'m str>), EngineError> {
        if let Some(e) = self.shared.models.get(model) {
            return Ok((e, None));
        }
        model
            .rsplit_once(':')
            .and_then(|(base, adapter)| {
                let e = self.shared.models.get(base)?;
                e.spec
                    .source
                    .adapters
                    .contains_key(adapter)
                    .then_some((e, Some(adapter)))
            })
            .ok_or_else(|| EngineError::UnknownModel(model.to_string()))
    }

    /// Starts preload and background loads. Returns at once; readiness is
    /// reported by [`Registry::readiness`]. Background loads start after the
    /// preloads have settled so they do not compete for load slots with what
    /// readiness waits for.
    pub fn start(&self) {
        let preload: Vec<_> = self.by_policy(LoadPolicy::Preload);
        let background: Vec<_> = self.by_policy(LoadPolicy::Background);
        for e in &preload {
            self.spawn_load(e.clone());
        }
        let this = self.clone();
        tokio::spawn(async move {
            for e in &preload {
                let _ = this.wait_settled(e).await;
            }
            for e in background {
                this.spawn_load(e);
            }
        });
    }

    fn by_policy(&self, p: LoadPolicy) -> Vec<Arc<Entry>> {
        self.shared
            .models
            .values()
            .filter(|e| e.spec.policy == p)
            .cloned()
            .collect()
    }

    async fn wait_settled(&self, e: &Arc<Entry>) -> Result<(), EngineError> {
        let mut rx = e.changed.subscribe();
        loop {
            if e.inner.lock().settled {
                return Ok(());
            }
            if rx.changed().await.is_err() {
                return Err(EngineError::ShuttingDown);
            }
        }
    }

    /// Resolves once every preload model has settled (loaded or failed).
    pub async fn wait_ready(&self) {
        for e in self.by_policy(LoadPolicy::Preload) {
            let _ = self.wait_settled(&e).await;
        }
    }

    pub fn readiness(&self) -> Readiness {
        let mut waiting_for = Vec::new();
        let mut failed = Vec::new();
        for e in self.by_policy(LoadPolicy::Preload) {
            let inner = e.inner.lock();
            if !inner.settled {
                waiting_for.push(e.spec.name.clone());
            } else if matches!(inner.state, State::Failed { .. }) {
                // Falls back to lazy: readiness is not held hostage by it.
                failed.push(e.spec.name.clone());
            }
        }
        Readiness {
            ready: waiting_for.is_empty(),
            waiting_for,
            failed,
        }
    }

    /// Whether a model can serve a request without loading first.
    pub fn is_model_ready(&self, model: &str) -> Result<bool, EngineError> {
        let e = self.entry(model)?;
        let ready = matches!(e.inner.lock().state, State::Ready(_));
        Ok(ready)
    }

    pub fn task_of(&self, model: &str) -> Result<Task, EngineError> {
        Ok(self.entry(model)?.task)
    }

    /// A translation model's language pair (ISO 639-1 codes), from its
    /// `source_language` and `target_language` options, which the server
    /// fills from the model folder when it reads the config.
    pub fn language_pair(&self, model: &str) -> Option<(String, String)> {
        let options = &self.entry(model).ok()?.spec.source.options;
        Some((
            options.get("source_language")?.clone(),
            options.get("target_language")?.clone(),
        ))
    }

    /// Every model's status, each adapter (`X:NAME`) right after its model.
    pub fn status(&self) -> Vec<ModelStatus> {
        let mut all = Vec::new();
        for e in self.shared.models.values() {
            let st = self.status_of(e);
            let adapters: Vec<ModelStatus> = e
                .spec
                .source
                .adapters
                .keys()
                .map(|a| Self::adapter_status(&st, a))
                .collect();
            all.push(st);
            all.extend(adapters);
        }
        all
    }

    pub fn model_status(&self, model: &str) -> Result<ModelStatus, EngineError> {
        let (e, adapter) = self.resolve(model)?;
        let st = self.status_of(e);
        Ok(match adapter {
            Some(a) => Self::adapter_status(&st, a),
            None => st,
        })
    }

    fn adapter_status(base: &ModelStatus, adapter: &str) -> ModelStatus {
        ModelStatus {
            name: format!("{}:{adapter}", base.name),
            adapter_of: Some(base.name.clone()),
            ..base.clone()
        }
    }

    fn status_of(&self, e: &Entry) -> ModelStatus {
        let inner = e.inner.lock();
        let now = Instant::now();
        let (memory_bytes, retry_after_s) = match &inner.state {
            State::Ready(l) => (Some(l.memory_bytes), None),
            State::Failed { until, .. } => (
                None,
                Some(until.saturating_duration_since(now).as_secs().max(1)),
            ),
            _ => (None, None),
        };
        let last_used = e.last_used_ms.load(Ordering::Relaxed);
        ModelStatus {
            name: e.spec.name.clone(),
            adapter_of: None,
            task: e.task,
            backend: e.spec.source.backend.clone(),
            policy: e.spec.policy,
            pinned: e.spec.pinned,
            // An evicted model is unloaded, but the reason matters to operators.
            state: match (&inner.state, inner.last_unload) {
                (State::Unloaded, Some("evicted")) => "evicted",
                (s, _) => s.name(),
            },
            load_duration_ms: inner.last_load.map(|d| d.as_millis() as u64),
            memory_bytes,
            loads: inner.loads,
            in_flight: e.in_flight(),
            queue_capacity: e.spec.max_queue,
            keep_alive_s: e.spec.keep_alive.map(|d| d.as_secs()),
            idle_s: (self.now_ms().saturating_sub(last_used)) / 1000,
            last_error: inner.last_error.clone(),
            last_unload: inner.last_unload,
            retry_after_s,
        }
    }

    fn now_ms(&self) -> u64 {
        self.shared.epoch.elapsed().as_millis() as u64
    }

    /// Each text's length in the model's tokens (cut at its longest input),
    /// loading the model if needed; `None` when the model has no tokenizer
    /// the engine can use. For callers that group many texts into requests
    /// by length, as topic analysis does, so each batch pads little.
    pub async fn token_counts(
        &self,
        model: &str,
        texts: Vec<String>,
    ) -> Result<Option<Vec<usize>>, EngineError> {
        let e = self.entry(model)?.clone();
        let Some(counter) = self.ensure_loaded(&e).await?.counter else {
            return Ok(None);
        };
        // Tokenizing thousands of texts takes CPU time: off the async
        // runtime's threads, as `prepare` does.
        let counts = tokio::task::spawn_blocking(move || {
            let max = counter.max_input_tokens();
            texts
                .iter()
                .map(|t| counter.count(t).map(|n| n.min(max)))
                .collect::<Result<Vec<usize>, _>>()
        })
        .await
        .map_err(|_| EngineError::InvalidInput("tokenizer panicked on this input".into()))??;
        Ok(Some(counts))
    }

    /// Runs one request through the cache (when set and on for the model).
    pub async fn infer(&self, model: &str, request: Request) -> Result<Response, EngineError> {
        self.infer_with(model, request, CacheMode::Use)
            .await
            .map(|(r, _)| r)
    }

    /// Runs one request and says whether the cache answered it.
    pub async fn infer_with(
        &self,
        model: &str,
        request: Request,
        mode: CacheMode,
    ) -> Result<(Response, CacheStatus), EngineError> {
        self.infer_many(model, vec![request], mode)
            .await
            .pop()
            .unwrap_or_else(|| {
                Err(EngineError::Panicked {
                    model: model.to_string(),
                })
            })
    }

    /// Runs several requests for one model, each through the cache, and
    /// answers each as [`Registry::infer_with`] would. For the pieces of one
    /// long recording: their cache keys are all computed first, in one
    /// blocking task, so the pieces the cache lacks reach the model's queue
    /// back to back and share a batch under the model's usual batch delay.
    /// (Hashed one request at a time, each piece of audio would reach the
    /// queue milliseconds after the one before, past a 2 ms delay.)
    pub async fn infer_many(
        &self,
        model: &str,
        requests: Vec<Request>,
        mode: CacheMode,
    ) -> Vec<Result<(Response, CacheStatus), EngineError>> {
        let n = requests.len();
        let all_err = |e: EngineError| (0..n).map(|_| Err(e.clone())).collect::<Vec<_>>();
        let (e, adapter) = match self.resolve(model) {
            Ok((e, adapter)) => (e.clone(), adapter.map(str::to_string)),
            Err(err) => return all_err(err),
        };
        // Each request's own checks; a request that fails them is answered
        // with its error and the others still run.
        let checked: Vec<Result<Request, EngineError>> = requests
            .into_iter()
            .map(|mut request| {
                if let (Some(adapter), Request::Generate(g)) = (&adapter, &mut request) {
                    g.params.adapter = Some(adapter.clone());
                }
                if request.task() != e.task {
                    return Err(EngineError::WrongTask {
                        model: model.to_string(),
                        serves: e.task,
                        asked: request.task(),
                    });
                }
                check_shape(&request)?;
                Ok(request)
            })
            .collect();
        let Some(cache) = self.cache().filter(|_| e.spec.cache).cloned() else {
            return futures_util::future::join_all(checked.into_iter().map(|r| {
                let e = &e;
                async move { self.run(e, r?).await.map(|r| (r, CacheStatus::Bypass)) }
            }))
            .await;
        };
        let revision = e
            .revision
            .get_or_init(|| {
                let source = e.spec.source.clone();
                async move {
                    tokio::task::spawn_blocking(move || cache::revision(&source))
                        .await
                        .unwrap_or_default()
                }
            })
            .await
            .clone();
        let keys_of = {
            let name = model.to_string();
            move |checked: Vec<Result<Request, EngineError>>| {
                checked
                    .into_iter()
                    .map(|r| {
                        r.map(|request| (cache::cache_key(&name, &revision, &request), request))
                    })
                    .collect::<Vec<_>>()
            }
        };
        // Hashing hours of audio takes a while: keep it off the runtime.
        let heavy = checked.iter().any(|r| {
            matches!(
                r,
                Ok(Request::Transcribe(_) | Request::Vad(_) | Request::Ocr(_))
            )
        });
        let keyed = if heavy {
            match tokio::task::spawn_blocking(move || keys_of(checked)).await {
                Ok(keyed) => keyed,
                Err(_) => {
                    return all_err(EngineError::Panicked {
                        model: model.to_string(),
                    })
                }
            }
        } else {
            keys_of(checked)
        };
        futures_util::future::join_all(keyed.into_iter().map(|r| {
            let (e, cache) = (&e, &cache);
            async move {
                let (key, request) = r?;
                let Some(key) = key else {
                    cache.note_bypass();
                    return self.run(e, request).await.map(|r| (r, CacheStatus::Bypass));
                };
                // On a hit the request (and a streaming request's token
                // sink) is dropped unused: the caller sees `Hit` and sends
                // the whole text.
                cache
                    .get_or_compute(key, mode, || async move { self.run(e, request).await })
                    .await
            }
        }))
        .await
    }

    /// Whether `infer_with` would consult the cache for this request: lets a
    /// streaming response say `miss` or `bypass` before the result exists.
    pub fn would_cache(&self, model: &str, request: &Request, mode: CacheMode) -> bool {
        self.cache().is_some()
            && mode != CacheMode::Skip
            && self.entry(model).is_ok_and(|e| e.spec.cache)
            && cache::deterministic(request)
    }

    /// Runs one request on the model: admission, load if needed, queueing.
    async fn run(&self, e: &Arc<Entry>, request: Request) -> Result<Response, EngineError> {
        let model = e.spec.name.as_str();
        // Admission first: requests waiting for a load count against the
        // queue too, so a burst during a cold load stays bounded.
        let permit =
            e.admission
                .clone()
                .try_acquire_owned()
                .map_err(|_| EngineError::QueueFull {
                    model: model.to_string(),
                    capacity: e.spec.max_queue,
                })?;
        e.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
        let loaded = self.ensure_loaded(e).await?;
        let (request, tokens, prepared) = prepare(request, loaded.counter.clone()).await?;
        let (reply_tx, reply_rx) = oneshot::channel();
        let now = Instant::now();
        let deadline = now + e.spec.request_timeout;
        let job = Job {
            request,
            prepared,
            tokens,
            enqueued: now,
            deadline,
            reply: reply_tx,
            _permit: permit,
        };
        if loaded.tx.send(job).is_err() {
            // The worker died between our lookup and the send (panic).
            return Err(EngineError::Panicked {
                model: model.to_string(),
            });
        }
        let result = match tokio::time::timeout_at(deadline.into(), reply_rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(EngineError::Panicked {
                model: model.to_string(),
            }),
            Err(_) => Err(EngineError::DeadlineExceeded {
                model: model.to_string(),
                deadline: e.spec.request_timeout,
            }),
        };
        e.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
        result
    }

    /// Loads a model now (admin endpoint); waits for the outcome.
    pub async fn load(&self, model: &str) -> Result<ModelStatus, EngineError> {
        let e = self.entry(model)?.clone();
        e.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
        self.ensure_loaded(&e).await?;
        Ok(self.status_of(&e))
    }

    /// Unloads a model (admin endpoint). Queued requests still complete: the
    /// worker drains its queue before it exits.
    pub fn unload(&self, model: &str) -> Result<ModelStatus, EngineError> {
        let e = self.entry(model)?.clone();
        self.unload_entry(&e, "request");
        Ok(self.status_of(&e))
    }

    fn unload_entry(&self, e: &Entry, why: &'static str) -> bool {
        let mut inner = e.inner.lock();
        if !matches!(inner.state, State::Ready(_) | State::Failed { .. }) {
            return false;
        }
        inner.last_unload = Some(why);
        e.set_state(&mut inner, State::Unloaded);
        drop(inner);
        tracing::info!(model = %e.spec.name, reason = why, "model unloaded");
        metrics::counter!("brisk_model_unloads_total", "model" => e.spec.name.clone(), "reason" => why)
            .increment(1);
        true
    }

    /// Unloads models idle for longer than their keep-alive. Called
    /// periodically by [`Registry::spawn_reaper`]; public for tests.
    pub fn reap_idle(&self) -> Vec<String> {
        let now = self.now_ms();
        let mut reaped = Vec::new();
        for e in self.shared.models.values() {
            let Some(keep) = e.spec.keep_alive else {
                continue;
            };
            if e.spec.pinned || e.in_flight() > 0 {
                continue;
            }
            let idle = now.saturating_sub(e.last_used_ms.load(Ordering::Relaxed));
            let ready = matches!(e.inner.lock().state, State::Ready(_));
            if ready && idle >= keep.as_millis() as u64 && self.unload_entry(e, "idle") {
                reaped.push(e.spec.name.clone());
            }
        }
        reaped
    }

    /// Runs [`Registry::reap_idle`] every `every` until the runtime stops.
    pub fn spawn_reaper(&self, every: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                this.reap_idle();
            }
        });
    }

    /// Unloads every model; queued work drains on the model threads.
    pub fn unload_all(&self) {
        for e in self.shared.models.values() {
            self.unload_entry(e, "shutdown");
        }
    }

    /// Returns the loaded model, starting or joining a load when needed.
    async fn ensure_loaded(&self, e: &Arc<Entry>) -> Result<Loaded, EngineError> {
        let mut rx = e.changed.subscribe();
        loop {
            {
                let mut inner = e.inner.lock();
                match &inner.state {
                    State::Ready(l) => return Ok(l.clone()),
                    State::Loading { .. } => {}
                    State::Failed { reason, until } => {
                        let now = Instant::now();
                        if *until > now {
                            return Err(EngineError::Cooldown {
                                model: e.spec.name.clone(),
                                reason: reason.clone(),
                                retry_after: *until - now,
                            });
                        }
                        self.begin_load(e, &mut inner);
                    }
                    State::Unloaded => self.begin_load(e, &mut inner),
                }
            }
            // The load runs in its own task: dropping this future (client
            // went away) leaves it running for the other waiters.
            if rx.changed().await.is_err() {
                return Err(EngineError::ShuttingDown);
            }
        }
    }

    fn spawn_load(&self, e: Arc<Entry>) {
        let mut inner = e.inner.lock();
        if matches!(inner.state, State::Unloaded | State::Failed { .. }) {
            self.begin_load(&e, &mut inner);
        }
    }

    /// Moves to `Loading` and spawns the load task. Caller holds the lock,
    /// which is what makes the load single-flight.
    fn begin_load(&self, e: &Arc<Entry>, inner: &mut Inner) {
        e.set_state(
            inner,
            State::Loading {
                since: Instant::now(),
            },
        );
        let this = self.clone();
        let e = e.clone();
        tokio::spawn(async move { this.load_task(e).await });
    }

    async fn load_task(&self, e: Arc<Entry>) {
        let name = e.spec.name.clone();
        // Bounded parallel loading: a slot is held for the whole load.
        let Ok(_slot) = self.shared.load_slots.clone().acquire_owned().await else {
            return;
        };
        let queued_for = match e.inner.lock().state {
            State::Loading { since } => since.elapsed(),
            _ => Duration::ZERO,
        };
        self.shared.timeline.record(&name, "load_start");
        let started = Instant::now();
        let outcome = self.load_with_retries(&e).await;
        let took = started.elapsed();
        let mut inner = e.inner.lock();
        inner.settled = true;
        match outcome {
            Ok(loaded) => {
                inner.loads += 1;
                inner.last_load = Some(took);
                inner.last_error = None;
                metrics::histogram!("brisk_model_load_duration_seconds", "model" => name.clone())
                    .record(took.as_secs_f64());
                metrics::gauge!("brisk_model_memory_bytes", "model" => name.clone())
                    .set(loaded.memory_bytes as f64);
                metrics::counter!("brisk_model_loads_total", "model" => name.clone(), "outcome" => "ok")
                    .increment(1);
                tracing::info!(model = %name, load_ms = took.as_millis() as u64,
                    queued_ms = queued_for.as_millis() as u64, memory_bytes = loaded.memory_bytes, "model loaded");
                self.shared.timeline.record(&name, "ready");
                e.set_state(&mut inner, State::Ready(loaded));
            }
            Err(reason) => {
                metrics::counter!("brisk_model_loads_total", "model" => name.clone(), "outcome" => "error")
                    .increment(1);
                tracing::error!(model = %name, %reason, "model failed to load");
                self.shared.timeline.record(&name, "failed");
                inner.last_error = Some(reason.clone());
                let until = Instant::now() + self.shared.settings.failure_cooldown;
                e.set_state(&mut inner, State::Failed { reason, until });
            }
        }
    }

    async fn load_with_retries(&self, e: &Arc<Entry>) -> Result<Loaded, String> {
        let settings = &self.shared.settings;
        let mut attempt = 0;
        loop {
            match self.load_once(e).await {
                Ok(l) => return Ok(l),
                // Not worth retrying: the files will not appear by waiting.
                Err((reason, false)) => return Err(reason),
                Err((reason, true)) if attempt >= settings.load_retries => return Err(reason),
                Err((reason, true)) => {
                    let backoff = settings.retry_backoff * 2u32.saturating_pow(attempt);
                    tracing::warn!(model = %e.spec.name, attempt, %reason,
                        backoff_ms = backoff.as_millis() as u64, "load failed; retrying");
                    tokio::time::sleep(backoff).await;
                    attempt += 1;
                }
            }
        }
    }

    /// One load attempt. Err carries the reason and whether a retry may help.
    async fn load_once(&self, e: &Arc<Entry>) -> Result<Loaded, (String, bool)> {
        let estimate = self
            .shared
            .loader
            .estimate_bytes(&e.spec.source)
            .unwrap_or(0);
        self.make_room(e, estimate).map_err(|r| (r, false))?;
        let loader = self.shared.loader.clone();
        let source = e.spec.source.clone();
        let name = e.spec.name.clone();
        let backend = tokio::task::spawn_blocking(move || loader.load(&name, &source))
            .await
            .map_err(|err| (format!("loader panicked: {err}"), true))?
            .map_err(|err| {
                let retry = !matches!(err, brisk_core::BackendError::NotFound(_));
                (err.to_string(), retry)
            })?;
        let memory_bytes = backend.memory_bytes();
        let counter = backend.token_counter();
        let generation = self.shared.generation.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = std::sync::mpsc::channel();
        let this = self.clone();
        let entry = e.clone();
        let limits = e.spec.batch;
        let budget = e.spec.request_timeout;
        std::thread::Builder::new()
            .name(format!("model-{}", e.spec.name))
            .spawn(move || {
                let exit = worker::run(entry.spec.name.clone(), backend, limits, rx, budget);
                if exit == WorkerExit::Panicked {
                    this.on_worker_panic(&entry, generation);
                }
            })
            .map_err(|err| (format!("cannot spawn model thread: {err}"), true))?;
        Ok(Loaded {
            tx,
            counter,
            memory_bytes,
            generation,
        })
    }

    /// A panicked backend is dropped; the next request loads it afresh.
    fn on_worker_panic(&self, e: &Entry, generation: u64) {
        let mut inner = e.inner.lock();
        if let State::Ready(l) = &inner.state {
            if l.generation == generation {
                inner.last_unload = Some("panic");
                inner.last_error = Some("backend panicked during inference".into());
                e.set_state(&mut inner, State::Unloaded);
            }
        }
    }

    /// Evicts least recently used, unpinned, idle models until `need` more
    /// bytes fit in the budget.
    fn make_room(&self, e: &Entry, need: u64) -> Result<(), String> {
        let Some(budget) = self.shared.settings.memory_budget_bytes else {
            return Ok(());
        };
        let _guard = self.shared.budget.lock();
        if need > budget {
            return Err(format!(
                "model needs ~{need} bytes, budget is {budget} bytes"
            ));
        }
        loop {
            let mut used = 0;
            let mut victims = Vec::new();
            for other in self.shared.models.values() {
                if other.spec.name == e.spec.name {
                    continue;
                }
                let inner = other.inner.lock();
                match &inner.state {
                    State::Ready(l) => {
                        used += l.memory_bytes;
                        if !other.spec.pinned && other.in_flight() == 0 {
                            victims
                                .push((other.last_used_ms.load(Ordering::Relaxed), other.clone()));
                        }
                    }
                    State::Loading { .. } => {
                        used += self
                            .shared
                            .loader
                            .estimate_bytes(&other.spec.source)
                            .unwrap_or(0)
                    }
                    _ => {}
                }
            }
            if used + need <= budget {
                return Ok(());
            }
            victims.sort_by_key(|(used_at, _)| *used_at);
            let Some((_, victim)) = victims.into_iter().next() else {
                return Err(format!(
                    "needs ~{need} bytes, {used} of {budget} bytes in use by models that are pinned or busy"
                ));
            };
            self.unload_entry(&victim, "evicted");
        }
    }
}

/// Checks what needs no model, so a bad request never triggers a load.
fn check_shape(request: &Request) -> Result<(), EngineError> {
    match request {
        Request::Embed { texts, .. } => {
            if texts.is_empty() {
                return Err(EngineError::InvalidInput(
                    "'input' must not be an empty list".into(),
                ));
            }
            if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
                return Err(EngineError::InvalidInput(format!(
                    "input[{i}] is empty; every input must contain text"
                )));
            }
            Ok(())
        }
        Request::Rerank {
            query, documents, ..
        } => {
            if query.trim().is_empty() {
                return Err(EngineError::InvalidInput(
                    "'query' must contain text".into(),
                ));
            }
            if documents.is_empty() {
                return Err(EngineError::InvalidInput(
                    "'documents' must not be an empty list".into(),
                ));
            }
            if let Some(i) = documents.iter().position(|t| t.trim().is_empty()) {
                return Err(EngineError::InvalidInput(format!(
                    "documents[{i}] is empty; every document must contain text"
                )));
            }
            Ok(())
        }
        Request::Transcribe(t) => {
            if t.audio.is_empty() {
                return Err(EngineError::InvalidInput("the audio is empty".into()));
            }
            Ok(())
        }
        Request::Vad(v) => {
            if v.audio.is_empty() {
                return Err(EngineError::InvalidInput("the audio is empty".into()));
            }
            Ok(())
        }
        Request::Speak(s) => {
            if s.text.trim().is_empty() {
                return Err(EngineError::InvalidInput(
                    "'input' must contain text".into(),
                ));
            }
            Ok(())
        }
        Request::Translate { texts } => {
            if texts.is_empty() {
                return Err(EngineError::InvalidInput(
                    "'q' must not be an empty list".into(),
                ));
            }
            if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
                return Err(EngineError::InvalidInput(format!(
                    "q[{i}] is empty; every text must contain something to translate"
                )));
            }
            Ok(())
        }
        Request::Ocr(o) => {
            if o.width == 0 || o.height == 0 {
                return Err(EngineError::InvalidInput("the image is empty".into()));
            }
            Ok(())
        }
        Request::Generate(g) => {
            match &g.prompt {
                brisk_core::Prompt::Chat(m) if m.is_empty() => {
                    return Err(EngineError::InvalidInput(
                        "'messages' must not be empty".into(),
                    ))
                }
                _ => {}
            }
            if g.params.max_tokens == 0 {
                return Err(EngineError::InvalidInput(
                    "'max_tokens' must be at least 1".into(),
                ));
            }
            Ok(())
        }
    }
}

/// Checks a request against the model's limits; returns its token count.
/// Sizes a request for batching and checks its length: tokenized once by
/// the model's counter when it prepares such requests (the result goes on to
/// the backend), else counted. Tokenizing a batch of long texts takes
/// milliseconds of CPU, so it runs on the blocking pool, not on the async
/// runtime's threads.
async fn prepare(
    request: Request,
    counter: Option<Arc<dyn TokenCounter>>,
) -> Result<(Request, usize, Option<Prepared>), EngineError> {
    let tokenized = matches!(request, Request::Embed { .. } | Request::Rerank { .. });
    let Some(counter) = counter.filter(|_| tokenized) else {
        let counter = None::<&dyn TokenCounter>;
        let tokens = count_tokens(&request, counter)?;
        return Ok((request, tokens, None));
    };
    let (request, outcome) = tokio::task::spawn_blocking(move || {
        let outcome = match counter.prepare(&request) {
            Some(r) => r.map(|(n, p)| (n, Some(p))).map_err(EngineError::from),
            None => count_tokens(&request, Some(&*counter)).map(|n| (n, None)),
        };
        (request, outcome)
    })
    .await
    .map_err(|_| EngineError::InvalidInput("tokenizer panicked on this input".into()))?;
    let (tokens, prepared) = outcome.map_err(|e| match e {
        // Same status and message as the engine's own length check.
        EngineError::Backend(brisk_core::BackendError::InvalidInput(m)) => {
            EngineError::InvalidInput(m)
        }
        other => other,
    })?;
    Ok((request, tokens, prepared))
}

fn count_tokens(
    request: &Request,
    counter: Option<&dyn TokenCounter>,
) -> Result<usize, EngineError> {
    match request {
        Request::Embed { texts, truncate } => {
            let Some(counter) = counter else {
                return Ok(texts.iter().map(|t| t.len() / 4 + 1).sum());
            };
            let max = counter.max_input_tokens();
            let mut total = 0;
            for (i, t) in texts.iter().enumerate() {
                let mut n = counter.count(t)?;
                if *truncate {
                    n = n.min(max);
                } else if n > max {
                    return Err(EngineError::InvalidInput(format!(
                        "input[{i}] has {n} tokens; this model accepts at most {max} (set truncate to cut it)"
                    )));
                }
                total += n;
            }
            Ok(total)
        }
        // A cross-encoder's counter prepares (tokenizes) its requests; this
        // estimate serves only a backend without one.
        Request::Rerank {
            query, documents, ..
        } => Ok(documents
            .iter()
            .map(|d| (query.len() + d.len()) / 4 + 1)
            .sum()),
        // Generation runs one request at a time; its length is checked by
        // the backend, which owns the chat template.
        Request::Generate(_) => Ok(1),
        // Batches of audio are bounded by request count; weigh by seconds.
        Request::Transcribe(t) => Ok(t.audio.len() / 16_000 + 1),
        Request::Vad(v) => Ok(v.audio.len() / 16_000 + 1),
        // Speech length grows with the text; a rough token count is enough
        // to keep one batch from holding a whole book.
        Request::Speak(s) => Ok(s.text.len() / 4 + 1),
        // One image at a time weighs about as much as any other.
        Request::Ocr(_) => Ok(1),
        // Sentences batch like embedding inputs; the backend checks each
        // against the model's length (the edge has split long texts).
        Request::Translate { texts } => Ok(texts.iter().map(|t| t.len() / 4 + 1).sum()),
    }
}
