//! Text generation from GGUF files on llama.cpp (through `llama-cpp-2`),
//! backend name `llama-cpp`.
//!
//! One model = one llama.cpp context with `parallel` sequences (slots).
//! Requests join and leave between steps; each step is a single
//! `llama_decode` over every running sequence (continuous batching, see
//! [`scheduler`]). The model thread drives it through
//! [`brisk_core::Stepper`].
//!
//! What comes from the GGUF file: the weights, the tokenizer (llama.cpp's
//! own) and the Jinja chat template, which is rendered with minijinja (see
//! [`template`]); llama.cpp's built-in template matcher is not Jinja.
//!
//! LoRA adapters (GGUF, as llama.cpp's `convert_lora_to_gguf.py` writes
//! them) load with the base weights and are picked per request; llama.cpp
//! applies adapters per context, so each step decodes the sequences of one
//! adapter at a time with that adapter set (see [`scheduler`]'s groups).
//!
//! This crate is separate from brisk-backends because it compiles
//! llama.cpp (C++, several minutes): nothing else depends on it, so a change
//! elsewhere never rebuilds it.

pub mod grammar;
pub mod lora_file;
pub mod scheduler;
pub mod stop;
pub mod template;
mod weights;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use brisk_core::tools::CALL_OPEN;
use brisk_core::{
    Backend, BackendError, FinishReason, GenerateParams, GenerateRequest, Generation, Prompt,
    Reply, Request, Response, Stepper, Task, TokenCounter, TokenLogprob, TokenSink, Tool,
    ToolChoice,
};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaLoraAdapter, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use llama_cpp_2::token::LlamaToken;

pub use scheduler::Scheduler;
pub use stop::{Scan, StopScanner};
pub use template::ChatTemplate;
pub use weights::Weights;

/// The backend name in configuration.
pub const BACKEND: &str = "llama-cpp";

/// Default number of slots (sequences decoded together).
pub const DEFAULT_PARALLEL: usize = 4;
/// Default context per slot, in tokens (capped at the trained context).
pub const DEFAULT_CONTEXT: usize = 4096;
/// Tokens per `llama_decode` (prompt chunks of all slots together).
pub const DEFAULT_BATCH: usize = 512;

fn is_gguf(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// The `.gguf` file in `dir` (the first by name if there are several).
pub fn find_gguf(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && is_gguf(p))
        .collect();
    found.sort();
    found.into_iter().next()
}

/// True for a `.gguf` file, or a directory holding one.
pub fn looks_like_gguf(path: &Path) -> bool {
    if path.is_dir() {
        find_gguf(path).is_some()
    } else {
        path.is_file() && is_gguf(path)
    }
}

/// The GGUF file `path` stands for: the file itself, or the one in the folder.
pub fn resolve_gguf(path: &Path) -> Result<PathBuf, BackendError> {
    if path.is_dir() {
        find_gguf(path)
            .ok_or_else(|| BackendError::NotFound(format!("no .gguf file in {}", path.display())))
    } else if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(BackendError::NotFound(format!(
            "{} does not exist",
            path.display()
        )))
    }
}

/// Backend options (`[models.X.options]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Slots: requests decoded together (`parallel`).
    pub parallel: usize,
    /// Context per slot in tokens (`context`), at most the trained one.
    pub context: usize,
    /// Tokens per decode step (`batch`).
    pub batch: usize,
    /// CPU threads (`threads`); default: all the process may use.
    pub threads: usize,
    /// How the weights are held (`weights`).
    pub weights: Weights,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            parallel: DEFAULT_PARALLEL,
            context: DEFAULT_CONTEXT,
            batch: DEFAULT_BATCH,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            weights: Weights::Auto,
        }
    }
}

impl Options {
    pub fn parse(options: &BTreeMap<String, String>) -> Result<Self, BackendError> {
        let mut o = Self::default();
        let number = |key: &str, v: &str| -> Result<usize, BackendError> {
            v.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| {
                BackendError::InvalidModel(format!(
                    "option {key} must be a positive integer, got '{v}'"
                ))
            })
        };
        for (key, v) in options {
            match key.as_str() {
                "parallel" => o.parallel = number(key, v)?.min(256),
                "context" => o.context = number(key, v)?,
                "batch" => o.batch = number(key, v)?,
                "threads" => o.threads = number(key, v)?,
                "weights" => o.weights = v.parse()?,
                other => {
                    return Err(BackendError::InvalidModel(format!(
                        "unknown option '{other}' for {BACKEND} \
                         (parallel, context, batch, threads, weights)"
                    )))
                }
            }
        }
        Ok(o)
    }
}

