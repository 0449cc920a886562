//! The brisk HTTP server: the edge between HTTP and the engine, and the CLI.
//!
//! - [`api`]: one module per endpoint family (extraction, validation and the
//!   answer's shape only; the work happens in `brisk-engine`);
//! - [`jobs`]: async jobs stored in SQLite; [`stream`]: live transcription
//!   over WebSocket;
//! - [`cli`]: `brisk bench` and `brisk bench pipeline` (the binary's `main`
//!   is `src/cli/main.rs`);
//! - here: [`AppState`], [`serve`] (startup and drain), [`routes`] (the
//!   router), [`error`] (the one error-to-status table), [`config`], [`auth`],
//!   [`observe`] (logs and metrics) and [`env`] (every `BRISK_*` name).
//!
//! Imports run one way: `cli` → `serve` → `routes` → `api`, `jobs`,
//! `stream` → `auth`, `observe` → `config`, `error`, `env`.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod env;
pub mod error;
pub mod jobs;
pub mod observe;
pub mod openapi;
pub mod routes;
pub mod serve;
pub mod stream;

use std::sync::Arc;

use brisk_engine::pipeline::{Pipelines, Runner};
use brisk_engine::{Registry, Timeline};
use metrics_exporter_prometheus::PrometheusHandle;

pub use routes::router;
pub use serve::{build_state, serve, ServeOptions};

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
    pub metrics: Option<PrometheusHandle>,
    pub config: Arc<config::Config>,
    /// Validated at startup against the registry's models.
    pub pipelines: Arc<Pipelines>,
    /// API and admin keys (hashed); empty = no authentication.
    pub keys: Arc<auth::Keys>,
    /// The async job store; `None` until [`jobs::open`] (or when disabled).
    pub jobs: Option<Arc<jobs::Jobs>>,
}

impl AppState {
    pub fn timeline(&self) -> &Timeline {
        self.registry.timeline()
    }

    /// What pipeline execution needs from the server: the registry, and
    /// the audio codec of this build.
    pub fn pipeline_runner(&self) -> Runner {
        Runner {
            registry: self.registry.clone(),
            codec: Arc::new(api::decode::Codec),
            max_audio_seconds: self.config.server.max_audio_seconds,
            max_topic_documents: self.config.limits.max_topic_documents,
        }
    }
}
