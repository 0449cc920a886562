//! Sentence embeddings with a BERT encoder on candle (e.g. all-MiniLM-L6-v2).
//!
//! Reads a sentence-transformers folder: `config.json`, `model.safetensors`,
//! `tokenizer.json`, and optionally `1_Pooling/config.json`, `modules.json`
//! (a `Normalize` module turns on L2 normalisation) and
//! `sentence_bert_config.json` (`max_seq_length`). Pooling and normalisation
//! follow sentence-transformers: the mean over real tokens (attention mask),
//! then L2.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use brisk_core::{Backend, BackendError, Request, Response, Task, TokenCounter};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Encoding, Tokenizer, TruncationParams};

fn read_json(path: &Path) -> Result<serde_json::Value, BackendError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BackendError::NotFound(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| BackendError::InvalidModel(format!("{}: {e}", path.display())))
}

fn invalid(e: impl std::fmt::Display) -> BackendError {
    BackendError::InvalidModel(e.to_string())
}

/// Pooling as configured in `1_Pooling/config.json`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pooling {
    Mean,
    Cls,
}

/// True when `dir` looks like a sentence-transformers BERT folder.
pub fn looks_like_bert(dir: &Path) -> bool {
    let Ok(config) = read_json(&dir.join("config.json")) else {
        return false;
    };
    let model_type = config.get("model_type").and_then(|v| v.as_str());
    matches!(model_type, Some("bert"))
        && dir.join("model.safetensors").is_file()
        && dir.join("tokenizer.json").is_file()
}

/// Total size of the weight file, the dominant part of resident memory.
pub fn estimate_bytes(dir: &Path) -> Option<u64> {
    std::fs::metadata(dir.join("model.safetensors"))
        .ok()
        .map(|m| m.len())
}

/// Shares the tokenizer with the engine for validation and batch sizing.
struct Counter {
    tokenizer: Arc<Tokenizer>,
    max_tokens: usize,
}

impl TokenCounter for Counter {
    fn count(&self, text: &str) -> Result<usize, BackendError> {
        self.tokenizer
            .encode(text, true)
            .map(|e| e.len())
            .map_err(|e| BackendError::InvalidInput(format!("cannot tokenize input: {e}")))
    }

    fn max_input_tokens(&self) -> usize {
        self.max_tokens
    }
}

pub struct BertEmbedder {
    model: BertModel,
    tokenizer: Arc<Tokenizer>,
    /// The same tokenizer, cutting at the model's length (for `truncate`).
    truncating: Tokenizer,
    counter: Arc<Counter>,
    pooling: Pooling,
    normalize: bool,
    device: Device,
    memory_bytes: u64,
}

