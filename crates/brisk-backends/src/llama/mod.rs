//! Text generation from GGUF files (llama architecture) on candle, e.g.
//! SmolLM2-135M-Instruct.
//!
//! Everything comes from the one `.gguf` file: the quantized weights
//! (`candle_transformers::models::quantized_llama`), the tokenizer (built
//! from the vocabulary and merges in the metadata, see [`tokenizer`]) and
//! the chat template (`tokenizer.chat_template`, see [`template`]).
//!
//! Requests run one at a time. Each starts from a fresh copy of the weights
//! (cheap: the tensors are shared), so nothing — KV cache, attention masks —
//! carries over from the request before.

pub mod sampling;
pub mod template;
pub mod tokenizer;

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use brisk_core::{
    Backend, BackendError, FinishReason, GenerateParams, GenerateRequest, Generation, Prompt,
    Request, Response, Task, TokenCounter, TokenSink,
};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candle_transformers::generation::LogitsProcessor;
use candle_transformers::models::quantized_llama::{ModelWeights, MAX_SEQ_LEN};

pub use sampling::{sampling_for, Scan, StopScanner};
pub use template::{render_chatml, ChatTemplate};
pub use tokenizer::{GgufTokenizer, PreTokenizerKind, TokenType, TokenizerSpec, Utf8Stream};

use tokenizer::md_uint;

/// Prompts are fed to the model in chunks of this many tokens, which bounds
/// the size of the attention scores for long prompts.
const PREFILL_CHUNK: usize = 512;

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

/// Resident size of the weights once loaded with the `weights` option:
/// read from the GGUF header alone (tensor shapes and types, no data), so
/// the memory budget sees the f32 widening before the load happens.
pub fn estimate_bytes(
    path: &Path,
    options: &std::collections::BTreeMap<String, String>,
) -> Option<u64> {
    let file = resolve_gguf(path).ok()?;
    let format: WeightFormat = match options.get("weights") {
        Some(v) => v.parse().ok()?,
        None => WeightFormat::Auto,
    };
    let mut reader = BufReader::new(File::open(&file).ok()?);
    let content = gguf_file::Content::read(&mut reader).ok()?;
    let format = format.resolve(&content.tensor_infos);
    Some(resident_bytes(&content.tensor_infos, format))
}

/// How the weights are held in memory (backend option `weights`).
///
/// candle multiplies quantized weights by activations that it quantizes to
/// 8 bits per block of 32, like llama.cpp. Small models are sensitive to
/// that noise: SmolLM2-135M answers "What is the capital of France?" with
/// "L'Étoile, ..." instead of "The capital of France is Paris." because
/// the two first tokens are 0.08 logits apart. With f32 weights the result
/// is the exact one (checked against an independent numpy forward pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightFormat {
    /// `F32` when the model's f32 matrices take at most
    /// [`AUTO_F32_MAX_BYTES`], else `Fast`.
    #[default]
    Auto,
    /// Exactly as in the file.
    Native,
    /// As in the file, except quantization types whose CPU kernels are slow
    /// in candle (Q4_1, Q5_0, Q5_1, Q8_1: no SIMD), widened to Q8_0.
    Fast,
    /// Every quantized matrix as Q8_0.
    Q8_0,
    /// Every matrix dequantized to f32: 4 bytes per parameter, the fastest
    /// prompt processing, no activation quantization.
    F32,
}

/// Largest f32 footprint of the weight matrices for which
/// [`WeightFormat::Auto`] picks f32 (about 250M parameters).
pub const AUTO_F32_MAX_BYTES: u64 = 1 << 30;

impl std::str::FromStr for WeightFormat {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "native" => Ok(Self::Native),
            "fast" => Ok(Self::Fast),
            "q8_0" => Ok(Self::Q8_0),
            "f32" => Ok(Self::F32),
            other => Err(BackendError::InvalidModel(format!(
                "unknown weights format '{other}' (auto, native, fast, q8_0, f32)"
            ))),
        }
    }
}