/// Resident size estimate before loading: the weights as they will be held
/// (see [`Weights`]); the KV cache comes on top and is small for the
/// models this targets.
pub fn estimate_bytes(path: &Path, options: &BTreeMap<String, String>) -> Option<u64> {
    let file = resolve_gguf(path).ok()?;
    let options = Options::parse(options).ok()?;
    weights::estimate(&file, options.weights)
}

/// llama.cpp's process-wide initialisation, done once.
fn backend() -> Result<&'static LlamaBackend, BackendError> {
    static BACKEND_INIT: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND_INIT
        .get_or_init(|| {
            // llama.cpp logs every tensor at load: keep that in tracing's
            // debug level instead of stderr.
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| BackendError::Inference(format!("llama.cpp did not start: {e}")))
}

self_cell::self_cell!(
    /// The model and the one context that borrows it.
    struct Engine {
        owner: Arc<LlamaModel>,
        #[covariant]
        dependent: LlamaContext,
    }
);

/// Counts prompt tokens from other threads (the model is `Sync`).
struct Counter {
    model: Arc<LlamaModel>,
    context: usize,
}

impl TokenCounter for Counter {
    fn count(&self, text: &str) -> Result<usize, BackendError> {
        Ok(self
            .model
            .vocab()
            .tokenize(text.as_bytes(), false, true)
            .len())
    }

    fn max_input_tokens(&self) -> usize {
        self.context
    }
}

/// One running request.
struct Running {
    reply: Box<dyn Reply>,
    sink: Option<TokenSink>,
    sampler: LlamaSampler,
    /// Temperature 0 with nothing else in the chain (no penalties, bias or
    /// grammar): the token is the argmax of the logits, taken directly.
    /// llama.cpp's sampler would first copy the whole vocabulary into a
    /// candidate array (151k entries for Qwen) for every token.
    greedy: bool,
    max_tokens: usize,
    utf8: Vec<u8>,
    scanner: StopScanner,
    /// A stop string ended the text: nothing after it is shown.
    stopped: bool,
    prompt_tokens: usize,
    cached_tokens: usize,
    completion_tokens: usize,
    started: Instant,
    first_token: Option<Instant>,
    /// Alternatives per token when log probabilities are asked for.
    top_logprobs: Option<usize>,
    logprobs: Vec<TokenLogprob>,
}

/// A GGUF model generating text on llama.cpp (backend `llama-cpp`).
pub struct LlamaCppGenerator {
    engine: Engine,
    scheduler: Scheduler<Running>,
    batch: LlamaBatch<'static>,
    template: ChatTemplate,
    counter: Arc<Counter>,
    /// Tokens per slot (prompt + completion).
    context: usize,
    memory_bytes: u64,
    file: PathBuf,
    add_bos: bool,
    bos: LlamaToken,
    /// LoRA adapters by name; request group i + 1 runs with `adapters[i]`.
    adapters: Vec<(String, LlamaLoraAdapter)>,
    /// The group whose adapter the context has set now.
    active_group: usize,
}

impl std::fmt::Debug for LlamaCppGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaCppGenerator")
            .field("file", &self.file)
            .field("context", &self.context)
            .field("parallel", &self.scheduler.parallel())
            .finish_non_exhaustive()
    }
}

fn invalid_model(file: &Path, e: impl std::fmt::Display) -> BackendError {
    BackendError::InvalidModel(format!("{}: {e}", file.display()))
}

impl LlamaCppGenerator {
    /// Loads the model with its LoRA adapters (name → GGUF adapter file).
    pub fn load(
        path: &Path,
        options: &BTreeMap<String, String>,
        adapters: &BTreeMap<String, PathBuf>,
    ) -> Result<Self, BackendError> {
        Self::load_with_adapters(path, Options::parse(options)?, adapters)
    }

    pub fn load_with(path: &Path, options: Options) -> Result<Self, BackendError> {
        Self::load_with_adapters(path, options, &BTreeMap::new())
    }

