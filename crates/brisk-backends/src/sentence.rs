//! What every BERT-family text model shares, whichever engine runs it
//! (candle in [`crate::bert`], ONNX Runtime in `onnx::bert`): reading a
//! sentence-transformers folder (tokenizer, `max_seq_length`, pooling,
//! normalisation), tokenizing with sentence-transformers' rules, pooling the
//! last hidden state, and splitting one padded batch back per request.

use std::path::Path;
use std::sync::Arc;

use brisk_core::{BackendError, Prepared, Request, Response, TokenCounter};
use tokenizers::{Encoding, Tokenizer, TruncationParams};

pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value, BackendError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BackendError::NotFound(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| BackendError::InvalidModel(format!("{}: {e}", path.display())))
}

pub(crate) fn invalid(e: impl std::fmt::Display) -> BackendError {
    BackendError::InvalidModel(e.to_string())
}

/// Pooling as configured in `1_Pooling/config.json`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pooling {
    Mean,
    Cls,
}

/// True when `dir` looks like a BERT folder with safetensors weights.
pub fn looks_like_bert(dir: &Path) -> bool {
    let Ok(config) = read_json(&dir.join("config.json")) else {
        return false;
    };
    let model_type = config.get("model_type").and_then(|v| v.as_str());
    matches!(model_type, Some("bert"))
        && dir.join("model.safetensors").is_file()
        && dir.join("tokenizer.json").is_file()
}

/// True when the BERT folder is a cross-encoder (a sequence-classification
/// head with one label: a relevance score), not a sentence embedder.
pub fn is_cross_encoder(dir: &Path) -> bool {
    read_json(&dir.join("config.json"))
        .ok()
        .and_then(|c| {
            c.get("architectures")?
                .as_array()?
                .iter()
                .find_map(|a| a.as_str().map(|s| s == "BertForSequenceClassification"))
        })
        .unwrap_or(false)
}

/// Total size of the weight file, the dominant part of resident memory.
pub fn estimate_bytes(dir: &Path) -> Option<u64> {
    std::fs::metadata(dir.join("model.safetensors"))
        .ok()
        .map(|m| m.len())
}

/// The model's tokenizer, shared with the engine: it tokenizes each
/// embedding request once there (length check, batch sizing) and the
/// encodings travel with the request to the backend.
pub(crate) struct Counter {
    tokenizer: Tokenizer,
    /// The same tokenizer, cutting at the model's length (for `truncate`).
    truncating: Tokenizer,
    pub(crate) max_tokens: usize,
}

/// What [`Counter::prepare`] hands the backend for one embedding request.
struct Encoded(Vec<Encoding>);

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

    fn prepare(&self, request: &Request) -> Option<Result<(usize, Prepared), BackendError>> {
        let encoded = match request {
            Request::Embed { texts, truncate } => {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                self.encode(&refs, *truncate)
            }
            Request::Rerank {
                query,
                documents,
                truncate,
            } => {
                let refs: Vec<&str> = documents.iter().map(String::as_str).collect();
                self.encode_pairs(query, &refs, *truncate)
            }
            _ => return None,
        };
        Some(encoded.map(|encodings| {
            let tokens = encodings.iter().map(|e| e.len()).sum();
            (tokens, Box::new(Encoded(encodings)) as Prepared)
        }))
    }
}

