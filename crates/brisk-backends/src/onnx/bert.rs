//! BERT-family sentence embeddings and cross-encoder reranking on ONNX
//! Runtime (backend `onnx-bert`).
//!
//! Reads the same sentence-transformers folder as the candle backend
//! ([`crate::bert`]): `config.json`, `model.safetensors`, `tokenizer.json`
//! and the pooling/normalisation settings ([`crate::sentence`]). The ONNX
//! graph is built from the safetensors tensors at load ([`build_graph`], see
//! [`super::graph`] for why) and run by ONNX Runtime with its fused CPU
//! kernels; pooling and L2 normalisation happen in Rust on the last hidden
//! state, as sentence-transformers does them.
//!
//! Options (`[models.NAME.options]`):
//! - `quantize = "int8"`: the weights of every dense layer quantized to
//!   int8 (symmetric, one scale per output column) at load, activations
//!   quantized per call (`DynamicQuantizeMatMul`, ONNX Runtime's dynamic
//!   quantization kernels), except a few outlier input channels kept in
//!   float32 (see [`OUTLIERS`]). Nothing is cached on disk: building and
//!   calibrating the graph takes about a second at load.
//! - `threads`: ONNX Runtime's intra-op threads (default: one per core).
//! - `onnxruntime`: the library file (see [`super::runtime`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use brisk_core::{Backend, BackendError, Prepared, Request, Response, Task, TokenCounter};
use ort::session::Session;
use ort::value::Tensor;
use safetensors::{Dtype, SafeTensors};
use tokenizers::Encoding;

use super::graph::{Attr, DType, Dim, Graph};
use super::{ort_err, runtime};
use crate::sentence::{invalid, read_json, TextModel};

/// Weight precision of the dense layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    Int8,
}

impl Precision {
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self, BackendError> {
        match options.get("quantize").map(String::as_str) {
            None | Some("none") | Some("f32") | Some("fp32") => Ok(Self::F32),
            Some("int8") => Ok(Self::Int8),
            Some(other) => Err(BackendError::InvalidModel(format!(
                "option quantize must be \"int8\" or \"none\", got '{other}'"
            ))),
        }
    }
}

/// The encoder's shape, from `config.json`.
#[derive(Debug, Clone)]
pub struct BertConfig {
    pub hidden: usize,
    pub heads: usize,
    pub layers: usize,
    pub intermediate: usize,
    pub max_positions: usize,
    pub eps: f32,
}

impl BertConfig {
    pub fn read(dir: &Path) -> Result<Self, BackendError> {
        let c = read_json(&dir.join("config.json"))?;
        let num = |k: &str| -> Result<usize, BackendError> {
            c.get(k)
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
                .ok_or_else(|| BackendError::InvalidModel(format!("config.json: no {k}")))
        };
        let act = c
            .get("hidden_act")
            .and_then(|v| v.as_str())
            .unwrap_or("gelu");
        if act != "gelu" {
            return Err(BackendError::InvalidModel(format!(
                "config.json: hidden_act '{act}' is not supported (only gelu)"
            )));
        }
        let position = c
            .get("position_embedding_type")
            .and_then(|v| v.as_str())
            .unwrap_or("absolute");
        if position != "absolute" {
            return Err(BackendError::InvalidModel(format!(
                "config.json: position_embedding_type '{position}' is not supported"
            )));
        }
        let cfg = Self {
            hidden: num("hidden_size")?,
            heads: num("num_attention_heads")?,
            layers: num("num_hidden_layers")?,
            intermediate: num("intermediate_size")?,
            max_positions: num("max_position_embeddings")?,
            eps: c
                .get("layer_norm_eps")
                .and_then(|v| v.as_f64())
                .unwrap_or(1e-12) as f32,
        };
        if cfg.heads == 0 || !cfg.hidden.is_multiple_of(cfg.heads) {
            return Err(BackendError::InvalidModel(format!(
                "config.json: hidden_size {} is not a multiple of num_attention_heads {}",
                cfg.hidden, cfg.heads
            )));
        }
        Ok(cfg)
    }
}

