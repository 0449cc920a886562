//! brisk's inference backends and the loader that picks one per model.
//!
//! Backend names used in configuration:
//! - `onnx-bert`: sentence embeddings (BERT family) on ONNX Runtime —
//!   feature `onnx`; chosen for BERT folders when the runtime library is found
//! - `candle-bert`: the same on candle — feature `candle` (builds without
//!   ONNX Runtime, machines without its library)
//! - `llama-cpp`: text generation from GGUF files on llama.cpp
//!   (crates/brisk-llama) — feature `llama`
//! - `candle-whisper`: speech recognition (Whisper, CTranslate2 `model.bin`)
//!   on candle — feature `whisper`
//! - `ct2-whisper`: speech recognition (Whisper, CTranslate2 `model.bin`,
//!   or a transformers checkpoint converted at load) on CTranslate2, as
//!   faster-whisper runs it — feature `ct2`; preferred over
//!   `candle-whisper` when compiled in (options `compute_type`: float32,
//!   int8 (default), int8_float32; `threads`; `adapter`: a PEFT LoRA
//!   folder merged into a transformers checkpoint)
//! - `onnx-silero-vad`, `onnx-piper`, `onnx-ppocr`: voice activity
//!   detection, text to speech and OCR on ONNX Runtime — feature `onnx`
//! - `sim`: simulated model for tests and benchmarks (see [`sim`])

use std::path::Path;

use brisk_core::{Backend, BackendError, Loader, ModelSource, Task};

#[cfg(feature = "candle")]
pub mod bert;
#[cfg(feature = "onnx")]
pub mod onnx;
#[cfg(any(feature = "candle", feature = "onnx"))]
pub mod sentence;
pub mod sim;
#[cfg(feature = "whisper")]
pub mod whisper;

/// Backend names this build can load.
pub fn available_backends() -> &'static [&'static str] {
    &[
        "sim",
        #[cfg(feature = "candle")]
        "candle-bert",
        #[cfg(feature = "llama")]
        brisk_llama::BACKEND,
        #[cfg(feature = "whisper")]
        "candle-whisper",
        #[cfg(feature = "ct2")]
        brisk_ct2::backend::WHISPER,
        #[cfg(feature = "translate")]
        brisk_translate::backend::MARIAN,
        #[cfg(feature = "onnx")]
        onnx::BERT,
        #[cfg(feature = "onnx")]
        onnx::VAD,
        #[cfg(feature = "onnx")]
        onnx::PIPER,
        #[cfg(feature = "onnx")]
        onnx::OCR,
    ]
}

/// The loader for every backend compiled in.
#[derive(Default)]
pub struct BriskLoader {
    sim: sim::SimLoader,
}

impl BriskLoader {
    pub fn new() -> Self {
        Self::default()
    }

    /// The simulated backend's loader, to inspect load counts in tests.
    pub fn sim(&self) -> &sim::SimLoader {
        &self.sim
    }
}

fn unknown(backend: &str) -> BackendError {
    BackendError::InvalidModel(format!(
        "unknown backend '{backend}'; this build has: {}",
        available_backends().join(", ")
    ))
}

impl Loader for BriskLoader {
    fn load(&self, name: &str, source: &ModelSource) -> Result<Box<dyn Backend>, BackendError> {
        let _span = tracing::info_span!("load", model = name, backend = %source.backend).entered();
        match source.backend.as_str() {
            "sim" => self.sim.load(name, source),
            #[cfg(feature = "candle")]
            "candle-bert" => Ok(Box::new(bert::BertEmbedder::load(&source.path)?)),
            #[cfg(feature = "llama")]
            brisk_llama::BACKEND => Ok(Box::new(brisk_llama::LlamaCppGenerator::load(
                &source.path,
                &source.options,
                &source.adapters,
            )?)),
            #[cfg(feature = "whisper")]
            "candle-whisper" => {
                whisper::refuse_transformers(&source.path, &source.options)?;
                Ok(Box::new(whisper::WhisperModel::load(&source.path)?))
            }
            #[cfg(feature = "ct2")]
            brisk_ct2::backend::WHISPER => Ok(Box::new(brisk_ct2::backend::load(
                &source.path,
                &source.options,
            )?)),
            #[cfg(feature = "translate")]
            brisk_translate::backend::MARIAN => {
                brisk_translate::backend::load(&source.path, &source.options)
            }
            #[cfg(feature = "onnx")]
            onnx::BERT => Ok(Box::new(onnx::bert::OnnxBert::load(
                &source.path,
                &source.options,
            )?)),
            #[cfg(feature = "onnx")]
            onnx::VAD => Ok(Box::new(onnx::vad::SileroVad::load(
                &source.path,
                &source.options,
            )?)),
            #[cfg(feature = "onnx")]
            onnx::PIPER => Ok(Box::new(onnx::piper::PiperVoice::load(
                &source.path,
                &source.options,
            )?)),
            #[cfg(feature = "onnx")]
            onnx::OCR => Ok(Box::new(onnx::ocr::PpOcr::load(
                &source.path,
                &source.options,
            )?)),
            other => Err(unknown(other)),
        }
    }