impl Counter {
    /// Tokenizes texts; over-long ones are an error unless `truncate`.
    fn encode(&self, texts: &[&str], truncate: bool) -> Result<Vec<Encoding>, BackendError> {
        let tokenizer = if truncate {
            &self.truncating
        } else {
            &self.tokenizer
        };
        let encodings = tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| BackendError::InvalidInput(format!("cannot tokenize input: {e}")))?;
        if let Some((i, e)) = encodings
            .iter()
            .enumerate()
            .find(|(_, e)| e.len() > self.max_tokens)
        {
            return Err(BackendError::InvalidInput(format!(
                "input[{i}] has {} tokens; this model accepts at most {} (set truncate to cut it)",
                e.len(),
                self.max_tokens
            )));
        }
        Ok(encodings)
    }

    /// Tokenizes (query, document) pairs as a cross-encoder reads them:
    /// `[CLS] query [SEP] document [SEP]` with segment ids 0 then 1. With
    /// `truncate`, the longer of the two is cut first (the tokenizer's
    /// longest-first strategy, as sentence-transformers' CrossEncoder does).
    fn encode_pairs(
        &self,
        query: &str,
        documents: &[&str],
        truncate: bool,
    ) -> Result<Vec<Encoding>, BackendError> {
        let pairs: Vec<(String, String)> = documents
            .iter()
            .map(|d| (query.to_string(), d.to_string()))
            .collect();
        let tokenizer = if truncate {
            &self.truncating
        } else {
            &self.tokenizer
        };
        let encodings = tokenizer
            .encode_batch(pairs, true)
            .map_err(|e| BackendError::InvalidInput(format!("cannot tokenize input: {e}")))?;
        if let Some((i, e)) = encodings
            .iter()
            .enumerate()
            .find(|(_, e)| e.len() > self.max_tokens)
        {
            return Err(BackendError::InvalidInput(format!(
                "documents[{i}] with the query has {} tokens; this model accepts at most {} (set truncate to cut it)",
                e.len(),
                self.max_tokens
            )));
        }
        Ok(encodings)
    }
}

/// The tokenizer side of a sentence-transformers model.
pub struct TextModel {
    pub(crate) counter: Arc<Counter>,
    pub pooling: Pooling,
    pub normalize: bool,
}

impl TextModel {
    /// Reads the tokenizer and sentence-transformers settings of `dir`;
    /// `max_positions` is the encoder's own limit (config.json).
    pub fn load(dir: &Path, max_positions: usize) -> Result<Self, BackendError> {
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| BackendError::InvalidModel(format!("tokenizer.json: {e}")))?;
        // Shipped tokenizers often pad/truncate to a fixed length; we pad per
        // batch ourselves and refuse over-long input instead of cutting it.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| BackendError::InvalidModel(format!("tokenizer: {e}")))?;

        // sentence_bert_config.json for embedders; a cross-encoder has none
        // and uses the tokenizer's model_max_length (512 for ms-marco).
        let max_tokens = read_json(&dir.join("sentence_bert_config.json"))
            .ok()
            .and_then(|v| v.get("max_seq_length")?.as_u64())
            .or_else(|| {
                read_json(&dir.join("tokenizer_config.json"))
                    .ok()
                    .and_then(|v| v.get("model_max_length")?.as_u64())
            })
            .map(|n| n as usize)
            .unwrap_or(max_positions)
            .min(max_positions);

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
        let mut truncating = tokenizer.clone();
        truncating
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| BackendError::InvalidModel(format!("tokenizer: {e}")))?;
        Ok(Self {
            counter: Arc::new(Counter {
                tokenizer,
                truncating,
                max_tokens,
            }),
            pooling,
            normalize,
        })
    }

    pub fn max_tokens(&self) -> usize {
        self.counter.max_tokens
    }

    pub fn token_counter(&self) -> Arc<dyn TokenCounter> {
        self.counter.clone()
    }

    /// Tokenizes texts; over-long ones are an error unless `truncate`.
    pub fn encode(&self, texts: &[&str], truncate: bool) -> Result<Vec<Encoding>, BackendError> {
        self.counter.encode(texts, truncate)
    }

    /// Tokenizes (query, document) pairs, see [`Counter::encode_pairs`].
    pub fn encode_pairs(
        &self,
        query: &str,
        documents: &[&str],
        truncate: bool,
    ) -> Result<Vec<Encoding>, BackendError> {
        self.counter.encode_pairs(query, documents, truncate)
    }

    /// Mean (over real tokens) or CLS pooling of a last hidden state laid
    /// out `[n, len, hidden]` row-major, then L2 when the model asks for it.
    pub fn pool(&self, hidden: &[f32], encodings: &[&Encoding], len: usize) -> Vec<Vec<f32>> {
        let n = encodings.len();
        // No rows (no inputs or zero length): no hidden width either.
        let h = hidden.len().checked_div(n * len).unwrap_or(0);
        encodings
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let rows = &hidden[i * len * h..(i + 1) * len * h];
                let mut v = vec![0f32; h];
                match self.pooling {
                    Pooling::Cls => v.copy_from_slice(&rows[..h]),
                    Pooling::Mean => {
                        let mut count = 0f32;
                        for (t, m) in e.get_attention_mask().iter().enumerate() {
                            if *m != 0 {
                                count += 1.0;
                                for (acc, x) in v.iter_mut().zip(&rows[t * h..(t + 1) * h]) {
                                    *acc += x;
                                }
                            }
                        }
                        let count = count.max(1e-9);
                        v.iter_mut().for_each(|x| *x /= count);
                    }
                }
                if self.normalize {
                    brisk_core::l2_normalize(&mut v);
                }
                v
            })
            .collect()
    }
}