    pub fn load_with_adapters(
        path: &Path,
        options: Options,
        adapter_files: &BTreeMap<String, PathBuf>,
    ) -> Result<Self, BackendError> {
        let start = Instant::now();
        let backend = backend()?;
        let original = resolve_gguf(path)?;
        let file = weights::prepare(&original, options.weights, options.threads)?;
        let mut model = LlamaModel::load_from_file(backend, &file, &LlamaModelParams::default())
            .map_err(|e| invalid_model(&file, e))?;
        // Adapters belong to the model (llama.cpp frees them with it), so
        // they are read before the model is shared.
        let mut adapters = Vec::with_capacity(adapter_files.len());
        for (name, adapter_file) in adapter_files {
            let adapter = model.lora_adapter_init(adapter_file).map_err(|e| {
                invalid_model(
                    adapter_file,
                    format!(
                        "adapter {name}: llama.cpp cannot load it as a LoRA adapter                          of this model ({e}; the log says why)"
                    ),
                )
            })?;
            adapters.push((name.clone(), adapter));
        }
        let adapter_bytes: u64 = adapter_files
            .values()
            .filter_map(|p| p.metadata().ok())
            .map(|m| m.len())
            .sum();
        let trained = model.n_ctx_train() as usize;
        let context = options.context.min(trained.max(1));
        let parallel = options.parallel;
        let vocab = model.vocab();
        let text_of = |t: LlamaToken| {
            String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned()
        };
        let bos = vocab.bos();
        let add_bos = vocab.should_add_bos();
        let template = ChatTemplate::new(
            model
                .meta_val_str("tokenizer.chat_template")
                .ok()
                .as_deref(),
            &text_of(bos),
            &text_of(vocab.eos()),
        );
        let model = Arc::new(model);
        let threads = i32::try_from(options.threads).unwrap_or(1);
        let n_ctx = u32::try_from(context * parallel).unwrap_or(u32::MAX);
        let batch_tokens = options.batch.max(parallel);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(batch_tokens as u32)
            .with_n_ubatch(batch_tokens as u32)
            .with_n_seq_max(parallel as u32)
            // One KV stream per slot: a sequence attends to its own cells
            // only, which keeps the attention cost per token independent of
            // what the other slots hold.
            .with_kv_unified(false)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let engine = Engine::try_new(model.clone(), |m| m.new_context(backend, params))
            .map_err(|e| invalid_model(&file, format!("cannot create a context: {e}")))?;
        let kv_bytes = kv_bytes(&model, context * parallel);
        let memory_bytes = model.size() + kv_bytes + adapter_bytes;
        tracing::info!(
            file = %file.display(),
            context,
            parallel,
            threads,
            chat_template = template.has_template(),
            memory_bytes,
            load_s = start.elapsed().as_secs_f64(),
            "loaded GGUF model on llama.cpp"
        );
        Ok(Self {
            engine,
            scheduler: Scheduler::new(parallel, batch_tokens),
            batch: LlamaBatch::new(batch_tokens, parallel as i32),
            template,
            counter: Arc::new(Counter { model, context }),
            context,
            memory_bytes,
            file,
            add_bos,
            bos,
            adapters,
            active_group: 0,
        })
    }

    /// Empties the prefix cache of every idle slot (benchmarks measure
    /// full prompt processing with it).
    pub fn forget_cache(&mut self) {
        for slot in 0..self.scheduler.parallel() {
            if self.scheduler.job_mut(slot).is_none() {
                self.scheduler.release(slot, false);
                self.engine.with_dependent_mut(|_, ctx| {
                    let _ = ctx.clear_kv_cache_seq(Some(slot as u32), None, None);
                });
            }
        }
    }

    /// Context per slot (prompt + completion), in tokens.
    pub fn context_length(&self) -> usize {
        self.context
    }

    pub fn parallel(&self) -> usize {
        self.scheduler.parallel()
    }

    /// The GGUF file the weights come from (the F16 copy when converted).
    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// The text the model continues, with `tools` offered (chats only).
    pub fn render_prompt(&self, prompt: &Prompt, tools: &[Tool]) -> String {
        match prompt {
            Prompt::Chat(messages) => self.template.render(messages, tools),
            Prompt::Text(text) => text.clone(),
        }
    }

    /// Prompt token ids: special tokens in the rendered text are parsed as
    /// such, and BOS is put first when the model wants it and the template
    /// did not write it.
    pub fn prompt_ids(&self, prompt: &Prompt, tools: &[Tool]) -> Vec<LlamaToken> {
        let text = self.render_prompt(prompt, tools);
        let model = self.engine.borrow_owner();
        let mut ids = model.vocab().tokenize(text.as_bytes(), false, true);
        if self.add_bos && ids.first() != Some(&self.bos) {
            ids.insert(0, self.bos);
        }
        ids
    }