    fn estimate_bytes(&self, source: &ModelSource) -> Option<u64> {
        match source.backend.as_str() {
            "sim" => self.sim.estimate_bytes(source),
            #[cfg(feature = "candle")]
            "candle-bert" => bert::estimate_bytes(&source.path),
            #[cfg(feature = "onnx")]
            onnx::BERT => sentence::estimate_bytes(&source.path),
            #[cfg(feature = "llama")]
            brisk_llama::BACKEND => {
                brisk_llama::estimate_bytes(&source.path, &source.options).map(|b| {
                    b + source
                        .adapters
                        .values()
                        .filter_map(|p| p.metadata().ok())
                        .map(|m| m.len())
                        .sum::<u64>()
                })
            }
            #[cfg(feature = "whisper")]
            "candle-whisper" => whisper::estimate_bytes(&source.path),
            #[cfg(feature = "ct2")]
            brisk_ct2::backend::WHISPER => {
                brisk_ct2::backend::estimate_bytes(&source.path, &source.options)
            }
            #[cfg(feature = "translate")]
            brisk_translate::backend::MARIAN => {
                brisk_translate::backend::estimate_bytes(&source.path)
            }
            #[cfg(feature = "onnx")]
            onnx::VAD | onnx::PIPER | onnx::OCR => onnx::estimate_bytes(&source.path),
            _ => None,
        }
    }

    fn task(&self, source: &ModelSource) -> Result<Task, BackendError> {
        // Checked here because the registry asks every model's task at
        // startup: a misplaced `adapters` table is a configuration error.
        #[cfg(feature = "llama")]
        let takes_adapters = source.backend == brisk_llama::BACKEND;
        #[cfg(not(feature = "llama"))]
        let takes_adapters = false;
        if !source.adapters.is_empty() && !takes_adapters {
            return Err(BackendError::InvalidModel(format!(
                "backend '{}' does not take LoRA adapters (only llama-cpp does)",
                source.backend
            )));
        }
        match source.backend.as_str() {
            "sim" => self.sim.task(source),
            #[cfg(feature = "candle")]
            "candle-bert" => Ok(Task::Embeddings),
            #[cfg(feature = "llama")]
            brisk_llama::BACKEND => Ok(Task::Generation),
            #[cfg(feature = "whisper")]
            "candle-whisper" => Ok(Task::Transcription),
            #[cfg(feature = "ct2")]
            brisk_ct2::backend::WHISPER => Ok(Task::Transcription),
            #[cfg(feature = "translate")]
            brisk_translate::backend::MARIAN => Ok(Task::Translation),
            #[cfg(feature = "onnx")]
            onnx::BERT => Ok(onnx::bert::Kind::of(&source.path).task()),
            #[cfg(feature = "onnx")]
            onnx::VAD => Ok(Task::Vad),
            #[cfg(feature = "onnx")]
            onnx::PIPER => Ok(Task::Speech),
            #[cfg(feature = "onnx")]
            onnx::OCR => Ok(Task::Ocr),
            other => Err(unknown(other)),
        }
    }

    fn batches(&self, source: &ModelSource) -> bool {
        batches_requests(&source.backend)
    }
}

/// Whether `backend` decodes several requests of a task that otherwise runs
/// one at a time (transcription) in one pass: the CTranslate2 Whisper
/// encodes and decodes the 30 s windows of a batch together, as
/// faster-whisper's `BatchedInferencePipeline` does with the pieces of a
/// long file.
pub fn batches_requests(backend: &str) -> bool {
    #[cfg(feature = "ct2")]
    if backend == brisk_ct2::backend::WHISPER {
        return true;
    }
    let _ = backend;
    false
}

/// A model found by scanning the models folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovered {
    pub name: String,
    pub source: ModelSource,
}

