//! How the weights are held (backend option `weights`).
//!
//! llama.cpp multiplies quantized weights by activations it quantizes to 8
//! bits. Small models are sensitive to that noise: SmolLM2-135M Q4_1 answers
//! "What is the capital of France?" wrongly under 8-bit activations, and
//! exactly as in f32 ("Paris") once the same weights are converted to F16
//! (F16 matrices take f16 activations). So small files are converted once,
//! at their first load, with llama.cpp's own `llama_model_quantize`, and the
//! F16 copy is kept for later loads (beside the model, or in the temp dir
//! when the model's folder is read-only).

use std::path::{Path, PathBuf};

use brisk_core::BackendError;

/// Files up to this size are converted to F16 by [`Weights::Auto`]: about
/// 200M parameters at 4-5 bits, where F16 costs at most ~400 MB.
pub const AUTO_F16_MAX_FILE_BYTES: u64 = 128 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Weights {
    /// `F16` for files up to [`AUTO_F16_MAX_FILE_BYTES`], else `Native`.
    #[default]
    Auto,
    /// Exactly as in the file.
    Native,
    /// Every matrix as F16 (converted once, cached).
    F16,
}

impl std::str::FromStr for Weights {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "native" => Ok(Self::Native),
            "f16" => Ok(Self::F16),
            other => Err(BackendError::InvalidModel(format!(
                "unknown weights '{other}' (auto, native, f16)"
            ))),
        }
    }
}

impl Weights {
    fn resolve(self, file_bytes: u64) -> Self {
        match self {
            Self::Auto if file_bytes <= AUTO_F16_MAX_FILE_BYTES => Self::F16,
            Self::Auto => Self::Native,
            other => other,
        }
    }
}

/// Where the F16 copy of `file` lives: `.brisk/NAME.F16.gguf` beside it (a
/// hidden folder, so model discovery never sees it), else the temp dir.
fn f16_paths(file: &Path) -> Vec<PathBuf> {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = format!("{stem}.F16.gguf");
    let mut paths = Vec::new();
    if let Some(dir) = file.parent() {
        paths.push(dir.join(".brisk").join(&name));
    }
    // Keyed by the original's path so two models of the same name differ.
    let key = fnv1a(&file.to_string_lossy());
    paths.push(
        std::env::temp_dir()
            .join("brisk-f16")
            .join(format!("{key:016x}-{name}")),
    );
    paths
}

/// FNV-1a: a stable, dependency-free name hash.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The bytes the weights will take as held.
pub fn estimate(file: &Path, weights: Weights) -> Option<u64> {
    let size = std::fs::metadata(file).ok()?.len();
    match weights.resolve(size) {
        Weights::F16 => Some(
            f16_paths(file)
                .iter()
                .find_map(|p| std::fs::metadata(p).ok().map(|m| m.len()))
                // 4-5 bits per weight become 16.
                .unwrap_or(size.saturating_mul(7) / 2),
        ),
        _ => Some(size),
    }
}

/// The file to load: `file` itself, or its F16 copy (made now if missing).
pub fn prepare(file: &Path, weights: Weights, threads: usize) -> Result<PathBuf, BackendError> {
    let size = std::fs::metadata(file)
        .map_err(|e| BackendError::NotFound(format!("{}: {e}", file.display())))?
        .len();
    if weights.resolve(size) != Weights::F16 {
        return Ok(file.to_path_buf());
    }
    let candidates = f16_paths(file);
    let fresh = |p: &Path| {
        // A copy older than the original is stale.
        let (Ok(copy), Ok(orig)) = (std::fs::metadata(p), std::fs::metadata(file)) else {
            return false;
        };
        match (copy.modified(), orig.modified()) {
            (Ok(c), Ok(o)) => c >= o,
            _ => true,
        }
    };
    if let Some(p) = candidates.iter().find(|p| fresh(p)) {
        return Ok(p.clone());
    }
    let mut last_err = String::new();
    for target in &candidates {
        let Some(dir) = target.parent() else { continue };
        if let Err(e) = std::fs::create_dir_all(dir) {
            last_err = format!("{}: {e}", dir.display());
            continue;
        }
        // Convert into a private name, then rename: a concurrent load never
        // sees a half-written file.
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            target
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            std::process::id()
        ));
        let started = std::time::Instant::now();
        match quantize_f16(file, &tmp, threads) {
            Ok(()) => {
                std::fs::rename(&tmp, target)
                    .map_err(|e| BackendError::Inference(format!("{}: {e}", target.display())))?;
                tracing::info!(
                    from = %file.display(),
                    to = %target.display(),
                    secs = started.elapsed().as_secs_f64(),
                    "converted weights to F16 (once; kept for later loads)"
                );
                return Ok(target.clone());
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                last_err = e;
            }
        }
    }
    Err(BackendError::InvalidModel(format!(
        "{}: converting to F16 failed: {last_err}",
        file.display()
    )))
}

/// llama.cpp's `llama_model_quantize` to F16 (every matrix, requantizing
/// quantized ones through f32). Not wrapped by llama-cpp-2, hence the FFI.
#[allow(unsafe_code)]
fn quantize_f16(src: &Path, dst: &Path, threads: usize) -> Result<(), String> {
    use std::ffi::CString;
    let c = |p: &Path| {
        p.to_str()
            .and_then(|s| CString::new(s).ok())
            .ok_or_else(|| format!("{}: not a valid path for llama.cpp", p.display()))
    };
    let (src_c, dst_c) = (c(src)?, c(dst)?);
    // SAFETY: both paths are NUL-terminated strings that outlive the call;
    // the params struct is llama.cpp's default, with plain fields changed;
    // its pointer fields stay null as the default leaves them.
    let rc = unsafe {
        let mut params = llama_cpp_sys_2::llama_model_quantize_default_params();
        params.nthread = i32::try_from(threads).unwrap_or(1);
        params.ftype = llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_F16;
        params.allow_requantize = true;
        params.pure_ = true;
        llama_cpp_sys_2::llama_model_quantize(src_c.as_ptr(), dst_c.as_ptr(), &params)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("llama_model_quantize returned {rc}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_converts_small_files_only() {
        assert_eq!("F16".parse::<Weights>().ok(), Some(Weights::F16));
        assert!("q2".parse::<Weights>().is_err());
        assert_eq!(Weights::Auto.resolve(100 << 20), Weights::F16);
        assert_eq!(Weights::Auto.resolve(300 << 20), Weights::Native);
        assert_eq!(Weights::Native.resolve(1), Weights::Native);
        let paths = f16_paths(Path::new("/m/x/Model.Q4_1.gguf"));
        assert_eq!(paths[0], Path::new("/m/x/.brisk/Model.Q4_1.F16.gguf"));
        assert_ne!(
            paths[1],
            f16_paths(Path::new("/m/y/Model.Q4_1.gguf"))[1],
            "temp copies of different models differ"
        );
    }
}
