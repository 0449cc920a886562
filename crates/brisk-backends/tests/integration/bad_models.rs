//! A corpus of damaged model folders, built at test time from the real
//! fetched models: truncated weights, flipped header bytes, garbage configs
//! and tokenizers. Every load must end in a clean `Err` (or, for a harmless
//! flip, an `Ok`), never a panic, and within a time bound. The same parsers
//! are the cargo-fuzz targets under `fuzz/`; this is their regression run.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use brisk_backends::BriskLoader;
use brisk_core::{Loader, ModelSource};

/// Copies a model folder (files only, one level deep) to a scratch dir.
fn copy_model(src: &Path, name: &str) -> PathBuf {
    // A models folder of its own: the copy, and a link to the fetched ONNX
    // Runtime library beside it, where the ONNX backends look for it (without
    // it even the intact copy would fail to load, and every damaged case
    // would "fail cleanly" for the wrong reason).
    let root = std::env::temp_dir().join(format!("brisk-bad-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dst = root.join(name);
    std::fs::create_dir_all(&dst).expect("mkdir");
    let ort = src.with_file_name("onnxruntime");
    if ort.is_dir() {
        std::os::unix::fs::symlink(&ort, root.join("onnxruntime")).expect("link onnxruntime");
    }
    for entry in std::fs::read_dir(src).expect("read model dir").flatten() {
        let p = entry.path();
        // Hidden folders hold derived files (e.g. the F16 copy of a GGUF).
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if p.is_file() {
            std::fs::copy(&p, dst.join(entry.file_name())).expect("copy");
        } else if p.is_dir() {
            let sub = dst.join(entry.file_name());
            std::fs::create_dir_all(&sub).expect("mkdir");
            for f in std::fs::read_dir(&p).expect("read").flatten() {
                std::fs::copy(f.path(), sub.join(f.file_name())).expect("copy");
            }
        }
    }
    dst
}

/// Loads in a thread: `Ok(true)` loaded, `Ok(false)` clean error, `Err`
/// panic (with its message). A load past the bound fails the test.
fn load(backend: &str, dir: &Path, case: &str) -> Result<bool, String> {
    let options = if backend == "ct2-whisper" {
        // Its own option: int8 as the server loads it by default.
        [("compute_type".to_string(), "int8".to_string())]
    } else {
        // Quantized weights as stored: the corpus is about parsing, and
        // widening to f32 would only make each case slower.
        [("weights".to_string(), "native".to_string())]
    };
    let source = ModelSource {
        backend: backend.into(),
        path: dir.to_path_buf(),
        options: options.into_iter().collect(),
        adapters: Default::default(),
    };
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let r = BriskLoader::new().load("bad", &source).map(|_| ());
        let _ = tx.send(r.is_ok());
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(loaded) => {
            let _ = handle.join();
            Ok(loaded)
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let msg = handle
                .join()
                .err()
                .and_then(|p| {
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                })
                .unwrap_or_default();
            Err(format!("{case}: panicked: {msg}"))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{case}: load hung for 120 s"),
    }
}

/// Truncations and header flips of `weights`, plus garbage in `extras`.
fn corpus(model: &str, backend: &str, weights: &str, extras: &[&str]) {
    // One scratch copy per backend: tests of two engines on the same model
    // run in parallel.
    let dir = copy_model(&common::fetched(model), &format!("{model}-{backend}"));
    let file = dir.join(weights);
    let original = std::fs::read(&file).expect("read weights");
    let mut failures = Vec::new();
    assert_eq!(
        load(backend, &dir, "intact"),
        Ok(true),
        "the intact copy loads"
    );

    let len = original.len();
    for cut in [0, 1, 7, 8, 16, 100, 4096, 65_536, len / 2, len - 1] {
        std::fs::write(&file, &original[..cut]).expect("write");
        let case = format!("{weights} truncated to {cut} bytes");
        match load(backend, &dir, &case) {
            Ok(true) => failures.push(format!("{case}: loaded")),
            Ok(false) => {}
            Err(e) => failures.push(e),
        }
    }
    // Flips in the header region: lengths, counts, type tags, offsets.
    let mut damaged = original.clone();
    let offsets: Vec<usize> = (0..16).chain((1..25).map(|k| k * 97)).collect();
    for &at in &offsets {
        damaged[at] ^= 0xff;
        std::fs::write(&file, &damaged).expect("write");
        let case = format!("{weights} byte {at} inverted");
        if let Err(e) = load(backend, &dir, &case) {
            failures.push(e);
        }
        damaged[at] ^= 0xff;
    }
    std::fs::write(&file, &original).expect("restore");
    for extra in extras {
        let path = dir.join(extra);
        let keep = std::fs::read(&path).expect("read extra");
        for (what, bytes) in [
            ("empty", Vec::new()),
            ("garbage", b"\x00\xff{not json".to_vec()),
            (
                "wrong json",
                b"{\"vocab_size\": -1, \"hidden_size\": \"x\"}".to_vec(),
            ),
            ("truncated", keep[..keep.len() / 3].to_vec()),
        ] {
            std::fs::write(&path, &bytes).expect("write");
            let case = format!("{extra} {what}");
            // Some side files are optional (a missing or unreadable
            // config.json means defaults): loading is fine, panicking is not.
            if let Err(e) = load(backend, &dir, &case) {
                failures.push(e);
            }
        }
        std::fs::write(&path, &keep).expect("restore");
    }
    // The copy's own models folder (the link inside is removed, not followed).
    let _ = std::fs::remove_dir_all(dir.parent().expect("models folder"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn damaged_safetensors_bert_never_panics() {
    corpus(
        "all-minilm-l6-v2",
        "candle-bert",
        "model.safetensors",
        &["config.json", "tokenizer.json"],
    );
}

/// The ONNX backend reads the same files with the safetensors crate and
/// builds its graph from them (a damaged folder ends in a clean error,
/// before or at ONNX Runtime).
#[cfg(feature = "onnx")]
#[test]
fn damaged_safetensors_onnx_bert_never_panics() {
    corpus(
        "all-minilm-l6-v2",
        "onnx-bert",
        "model.safetensors",
        &["config.json", "tokenizer.json"],
    );
}

#[test]
fn damaged_gguf_never_panics() {
    corpus(
        "smollm2-135m-instruct",
        "llama-cpp",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        &[],
    );
}

#[test]
fn damaged_ctranslate2_whisper_never_panics() {
    corpus(
        "whisper-tiny-en",
        "candle-whisper",
        "model.bin",
        &["config.json", "tokenizer.json"],
    );
}

/// The same file through CTranslate2's C++ reader (the default Whisper
/// engine): its exceptions must come back as errors, never abort the
/// process.
#[cfg(feature = "ct2")]
#[test]
fn damaged_ctranslate2_whisper_on_ct2_never_panics() {
    corpus(
        "whisper-tiny-en",
        "ct2-whisper",
        "model.bin",
        &["config.json", "tokenizer.json"],
    );
}
