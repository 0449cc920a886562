//! A simulated backend whose load time, failures, memory and inference time
//! are set by options. It exists for tests and cold-start benchmarks of the
//! registry; it is never picked by model discovery.
//!
//! Options (all optional), given as `[models.NAME.options]` in the config:
//! - `load_ms`: time a load takes (default 0)
//! - `fail_loads`: how many loads fail before one succeeds (default 0)
//! - `memory_bytes`: reported memory (default 1 MiB)
//! - `infer_ms`: time per batch (default 0)
//! - `dim`: embedding size (default 8)
//! - `max_tokens`: longest accepted input, in whitespace tokens (default 512)
//!
//! An input text equal to `__panic__` makes inference panic, to exercise the
//! engine's panic recovery.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brisk_core::{Backend, BackendError, ModelSource, Request, Response, Task, TokenCounter};

/// Counts loads per model across the loader's lifetime (for tests).
#[derive(Default)]
pub struct SimLoader {
    attempts: Mutex<HashMap<String, usize>>,
    active: AtomicUsize,
    max_active: AtomicUsize,
}

fn opt<T: std::str::FromStr>(
    source: &ModelSource,
    key: &str,
    default: T,
) -> Result<T, BackendError> {
    match source.options.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| BackendError::InvalidModel(format!("option {key}={v:?} is not valid"))),
    }
}

impl SimLoader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Load attempts so far for a model (successful or not).
    pub fn attempts(&self, name: &str) -> usize {
        self.attempts
            .lock()
            .map(|m| m.get(name).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// The most loads that ran at the same time.
    pub fn max_concurrent_loads(&self) -> usize {
        self.max_active.load(Ordering::SeqCst)
    }

    pub fn load(&self, name: &str, source: &ModelSource) -> Result<Box<dyn Backend>, BackendError> {
        let load_ms: u64 = opt(source, "load_ms", 0)?;
        let fail_loads: usize = opt(source, "fail_loads", 0)?;
        let attempt = {
            let mut m = self
                .attempts
                .lock()
                .map_err(|_| BackendError::Inference("poisoned".into()))?;
            let n = m.entry(name.to_string()).or_default();
            *n += 1;
            *n
        };
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_active.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(load_ms));
        self.active.fetch_sub(1, Ordering::SeqCst);
        if attempt <= fail_loads {
            return Err(BackendError::InvalidModel(format!(
                "simulated load failure {attempt} of {fail_loads}"
            )));
        }
        Ok(Box::new(SimBackend {
            memory_bytes: opt(source, "memory_bytes", 1 << 20)?,
            infer: Duration::from_millis(opt(source, "infer_ms", 0)?),
            dim: opt(source, "dim", 8)?,
            counter: Arc::new(WordCounter {
                max: opt(source, "max_tokens", 512)?,
            }),
        }))
    }

    pub fn estimate_bytes(&self, source: &ModelSource) -> Option<u64> {
        opt(source, "memory_bytes", 1 << 20).ok()
    }
}

struct WordCounter {
    max: usize,
}

impl TokenCounter for WordCounter {
    fn count(&self, text: &str) -> Result<usize, BackendError> {
        Ok(text.split_whitespace().count().max(1))
    }
    fn max_input_tokens(&self) -> usize {
        self.max
    }
}

struct SimBackend {
    memory_bytes: u64,
    infer: Duration,
    dim: usize,
    counter: Arc<WordCounter>,
}

impl SimBackend {
    /// A deterministic unit vector derived from the text's hash.
    fn vector(&self, text: &str) -> Vec<f32> {
        let mut v: Vec<f32> = (0..self.dim)
            .map(|i| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (text, i).hash(&mut h);
                (h.finish() % 2000) as f32 / 1000.0 - 1.0
            })
            .collect();
        brisk_core::l2_normalize(&mut v);
        v
    }
}

impl Backend for SimBackend {
    fn task(&self) -> Task {
        Task::Embeddings
    }

    fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }

    fn infer(&mut self, batch: Vec<Request>) -> Vec<Result<Response, BackendError>> {
        std::thread::sleep(self.infer);
        batch
            .into_iter()
            .map(|r| match r {
                Request::Embed { texts, .. } => {
                    if texts.iter().any(|t| t == "__panic__") {
                        panic!("simulated backend panic");
                    }
                    let prompt_tokens = texts
                        .iter()
                        .map(|t| self.counter.count(t).unwrap_or(1))
                        .sum();
                    Ok(Response::Embed {
                        vectors: texts.iter().map(|t| self.vector(t)).collect(),
                        prompt_tokens,
                    })
                }
                other => Err(BackendError::Unsupported(format!("{}", other.task()))),
            })
            .collect()
    }

    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        Some(self.counter.clone())
    }
}