impl BertEmbedder {
    pub fn load(dir: &Path) -> Result<Self, BackendError> {
        if !dir.is_dir() {
            return Err(BackendError::NotFound(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        let config_text = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| BackendError::NotFound(format!("config.json: {e}")))?;
        let config: Config = serde_json::from_str(&config_text).map_err(invalid)?;

        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| BackendError::InvalidModel(format!("tokenizer.json: {e}")))?;
        // Shipped tokenizers often pad/truncate to a fixed length; we pad per
        // batch ourselves and refuse over-long input instead of cutting it.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| BackendError::InvalidModel(format!("tokenizer: {e}")))?;

        let max_tokens = read_json(&dir.join("sentence_bert_config.json"))
            .ok()
            .and_then(|v| v.get("max_seq_length")?.as_u64())
            .map(|n| n as usize)
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);

        let pooling = match read_json(&dir.join("1_Pooling/config.json")) {
            Ok(p) if p.get("pooling_mode_cls_token").and_then(|v| v.as_bool()) == Some(true) => {
                Pooling::Cls
            }
            _ => Pooling::Mean,
        };
        let normalize = read_json(&dir.join("modules.json"))
            .ok()
            .and_then(|m| {
                m.as_array().map(|mods| {
                    mods.iter().any(|m| {
                        m.get("type")
                            .and_then(|t| t.as_str())
                            .is_some_and(|t| t.ends_with("Normalize"))
                    })
                })
            })
            .unwrap_or(false);

        let weights: PathBuf = dir.join("model.safetensors");
        let memory_bytes = estimate_bytes(dir).unwrap_or(0);
        let device = Device::Cpu;
        // mmap: the kernel pages weights in; no copy of the file at load.
        #[allow(unsafe_code)]
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &device) }
            .map_err(invalid)?;
        let model = BertModel::load(vb, &config).map_err(invalid)?;
        let mut truncating = tokenizer.clone();
        truncating
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| BackendError::InvalidModel(format!("tokenizer: {e}")))?;
        let tokenizer = Arc::new(tokenizer);
        Ok(Self {
            truncating,
            model,
            counter: Arc::new(Counter {
                tokenizer: tokenizer.clone(),
                max_tokens,
            }),
            tokenizer,
            pooling,
            normalize,
            device,
            memory_bytes,
        })
    }

    /// Tokenizes texts; over-long ones are an error unless `truncate`.
    fn encode(&self, texts: &[&str], truncate: bool) -> Result<Vec<Encoding>, BackendError> {
        let tokenizer = if truncate {
            &self.truncating
        } else {
            &*self.tokenizer
        };
        let encodings = tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| BackendError::InvalidInput(format!("cannot tokenize input: {e}")))?;
        if let Some((i, e)) = encodings
            .iter()
            .enumerate()
            .find(|(_, e)| e.len() > self.counter.max_tokens)
        {
            return Err(BackendError::InvalidInput(format!(
                "input[{i}] has {} tokens; this model accepts at most {} (set truncate to cut it)",
                e.len(),
                self.counter.max_tokens
            )));
        }
        Ok(encodings)
    }

    /// One forward pass over encodings padded to the longest; mean or CLS
    /// pooling over real tokens only, then L2 when the model asks for it.
    fn forward(&self, encodings: &[&Encoding]) -> Result<Vec<Vec<f32>>, BackendError> {
        let n = encodings.len();
        let max_len = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
        if n == 0 || max_len == 0 {
            return Ok(vec![Vec::new(); n]);
        }
        let mut ids = Vec::with_capacity(n * max_len);
        let mut mask = Vec::with_capacity(n * max_len);
        for e in encodings {
            ids.extend(e.get_ids().iter().copied());
            ids.extend(std::iter::repeat_n(0u32, max_len - e.len()));
            mask.extend(e.get_attention_mask().iter().copied());
            mask.extend(std::iter::repeat_n(0u32, max_len - e.len()));
        }
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let ids = Tensor::from_vec(ids, (n, max_len), &self.device)?;
            let mask = Tensor::from_vec(mask, (n, max_len), &self.device)?;
            let type_ids = ids.zeros_like()?;
            let hidden = self.model.forward(&ids, &type_ids, Some(&mask))?;
            let pooled = match self.pooling {
                Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
                Pooling::Mean => {
                    let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                    let summed = hidden.broadcast_mul(&m)?.sum(1)?;
                    let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
                    summed.broadcast_div(&counts)?
                }
            };
            pooled.to_vec2::<f32>()
        };
        let mut vectors = run().map_err(|e| BackendError::Inference(e.to_string()))?;
        if self.normalize {
            vectors.iter_mut().for_each(|v| brisk_core::l2_normalize(v));
        }
        Ok(vectors)
    }

    /// Embeds texts in one forward pass. Returns one vector and the token
    /// count of each text.
    pub fn embed(
        &self,
        texts: &[&str],
        truncate: bool,
    ) -> Result<(Vec<Vec<f32>>, Vec<usize>), BackendError> {
        let encodings = self.encode(texts, truncate)?;
        let refs: Vec<&Encoding> = encodings.iter().collect();
        let vectors = self.forward(&refs)?;
        Ok((vectors, encodings.iter().map(|e| e.len()).collect()))
    }
}

impl Backend for BertEmbedder {
    fn task(&self) -> Task {
        Task::Embeddings
    }

    fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }

    /// Every request is tokenized on its own (a bad input fails only its
    /// request); then all texts of all good requests go through the model
    /// in one padded forward pass and are split back per request.
    fn infer(&mut self, batch: Vec<Request>) -> Vec<Result<Response, BackendError>> {
        let encoded: Vec<Result<Vec<Encoding>, BackendError>> = batch
            .iter()
            .map(|r| match r {
                Request::Embed { texts, truncate } => {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    self.encode(&refs, *truncate)
                }
                other => Err(BackendError::Unsupported(other.task().to_string())),
            })
            .collect();
        let all: Vec<&Encoding> = encoded.iter().flatten().flatten().collect();
        let mut vectors = match self.forward(&all) {
            Ok(v) => v.into_iter(),
            Err(e) => return batch.iter().map(|_| Err(e.clone())).collect(),
        };
        encoded
            .into_iter()
            .map(|enc| {
                let enc = enc?;
                Ok(Response::Embed {
                    vectors: vectors.by_ref().take(enc.len()).collect(),
                    prompt_tokens: enc.iter().map(|e| e.len()).sum(),
                })
            })
            .collect()
    }

    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        Some(self.counter.clone())
    }
}