/// Float32 tensors of a safetensors file, found with or without the
/// `bert.` prefix (plain `BertModel` exports have none; models with a head
/// have it).
struct Weights<'a> {
    st: SafeTensors<'a>,
    prefix: &'static str,
}

impl<'a> Weights<'a> {
    fn new(st: SafeTensors<'a>) -> Self {
        let prefix = if st.tensor("embeddings.word_embeddings.weight").is_ok() {
            ""
        } else {
            "bert."
        };
        Self { st, prefix }
    }

    /// The tensor `name` (under the encoder's prefix) with its expected
    /// shape, as f32 values.
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, BackendError> {
        self.get_raw(&format!("{}{name}", self.prefix), shape)
    }

    /// The tensor named exactly `full` (a head outside the encoder).
    fn get_raw(&self, full: &str, shape: &[usize]) -> Result<Vec<f32>, BackendError> {
        Ok(self
            .bytes(full, shape)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// The little-endian float32 bytes of the tensor `name` (under the
    /// encoder's prefix), as stored: for tensors the graph takes unchanged,
    /// such as the 47 MB word embeddings, without going through `f32`s.
    fn get_bytes(&self, name: &str, shape: &[usize]) -> Result<&'a [u8], BackendError> {
        self.bytes(&format!("{}{name}", self.prefix), shape)
    }

    fn bytes(&self, full: &str, shape: &[usize]) -> Result<&'a [u8], BackendError> {
        let t = self
            .st
            .tensor(full)
            .map_err(|e| BackendError::InvalidModel(format!("model.safetensors: {full}: {e}")))?;
        if t.shape() != shape {
            return Err(BackendError::InvalidModel(format!(
                "model.safetensors: {full} has shape {:?}, expected {shape:?}",
                t.shape()
            )));
        }
        if t.dtype() != Dtype::F32 {
            return Err(BackendError::InvalidModel(format!(
                "model.safetensors: {full} is {:?}; only float32 weights are supported",
                t.dtype()
            )));
        }
        Ok(t.data())
    }
}

/// `w` laid out `[rows, cols]` (torch's `[out, in]`), transposed to
/// `[cols, rows]` (ONNX MatMul's `[in, out]`).
fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

