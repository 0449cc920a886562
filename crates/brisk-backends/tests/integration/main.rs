//! The backends' model tests, one module per engine, in ONE test binary
//! (one debug link of the engines instead of six; see brisk-server's
//! tests/integration/main.rs). Each module carries the `#![cfg(feature)]`
//! of the engine it tests. Filter by module: `cargo test -p brisk-backends
//! --test integration onnx_bert::`.

mod bad_models;
mod common;
mod minilm;
mod onnx;
mod onnx_bert;
mod onnx_rerank;
mod whisper;
