//! Sentence embeddings with a BERT encoder on candle (e.g. all-MiniLM-L6-v2).
//!
//! The ONNX Runtime backend (`onnx::bert`, backend `onnx-bert`) runs the same
//! folders 2-3× faster on CPU and is preferred when the `onnx` feature and
//! the ONNX Runtime library are present. This candle path stays for what it
//! alone serves: builds without the `onnx` feature (pure Rust, no shared
//! library to ship) and machines where `libonnxruntime.so` is not installed.
//!
//! Reads a sentence-transformers folder: `config.json`, `model.safetensors`,
//! `tokenizer.json`, and optionally `1_Pooling/config.json`, `modules.json`
//! (a `Normalize` module turns on L2 normalisation) and
//! `sentence_bert_config.json` (`max_seq_length`); see [`crate::sentence`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use brisk_core::{Backend, BackendError, Prepared, Request, Response, Task, TokenCounter};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::Encoding;

pub use crate::sentence::{estimate_bytes, looks_like_bert};
use crate::sentence::{invalid, Pooling, TextModel};

pub struct BertEmbedder {
    model: BertModel,
    text: TextModel,
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
        let text = TextModel::load(dir, config.max_position_embeddings)?;

        let weights: PathBuf = dir.join("model.safetensors");
        let memory_bytes = estimate_bytes(dir).unwrap_or(0);
        let device = Device::Cpu;
        // mmap: the kernel pages weights in; no copy of the file at load.
        #[allow(unsafe_code)]
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &device) }
            .map_err(invalid)?;
        let model = BertModel::load(vb, &config).map_err(invalid)?;
        Ok(Self {
            model,
            text,
            device,
            memory_bytes,
        })
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
            let pooled = match self.text.pooling {
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
        if self.text.normalize {
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
        let encodings = self.text.encode(texts, truncate)?;
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

    fn infer(&mut self, batch: Vec<Request>) -> Vec<Result<Response, BackendError>> {
        self.infer_prepared(batch.into_iter().map(|r| (r, None)).collect())
    }

    fn infer_prepared(
        &mut self,
        batch: Vec<(Request, Option<Prepared>)>,
    ) -> Vec<Result<Response, BackendError>> {
        crate::sentence::infer_embeddings(&self.text, batch, |e| self.forward(e))
    }

    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        Some(self.text.token_counter())
    }
}
