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
//! - `task`: `embeddings` (default) or `generation`; a generating sim echoes
//!   the words of the last message, one word per token, `token_ms` apart,
//!   and stops after them (or at `max_tokens`, or a stop string).
//!   `transcription`: a transcribing sim answers every clip with `text`
//!   (default `simulated speech`) and the clip's duration at 16 kHz.
//!
//! An input text equal to `__panic__` makes inference panic, to exercise the
//! engine's panic recovery.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brisk_core::{
    Backend, BackendError, FinishReason, Generation, ModelSource, Prompt, Request, Response, Task,
    TokenCounter,
};

/// Counts loads per model across the loader's lifetime (for tests).
#[derive(Default)]
pub struct SimLoader {
    attempts: Mutex<HashMap<String, usize>>,
    active: AtomicUsize,
    max_active: AtomicUsize,
    generated: Arc<AtomicUsize>,
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

    /// Tokens generated so far by all generating sims of this loader.
    pub fn tokens_generated(&self) -> usize {
        self.generated.load(Ordering::SeqCst)
    }

    /// The task a sim source serves.
    pub fn task(&self, source: &ModelSource) -> Result<Task, BackendError> {
        match source.options.get("task").map(String::as_str) {
            None | Some("embeddings") => Ok(Task::Embeddings),
            Some("generation") => Ok(Task::Generation),
            Some("transcription") => Ok(Task::Transcription),
            Some(other) => Err(BackendError::InvalidModel(format!(
                "sim task must be embeddings, generation or transcription, got {other}"
            ))),
        }
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
            task: self.task(source)?,
            token: Duration::from_millis(opt(source, "token_ms", 0)?),
            generated: self.generated.clone(),
            memory_bytes: opt(source, "memory_bytes", 1 << 20)?,
            infer: Duration::from_millis(opt(source, "infer_ms", 0)?),
            dim: opt(source, "dim", 8)?,
            text: opt(source, "text", "simulated speech".to_string())?,
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
    task: Task,
    token: Duration,
    generated: Arc<AtomicUsize>,
    memory_bytes: u64,
    infer: Duration,
    dim: usize,
    /// What a transcribing sim hears.
    text: String,
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

impl SimBackend {
    fn generate(&self, mut g: brisk_core::GenerateRequest) -> Generation {
        let source = match &g.prompt {
            Prompt::Chat(m) => m.last().map(|m| m.content.clone()).unwrap_or_default(),
            Prompt::Text(t) => t.clone(),
        };
        let words: Vec<&str> = source.split_whitespace().collect();
        let prompt_tokens = match &g.prompt {
            Prompt::Chat(m) => m
                .iter()
                .map(|m| m.content.split_whitespace().count() + 2)
                .sum(),
            Prompt::Text(t) => t.split_whitespace().count(),
        };
        let started = std::time::Instant::now();
        let mut text = String::new();
        let mut finish_reason = FinishReason::Stop;
        let mut completion_tokens = 0;
        for (i, w) in words.iter().enumerate() {
            if completion_tokens == g.params.max_tokens {
                finish_reason = FinishReason::Length;
                break;
            }
            std::thread::sleep(self.token);
            let piece = if i == 0 {
                w.to_string()
            } else {
                format!(" {w}")
            };
            let candidate = format!("{text}{piece}");
            if let Some(cut) = g
                .params
                .stop
                .iter()
                .filter_map(|s| candidate.find(s.as_str()))
                .min()
            {
                if let (Some(sink), true) = (g.sink.as_mut(), cut > text.len()) {
                    sink(&candidate[text.len()..cut]);
                }
                text = candidate[..cut].to_string();
                break;
            }
            completion_tokens += 1;
            self.generated.fetch_add(1, Ordering::SeqCst);
            if let Some(sink) = g.sink.as_mut() {
                if !sink(&piece) {
                    finish_reason = FinishReason::Cancelled;
                    text = candidate;
                    break;
                }
            }
            text = candidate;
        }
        Generation {
            text,
            prompt_tokens,
            completion_tokens,
            finish_reason,
            prompt_eval_s: 0.0,
            eval_s: started.elapsed().as_secs_f64(),
            cached_tokens: 0,
            logprobs: Vec::new(),
        }
    }
}

impl Backend for SimBackend {
    fn task(&self) -> Task {
        self.task
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
                Request::Generate(g) if self.task == Task::Generation => {
                    Ok(Response::Generate(self.generate(g)))
                }
                Request::Transcribe(t) if self.task == Task::Transcription => {
                    let duration = t.audio.len() as f64 / 16_000.0;
                    // Simulated word times: the words spread evenly over the audio.
                    let words = if t.word_timestamps {
                        let ws: Vec<&str> = self.text.split_whitespace().collect();
                        let step = duration / ws.len().max(1) as f64;
                        ws.iter()
                            .enumerate()
                            .map(|(i, w)| brisk_core::Word {
                                word: format!(" {w}"),
                                start: i as f64 * step,
                                end: (i + 1) as f64 * step,
                                probability: 1.0,
                            })
                            .collect()
                    } else {
                        Vec::new()
                    };
                    Ok(Response::Transcribe(brisk_core::Transcript {
                        text: self.text.clone(),
                        language: Some(t.language.unwrap_or_else(|| "en".into())),
                        duration,
                        segments: vec![brisk_core::Segment {
                            id: 0,
                            start: 0.0,
                            end: duration,
                            text: self.text.clone(),
                        }],
                        words,
                    }))
                }
                other => Err(BackendError::Unsupported(format!("{}", other.task()))),
            })
            .collect()
    }

    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        Some(self.counter.clone())
    }
}
