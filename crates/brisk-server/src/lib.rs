//! The brisk HTTP server: routes, configuration, metrics and the CLI's
//! building blocks. `main.rs` only parses arguments and calls [`serve`].

pub mod audio;
pub mod auth;
pub mod bench;
pub mod bench_pipeline;
pub mod cache;
pub mod chat;
mod chunking;
pub mod config;
pub mod dashboard;
mod decode;
pub mod embeddings;
pub mod energy_vad;
pub mod env;
pub mod error;
pub mod jobs;
pub mod observe;
pub mod ocr;
pub mod pipelines;
pub mod routes;
pub mod serve;
pub mod speech;
pub mod stream;
mod uploads;
pub mod vad;

use std::sync::Arc;

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
    pub pipelines: Arc<pipelines::Pipelines>,
    /// API and admin keys (hashed); empty = no authentication.
    pub keys: Arc<auth::Keys>,
    /// The async job store; `None` until [`jobs::start`] (or when disabled).
    pub jobs: Option<Arc<jobs::Jobs>>,
}

impl AppState {
    pub fn timeline(&self) -> &Timeline {
        self.registry.timeline()
    }
}
