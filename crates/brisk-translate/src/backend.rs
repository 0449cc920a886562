//! [`Translator`] as a brisk [`Backend`] (backend name `marian`).

use std::collections::BTreeMap;
use std::path::Path;

use brisk_core::{Backend, BackendError, Request, Response, Task};

use crate::{TranslateError, Translator};

/// Backend name in configuration.
pub const MARIAN: &str = "marian";

/// Whether `dir` looks like a model folder of this backend: a Marian binary
/// with int8 weights and a lexical shortlist beside it.
pub fn detect(dir: &Path) -> bool {
    pair(dir).is_some() && file_with(dir, "lex.", ".s2t.bin").is_some()
}

/// The folder's language pair (ISO 639-1), read from the model file's name
/// (`model.<src><tgt>.intgemm.alphas.bin`) without loading it.
pub fn pair(dir: &Path) -> Option<(String, String)> {
    let name = file_with(dir, "model.", ".bin")?;
    let codes = name.strip_prefix("model.")?.split('.').next()?;
    (codes.len() == 4 && codes.bytes().all(|b| b.is_ascii_lowercase()))
        .then(|| (codes[..2].to_string(), codes[2..].to_string()))
}

fn file_with(dir: &Path, prefix: &str, suffix: &str) -> Option<String> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|n| n.starts_with(prefix) && n.ends_with(suffix))
}

/// Options: `threads` (default 0: one per core), and `source_language` /
/// `target_language`, which the server fills from the folder and which must
/// agree with the model. Unknown keys are refused so a typo is not ignored.
pub fn load(
    dir: &Path,
    options: &BTreeMap<String, String>,
) -> Result<Box<dyn Backend>, BackendError> {
    let mut threads = 0usize;
    for (k, v) in options {
        match k.as_str() {
            "threads" => {
                threads = v.parse().map_err(|_| {
                    BackendError::InvalidModel(format!("threads must be a number, not '{v}'"))
                })?
            }
            "source_language" | "target_language" => {}
            other => {
                return Err(BackendError::InvalidModel(format!(
                    "unknown option '{other}' for backend {MARIAN} (known: threads, source_language, target_language)"
                )))
            }
        }
    }
    if threads == 0 {
        threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    }
    let translator = Translator::load(dir, threads).map_err(load_error)?;
    let (src, tgt) = translator.languages();
    for (key, have) in [("source_language", &src), ("target_language", &tgt)] {
        if let Some(want) = options.get(key).filter(|w| *w != have) {
            return Err(BackendError::InvalidModel(format!(
                "{key} is '{want}' but the model translates {src} to {tgt}"
            )));
        }
    }
    let bytes = dir_bytes(dir);
    Ok(Box::new(MarianBackend { translator, bytes }))
}

