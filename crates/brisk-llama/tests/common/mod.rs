//! Shared by the brisk-llama integration tests: where the test model is,
//! and a [`Reply`] that keeps the answer for the test to read back.
// Each test crate uses a part of this module.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use brisk_core::{BackendError, Generation, Reply, Response};

pub const MODEL_DIR: &str = "smollm2-135m-instruct";
pub const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// `models/smollm2-135m-instruct` (or under `BRISK_MODELS_DIR`); fails
/// pointing at the script that fetches it.
pub fn model_dir() -> PathBuf {
    let root = std::env::var_os("BRISK_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let p = root.join(MODEL_DIR);
    assert!(
        p.join(MODEL_FILE).exists(),
        "{} is missing: run scripts/fetch-models first (or set BRISK_MODELS_DIR)",
        p.display()
    );
    p
}

/// A [`Reply`] the test reads back.
#[derive(Clone, Default)]
pub struct Slot(Arc<Mutex<Option<Result<Response, BackendError>>>>);

impl Reply for Slot {
    fn is_closed(&self) -> bool {
        false
    }
    fn send(self: Box<Self>, r: Result<Response, BackendError>) {
        *self.0.lock().expect("lock") = Some(r);
    }
}

impl Slot {
    /// Whether an answer arrived (and was not taken yet).
    pub fn is_answered(&self) -> bool {
        self.0.lock().expect("lock").is_some()
    }

    /// The generation, once answered; panics on any other answer.
    pub fn generation(&self) -> Option<Generation> {
        match self.0.lock().expect("lock").take() {
            Some(Ok(Response::Generate(g))) => Some(g),
            None => None,
            other => panic!("unexpected {other:?}"),
        }
    }
}
