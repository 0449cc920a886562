//! Finds the prebuilt CTranslate2 library (feature `prebuilt`, the default).
//!
//! `scripts/ct2-prebuilt` unpacks the ctranslate2 PyPI wheel's shared
//! library into `$BRISK_CT2_DIR`, which .cargo/config.toml sets to `.ct2/`
//! at the workspace root unless the environment has it. ct2rs's build
//! script searches that folder through `CMAKE_LIBRARY_PATH` (also set
//! there). This script adds what a plain `cargo build` still lacks:
//!
//! * `rustc-link-search` again: it reaches every final link that includes
//!   this crate, in any package, whatever ct2rs saw.
//! * `-rpath`: the test and example binaries of this crate find the `.so`
//!   at run time without `LD_LIBRARY_PATH`. A link argument only applies to
//!   the package that prints it, so the folder is also handed on as
//!   `DEP_CTRANSLATE2_PREBUILT_DIR` (`links` in Cargo.toml) to direct
//!   dependents (brisk-backends, brisk-server), whose build scripts add the
//!   same rpath to their binaries.
//!
//! Without the library the build stops here with the command to run, instead
//! of a linker error that names none of this.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BRISK_CT2_DIR");
    if env::var_os("CARGO_FEATURE_PREBUILT").is_none() {
        return;
    }
    let Some(dir) = env::var_os("BRISK_CT2_DIR").map(PathBuf::from) else {
        panic!(
            "brisk-ct2: BRISK_CT2_DIR is not set (the workspace's .cargo/config.toml \
             sets it); point it at the folder scripts/ct2-prebuilt fills"
        );
    };
    let lib = dir.join("libctranslate2.so");
    if !lib.exists() {
        panic!(
            "brisk-ct2: {} is missing; run scripts/ct2-prebuilt first \
             (it unpacks the ctranslate2 4.8.5 wheel's library there), or \
             build brisk-ct2 with --no-default-features --features vendored",
            lib.display()
        );
    }
    // A changed library (another wheel unpacked) relinks.
    println!("cargo:rerun-if-changed={}", lib.display());
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    println!("cargo:dir={}", dir.display());
}
