//! [`Ct2Whisper`] as a brisk [`Backend`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use brisk_core::{Backend, BackendError, Request, Response, Task};

use crate::whisper::{Ct2Whisper, DecodeOptions, LoadOptions, Transcript};

/// Backend name in configuration.
pub const WHISPER: &str = "ct2-whisper";

/// Model options read from the configuration: `compute_type` (default
/// `int8`), `threads` (default 0: one per core) and `adapter` (see
/// [`adapter`]). Unknown keys are refused so a typo is not silently
/// ignored.
pub fn load_options(options: &BTreeMap<String, String>) -> Result<LoadOptions, BackendError> {
    let mut lo = LoadOptions::default();
    for (k, v) in options {
        match k.as_str() {
            "adapter" => {}
            "compute_type" => {
                crate::whisper::parse_compute_type(v)?;
                lo.compute_type = v.clone();
            }
            "threads" => {
                lo.threads = v.parse().map_err(|_| {
                    BackendError::InvalidModel(format!("threads must be a number, not '{v}'"))
                })?;
            }
            other => {
                return Err(BackendError::InvalidModel(format!(
                    "unknown option '{other}' for backend {WHISPER} (known: compute_type, threads, adapter)"
                )))
            }
        }
    }
    Ok(lo)
}

/// The PEFT LoRA adapter folder of option `adapter`, if any: an absolute
/// path, or relative to the model folder (where discovery finds
/// `adapter/` and `adapter_*/`; the server resolves `[models.X] adapter`
/// against `models_dir` before it gets here).
pub fn adapter(dir: &Path, options: &BTreeMap<String, String>) -> Option<PathBuf> {
    options.get("adapter").map(|a| dir.join(a))
}

/// The CTranslate2 folder CTranslate2 loads for the model folder `dir`: a
/// transformers Whisper checkpoint is converted (the adapter merged),
/// once, into its fingerprinted cache ([`crate::hf::prepare`]); a
/// CTranslate2 folder is used as it is, and an adapter on it is refused
/// (merging needs the transformers weights). Returns the folder and
/// whether this call converted.
pub fn ct2_folder(
    dir: &Path,
    options: &BTreeMap<String, String>,
) -> Result<(PathBuf, bool), BackendError> {
    let adapter = adapter(dir, options);
    if crate::hf::looks_like_hf_whisper(dir) {
        return crate::hf::prepare(dir, adapter.as_deref());
    }
    if let Some(a) = adapter {
        return Err(BackendError::InvalidModel(format!(
            "adapter {}: LoRA adapters apply to transformers checkpoints \
             (config.json with model_type whisper + model.safetensors), and {} is not one",
            a.display(),
            dir.display()
        )));
    }
    Ok((dir.to_path_buf(), false))
}

/// Loads a model folder for [`WHISPER`]: a CTranslate2 folder, or a
/// transformers checkpoint (plus option `adapter`) through [`ct2_folder`].
pub fn load(dir: &Path, options: &BTreeMap<String, String>) -> Result<Ct2Whisper, BackendError> {
    let lo = load_options(options)?;
    let (folder, _) = ct2_folder(dir, options)?;
    Ct2Whisper::load(&folder, &lo)
}

/// Expected resident size for the options (int8 by default), from the
/// float16 size of the weights: `model.bin`, or a transformers
/// checkpoint's safetensors before conversion.
pub fn estimate_bytes(dir: &Path, options: &BTreeMap<String, String>) -> Option<u64> {
    let len = match std::fs::metadata(dir.join("model.bin")) {
        Ok(m) => m.len(),
        Err(_) => crate::hf::float16_bytes(dir)?,
    };
    let f32 = options.get("compute_type").is_some_and(|c| c == "float32");
    Some(if f32 { len.saturating_mul(2) } else { len })
}

impl Backend for Ct2Whisper {
    fn task(&self) -> Task {
        Task::Transcription
    }

    fn memory_bytes(&self) -> u64 {
        Ct2Whisper::memory_bytes(self)
    }

    fn infer(&mut self, batch: Vec<Request>) -> Vec<Result<Response, BackendError>> {
        let mut out: Vec<Option<Result<Response, BackendError>>> = Vec::new();
        let mut asked: Vec<(usize, brisk_core::TranscribeRequest, DecodeOptions)> = Vec::new();
        for (i, r) in batch.into_iter().enumerate() {
            out.push(None);
            match r {
                Request::Transcribe(t) => {
                    let opts = decode_options(&t);
                    asked.push((i, t, opts));
                }
                other => out[i] = Some(Err(BackendError::Unsupported(other.task().to_string()))),
            }
        }
        // One request: the sequential loop, exactly as faster-whisper's
        // `transcribe`. Several (the pieces of a long file cut at the VAD's
        // silences arrive together): their windows share CTranslate2
        // batches where their options allow.
        let results = if let [(_, t, opts)] = asked.as_slice() {
            vec![self.transcribe(&t.audio, opts)]
        } else {
            let items: Vec<(&[f32], &DecodeOptions)> = asked
                .iter()
                .map(|(_, t, o)| (t.audio.as_slice(), o))
                .collect();
            self.transcribe_batch(&items)
        };
        for ((i, _, _), r) in asked.iter().zip(results) {
            out[*i] = Some(r.map(response));
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(BackendError::Inference("no result".into()))))
            .collect()
    }
}

/// The engine's options for a request.
fn decode_options(t: &brisk_core::TranscribeRequest) -> DecodeOptions {
    let mut opts = DecodeOptions {
        language: t.language.clone(),
        prompt: t.prompt.clone(),
        translate: t.translate,
        word_timestamps: t.word_timestamps,
        ..Default::default()
    };
    if let Some(b) = t.beam_size {
        opts.beam_size = b;
    }
    // Temperature 0 (OpenAI's default) keeps the fallback
    // schedule 0, 0.2, ..., 1.0; another value is used alone.
    if t.temperature > 0.0 || !t.temperature.is_finite() {
        opts.temperatures = vec![t.temperature];
    }
    opts
}

/// A transcript as brisk answers it.
fn response(tr: Transcript) -> Response {
    // Times to the millisecond, as OpenAI's verbose_json.
    let ms = |t: f64| (t * 1000.0).round() / 1000.0;
    let segments: Vec<brisk_core::Segment> = tr
        .segments
        .iter()
        .enumerate()
        .map(|(id, s)| brisk_core::Segment {
            id,
            start: ms(s.start),
            end: ms(s.end).min(tr.duration),
            text: s.text.trim().to_string(),
        })
        .collect();
    let words = tr
        .segments
        .iter()
        .flat_map(|s| &s.words)
        .map(|w| brisk_core::Word {
            word: w.word.clone(),
            start: ms(w.start),
            end: ms(w.end).min(tr.duration),
            probability: w.probability,
        })
        .collect();
    Response::Transcribe(brisk_core::Transcript {
        text: segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        language: Some(tr.language.clone()),
        duration: tr.duration,
        segments,
        words,
    })
}
