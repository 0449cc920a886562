//! The CLI's tools beyond `serve`: `brisk bench` ([`bench`]: cold start,
//! throughput and latency of a running binary) and `brisk bench pipeline`
//! ([`bench_pipeline`]: a pipeline against its steps one by one, in
//! process). The binary's entry point is `main.rs` beside them.

pub mod bench;
pub mod bench_pipeline;
