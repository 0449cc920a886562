//! Run-time path of the prebuilt CTranslate2 library (see
//! crates/brisk-ct2/build.rs): a link argument printed by brisk-ct2's build
//! script only reaches brisk-ct2's own binaries, so this package's binaries
//! and tests, which link it (through brisk-backends), get the same `-rpath`.
//! The folder comes from brisk-ct2 (`DEP_CTRANSLATE2_PREBUILT_DIR`, when it
//! is a direct dependency), else from `BRISK_CT2_DIR`, which
//! .cargo/config.toml sets for every build script (a dev-dependency hands
//! nothing to a build script). An rpath to a library a binary does not use
//! costs nothing.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BRISK_CT2_DIR");
    let dir = std::env::var_os("DEP_CTRANSLATE2_PREBUILT_DIR")
        .or_else(|| std::env::var_os("BRISK_CT2_DIR"))
        .map(std::path::PathBuf::from);
    if let Some(dir) = dir.filter(|d| d.is_dir()) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
}
