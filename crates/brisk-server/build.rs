//! Run-time path of the prebuilt CTranslate2 library (see
//! crates/brisk-ct2/build.rs): a link argument printed by brisk-ct2's build
//! script only reaches brisk-ct2's own binaries, so this package's binaries
//! and tests get the same `-rpath` from the folder brisk-ct2 hands on.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if let Some(dir) = std::env::var_os("DEP_CTRANSLATE2_PREBUILT_DIR") {
        println!(
            "cargo:rustc-link-arg=-Wl,-rpath,{}",
            std::path::Path::new(&dir).display()
        );
    }
}