/// Most texts in one forward pass after length grouping.
const GROUP: usize = 32;

/// Runs a batch of embedding requests: each is tokenized on its own (a bad
/// input fails only its request); then the texts of all good requests go
/// through `forward` and the vectors are split back per request.
///
/// Less padding: like sentence-transformers' length sorting, the texts are
/// sorted by token count and cut into groups of at most [`GROUP`], each
/// padded only to its own longest text. A group of short texts does not pay
/// for one long text elsewhere in the batch window.
///
/// A request the engine already tokenized (see [`Counter::prepare`]) is not
/// tokenized again.
pub(crate) fn infer_embeddings(
    text: &TextModel,
    batch: Vec<(Request, Option<Prepared>)>,
    mut forward: impl FnMut(&[&Encoding]) -> Result<Vec<Vec<f32>>, BackendError>,
) -> Vec<Result<Response, BackendError>> {
    let encoded: Vec<Result<Vec<Encoding>, BackendError>> = batch
        .into_iter()
        .map(|(r, prepared)| match (r, prepared) {
            (Request::Embed { .. }, Some(p)) if p.is::<Encoded>() => p
                .downcast::<Encoded>()
                .map(|e| e.0)
                .map_err(|_| BackendError::Inference("prepared input of another model".into())),
            (Request::Embed { texts, truncate }, _) => {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                text.encode(&refs, truncate)
            }
            (other, _) => Err(BackendError::Unsupported(other.task().to_string())),
        })
        .collect();
    let all: Vec<&Encoding> = encoded.iter().flatten().flatten().collect();
    let mut vectors = match forward_grouped(&all, &mut forward) {
        Ok(v) => v.into_iter(),
        Err(e) => return encoded.iter().map(|_| Err(e.clone())).collect(),
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

/// Runs a batch of rerank requests like [`infer_embeddings`]: every
/// (query, document) pair of every request goes through `forward` (one
/// relevance logit per pair), length-grouped; scores are the logits
/// through a sigmoid.
pub(crate) fn infer_rerank(
    text: &TextModel,
    batch: Vec<(Request, Option<Prepared>)>,
    mut forward: impl FnMut(&[&Encoding]) -> Result<Vec<f32>, BackendError>,
) -> Vec<Result<Response, BackendError>> {
    let encoded: Vec<Result<Vec<Encoding>, BackendError>> = batch
        .into_iter()
        .map(|(r, prepared)| match (r, prepared) {
            (Request::Rerank { .. }, Some(p)) if p.is::<Encoded>() => p
                .downcast::<Encoded>()
                .map(|e| e.0)
                .map_err(|_| BackendError::Inference("prepared input of another model".into())),
            (
                Request::Rerank {
                    query,
                    documents,
                    truncate,
                },
                _,
            ) => {
                let refs: Vec<&str> = documents.iter().map(String::as_str).collect();
                text.encode_pairs(&query, &refs, truncate)
            }
            (other, _) => Err(BackendError::Unsupported(other.task().to_string())),
        })
        .collect();
    let all: Vec<&Encoding> = encoded.iter().flatten().flatten().collect();
    let mut logits = match forward_grouped(&all, &mut forward) {
        Ok(v) => v.into_iter(),
        Err(e) => return encoded.iter().map(|_| Err(e.clone())).collect(),
    };
    encoded
        .into_iter()
        .map(|enc| {
            let enc = enc?;
            Ok(Response::Rerank {
                scores: logits
                    .by_ref()
                    .take(enc.len())
                    .map(|l| 1.0 / (1.0 + (-l).exp()))
                    .collect(),
                prompt_tokens: enc.iter().map(|e| e.len()).sum(),
            })
        })
        .collect()
}

/// Runs `forward` over groups of similar length (see [`infer_embeddings`])
/// and returns the outputs in the original order.
pub(crate) fn forward_grouped<T: Default + Clone>(
    all: &[&Encoding],
    forward: &mut impl FnMut(&[&Encoding]) -> Result<Vec<T>, BackendError>,
) -> Result<Vec<T>, BackendError> {
    let order = length_order(all);
    let mut out = vec![T::default(); all.len()];
    for group in order.chunks(GROUP) {
        let encs: Vec<&Encoding> = group.iter().map(|&i| all[i]).collect();
        for (&i, v) in group.iter().zip(forward(&encs)?) {
            out[i] = v;
        }
    }
    Ok(out)
}

/// Indices of `all`, longest first (a stable sort: equal lengths keep
/// their order).
fn length_order(all: &[&Encoding]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(all[i].len()));
    order
}

/// Padded model inputs for a group of encodings: ids, attention mask and
/// segment ids, `[n, len]` row-major, with `len` the longest encoding.
pub(crate) fn padded(encodings: &[&Encoding]) -> (usize, Vec<i32>, Vec<i32>, Vec<i32>) {
    let len = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
    let n = encodings.len();
    let mut ids = vec![0i32; n * len];
    let mut mask = vec![0i32; n * len];
    let mut types = vec![0i32; n * len];
    for (row, e) in encodings.iter().enumerate() {
        let at = row * len;
        for (t, ((id, m), ty)) in e
            .get_ids()
            .iter()
            .zip(e.get_attention_mask())
            .zip(e.get_type_ids())
            .enumerate()
        {
            ids[at + t] = *id as i32;
            mask[at + t] = *m as i32;
            types[at + t] = *ty as i32;
        }
    }
    (len, ids, mask, types)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(n: usize) -> Encoding {
        Encoding::new(
            vec![1; n],
            vec![0; n],
            vec![String::new(); n],
            vec![None; n],
            vec![(0, 0); n],
            vec![0; n],
            vec![1; n],
            Vec::new(),
            Default::default(),
        )
    }

    #[test]
    fn groups_are_cut_by_length_and_results_come_back_in_order() {
        // 40 texts of alternating lengths: 2 groups (32 + 8), the longest
        // texts together, each group padded only to its own longest.
        let encs: Vec<Encoding> = (0..40)
            .map(|i| enc(if i % 2 == 0 { 3 } else { 50 }))
            .collect();
        let refs: Vec<&Encoding> = encs.iter().collect();
        let mut widths = Vec::new();
        let out = forward_grouped(&refs, &mut |g: &[&Encoding]| {
            let (len, ..) = padded(g);
            widths.push((g.len(), len));
            Ok(g.iter().map(|e| e.len()).collect::<Vec<usize>>())
        })
        .expect("runs");
        assert_eq!(widths, vec![(32, 50), (8, 3)]);
        let want: Vec<usize> = (0..40).map(|i| if i % 2 == 0 { 3 } else { 50 }).collect();
        assert_eq!(out, want);
    }

    #[test]
    fn padding_fills_ids_and_mask_with_zeros() {
        let encs = [enc(2), enc(4)];
        let refs: Vec<&Encoding> = encs.iter().collect();
        let (len, ids, mask, types) = padded(&refs);
        assert_eq!(len, 4);
        assert_eq!(ids, vec![1, 1, 0, 0, 1, 1, 1, 1]);
        assert_eq!(mask, vec![1, 1, 0, 0, 1, 1, 1, 1]);
        assert_eq!(types, vec![0; 8]);
    }
}
