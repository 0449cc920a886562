//! Finding and loading ONNX Runtime, once per process.
//!
//! The library is looked up, in order: the model's `onnxruntime` option (a
//! file), `ORT_DYLIB_PATH` (ort's own variable), then an `onnxruntime/`
//! folder next to the model folder (where `scripts/fetch-models` puts
//! `libonnxruntime.so.*`). The first library that loads serves the whole
//! process: ONNX Runtime cannot be loaded twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use brisk_core::BackendError;
use ort::environment::Environment;
use ort::session::Session;

/// ort's variable naming the library file (documented in brisk-server's env.rs).
pub const ORT_DYLIB_PATH: &str = "ORT_DYLIB_PATH";

// A failed load is not cached: fetching the library later and retrying the
// model load works without a restart.
static ENV: Mutex<Option<Environment>> = Mutex::new(None);

/// The candidate library files for a model at `model_dir`, best first.
pub fn library_candidates(model_dir: &Path, options: &BTreeMap<String, String>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = options.get("onnxruntime") {
        out.push(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os(ORT_DYLIB_PATH) {
        out.push(PathBuf::from(p));
    }
    let folder = model_dir
        .parent()
        .unwrap_or(Path::new("."))
        .join("onnxruntime");
    if let Ok(read) = std::fs::read_dir(&folder) {
        let mut libs: Vec<PathBuf> = read
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libonnxruntime.so"))
            })
            .collect();
        // Prefer the most specific (versioned) name.
        libs.sort();
        libs.reverse();
        out.extend(libs);
    }
    out
}

/// The process-wide ONNX Runtime environment, loading the library on first use.
pub fn environment(
    model_dir: &Path,
    options: &BTreeMap<String, String>,
) -> Result<Environment, BackendError> {
    let mut env = ENV.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(e) = env.as_ref() {
        return Ok(e.clone());
    }
    let candidates = library_candidates(model_dir, options);
    let Some(lib) = candidates.iter().find(|p| p.is_file()) else {
        return Err(BackendError::NotFound(format!(
            "ONNX Runtime library not found (looked for {}; set {ORT_DYLIB_PATH} or run scripts/fetch-models onnxruntime)",
            if candidates.is_empty() {
                format!(
                    "{}/libonnxruntime.so*",
                    model_dir
                        .parent()
                        .unwrap_or(Path::new("."))
                        .join("onnxruntime")
                        .display()
                )
            } else {
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    };
    let built = ort::init_from(lib)
        .map_err(|e| BackendError::InvalidModel(format!("loading ONNX Runtime: {e}")))?
        .with_name("brisk")
        .build()
        .map_err(|e| BackendError::InvalidModel(format!("starting ONNX Runtime: {e}")))?;
    tracing::info!(library = %lib.display(), "ONNX Runtime loaded");
    *env = Some(built.clone());
    Ok(built)
}

/// Opens one `.onnx` file. `threads` bounds ONNX Runtime's intra-op pool
/// (its default is one thread per core, for every session).
pub fn session(
    env: &Environment,
    file: &Path,
    threads: Option<usize>,
) -> Result<Session, BackendError> {
    if !file.is_file() {
        return Err(BackendError::NotFound(file.display().to_string()));
    }
    let invalid = |e: String| BackendError::InvalidModel(format!("{}: {e}", file.display()));
    let mut builder = Session::builder(env).map_err(|e| invalid(e.to_string()))?;
    if let Some(n) = threads {
        builder = builder
            .with_intra_threads(n)
            .map_err(|e| invalid(e.to_string()))?;
    }
    builder
        .commit_from_file(file)
        .map_err(|e| invalid(e.to_string()))
}

/// Opens a model held in memory (a graph brisk built, see
/// [`super::graph`]); `threads` as for [`session`].
pub fn session_from_memory(
    env: &Environment,
    model: &[u8],
    threads: Option<usize>,
) -> Result<Session, BackendError> {
    let invalid = |e: String| BackendError::InvalidModel(format!("built ONNX graph: {e}"));
    let mut builder = Session::builder(env).map_err(|e| invalid(e.to_string()))?;
    if let Some(n) = threads {
        builder = builder
            .with_intra_threads(n)
            .map_err(|e| invalid(e.to_string()))?;
    }
    builder
        .commit_from_memory(model)
        .map_err(|e| invalid(e.to_string()))
}

/// The `threads` option, when set.
pub fn threads_option(options: &BTreeMap<String, String>) -> Result<Option<usize>, BackendError> {
    options
        .get("threads")
        .map(|t| {
            t.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                BackendError::InvalidModel(format!(
                    "option threads must be a positive integer, got '{t}'"
                ))
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_comes_first_then_the_models_folder() {
        let root = std::env::temp_dir().join(format!("brisk-ort-{}", std::process::id()));
        let lib_dir = root.join("onnxruntime");
        std::fs::create_dir_all(root.join("voice")).expect("mkdir voice");
        std::fs::create_dir_all(&lib_dir).expect("mkdir onnxruntime");
        std::fs::write(lib_dir.join("libonnxruntime.so.1.31.1"), b"").expect("write");
        std::fs::write(lib_dir.join("README"), b"").expect("write");
        let mut opts = BTreeMap::new();
        opts.insert(
            "onnxruntime".to_string(),
            "/opt/ort/libonnxruntime.so".to_string(),
        );
        let c = library_candidates(&root.join("voice"), &opts);
        assert_eq!(
            c.first(),
            Some(&PathBuf::from("/opt/ort/libonnxruntime.so"))
        );
        assert_eq!(c.last(), Some(&lib_dir.join("libonnxruntime.so.1.31.1")));
        assert!(!c.iter().any(|p| p.ends_with("README")), "{c:?}");
        std::fs::remove_dir_all(&root).expect("cleanup");
    }

    #[test]
    fn threads_option_must_be_positive() {
        let mut opts = BTreeMap::new();
        assert_eq!(threads_option(&opts).expect("unset"), None);
        opts.insert("threads".to_string(), "2".to_string());
        assert_eq!(threads_option(&opts).expect("2"), Some(2));
        opts.insert("threads".to_string(), "0".to_string());
        assert!(threads_option(&opts).is_err());
    }
}