    /// Checks and tokenizes a request and puts it in a free slot. Errors
    /// are the caller's to answer.
    fn admit(&mut self, request: GenerateRequest, reply: Box<dyn Reply>) {
        let GenerateRequest {
            prompt,
            params,
            sink,
        } = request;
        let fail = |reply: Box<dyn Reply>, e: BackendError| reply.send(Err(e));
        let group = match &params.adapter {
            None => 0,
            Some(name) => match self.adapters.iter().position(|(n, _)| n == name) {
                Some(i) => i + 1,
                None => {
                    let known: Vec<&str> = self.adapters.iter().map(|(n, _)| n.as_str()).collect();
                    return fail(
                        reply,
                        BackendError::InvalidInput(format!(
                            "the model has no adapter '{name}' (it has: {})",
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        )),
                    );
                }
            },
        };
        let (sampler, greedy) = match self.sampler(&params) {
            Ok(s) => s,
            Err(e) => return fail(reply, e),
        };
        // `tool_choice: none` hides the tools from the model.
        let tools: &[Tool] = if params.tool_choice == ToolChoice::None {
            &[]
        } else {
            &params.tools
        };
        let ids = self.prompt_ids(&prompt, tools);
        if ids.is_empty() {
            return fail(
                reply,
                BackendError::InvalidInput("the prompt is empty".into()),
            );
        }
        let prompt_tokens = ids.len();
        if prompt_tokens >= self.context {
            return fail(
                reply,
                BackendError::InvalidInput(format!(
                    "the prompt has {prompt_tokens} tokens; the model's context is {} tokens",
                    self.context
                )),
            );
        }
        if prompt_tokens.saturating_add(params.max_tokens) > self.context {
            return fail(
                reply,
                BackendError::InvalidInput(format!(
                    "the prompt has {prompt_tokens} tokens and max_tokens is {}; \
                     the model's context is {} tokens",
                    params.max_tokens, self.context
                )),
            );
        }
        if params.max_tokens == 0 {
            return reply.send(Ok(Response::Generate(Generation {
                text: String::new(),
                prompt_tokens,
                completion_tokens: 0,
                finish_reason: FinishReason::Length,
                prompt_eval_s: 0.0,
                eval_s: 0.0,
                cached_tokens: 0,
                logprobs: Vec::new(),
            })));
        }
        let running = Running {
            reply,
            sink,
            sampler,
            greedy,
            max_tokens: params.max_tokens,
            utf8: Vec::new(),
            scanner: StopScanner::new(&params.stop),
            stopped: false,
            prompt_tokens,
            cached_tokens: 0,
            completion_tokens: 0,
            started: Instant::now(),
            first_token: None,
            top_logprobs: params.logprobs,
            logprobs: Vec::new(),
        };
        let tokens = ids.iter().map(|t| t.0).collect();
        match self.scheduler.admit_in(group, tokens, running) {
            Ok(admitted) => {
                // Drop whatever the slot holds past the shared prefix.
                let slot = admitted.slot as u32;
                let kept = admitted.cached as u32;
                self.engine.with_dependent_mut(|_, ctx| {
                    let _ = ctx.clear_kv_cache_seq(Some(slot), Some(kept), None);
                });
                if let Some(job) = self.scheduler.job_mut(admitted.slot) {
                    job.cached_tokens = admitted.cached;
                }
            }
            Err(running) => running.reply.send(Err(BackendError::Inference(
                "no free slot (the model thread started too many requests)".into(),
            ))),
        }
    }