/// Symmetric int8 quantization of a `[in, out]` matrix with one scale per
/// output column (the column's largest magnitude maps to 127).
pub fn quantize_columns(w: &[f32], inputs: usize, outputs: usize) -> (Vec<i8>, Vec<f32>) {
    let mut scales = vec![0f32; outputs];
    for r in 0..inputs {
        for (c, s) in scales.iter_mut().enumerate() {
            *s = s.max(w[r * outputs + c].abs());
        }
    }
    for s in scales.iter_mut() {
        *s = if *s > 0.0 { *s / 127.0 } else { 1.0 };
    }
    let q = w
        .iter()
        .enumerate()
        .map(|(i, v)| (v / scales[i % outputs]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, scales)
}

/// How [`build_graph`] writes the dense layers.
pub enum Build<'a> {
    /// Float32 throughout.
    F32,
    /// Float32, with the input of every dense layer also a graph output
    /// (named after the layer), to measure activation ranges.
    Probe,
    /// Int8 dense layers; per layer, the input channels to keep in float32
    /// (see [`OUTLIERS`]).
    Int8(&'a BTreeMap<String, Vec<usize>>),
}

/// Input channels per dense layer kept in float32 in the int8 graph.
///
/// Why: BERT's activations have a few channels far larger than the rest.
/// Dynamic quantization uses one int8 scale per activation tensor, so those
/// channels squash every other channel into a handful of levels (cosine to
/// float32 on the sentence-transformers fixture: 0.971). Taking the 4
/// largest channels out (found at load by running the float32 graph on a
/// few sentences, [`CALIBRATION`]) and multiplying them in float32, as
/// LLM.int8() does, brings it to 0.998 at a fraction of the int8 speed-up.
pub const OUTLIERS: usize = 4;

/// Sentences whose activations pick the outlier channels: the channels are
/// a property of the model, so any varied text shows them.
pub const CALIBRATION: &[&str] = &[
    "Hello!",
    "I like to eat food",
    "The stock market crashed today, and investors rushed to sell their shares.",
    "How do I reset my password?",
    "Rust is a systems programming language focused on safety, speed and concurrency.",
    "Paris is the capital and most populous city of France.",
    "what's the weather like tomorrow in berlin???",
    "https://example.com/docs/api?v=2 returns JSON: {\"ok\": true}",
    "The results were 42, 3.14 and 1e-9, respectively.",
    "She sells sea shells by the sea shore.",
];

/// Writes the dense layers `x · Wᵀ + b` (torch layout `w: [out, in]`).
struct Dense<'g, 'b> {
    g: &'g mut Graph,
    build: &'g Build<'b>,
    /// `(layer, value, width)` of each probed layer input.
    probes: &'g mut Vec<(String, String, usize)>,
}

impl Dense<'_, '_> {
    fn linear(
        &mut self,
        name: &str,
        x: &str,
        w: &[f32],
        b: &[f32],
        out_dim: usize,
        in_dim: usize,
    ) -> String {
        let wt = transpose(w, out_dim, in_dim);
        let (ii, oi) = (in_dim as i64, out_dim as i64);
        let outliers = match self.build {
            Build::Int8(outliers) => outliers.get(name).cloned().unwrap_or_default(),
            Build::Probe => {
                self.probes.push((name.to_string(), x.to_string(), in_dim));
                Vec::new()
            }
            Build::F32 => Vec::new(),
        };
        if !matches!(self.build, Build::Int8(_)) {
            let w = self.g.f32s(&format!("{name}.w"), &[ii, oi], &wt);
            let bias = self.g.f32s(&format!("{name}.b"), &[oi], b);
            let m = self.g.op("MatMul", "", &[x, &w], vec![]);
            return self.g.op("Add", "", &[&m, &bias], vec![]);
        }
        // Outlier channels: their rows of W in float32, zeroed in the int8
        // copy, and masked out of the input the int8 kernel quantizes.
        let mut rest = wt.clone();
        let mut kept = Vec::with_capacity(outliers.len() * out_dim);
        let mut mask = vec![1f32; in_dim];
        for &c in &outliers {
            kept.extend_from_slice(&wt[c * out_dim..(c + 1) * out_dim]);
            rest[c * out_dim..(c + 1) * out_dim].fill(0.0);
            mask[c] = 0.0;
        }
        let (q, scales) = quantize_columns(&rest, in_dim, out_dim);
        let wq = self.g.i8s(&format!("{name}.wq"), &[ii, oi], &q);
        let s = self.g.f32s(&format!("{name}.ws"), &[oi], &scales);
        let z = self.g.i8s(&format!("{name}.wz"), &[oi], &vec![0; out_dim]);
        let bias = self.g.f32s(&format!("{name}.b"), &[oi], b);
        if outliers.is_empty() {
            return self.g.op(
                "DynamicQuantizeMatMul",
                "com.microsoft",
                &[x, &wq, &s, &z, &bias],
                vec![],
            );
        }
        let k = outliers.len() as i64;
        let m = self.g.f32s(&format!("{name}.mask"), &[ii], &mask);
        let masked = self.g.op("Mul", "", &[x, &m], vec![]);
        let quantized = self.g.op(
            "DynamicQuantizeMatMul",
            "com.microsoft",
            &[&masked, &wq, &s, &z, &bias],
            vec![],
        );
        let idx: Vec<i64> = outliers.iter().map(|&c| c as i64).collect();
        let idx = self.g.i64s(&format!("{name}.outliers"), &[k], &idx);
        let picked = self
            .g
            .op("Gather", "", &[x, &idx], vec![("axis", Attr::Int(2))]);
        let wk = self.g.f32s(&format!("{name}.wo"), &[k, oi], &kept);
        let exact = self.g.op("MatMul", "", &[&picked, &wk], vec![]);
        self.g.op("Add", "", &[&quantized, &exact], vec![])
    }
}

/// The ONNX graph of a BERT encoder: inputs `input_ids`, `token_type_ids`,
/// `attention_mask` (int32, `[batch, sequence]`, right-padded), output
/// `last_hidden_state` (`[batch, sequence, hidden]`).
pub fn build_graph(
    weights: &[u8],
    cfg: &BertConfig,
    type_vocab: usize,
    vocab: usize,
    kind: Kind,
    build: &Build,
) -> Result<Vec<u8>, BackendError> {
    let mut probes = Vec::new();
    let st = SafeTensors::deserialize(weights)
        .map_err(|e| BackendError::InvalidModel(format!("model.safetensors: {e}")))?;
    let w = Weights::new(st);
    let (h, ff) = (cfg.hidden, cfg.intermediate);
    let hi = h as i64;
    let mut g = Graph::new();
    let seq = || vec![Dim::Named("batch"), Dim::Named("sequence")];
    let ids = g.input("input_ids", DType::I32, seq());
    let types = g.input("token_type_ids", DType::I32, seq());
    let mask = g.input("attention_mask", DType::I32, seq());
    let eps = || vec![("epsilon", Attr::Float(cfg.eps))];

    let word = g.f32_bytes(
        "word",
        &[vocab as i64, hi],
        w.get_bytes("embeddings.word_embeddings.weight", &[vocab, h])?,
    );
    let pos = g.f32_bytes(
        "position",
        &[cfg.max_positions as i64, hi],
        w.get_bytes(
            "embeddings.position_embeddings.weight",
            &[cfg.max_positions, h],
        )?,
    );
    let seg = g.f32_bytes(
        "segment",
        &[type_vocab as i64, hi],
        w.get_bytes("embeddings.token_type_embeddings.weight", &[type_vocab, h])?,
    );
    let gamma = g.f32s("emb.g", &[hi], &w.get("embeddings.LayerNorm.weight", &[h])?);
    let beta = g.f32s("emb.b", &[hi], &w.get("embeddings.LayerNorm.bias", &[h])?);
    // Word + position + segment embeddings and their layer norm in one
    // kernel; its second output is each row's real length (from the mask),
    // which the attention kernels use to ignore the right padding.
    let emb = g.node(
        "EmbedLayerNormalization",
        "com.microsoft",
        &[&ids, &types, &word, &pos, &seg, &gamma, &beta, &mask],
        2,
        eps(),
    );
    let (mut x, lengths) = (emb[0].clone(), emb[1].clone());

    for l in 0..cfg.layers {
        let p = format!("encoder.layer.{l}.");
        let get = |n: &str, shape: &[usize]| w.get(&format!("{p}{n}"), shape);
        let mut qkv_w = get("attention.self.query.weight", &[h, h])?;
        qkv_w.extend(get("attention.self.key.weight", &[h, h])?);
        qkv_w.extend(get("attention.self.value.weight", &[h, h])?);
        let mut qkv_b = get("attention.self.query.bias", &[h])?;
        qkv_b.extend(get("attention.self.key.bias", &[h])?);
        qkv_b.extend(get("attention.self.value.bias", &[h])?);
        let heads = vec![("num_heads", Attr::Int(cfg.heads as i64))];
        let attended = match build {
            Build::F32 | Build::Probe => {
                let qw = g.f32s(
                    &format!("l{l}.qkv.w"),
                    &[hi, 3 * hi],
                    &transpose(&qkv_w, 3 * h, h),
                );
                let qb = g.f32s(&format!("l{l}.qkv.b"), &[3 * hi], &qkv_b);
                g.op(
                    "Attention",
                    "com.microsoft",
                    &[&x, &qw, &qb, &lengths],
                    heads,
                )
            }
            Build::Int8(_) => {
                // Q, K and V come from one quantized projection; the
                // attention itself (softmax(QKᵀ)V) stays in float32.
                let qkv = Dense {
                    g: &mut g,
                    build,
                    probes: &mut probes,
                }
                .linear(&format!("l{l}.qkv"), &x, &qkv_w, &qkv_b, 3 * h, h);
                let split = g.i64s(&format!("l{l}.split"), &[3], &[hi, hi, hi]);
                let parts = g.node(
                    "Split",
                    "",
                    &[&qkv, &split],
                    3,
                    vec![("axis", Attr::Int(2))],
                );
                g.op(
                    "MultiHeadAttention",
                    "com.microsoft",
                    &[&parts[0], &parts[1], &parts[2], "", &lengths],
                    heads,
                )
            }
        };
        let proj = Dense {
            g: &mut g,
            build,
            probes: &mut probes,
        }
        .linear(
            &format!("l{l}.out"),
            &attended,
            &get("attention.output.dense.weight", &[h, h])?,
            &get("attention.output.dense.bias", &[h])?,
            h,
            h,
        );
        let g1 = g.f32s(
            &format!("l{l}.ln1.g"),
            &[hi],
            &get("attention.output.LayerNorm.weight", &[h])?,
        );
        let b1 = g.f32s(
            &format!("l{l}.ln1.b"),
            &[hi],
            &get("attention.output.LayerNorm.bias", &[h])?,
        );
        // Residual add and layer norm in one kernel.
        let x1 = g.op(
            "SkipLayerNormalization",
            "com.microsoft",
            &[&proj, &x, &g1, &b1],
            eps(),
        );
        let up = Dense {
            g: &mut g,
            build,
            probes: &mut probes,
        }
        .linear(
            &format!("l{l}.up"),
            &x1,
            &get("intermediate.dense.weight", &[ff, h])?,
            &get("intermediate.dense.bias", &[ff])?,
            ff,
            h,
        );
        // BERT's exact (erf) GELU.
        let act = g.op("Gelu", "com.microsoft", &[&up], vec![]);
        let down = Dense {
            g: &mut g,
            build,
            probes: &mut probes,
        }
        .linear(
            &format!("l{l}.down"),
            &act,
            &get("output.dense.weight", &[h, ff])?,
            &get("output.dense.bias", &[h])?,
            h,
            ff,
        );
        let g2 = g.f32s(
            &format!("l{l}.ln2.g"),
            &[hi],
            &get("output.LayerNorm.weight", &[h])?,
        );
        let b2 = g.f32s(
            &format!("l{l}.ln2.b"),
            &[hi],
            &get("output.LayerNorm.bias", &[h])?,
        );
        x = g.op(
            "SkipLayerNormalization",
            "com.microsoft",
            &[&down, &x1, &g2, &b2],
            eps(),
        );
    }
    match kind {
        Kind::Embedder => {
            g.alias(&x, "last_hidden_state");
            g.output(
                "last_hidden_state",
                DType::F32,
                vec![Dim::Named("batch"), Dim::Named("sequence"), Dim::Fixed(hi)],
            );
        }
        Kind::CrossEncoder => {
            // BertForSequenceClassification with one label: the [CLS] row
            // through the pooler (dense + tanh), then the classifier.
            let zero = g.i64s("cls_index", &[], &[0]);
            let cls = g.op("Gather", "", &[&x, &zero], vec![("axis", Attr::Int(1))]);
            let pw = g.f32s(
                "pooler.w",
                &[hi, hi],
                &transpose(&w.get("pooler.dense.weight", &[h, h])?, h, h),
            );
            let pb = g.f32s("pooler.b", &[hi], &w.get("pooler.dense.bias", &[h])?);
            let pooled = g.op("MatMul", "", &[&cls, &pw], vec![]);
            let pooled = g.op("Add", "", &[&pooled, &pb], vec![]);
            let pooled = g.op("Tanh", "", &[&pooled], vec![]);
            let cw = g.f32s(
                "classifier.w",
                &[hi, 1],
                &w.get_raw("classifier.weight", &[1, h])?,
            );
            let cb = g.f32s("classifier.b", &[1], &w.get_raw("classifier.bias", &[1])?);
            let logit = g.op("MatMul", "", &[&pooled, &cw], vec![]);
            let logit = g.op("Add", "", &[&logit, &cb], vec![]);
            g.alias(&logit, "logits");
            g.output(
                "logits",
                DType::F32,
                vec![Dim::Named("batch"), Dim::Fixed(1)],
            );
        }
    }
    for (layer, value, width) in probes {
        g.alias(&value, &layer);
        g.output(
            &layer,
            DType::F32,
            vec![
                Dim::Named("batch"),
                Dim::Named("sequence"),
                Dim::Fixed(width as i64),
            ],
        );
    }
    Ok(g.encode())
}

/// What the BERT folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A sentence-transformers embedder: pooled last hidden state.
    Embedder,
    /// A cross-encoder (BertForSequenceClassification, one label): a
    /// relevance logit per (query, document) pair.
    CrossEncoder,
}