/// Finds servable models directly under `dir`: each sub-folder whose files
/// a compiled-in backend recognises becomes a model named after the folder.
/// A missing folder yields no models (the server still starts).
pub fn discover(dir: &Path) -> Vec<Discovered> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<Discovered> = read
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let backend = detect(&path)?;
            let source = ModelSource {
                backend: backend.to_string(),
                path,
                options: Default::default(),
                adapters: Default::default(),
            };
            // A transformers Whisper checkpoint brings the PEFT adapters
            // beside it.
            #[cfg(feature = "ct2")]
            if brisk_ct2::hf::looks_like_hf_whisper(&source.path) {
                return Some(whisper_with_adapters(name, source));
            }
            Some(vec![Discovered { name, source }])
        })
        .flatten()
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// A transformers Whisper folder `NAME` and the PEFT adapters inside it:
/// `NAME/adapter/` is merged into model `NAME` itself (the folder is a
/// fine-tuned model); each `NAME/adapter_SUFFIX/` adds a model
/// `NAME-SUFFIX` with that adapter, next to `NAME`.
#[cfg(feature = "ct2")]
fn whisper_with_adapters(name: String, source: ModelSource) -> Vec<Discovered> {
    let with = |name: String, adapter: &Path| {
        let mut s = source.clone();
        s.options
            .insert("adapter".into(), adapter.to_string_lossy().into_owned());
        Discovered { name, source: s }
    };
    let main = source.path.join("adapter");
    let mut out = vec![if brisk_ct2::lora::looks_like_adapter(&main) {
        with(name.clone(), &main)
    } else {
        Discovered {
            name: name.clone(),
            source: source.clone(),
        }
    }];
    let mut extra: Vec<Discovered> = std::fs::read_dir(&source.path)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let suffix = file.strip_prefix("adapter_")?;
            let p = e.path();
            (!suffix.is_empty() && brisk_ct2::lora::looks_like_adapter(&p))
                .then(|| with(format!("{name}-{suffix}"), &p))
        })
        .collect();
    extra.sort_by(|a, b| a.name.cmp(&b.name));
    out.append(&mut extra);
    out
}

/// A translation model's language pair (ISO 639-1 source and target), from
/// its options or, failing that, its folder; `None` for other backends.
pub fn language_pair(source: &ModelSource) -> Option<(String, String)> {
    if let (Some(s), Some(t)) = (
        source.options.get("source_language"),
        source.options.get("target_language"),
    ) {
        return Some((s.clone(), t.clone()));
    }
    #[cfg(feature = "translate")]
    if source.backend == brisk_translate::backend::MARIAN {
        return brisk_translate::backend::pair(&source.path);
    }
    None
}