    /// The sampler chain for `params`, and whether it is plain greedy
    /// (see [`Running::greedy`]).
    fn sampler(&self, params: &GenerateParams) -> Result<(LlamaSampler, bool), BackendError> {
        let bad = |msg: String| Err(BackendError::InvalidInput(msg));
        let temperature = params.temperature;
        if !temperature.is_finite() || temperature < 0.0 {
            return bad(format!(
                "temperature must be a number >= 0, got {temperature}"
            ));
        }
        if let Some(p) = params.top_p {
            if !p.is_finite() || !(0.0..=1.0).contains(&p) {
                return bad(format!("top_p must be between 0 and 1, got {p}"));
            }
        }
        for (name, v) in [
            ("presence_penalty", params.presence_penalty),
            ("frequency_penalty", params.frequency_penalty),
        ] {
            if !v.is_finite() || !(-2.0..=2.0).contains(&v) {
                return bad(format!("{name} must be between -2 and 2, got {v}"));
            }
        }
        let model = self.engine.borrow_owner();
        let mut chain = Vec::new();
        if params.presence_penalty != 0.0 || params.frequency_penalty != 0.0 {
            // Over every generated token (the window is the whole slot).
            chain.push(LlamaSampler::penalties(
                model.n_vocab(),
                i32::try_from(self.context).unwrap_or(i32::MAX),
                1.0,
                params.frequency_penalty,
                params.presence_penalty,
            ));
        }
        if !params.logit_bias.is_empty() {
            let n_vocab = model.n_vocab();
            let mut biases = Vec::with_capacity(params.logit_bias.len());
            for &(token, bias) in &params.logit_bias {
                if token < 0 || token >= n_vocab {
                    return bad(format!(
                        "logit_bias: token {token} is not in the model's vocabulary of {n_vocab}"
                    ));
                }
                if !bias.is_finite() || !(-100.0..=100.0).contains(&bias) {
                    return bad(format!("logit_bias: {bias} is not between -100 and 100"));
                }
                biases.push(LlamaLogitBias::new(LlamaToken(token), bias));
            }
            chain.push(LlamaSampler::logit_bias(n_vocab, &biases));
        }
        let calls_tools = !params.tools.is_empty() && params.tool_choice != ToolChoice::None;
        if calls_tools {
            if params.response_format.is_some() {
                return bad("response_format cannot be combined with tools".into());
            }
            let gbnf = grammar::tool_gbnf(
                &params.tools,
                &params.tool_choice,
                params.parallel_tool_calls,
            )?;
            let loaded = if params.tool_choice == ToolChoice::Auto {
                // Prose until the model opens a call; from there on the
                // grammar holds. The opening tag is one token in the
                // vocabularies trained on it (Qwen's), text elsewhere.
                let open = model.vocab().tokenize(CALL_OPEN.as_bytes(), false, true);
                let trigger_tokens: &[LlamaToken] = if open.len() == 1 { &open } else { &[] };
                let patterns: Vec<String> = grammar::AUTO_TRIGGERS
                    .iter()
                    .map(|p| p.to_string())
                    .collect();
                LlamaSampler::grammar_lazy_patterns(model, &gbnf, "root", &patterns, trigger_tokens)
            } else {
                LlamaSampler::grammar(model, &gbnf, "root")
            };
            chain.push(loaded.map_err(|e| {
                BackendError::InvalidInput(format!("tools: the grammar does not load: {e}"))
            })?);
        }
        if let Some(format) = params.response_format.as_ref().filter(|_| !calls_tools) {
            let gbnf = grammar::gbnf(format)?;
            let sampler = LlamaSampler::grammar(model, &gbnf, "root").map_err(|e| {
                BackendError::InvalidInput(format!(
                    "response_format: the grammar does not load: {e}"
                ))
            })?;
            chain.push(sampler);
        }
        let greedy = temperature == 0.0 && chain.is_empty();
        if temperature == 0.0 {
            chain.push(LlamaSampler::greedy());
        } else {
            if let Some(k) = params.top_k.filter(|&k| k > 0) {
                chain.push(LlamaSampler::top_k(i32::try_from(k).unwrap_or(i32::MAX)));
            }
            if let Some(p) = params.top_p.filter(|&p| p < 1.0) {
                // top_p 0 keeps only the most likely token.
                chain.push(LlamaSampler::top_p(p.max(f64::MIN_POSITIVE) as f32, 1));
            }
            chain.push(LlamaSampler::temp(temperature as f32));
            let seed = params.seed.unwrap_or_else(stop::random_seed);
            // llama.cpp seeds with 32 bits; fold the upper half in.
            chain.push(LlamaSampler::dist((seed ^ (seed >> 32)) as u32));
        }
        Ok((LlamaSampler::chain_simple(chain), greedy))
    }

    /// Ends `slot`'s request with `finish`, flushing held-back text.
    fn finish(&mut self, slot: usize, mut finish: FinishReason, keep_cache: bool) {
        let Some(mut r) = self.scheduler.release(slot, keep_cache) else {
            return;
        };
        if !keep_cache {
            self.engine.with_dependent_mut(|_, ctx| {
                let _ = ctx.clear_kv_cache_seq(Some(slot as u32), None, None);
            });
        }
        if finish != FinishReason::Cancelled && !r.stopped {
            // A character cut by the last token, then whatever was held back.
            let rest = String::from_utf8_lossy(&std::mem::take(&mut r.utf8)).into_owned();
            match r.scanner.push(&rest) {
                Scan::Stop(last) => {
                    send(&mut r.sink, &last);
                    finish = FinishReason::Stop;
                }
                Scan::Continue(ready) => {
                    send(&mut r.sink, &ready);
                    let tail = r.scanner.finish();
                    send(&mut r.sink, &tail);
                }
            }
        }
        let now = Instant::now();
        let first = r.first_token.unwrap_or(now);
        let generation = Generation {
            text: r.scanner.into_text(),
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            finish_reason: finish,
            prompt_eval_s: first.duration_since(r.started).as_secs_f64(),
            eval_s: now.duration_since(first).as_secs_f64(),
            cached_tokens: r.cached_tokens,
            logprobs: r.logprobs,
        };
        r.reply.send(Ok(Response::Generate(generation)));
    }

