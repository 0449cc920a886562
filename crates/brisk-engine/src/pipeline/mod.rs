//! Pipelines: `[pipelines.NAME]` tables declare a graph of model steps, run
//! with one request. Steps whose inputs are ready run at the same time (the
//! tutor flow of seed 002: speech to text, then several models on the
//! transcript in parallel).
//!
//! ```toml
//! [pipelines.voice-note]
//! [[pipelines.voice-note.steps]]
//! name = "transcript"
//! model = "whisper-tiny-en"
//! input = "request.audio"           # field selection
//! [[pipelines.voice-note.steps]]
//! name = "reply"
//! model = "smollm2-135m-instruct"
//! prompt = "Answer briefly: {{ transcript.text }}"   # template
//! options = { max_tokens = 32 }
//! ```
//!
//! A step reads the request (`request.FIELD`) and the outputs of earlier
//! steps (`STEP.FIELD`), either by field selection (`input`) or through a
//! minijinja template (`prompt`, `system`); the steps it names are its
//! inputs in the graph. Each step goes through the registry exactly like a
//! direct call (lazy load, admission, batching, the result cache), so a
//! pipeline is no faster per step, only faster overall by overlapping
//! independent branches.
//!
//! - [`graph`]: the pure step graph and its async runner;
//! - `config`: the tables as written;
//! - `exec`: validation against the served models, and execution.

mod config;
mod exec;
pub mod graph;

pub use config::{PipelineConfig, StepConfig};
pub use exec::{
    execute, timing_json, AudioCodec, Pipeline, PipelineError, PipelineInput, Pipelines, RunError,
    RunOutcome, Runner, StepError,
};
pub use graph::{run, Dag, DagError, StepFailure, StepResult, StepTiming};