impl WeightFormat {
    /// `Auto` decided for these tensors; any other format as is.
    fn resolve(self, infos: &HashMap<String, gguf_file::TensorInfo>) -> Self {
        if self != Self::Auto {
            return self;
        }
        let f32_bytes: u64 = infos
            .values()
            .filter(|i| i.shape.rank() == 2)
            .map(|i| i.shape.elem_count() as u64 * 4)
            .sum();
        if f32_bytes <= AUTO_F32_MAX_BYTES {
            Self::F32
        } else {
            Self::Fast
        }
    }

    /// The type a tensor of `dtype` with `shape` is converted to, if any.
    fn target(self, dtype: GgmlDType, shape: &candle_core::Shape) -> Option<GgmlDType> {
        let matrix = shape.rank() == 2;
        let fits_q8 = shape
            .dims()
            .last()
            .is_some_and(|d| d % GgmlDType::Q8_0.block_size() == 0);
        let quantized = !matches!(dtype, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
        let slow = matches!(
            dtype,
            GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 | GgmlDType::Q8_1
        );
        match self {
            Self::Native | Self::Auto => None,
            Self::Fast => (matrix && fits_q8 && slow).then_some(GgmlDType::Q8_0),
            Self::Q8_0 => (matrix && fits_q8 && quantized && dtype != GgmlDType::Q8_0)
                .then_some(GgmlDType::Q8_0),
            Self::F32 => (matrix && dtype != GgmlDType::F32).then_some(GgmlDType::F32),
        }
    }
}

/// Tensor infos pointing into a blob of tensor data (offsets from 0).
type ConvertedTensors = (HashMap<String, gguf_file::TensorInfo>, Vec<u8>);

/// Rewrites the tensors `format` wants converted into an in-memory copy of
/// the tensor data, so `ModelWeights::from_gguf` can read them from there.
/// Returns `None` when nothing needs converting.
fn convert_weights(
    content: &gguf_file::Content,
    reader: &mut BufReader<File>,
    format: WeightFormat,
    device: &Device,
) -> candle_core::Result<Option<ConvertedTensors>> {
    let wanted = content
        .tensor_infos
        .values()
        .any(|i| format.target(i.ggml_dtype, &i.shape).is_some());
    if !wanted {
        return Ok(None);
    }
    let alignment = gguf_file::DEFAULT_ALIGNMENT as usize;
    let mut infos = HashMap::with_capacity(content.tensor_infos.len());
    let mut blob = Vec::new();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let info = &content.tensor_infos[name];
        let mut tensor = info.read(reader, content.tensor_data_offset, device)?;
        if let Some(target) = format.target(info.ggml_dtype, &info.shape) {
            tensor = QTensor::quantize(&tensor.dequantize(device)?, target)?;
        }
        blob.resize(blob.len().div_ceil(alignment) * alignment, 0);
        let offset = blob.len() as u64;
        blob.extend_from_slice(&tensor.data()?);
        infos.insert(
            name.clone(),
            gguf_file::TensorInfo {
                ggml_dtype: tensor.dtype(),
                shape: info.shape.clone(),
                offset,
            },
        );
    }
    Ok(Some((infos, blob)))
}

/// Resident size of the loaded model: every tensor as held, plus the f32
/// copy of the token embeddings `ModelWeights` keeps for lookups.
/// Bytes the weights take once loaded as `format` (already resolved):
/// every tensor in its target type, plus the f32 copy of the token
/// embeddings candle keeps for the lookup.
fn resident_bytes(infos: &HashMap<String, gguf_file::TensorInfo>, format: WeightFormat) -> u64 {
    let tensors: u64 = infos
        .values()
        .map(|i| {
            let dtype = format
                .target(i.ggml_dtype, &i.shape)
                .unwrap_or(i.ggml_dtype);
            (i.shape.elem_count() / dtype.block_size() * dtype.type_size()) as u64
        })
        .sum();
    let embeddings = infos
        .get("token_embd.weight")
        .map_or(0, |i| i.shape.elem_count() as u64 * 4);
    tensors + embeddings
}

