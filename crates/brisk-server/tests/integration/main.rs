//! The server's integration tests, one module per area, in ONE test binary.
//!
//! Why one binary: every integration test links the whole server with its
//! engines (llama.cpp, CTranslate2, ONNX Runtime, candle). As 20 separate
//! binaries they cost 19 full debug links, which took minutes of CI time
//! and gigabytes of disk each run (a CI run died in the linker when the
//! disk filled). Run one area with a filter: `cargo test -p brisk-server
//! --test integration http::`.

mod analysis_http;
mod audio_e2e;
mod bad_requests;
mod bench_cli;
mod binary;
mod cache_http;
mod chat_e2e;
mod common;
mod embeddings_e2e;
mod errors;
mod generation_e2e;
mod http;
mod jobs;
mod onnx_e2e;
mod overload;
mod pipeline_e2e;
mod pipelines;
mod rerank_e2e;
mod security;
mod tools_e2e;
mod topics;
mod translate_e2e;
#[cfg(feature = "ct2")]
mod whisper_hf_e2e;
mod ws_e2e;