    /// Handles the token sampled for `slot`: emits its text, and either
    /// schedules it for the next step or ends the request.
    fn on_token(&mut self, slot: usize, token: LlamaToken) {
        let model = self.engine.borrow_owner().clone();
        let vocab = model.vocab();
        let Some(r) = self.scheduler.job_mut(slot) else {
            return;
        };
        r.completion_tokens += 1;
        if r.first_token.is_none() {
            r.first_token = Some(Instant::now());
        }
        if vocab.is_eog(token) {
            return self.finish(slot, FinishReason::Stop, true);
        }
        vocab.token_to_piece_into(token, &mut r.utf8, false, None);
        let text = take_utf8(&mut r.utf8);
        if !text.is_empty() {
            match r.scanner.push(&text) {
                Scan::Stop(last) => {
                    send(&mut r.sink, &last);
                    r.stopped = true;
                    return self.finish(slot, FinishReason::Stop, true);
                }
                Scan::Continue(ready) => {
                    if !send(&mut r.sink, &ready) {
                        return self.finish(slot, FinishReason::Cancelled, true);
                    }
                }
            }
        }
        if r.completion_tokens >= r.max_tokens {
            return self.finish(slot, FinishReason::Length, true);
        }
        self.scheduler.sampled(slot, token.0);
    }
}

/// Sends `text` to a streaming request's sink; false when nobody listens.
fn send(sink: &mut Option<TokenSink>, text: &str) -> bool {
    match sink.as_mut() {
        Some(f) if !text.is_empty() => f(text),
        _ => true,
    }
}

/// Takes the complete UTF-8 text at the front of `buf`, leaving a
/// character cut at the end for the next token. Bytes that can never be
/// valid come out as U+FFFD.
fn take_utf8(buf: &mut Vec<u8>) -> String {
    let mut out = String::new();
    let mut start = 0;
    loop {
        match std::str::from_utf8(&buf[start..]) {
            Ok(s) => {
                out.push_str(s);
                start = buf.len();
                break;
            }
            Err(e) => {
                let valid = start + e.valid_up_to();
                out.push_str(&String::from_utf8_lossy(&buf[start..valid]));
                match e.error_len() {
                    Some(n) => {
                        out.push('\u{FFFD}');
                        start = valid + n;
                    }
                    None => {
                        start = valid;
                        break;
                    }
                }
            }
        }
    }
    buf.drain(..start);
    out
}

/// The log probability of `token` and of the `top` most likely tokens
/// under `logits` (log-softmax).
fn token_logprob(
    model: &LlamaModel,
    logits: &[f32],
    token: LlamaToken,
    top: usize,
) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let lse = max + sum.ln() as f32;
    let vocab = model.vocab();
    let piece = |t: LlamaToken| vocab.token_to_piece(t, false, None);
    let logprob = |t: LlamaToken| {
        usize::try_from(t.0)
            .ok()
            .and_then(|i| logits.get(i))
            .map_or(f32::NEG_INFINITY, |&l| l - lse)
    };
    let mut best: Vec<usize> = Vec::new();
    if top > 0 {
        let mut order: Vec<usize> = (0..logits.len()).collect();
        let k = top.min(order.len());
        order.select_nth_unstable_by(k - 1, |&a, &b| logits[b].total_cmp(&logits[a]));
        order.truncate(k);
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        best = order;
    }
    let bytes = piece(token);
    TokenLogprob {
        token: String::from_utf8_lossy(&bytes).into_owned(),
        logprob: logprob(token),
        bytes,
        top: best
            .into_iter()
            .map(|i| {
                let t = LlamaToken(i as i32);
                (String::from_utf8_lossy(&piece(t)).into_owned(), logprob(t))
            })
            .collect(),
    }
}

/// KV cache bytes for `tokens` positions at f16 keys and values.
fn kv_bytes(model: &LlamaModel, tokens: usize) -> u64 {
    let head_dim = (model.n_embd() as u64) / u64::from(model.n_head().max(1));
    let per_token = 2 * 2 * u64::from(model.n_layer()) * u64::from(model.n_head_kv()) * head_dim;
    per_token * tokens as u64
}