fn invalid_model(file: &Path, e: impl std::fmt::Display) -> BackendError {
    BackendError::InvalidModel(format!("{}: {e}", file.display()))
}

fn inference(e: candle_core::Error) -> BackendError {
    BackendError::Inference(e.to_string())
}

/// Shares the tokenizer with the engine, to count prompt tokens.
struct Counter {
    tokenizer: Arc<GgufTokenizer>,
    context_length: usize,
}

impl TokenCounter for Counter {
    fn count(&self, text: &str) -> Result<usize, BackendError> {
        self.tokenizer.encode(text).map(|ids| ids.len())
    }

    fn max_input_tokens(&self) -> usize {
        self.context_length
    }
}

/// A GGUF llama-architecture model that generates text (backend
/// `candle-llama`).
pub struct LlamaGenerator {
    /// Pristine weights (empty KV cache); each request works on a clone.
    weights: ModelWeights,
    tokenizer: Arc<GgufTokenizer>,
    template: ChatTemplate,
    context_length: usize,
    memory_bytes: u64,
    device: Device,
    counter: Arc<Counter>,
    file: PathBuf,
    weight_format: WeightFormat,
}

impl std::fmt::Debug for LlamaGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaGenerator")
            .field("file", &self.file)
            .field("context_length", &self.context_length)
            .field("tokenizer", &self.tokenizer)
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

impl LlamaGenerator {
    /// Loads a `.gguf` file, or the `.gguf` file in a folder, with
    /// [`WeightFormat::Auto`].
    pub fn load(path: &Path) -> Result<Self, BackendError> {
        Self::load_with(path, WeightFormat::Auto)
    }

    /// Loads with backend options (`ModelSource::options`): `weights` =
    /// `auto` | `native` | `fast` | `q8_0` | `f32` (see [`WeightFormat`]).
    pub fn load_with_options(
        path: &Path,
        options: &std::collections::BTreeMap<String, String>,
    ) -> Result<Self, BackendError> {
        let format = match options.get("weights") {
            Some(v) => v.parse()?,
            None => WeightFormat::Auto,
        };
        Self::load_with(path, format)
    }