/// Which backend can serve the model files at `path`, if any.
pub fn detect(path: &Path) -> Option<&'static str> {
    // ONNX Runtime first: it serves BERT folders 2-3x faster than candle.
    #[cfg(feature = "onnx")]
    if let Some(backend) = onnx::detect(path) {
        return Some(backend);
    }
    #[cfg(feature = "candle")]
    // Cross-encoders run on ONNX Runtime only.
    if path.is_dir() && bert::looks_like_bert(path) && !sentence::is_cross_encoder(path) {
        return Some("candle-bert");
    }
    #[cfg(feature = "llama")]
    if brisk_llama::looks_like_gguf(path) {
        return Some(brisk_llama::BACKEND);
    }
    #[cfg(feature = "translate")]
    if path.is_dir() && brisk_translate::backend::detect(path) {
        return Some(brisk_translate::backend::MARIAN);
    }
    // A transformers Whisper checkpoint: converted to CTranslate2's format
    // at load by ct2-whisper (candle-whisper reads model.bin only).
    #[cfg(feature = "ct2")]
    if path.is_dir() && brisk_ct2::hf::looks_like_hf_whisper(path) {
        return Some(brisk_ct2::backend::WHISPER);
    }
    #[cfg(feature = "whisper")]
    if path.is_dir() && whisper::looks_like_whisper(path) {
        // The CTranslate2 engine, when compiled in, is the faster one and
        // decodes exactly as faster-whisper (BENCHMARKS.md).
        #[cfg(feature = "ct2")]
        return Some(brisk_ct2::backend::WHISPER);
        #[cfg(not(feature = "ct2"))]
        return Some("candle-whisper");
    }
    let _ = path;
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder that looks like a transformers Whisper checkpoint (the
    /// files are not read before load).
    #[cfg(feature = "ct2")]
    fn fake_transformers_whisper(dir: &Path) {
        std::fs::create_dir_all(dir).expect("dir");
        std::fs::write(dir.join("config.json"), r#"{"model_type": "whisper"}"#).expect("cfg");
        std::fs::write(dir.join("model.safetensors"), b"").expect("weights");
    }

    #[cfg(feature = "ct2")]
    #[test]
    fn discovery_serves_transformers_whisper_and_its_adapters_with_ct2() {
        let models = std::env::temp_dir().join(format!("brisk-discover-hf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&models);
        fake_transformers_whisper(&models.join("asr-plain"));
        let base = models.join("asr-ft");
        fake_transformers_whisper(&base);
        for sub in ["adapter", "adapter_calls", "adapter_empty"] {
            std::fs::create_dir_all(base.join(sub)).expect("adapter dir");
        }
        // adapter_empty has no adapter_config.json: not an adapter.
        for sub in ["adapter", "adapter_calls"] {
            std::fs::write(base.join(sub).join("adapter_config.json"), "{}").expect("cfg");
        }
        let found = discover(&models);
        let got: Vec<(&str, &str, Option<&String>)> = found
            .iter()
            .map(|f| {
                (
                    f.name.as_str(),
                    f.source.backend.as_str(),
                    f.source.options.get("adapter"),
                )
            })
            .collect();
        let adapter = |sub: &str| base.join(sub).to_string_lossy().into_owned();
        assert_eq!(
            got,
            vec![
                (
                    "asr-ft",
                    brisk_ct2::backend::WHISPER,
                    Some(&adapter("adapter"))
                ),
                (
                    "asr-ft-calls",
                    brisk_ct2::backend::WHISPER,
                    Some(&adapter("adapter_calls"))
                ),
                ("asr-plain", brisk_ct2::backend::WHISPER, None),
            ]
        );
        std::fs::remove_dir_all(&models).ok();
    }

    #[cfg(feature = "ct2")]
    #[test]
    fn candle_whisper_refuses_transformers_checkpoints_and_adapters_by_name() {
        let dir = std::env::temp_dir().join(format!("brisk-candle-hf-{}", std::process::id()));
        fake_transformers_whisper(&dir);
        let loader = BriskLoader::new();
        let mut src = ModelSource {
            backend: "candle-whisper".into(),
            path: dir.clone(),
            options: Default::default(),
            adapters: Default::default(),
        };
        let Err(e) = loader.load("m", &src) else {
            panic!("candle-whisper loaded a transformers checkpoint");
        };
        let e = e.to_string();
        assert!(
            e.contains("transformers checkpoint") && e.contains("ct2-whisper"),
            "{e}"
        );
        src.path = "/nonexistent".into();
        src.options.insert("adapter".into(), "/a".into());
        let Err(e) = loader.load("m", &src) else {
            panic!("candle-whisper took an adapter");
        };
        assert!(e.to_string().contains("adapter /a"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn discover_on_missing_dir_is_empty() {
        assert!(discover(Path::new("/nonexistent/brisk-models")).is_empty());
    }

    #[test]
    fn unknown_backend_is_a_clear_error() {
        let loader = BriskLoader::new();
        let src = ModelSource {
            backend: "nope".into(),
            path: "/x".into(),
            options: Default::default(),
            adapters: Default::default(),
        };
        let err = loader.task(&src).expect_err("unknown").to_string();
        assert!(err.contains("unknown backend 'nope'"), "{err}");
    }

    #[test]
    fn sim_loader_fails_then_succeeds() {
        let loader = BriskLoader::new();
        let mut src = ModelSource {
            backend: "sim".into(),
            path: "/x".into(),
            options: Default::default(),
            adapters: Default::default(),
        };
        src.options.insert("fail_loads".into(), "1".into());
        assert!(loader.load("m", &src).is_err());
        let mut b = loader.load("m", &src).expect("second load succeeds");
        assert_eq!(loader.sim().attempts("m"), 2);
        let out = b.infer(vec![brisk_core::Request::Embed {
            texts: vec!["a b".into()],
            truncate: false,
        }]);
        match &out[0] {
            Ok(brisk_core::Response::Embed {
                vectors,
                prompt_tokens,
            }) => {
                assert_eq!(vectors[0].len(), 8);
                assert_eq!(*prompt_tokens, 2);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