impl Stepper for LlamaCppGenerator {
    fn free_slots(&self) -> usize {
        self.scheduler.free_slots()
    }

    fn start(&mut self, request: Request, reply: Box<dyn Reply>) {
        match request {
            Request::Generate(g) => self.admit(g, reply),
            other => reply.send(Err(BackendError::Unsupported(other.task().to_string()))),
        }
    }

    fn step(&mut self) -> bool {
        // Requests whose client went away leave before the decode.
        for slot in self.scheduler.busy() {
            if self
                .scheduler
                .job_mut(slot)
                .is_some_and(|r| r.reply.is_closed())
            {
                self.finish(slot, FinishReason::Cancelled, true);
            }
        }
        // Waiting requests whose shared prefix another slot now holds: copy
        // it into their sequence (llama.cpp performs the copy at the start
        // of the next decode, before that decode writes anything).
        for c in self.scheduler.take_copies() {
            let (src, dst) = (c.src as i32, c.dst as u32);
            self.engine.with_dependent_mut(|_, ctx| {
                // One KV stream per slot: seq_cp across streams copies the
                // whole sequence, so drop what lies past the shared part.
                let _ = ctx.clear_kv_cache_seq(Some(dst), None, None);
                if let Err(e) = ctx.copy_kv_cache_seq(src, dst as i32, None, None) {
                    tracing::error!(error = %e, "copying a shared prompt prefix");
                }
                let _ = ctx.clear_kv_cache_seq(Some(dst), Some(c.len as u32), None);
            });
            if let Some(job) = self.scheduler.job_mut(c.dst) {
                job.cached_tokens = c.len;
            }
        }
        let plan = self.scheduler.plan();
        if plan.is_empty() {
            return false;
        }
        // One decode per adapter group present, the active one first so a
        // step without adapters never switches (switching makes llama.cpp
        // re-plan its compute graph).
        let mut groups: Vec<usize> = plan.iter().map(|e| e.group).collect();
        groups.sort_unstable_by_key(|&g| (g != self.active_group, g));
        groups.dedup();
        for group in groups {
            let part: Vec<scheduler::Entry> =
                plan.iter().filter(|e| e.group == group).cloned().collect();
            self.use_group(group);
            self.decode_part(&part);
        }
        true
    }
}

impl LlamaCppGenerator {
    /// Sets the context's adapters for `group` (none for 0).
    fn use_group(&mut self, group: usize) {
        if group == self.active_group {
            return;
        }
        let adapters = &mut self.adapters;
        self.engine.with_dependent_mut(|_, ctx| {
            let result = match group {
                0 => match adapters.first_mut() {
                    // Removes every adapter, whichever is passed.
                    Some((_, a)) => ctx.lora_adapter_remove(a).map_err(|e| e.to_string()),
                    None => Ok(()),
                },
                g => ctx
                    .lora_adapter_set(&mut adapters[g - 1].1, 1.0)
                    .map_err(|e| e.to_string()),
            };
            if let Err(e) = result {
                tracing::error!(group, error = %e, "cannot set the LoRA adapter");
            }
        });
        self.active_group = group;
    }

    /// Decodes the entries of one group; on failure finds and fails the
    /// sequence(s) at fault.
    fn decode_part(&mut self, plan: &[scheduler::Entry]) {
        if let Err(err) = self.run(plan) {
            // The decode failed as a whole (it changed nothing). Find the
            // sequence(s) at fault by decoding each alone, so one bad
            // request fails and the others keep streaming.
            tracing::warn!(%err, sequences = plan.len(), "llama_decode failed");
            if plan.len() == 1 {
                self.fail(plan[0].slot, &err);
            } else {
                for e in plan {
                    if let Err(err) = self.run(std::slice::from_ref(e)) {
                        self.fail(e.slot, &err);
                    }
                }
            }
        }
    }

