//! The CLI's tools beyond `serve`: `brisk bench` ([`bench`]: cold start,
//! throughput and latency of a running binary) and `brisk bench pipeline`
//! ([`bench_pipeline`]: a pipeline against its steps one by one, in
//! process), and `brisk models` ([`models`]: what would be served, without
//! serving). The binary's entry point is `main.rs` beside them.

pub mod bench;
pub mod bench_pipeline;
pub mod models;
