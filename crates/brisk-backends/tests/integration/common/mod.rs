//! Helpers shared by the backends' model tests.

use std::path::PathBuf;

/// `rel` inside the fetched models folder (`BRISK_MODELS_DIR`, else the
/// workspace's `models/`); fails, pointing at the script that fetches it,
/// when it is missing.
pub fn fetched(rel: &str) -> PathBuf {
    let root = std::env::var_os("BRISK_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let p = root.join(rel);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models first (or set BRISK_MODELS_DIR)",
        p.display()
    );
    p
}