    /// One `llama_decode` over `plan`, then a token sampled for every
    /// sequence that needs one.
    fn run(&mut self, plan: &[scheduler::Entry]) -> Result<(), llama_cpp_2::DecodeError> {
        self.batch.clear();
        let mut rows = Vec::new();
        for e in plan {
            for (i, &t) in e.tokens.iter().enumerate() {
                let logits = e.logits && i + 1 == e.tokens.len();
                // The batch holds `budget` tokens and a plan never more.
                if let Err(err) =
                    self.batch
                        .add(LlamaToken(t), (e.pos + i) as i32, &[e.slot as i32], logits)
                {
                    tracing::error!(%err, "batch overflow");
                }
                if logits {
                    rows.push((e.slot, self.batch.n_tokens() - 1));
                }
            }
        }
        let batch = &mut self.batch;
        self.engine.with_dependent_mut(|_, ctx| ctx.decode(batch))?;
        for e in plan {
            self.scheduler.decoded(e);
        }
        for (slot, row) in rows {
            let Some(r) = self.scheduler.job_mut(slot) else {
                continue;
            };
            let sampler = &mut r.sampler;
            let (greedy, top) = (r.greedy, r.top_logprobs);
            let (token, logprob) = self.engine.with_dependent(|model, ctx| {
                let token = if greedy {
                    argmax(ctx.get_logits_ith(row))
                } else {
                    sampler.sample(ctx, row)
                };
                // From the model's own distribution, before any sampler.
                let logprob = top.map(|n| token_logprob(model, ctx.get_logits_ith(row), token, n));
                (token, logprob)
            });
            if let Some(lp) = logprob {
                r.logprobs.push(lp);
            }
            self.on_token(slot, token);
        }
        Ok(())
    }

    /// Ends `slot`'s request with an error and forgets its KV.
    fn fail(&mut self, slot: usize, err: &llama_cpp_2::DecodeError) {
        if let Some(r) = self.scheduler.release(slot, false) {
            r.reply
                .send(Err(BackendError::Inference(format!("llama.cpp: {err}"))));
        }
        self.engine.with_dependent_mut(|_, ctx| {
            let _ = ctx.clear_kv_cache_seq(Some(slot as u32), None, None);
        });
    }
}

/// The first index of the largest logit: llama.cpp's greedy sampler keeps
/// the first of equal maxima too, so both paths pick the same token.
fn argmax(logits: &[f32]) -> LlamaToken {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    LlamaToken(best as i32)
}

/// Collects a result delivered through [`Reply`] (for [`Backend::infer`]).
struct Collect(Arc<Mutex<Option<Result<Response, BackendError>>>>);

impl Reply for Collect {
    fn is_closed(&self) -> bool {
        false
    }

    fn send(self: Box<Self>, result: Result<Response, BackendError>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(result);
        }
    }
}

impl Backend for LlamaCppGenerator {
    fn task(&self) -> Task {
        Task::Generation
    }

    fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }

    /// Runs a batch to the end, `parallel` requests at a time.
    fn infer(&mut self, batch: Vec<Request>) -> Vec<Result<Response, BackendError>> {
        let results: Vec<_> = batch.iter().map(|_| Arc::new(Mutex::new(None))).collect();
        let mut queue = batch.into_iter().zip(results.iter().cloned());
        let mut next = queue.next();
        loop {
            while self.free_slots() > 0 {
                let Some((request, result)) = next.take() else {
                    break;
                };
                self.start(request, Box::new(Collect(result)));
                next = queue.next();
            }
            if !self.step() && next.is_none() {
                break;
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.lock().ok().and_then(|mut r| r.take()).unwrap_or_else(|| {
                    Err(BackendError::Inference("the request never finished".into()))
                })
            })
            .collect()
    }

    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        Some(self.counter.clone())
    }

    fn stepper(&mut self) -> Option<&mut dyn Stepper> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_keeps_the_first_of_equal_maxima() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), LlamaToken(1));
        assert_eq!(argmax(&[-5.0, -7.0]), LlamaToken(0));
        assert_eq!(argmax(&[0.0, 0.5, f32::NEG_INFINITY, 9.0]), LlamaToken(3));
    }

    #[test]
    fn utf8_is_taken_whole_characters_only() {
        let mut buf = "é".as_bytes()[..1].to_vec();
        assert_eq!(take_utf8(&mut buf), "");
        buf.extend_from_slice(&"é".as_bytes()[1..]);
        buf.extend_from_slice(b"a");
        assert_eq!(take_utf8(&mut buf), "éa");
        assert!(buf.is_empty());
        let mut bad = vec![0xff, b'b'];
        assert_eq!(take_utf8(&mut bad), "\u{FFFD}b");
    }

    #[test]
    fn options_parse_and_refuse_unknown_keys() {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let o = Options::parse(&map(&[("parallel", "2"), ("weights", "native")])).expect("ok");
        assert_eq!(o.parallel, 2);
        assert_eq!(o.weights, Weights::Native);
        assert!(Options::parse(&map(&[("parallel", "0")])).is_err());
        assert!(Options::parse(&map(&[("nope", "1")])).is_err());
        assert!(Options::parse(&map(&[("weights", "int3")])).is_err());
    }
}