    /// Loads, holding the weights as `format` says.
    pub fn load_with(path: &Path, format: WeightFormat) -> Result<Self, BackendError> {
        let start = Instant::now();
        let file = resolve_gguf(path)?;
        let handle = File::open(&file)
            .map_err(|e| BackendError::NotFound(format!("{}: {e}", file.display())))?;
        let mut reader = BufReader::new(handle);
        let content = gguf_file::Content::read(&mut reader).map_err(|e| invalid_model(&file, e))?;

        let (tokenizer, template, context_length) = {
            let md = &content.metadata;
            let text = |key: &str| match md.get(key) {
                Some(gguf_file::Value::String(s)) => Some(s.as_str()),
                _ => None,
            };
            let uint = |key: &str| md.get(key).and_then(md_uint);
            let arch = text("general.architecture").unwrap_or("");
            if arch != "llama" {
                return Err(invalid_model(
                    &file,
                    format!("architecture '{arch}' is not supported (only 'llama')"),
                ));
            }
            // from_gguf divides by these; refuse a file that would make it panic.
            let heads = uint("llama.attention.head_count").unwrap_or(0);
            let kv_heads = uint("llama.attention.head_count_kv").unwrap_or(0);
            let embd = uint("llama.embedding_length").unwrap_or(0);
            if heads == 0
                || kv_heads == 0
                || embd == 0
                || embd % heads != 0
                || heads % kv_heads != 0
            {
                return Err(invalid_model(
                    &file,
                    format!(
                        "inconsistent attention shape: {heads} heads, {kv_heads} KV heads, \
                         embedding length {embd}"
                    ),
                ));
            }
            let tokenizer = GgufTokenizer::from_gguf(md).map_err(|e| invalid_model(&file, e))?;
            let template = ChatTemplate::new(
                text("tokenizer.chat_template"),
                &tokenizer.bos_token(),
                &tokenizer.eos_token(),
            );
            // candle's rotary tables stop at MAX_SEQ_LEN positions.
            let trained = uint("llama.context_length").map_or(MAX_SEQ_LEN, |c| c as usize);
            let context_length = trained.min(MAX_SEQ_LEN);
            if let Some(info) = content.tensor_infos.get("token_embd.weight") {
                let n_vocab = info.shape.dims().first().copied().unwrap_or(0);
                if n_vocab != tokenizer.vocab_size() {
                    tracing::warn!(
                        model = n_vocab,
                        tokenizer = tokenizer.vocab_size(),
                        "vocabulary sizes differ"
                    );
                }
            }
            (tokenizer, template, context_length)
        };

        let device = Device::Cpu;
        let format = format.resolve(&content.tensor_infos);
        let converted = convert_weights(&content, &mut reader, format, &device)
            .map_err(|e| invalid_model(&file, e))?;
        let memory_bytes = resident_bytes(&content.tensor_infos, format);
        let weights = match converted {
            None => ModelWeights::from_gguf(content, &mut reader, &device),
            Some((tensor_infos, blob)) => {
                let content = gguf_file::Content {
                    tensor_infos,
                    tensor_data_offset: 0,
                    ..content
                };
                ModelWeights::from_gguf(content, &mut std::io::Cursor::new(blob), &device)
            }
        }
        .map_err(|e| invalid_model(&file, e))?;
        let tokenizer = Arc::new(tokenizer);
        tracing::info!(
            file = %file.display(),
            vocab = tokenizer.vocab_size(),
            context_length,
            chat_template = template.has_template(),
            weights = ?format,
            memory_bytes,
            load_s = start.elapsed().as_secs_f64(),
            "loaded GGUF model"
        );
        Ok(Self {
            weights,
            counter: Arc::new(Counter {
                tokenizer: tokenizer.clone(),
                context_length,
            }),
            tokenizer,
            template,
            context_length,
            memory_bytes,
            device,
            file,
            weight_format: format,
        })
    }

    pub fn tokenizer(&self) -> &Arc<GgufTokenizer> {
        &self.tokenizer
    }

    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// Longest prompt + completion, in tokens: the model's trained context,
    /// capped at candle's `MAX_SEQ_LEN` (4096).
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// How the weights are held (never `Auto`: the format it chose).
    pub fn weight_format(&self) -> WeightFormat {
        self.weight_format
    }

    /// The GGUF file this model was loaded from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The text the model continues: a chat rendered with the chat template,
    /// or a raw prompt as is.
    pub fn render_prompt(&self, prompt: &Prompt) -> String {
        match prompt {
            Prompt::Chat(messages) => self.template.render(messages),
            Prompt::Text(text) => text.clone(),
        }
    }

