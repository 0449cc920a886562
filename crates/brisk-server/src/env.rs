//! Every environment variable brisk reads, in one place.

/// Path of the TOML config file (same as `--config`).
pub const CONFIG: &str = "BRISK_CONFIG";
/// Address to bind (same as `--host`).
pub const HOST: &str = "BRISK_HOST";
/// Port to bind (same as `--port`).
pub const PORT: &str = "BRISK_PORT";
/// Folder scanned for models and against which relative model paths resolve.
pub const MODELS_DIR: &str = "BRISK_MODELS_DIR";
/// Folder for brisk's state: jobs database, disk cache (same as `--state-dir`).
pub const STATE_DIR: &str = "BRISK_STATE_DIR";
/// Log filter in `tracing_subscriber::EnvFilter` syntax (default `info`).
pub const LOG: &str = "BRISK_LOG";
/// Log format: `text` (default) or `json`.
pub const LOG_FORMAT: &str = "BRISK_LOG_FORMAT";
/// Threads used by the inference kernels (candle reads it at first use).
pub const RAYON_NUM_THREADS: &str = "RAYON_NUM_THREADS";
/// Root of a local Hugging Face cache, used to resolve `hf://` sources.
pub const HF_HOME: &str = "HF_HOME";
/// Client API keys, comma-separated (added to `auth.api_keys`).
pub const API_KEYS: &str = "BRISK_API_KEYS";
/// Admin keys, comma-separated (added to `auth.admin_keys`).
pub const ADMIN_KEYS: &str = "BRISK_ADMIN_KEYS";
/// The ONNX Runtime library file for the ONNX backends (read by the backends;
/// default: `libonnxruntime.so*` in the models folder's `onnxruntime/`).
pub const ORT_DYLIB_PATH: &str = "ORT_DYLIB_PATH";