/// Expected resident size: the weights are dequantised to f32 at load
/// (four times the int8 file) plus the shortlist and vocabulary.
pub fn estimate_bytes(dir: &Path) -> Option<u64> {
    Some(dir_bytes(dir).saturating_mul(4))
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn load_error(e: TranslateError) -> BackendError {
    match e {
        TranslateError::Io { .. } | TranslateError::MissingFile(..) => {
            BackendError::NotFound(e.to_string())
        }
        other => BackendError::InvalidModel(other.to_string()),
    }
}

struct MarianBackend {
    translator: Translator,
    bytes: u64,
}

impl Backend for MarianBackend {
    fn task(&self) -> Task {
        Task::Translation
    }

    fn memory_bytes(&self) -> u64 {
        self.bytes.saturating_mul(4)
    }

    /// Every sentence of every request in one call: the engine's batch
    /// becomes one batched forward pass (length-sorted inside). A text of
    /// several sentences is split here, so callers that do not split (a
    /// pipeline step) get what `/translate` gives: the models were trained
    /// on sentences and leave the tail of a long input untranslated.
    fn infer(&mut self, batch: Vec<Request>) -> Vec<Result<Response, BackendError>> {
        let max = self.translator.max_source_tokens();
        let mut checked: Vec<Result<Checked, BackendError>> = Vec::new();
        for r in batch {
            checked.push(match r {
                Request::Translate { texts } => {
                    let mut tokens = 0;
                    let mut err = None;
                    let pieces: Vec<Vec<Piece>> = texts.iter().map(|t| pieces(t)).collect();
                    let sentences = pieces.iter().flatten().filter_map(|p| match p {
                        Piece::Translate(s) => Some(s),
                        Piece::Keep(_) => None,
                    });
                    for (i, t) in sentences.enumerate() {
                        match self.translator.encode(t) {
                            // Longer inputs would translate badly (the model
                            // was trained on sentences): the HTTP edge splits
                            // texts at sentence boundaries before they get here.
                            Ok(ids) if ids.len() > max => {
                                err = Some(BackendError::InvalidInput(format!(
                                    "q[{i}] has a sentence of {} tokens; this model translates at most {max} per sentence",
                                    ids.len()
                                )));
                                break;
                            }
                            Ok(ids) => tokens += ids.len(),
                            Err(e) => {
                                err = Some(BackendError::Inference(e.to_string()));
                                break;
                            }
                        }
                    }
                    match err {
                        Some(e) => Err(e),
                        None => Ok((pieces, tokens)),
                    }
                }
                other => Err(BackendError::Unsupported(other.task().to_string())),
            });
        }
        let all: Vec<&str> = checked
            .iter()
            .filter_map(|c| c.as_ref().ok())
            .flat_map(|(texts, _)| texts.iter().flatten())
            .filter_map(|p| match p {
                Piece::Translate(s) => Some(s.as_str()),
                Piece::Keep(_) => None,
            })
            .collect();
        let mut out = match self.translator.translate_batch(&all) {
            Ok(out) => out.into_iter(),
            Err(e) => {
                let msg = e.to_string();
                return checked
                    .into_iter()
                    .map(|c| c.and(Err(BackendError::Inference(msg.clone()))))
                    .collect();
            }
        };
        checked
            .into_iter()
            .map(|c| {
                c.map(|(texts, prompt_tokens)| Response::Translate {
                    texts: texts
                        .into_iter()
                        .map(|pieces| {
                            pieces
                                .into_iter()
                                .map(|p| match p {
                                    Piece::Keep(s) => s,
                                    Piece::Translate(_) => out.next().unwrap_or_default(),
                                })
                                .collect()
                        })
                        .collect(),
                    prompt_tokens,
                })
            })
            .collect()
    }
}

/// A request ready to translate: each text as pieces, and its token count.
type Checked = (Vec<Vec<Piece>>, usize);

/// A sentence to translate, or the whitespace around it (kept as is).
enum Piece {
    Translate(String),
    Keep(String),
}

/// A text as its sentences and the spacing between them; joining the
/// pieces gives the text back.
fn pieces(text: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    for s in crate::split_sentences(text) {
        let trimmed = s.trim();
        if trimmed.is_empty() {
            out.push(Piece::Keep(s.to_string()));
            continue;
        }
        let start = s.len() - s.trim_start().len();
        let end = start + trimmed.len();
        if start > 0 {
            out.push(Piece::Keep(s[..start].to_string()));
        }
        out.push(Piece::Translate(trimmed.to_string()));
        if end < s.len() {
            out.push(Piece::Keep(s[end..].to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_split_sentences_and_keep_the_spacing() {
        let text = " Ever tried. Ever failed.\n\nNo matter. ";
        let p = pieces(text);
        let joined: String = p
            .iter()
            .map(|p| match p {
                Piece::Keep(s) | Piece::Translate(s) => s.as_str(),
            })
            .collect();
        assert_eq!(joined, text);
        let sentences: Vec<&str> = p
            .iter()
            .filter_map(|p| match p {
                Piece::Translate(s) => Some(s.as_str()),
                Piece::Keep(_) => None,
            })
            .collect();
        assert_eq!(sentences, ["Ever tried.", "Ever failed.", "No matter."]);
    }
}