impl Kind {
    pub fn of(dir: &Path) -> Self {
        if crate::sentence::is_cross_encoder(dir) {
            Kind::CrossEncoder
        } else {
            Kind::Embedder
        }
    }

    pub fn task(self) -> Task {
        match self {
            Kind::Embedder => Task::Embeddings,
            Kind::CrossEncoder => Task::Rerank,
        }
    }
}

/// A sentence-transformers BERT model (embedder or cross-encoder) on ONNX
/// Runtime.
pub struct OnnxBert {
    kind: Kind,
    session: Session,
    text: TextModel,
    hidden: usize,
    memory_bytes: u64,
    precision: Precision,
}

/// A scoped thread's result; its panic goes on in the caller.
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// True when `dir` is a BERT folder (embedder or cross-encoder) this
/// backend can serve.
pub fn looks_like_bert(dir: &Path) -> bool {
    crate::sentence::looks_like_bert(dir)
}

impl OnnxBert {
    pub fn load(dir: &Path, options: &BTreeMap<String, String>) -> Result<Self, BackendError> {
        if !dir.is_dir() {
            return Err(BackendError::NotFound(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        let precision = Precision::from_options(options)?;
        let threads = runtime::threads_option(options)?;
        let cfg = BertConfig::read(dir)?;
        let c = read_json(&dir.join("config.json"))?;
        let vocab = c
            .get("vocab_size")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| invalid("config.json: no vocab_size"))? as usize;
        let type_vocab = c
            .get("type_vocab_size")
            .and_then(|v| v.as_u64())
            .unwrap_or(2) as usize;
        let started = std::time::Instant::now();
        let kind = Kind::of(dir);
        // The tokenizer, the ONNX Runtime library and the graph are
        // independent, and each takes tens of milliseconds (parsing
        // tokenizer.json; dlopen and the runtime's start; reading and
        // re-laying out ~90 MB of weights): done side by side they cost the
        // slowest of them, on the lazy load path a first request waits for.
        let (text, env, built) = std::thread::scope(|s| {
            let text = s.spawn(|| TextModel::load(dir, cfg.max_positions));
            let env = s.spawn(|| runtime::environment(dir, options));
            let built = std::fs::read(dir.join("model.safetensors"))
                .map_err(|e| BackendError::NotFound(format!("model.safetensors: {e}")))
                .and_then(|weights| {
                    let first = match precision {
                        Precision::F32 => Build::F32,
                        Precision::Int8 => Build::Probe,
                    };
                    let read_ms = started.elapsed().as_millis() as u64;
                    let graph = build_graph(&weights, &cfg, type_vocab, vocab, kind, &first)?;
                    tracing::debug!(
                        read_ms,
                        graph_ms = started.elapsed().as_millis() as u64 - read_ms,
                        "BERT weights read and graph built"
                    );
                    Ok((weights, graph))
                });
            (join(text), join(env), built)
        });
        let (text, env, (weights, first)) = (text?, env?, built?);
        let graph = |build: &Build| build_graph(&weights, &cfg, type_vocab, vocab, kind, build);
        let (session, graph_bytes) = match precision {
            Precision::F32 => {
                let session = runtime::session_from_memory(&env, &first, threads)?;
                (session, first.len())
            }
            Precision::Int8 => {
                let probe = first;
                let mut probe = runtime::session_from_memory(&env, &probe, threads)?;
                let outliers = calibrate(&mut probe, &text)?;
                drop(probe);
                let model = graph(&Build::Int8(&outliers))?;
                let session = runtime::session_from_memory(&env, &model, threads)?;
                (session, model.len())
            }
        };
        drop(weights);
        tracing::info!(
            ?precision,
            graph_bytes,
            build_ms = started.elapsed().as_millis() as u64,
            "BERT graph built and loaded into ONNX Runtime"
        );
        Ok(Self {
            kind,
            session,
            text,
            hidden: cfg.hidden,
            memory_bytes: graph_bytes as u64,
            precision,
        })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Relevance scores (sigmoid of the logits, in [0, 1]) of `documents`
    /// for `query`, and the token count of each pair.
    pub fn rerank(
        &mut self,
        query: &str,
        documents: &[&str],
        truncate: bool,
    ) -> Result<(Vec<f32>, usize), BackendError> {
        let out = self.infer(vec![Request::Rerank {
            query: query.to_string(),
            documents: documents.iter().map(|d| d.to_string()).collect(),
            truncate,
        }]);
        match out.into_iter().next() {
            Some(Ok(Response::Rerank {
                scores,
                prompt_tokens,
            })) => Ok((scores, prompt_tokens)),
            Some(Err(e)) => Err(e),
            other => Err(BackendError::Inference(format!("unexpected {other:?}"))),
        }
    }

    /// Embeds texts (length-grouped, see [`crate::sentence`]). Returns one
    /// vector and the token count of each text.
    pub fn embed(
        &mut self,
        texts: &[&str],
        truncate: bool,
    ) -> Result<(Vec<Vec<f32>>, Vec<usize>), BackendError> {
        let encodings = self.text.encode(texts, truncate)?;
        let refs: Vec<&Encoding> = encodings.iter().collect();
        let (session, text, hidden) = (&mut self.session, &self.text, self.hidden);
        let vectors =
            crate::sentence::forward_grouped(&refs, &mut |e| forward(session, text, hidden, e))?;
        Ok((vectors, encodings.iter().map(|e| e.len()).collect()))
    }
}

/// Runs [`CALIBRATION`] through a [`Build::Probe`] graph, one sentence at a
/// time (no padding rows in the statistics), and returns each dense layer's
/// [`OUTLIERS`] input channels of largest magnitude.
fn calibrate(
    probe: &mut Session,
    text: &TextModel,
) -> Result<BTreeMap<String, Vec<usize>>, BackendError> {
    let layers: Vec<String> = probe
        .outputs()
        .iter()
        .map(|o| o.name().to_string())
        .filter(|n| n != "last_hidden_state" && n != "logits")
        .collect();
    let mut peaks: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    for sentence in CALIBRATION {
        let enc = text.encode(&[sentence], true)?;
        let (len, ids, mask, types) = crate::sentence::padded(&[&enc[0]]);
        let shape = [1, len];
        let out = probe
            .run(ort::inputs![
                "input_ids" => Tensor::from_array((shape, ids)).map_err(ort_err("input_ids"))?,
                "token_type_ids" => Tensor::from_array((shape, types)).map_err(ort_err("token_type_ids"))?,
                "attention_mask" => Tensor::from_array((shape, mask)).map_err(ort_err("attention_mask"))?
            ])
            .map_err(ort_err("calibration run"))?;
        for layer in &layers {
            let (shape, values) = out[layer.as_str()]
                .try_extract_tensor::<f32>()
                .map_err(ort_err("calibration output"))?;
            let width = shape.last().copied().unwrap_or(1).max(1) as usize;
            let peak = peaks
                .entry(layer.clone())
                .or_insert_with(|| vec![0f32; width]);
            for row in values.chunks_exact(width) {
                for (p, v) in peak.iter_mut().zip(row) {
                    *p = p.max(v.abs());
                }
            }
        }
    }
    Ok(peaks
        .into_iter()
        .map(|(layer, peak)| (layer, largest(&peak, OUTLIERS)))
        .collect())
}

/// Indices of the `k` largest values, ascending.
fn largest(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let mut top: Vec<usize> = order.into_iter().take(k).collect();
    top.sort_unstable();
    top
}

/// The last hidden state of a group of encodings padded to the longest:
/// `(len, values [n, len, hidden])`.
fn hidden_states(
    session: &mut Session,
    hidden: usize,
    encodings: &[&Encoding],
) -> Result<(usize, Vec<f32>), BackendError> {
    let (len, ids, mask, types) = crate::sentence::padded(encodings);
    let shape = [encodings.len(), len];
    let ids = Tensor::from_array((shape, ids)).map_err(ort_err("input_ids"))?;
    let mask = Tensor::from_array((shape, mask)).map_err(ort_err("attention_mask"))?;
    let types = Tensor::from_array((shape, types)).map_err(ort_err("token_type_ids"))?;
    let out = session
        .run(ort::inputs![
            "input_ids" => ids,
            "token_type_ids" => types,
            "attention_mask" => mask
        ])
        .map_err(ort_err("bert run"))?;
    let (_, values) = out["last_hidden_state"]
        .try_extract_tensor::<f32>()
        .map_err(ort_err("bert output"))?;
    if values.len() != encodings.len() * len * hidden {
        return Err(BackendError::Inference(format!(
            "unexpected output size {} for {} x {len} x {hidden}",
            values.len(),
            encodings.len(),
        )));
    }
    Ok((len, values.to_vec()))
}

/// Pooled (and normalised) embeddings of one group of encodings.
fn forward(
    session: &mut Session,
    text: &TextModel,
    hidden: usize,
    encodings: &[&Encoding],
) -> Result<Vec<Vec<f32>>, BackendError> {
    if encodings.is_empty() {
        return Ok(Vec::new());
    }
    let (len, values) = hidden_states(session, hidden, encodings)?;
    Ok(text.pool(&values, encodings, len))
}

/// One relevance logit per (query, document) pair of a group.
fn logits(session: &mut Session, encodings: &[&Encoding]) -> Result<Vec<f32>, BackendError> {
    if encodings.is_empty() {
        return Ok(Vec::new());
    }
    let (len, ids, mask, types) = crate::sentence::padded(encodings);
    let shape = [encodings.len(), len];
    let out = session
        .run(ort::inputs![
            "input_ids" => Tensor::from_array((shape, ids)).map_err(ort_err("input_ids"))?,
            "token_type_ids" => Tensor::from_array((shape, types)).map_err(ort_err("token_type_ids"))?,
            "attention_mask" => Tensor::from_array((shape, mask)).map_err(ort_err("attention_mask"))?
        ])
        .map_err(ort_err("cross-encoder run"))?;
    let (_, values) = out["logits"]
        .try_extract_tensor::<f32>()
        .map_err(ort_err("cross-encoder output"))?;
    if values.len() != encodings.len() {
        return Err(BackendError::Inference(format!(
            "unexpected output size {} for {} pairs",
            values.len(),
            encodings.len()
        )));
    }
    Ok(values.to_vec())
}

impl Backend for OnnxBert {
    fn task(&self) -> Task {
        self.kind.task()
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
        let (session, text, hidden) = (&mut self.session, &self.text, self.hidden);
        match self.kind {
            Kind::Embedder => crate::sentence::infer_embeddings(text, batch, |e| {
                forward(session, text, hidden, e)
            }),
            Kind::CrossEncoder => {
                crate::sentence::infer_rerank(text, batch, |e| logits(session, e))
            }
        }
    }

    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        Some(self.text.token_counter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_columns_round_trip_within_half_a_step() {
        // [in = 3, out = 2]
        let w = [0.5f32, -2.0, -1.0, 1.0, 0.25, 0.0];
        let (q, s) = quantize_columns(&w, 3, 2);
        assert_eq!(s, vec![1.0 / 127.0, 2.0 / 127.0]);
        assert_eq!(q[2], -127);
        assert_eq!(q[1], -127);
        for (i, v) in w.iter().enumerate() {
            let back = q[i] as f32 * s[i % 2];
            assert!(
                (back - v).abs() <= s[i % 2] / 2.0 + 1e-7,
                "{i}: {back} vs {v}"
            );
        }
    }

    #[test]
    fn largest_picks_the_top_channels() {
        assert_eq!(largest(&[0.1, 9.0, 0.2, 5.0, 7.0], 2), vec![1, 4]);
        assert_eq!(largest(&[1.0], 4), vec![0]);
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        assert_eq!(
            transpose(&[1., 2., 3., 4., 5., 6.], 2, 3),
            vec![1., 4., 2., 5., 3., 6.]
        );
    }

    #[test]
    fn quantize_option_is_checked() {
        let mut o = BTreeMap::new();
        assert_eq!(
            Precision::from_options(&o).expect("default"),
            Precision::F32
        );
        o.insert("quantize".to_string(), "int8".to_string());
        assert_eq!(Precision::from_options(&o).expect("int8"), Precision::Int8);
        o.insert("quantize".to_string(), "int4".to_string());
        assert!(Precision::from_options(&o).is_err());
    }
}