    /// Token ids of the prompt, with BOS first if the model asks for it.
    pub fn prompt_ids(&self, prompt: &Prompt) -> Result<Vec<u32>, BackendError> {
        let mut ids = self.tokenizer.encode(&self.render_prompt(prompt))?;
        if let (true, Some(bos)) = (self.tokenizer.add_bos(), self.tokenizer.bos_id()) {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// Runs one generation request to the end.
    pub fn generate(&self, request: GenerateRequest) -> Result<Generation, BackendError> {
        let GenerateRequest {
            prompt,
            params,
            sink,
        } = request;
        let sampling = sampling_for(&params)?;
        let ids = self.prompt_ids(&prompt)?;
        if ids.is_empty() {
            return Err(BackendError::InvalidInput("the prompt is empty".into()));
        }
        let prompt_tokens = ids.len();
        if prompt_tokens.saturating_add(params.max_tokens) > self.context_length {
            return Err(BackendError::InvalidInput(format!(
                "prompt has {prompt_tokens} tokens and max_tokens is {}; \
                 the model's context is {} tokens",
                params.max_tokens, self.context_length
            )));
        }
        if params.max_tokens == 0 {
            return Ok(Generation {
                text: String::new(),
                prompt_tokens,
                completion_tokens: 0,
                finish_reason: FinishReason::Length,
                prompt_eval_s: 0.0,
                eval_s: 0.0,
            });
        }
        let seed = params.seed.unwrap_or_else(sampling::random_seed);
        let sampler = LogitsProcessor::from_sampling(seed, sampling);
        self.decode(&ids, &params, sampler, sink)
    }

    fn decode(
        &self,
        ids: &[u32],
        params: &GenerateParams,
        mut sampler: LogitsProcessor,
        mut sink: Option<TokenSink>,
    ) -> Result<Generation, BackendError> {
        let mut send = |text: &str| -> bool {
            match sink.as_mut() {
                Some(f) if !text.is_empty() => f(text),
                _ => true,
            }
        };
        // A clone per request: fresh KV cache and mask cache, shared weights.
        let mut model = self.weights.clone();

        let started = Instant::now();
        let mut next = prefill(&mut model, ids, &self.device)
            .and_then(|logits| sampler.sample(&logits))
            .map_err(inference)?;
        let prompt_eval_s = started.elapsed().as_secs_f64();

        let started = Instant::now();
        let stop_ids = self.tokenizer.stop_ids();
        let mut utf8 = Utf8Stream::default();
        let mut scanner = StopScanner::new(&params.stop);
        let mut completion_tokens = 0;
        let mut stopped_on_string = false;
        let mut finish = loop {
            completion_tokens += 1;
            if stop_ids.contains(&next) {
                break FinishReason::Stop;
            }
            let piece = utf8.push(self.tokenizer.piece(next));
            if !piece.is_empty() {
                match scanner.push(&piece) {
                    Scan::Stop(last) => {
                        send(&last);
                        stopped_on_string = true;
                        break FinishReason::Stop;
                    }
                    Scan::Continue(ready) => {
                        if !send(&ready) {
                            break FinishReason::Cancelled;
                        }
                    }
                }
            }
            if completion_tokens >= params.max_tokens {
                break FinishReason::Length;
            }
            let position = ids.len() + completion_tokens - 1;
            next = step(&mut model, next, position, &self.device)
                .and_then(|logits| sampler.sample(&logits))
                .map_err(inference)?;
        };
        if finish != FinishReason::Cancelled && !stopped_on_string {
            // A character cut by the last token, then whatever was held back.
            let rest = utf8.finish();
            match scanner.push(&rest) {
                Scan::Stop(last) => {
                    send(&last);
                    finish = FinishReason::Stop;
                }
                Scan::Continue(ready) => {
                    send(&ready);
                    send(&scanner.finish());
                }
            }
        }
        Ok(Generation {
            text: scanner.into_text(),
            prompt_tokens: ids.len(),
            completion_tokens,
            finish_reason: finish,
            prompt_eval_s,
            eval_s: started.elapsed().as_secs_f64(),
        })
    }
}

/// Feeds the prompt (in chunks) and returns the logits after its last token.
fn prefill(model: &mut ModelWeights, ids: &[u32], device: &Device) -> candle_core::Result<Tensor> {
    let mut logits = None;
    for (i, chunk) in ids.chunks(PREFILL_CHUNK).enumerate() {
        let input = Tensor::new(chunk, device)?.unsqueeze(0)?;
        logits = Some(model.forward(&input, i * PREFILL_CHUNK)?);
    }
    logits
        .ok_or_else(|| candle_core::Error::Msg("empty prompt".into()))?
        .squeeze(0)
}

/// Feeds one generated token at `position`; returns the next logits.
fn step(
    model: &mut ModelWeights,
    token: u32,
    position: usize,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let input = Tensor::new(&[token], device)?.unsqueeze(0)?;
    model.forward(&input, position)?.squeeze(0)
}

impl Backend for LlamaGenerator {
    fn task(&self) -> Task {
        Task::Generation
    }

    fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }

    /// Requests run one after the other. A panic inside candle fails only
    /// its request: the shared weights are never mutated.
    fn infer(&mut self, batch: Vec<Request>) -> Vec<Result<Response, BackendError>> {
        batch
            .into_iter()
            .map(|request| match request {
                Request::Generate(g) => {
                    let run = std::panic::AssertUnwindSafe(|| self.generate(g));
                    match std::panic::catch_unwind(run) {
                        Ok(result) => result.map(Response::Generate),
                        Err(_) => Err(BackendError::Inference(
                            "generation panicked; see the server log".into(),
                        )),
                    }
                }
                other => Err(BackendError::Unsupported(other.task().to_string())),
            })
            .collect()
    }

    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        Some(self.counter.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_formats() {
        assert_eq!("F32".parse::<WeightFormat>(), Ok(WeightFormat::F32));
        assert_eq!("fast".parse::<WeightFormat>(), Ok(WeightFormat::Fast));
        assert!("int3".parse::<WeightFormat>().is_err());

        let matrix = candle_core::Shape::from((1536, 576));
        let vector = candle_core::Shape::from(576);
        let odd = candle_core::Shape::from((4, 40));
        use GgmlDType as D;
        assert_eq!(WeightFormat::Fast.target(D::Q4_1, &matrix), Some(D::Q8_0));
        assert_eq!(WeightFormat::Fast.target(D::Q4_0, &matrix), None);
        assert_eq!(WeightFormat::Fast.target(D::Q4_1, &odd), None);
        assert_eq!(WeightFormat::Q8_0.target(D::Q4K, &matrix), Some(D::Q8_0));
        assert_eq!(WeightFormat::Q8_0.target(D::F32, &matrix), None);
        assert_eq!(WeightFormat::F32.target(D::Q8_0, &matrix), Some(D::F32));
        assert_eq!(WeightFormat::F32.target(D::F32, &vector), None);
        assert_eq!(WeightFormat::Native.target(D::Q4_1, &matrix), None);

        let info = |rows: usize| gguf_file::TensorInfo {
            ggml_dtype: D::Q4_1,
            shape: candle_core::Shape::from((rows, 1024)),
            offset: 0,
        };
        let small = HashMap::from([("a".to_string(), info(1024))]);
        let large = HashMap::from([("a".to_string(), info(1 << 20))]);
        assert_eq!(WeightFormat::Auto.resolve(&small), WeightFormat::F32);
        assert_eq!(WeightFormat::Auto.resolve(&large), WeightFormat::Fast);
        assert_eq!(WeightFormat::Native.resolve(&small), WeightFormat::Native);
        // Q4_1: 20 bytes per 32 weights, plus nothing for embeddings here;
        // widened to f32: 4 bytes per weight.
        assert_eq!(
            resident_bytes(&small, WeightFormat::Native),
            1024 * 1024 / 32 * 20
        );
        assert_eq!(resident_bytes(&small, WeightFormat::F32), 1024 * 1024 * 4);
    }

    #[test]
    fn finds_gguf_files() {
        let dir = std::env::temp_dir().join(format!("brisk-llama-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        assert!(!looks_like_gguf(&dir));
        assert!(matches!(resolve_gguf(&dir), Err(BackendError::NotFound(_))));
        std::fs::write(dir.join("notes.txt"), b"x").expect("write");
        std::fs::write(dir.join("b.gguf"), b"x").expect("write");
        std::fs::write(dir.join("a.GGUF"), b"xy").expect("write");
        assert!(looks_like_gguf(&dir));
        assert!(looks_like_gguf(&dir.join("b.gguf")));
        assert!(!looks_like_gguf(&dir.join("notes.txt")));
        assert_eq!(find_gguf(&dir), Some(dir.join("a.GGUF")));
        // A file that is no GGUF has no estimate (its header cannot be read).
        assert_eq!(estimate_bytes(&dir, &Default::default()), None);
        // Not a GGUF inside: a clear error, no panic.
        let err = LlamaGenerator::load(&dir.join("b.gguf")).expect_err("garbage file");
        assert!(matches!(err, BackendError::InvalidModel(_)), "{err:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
