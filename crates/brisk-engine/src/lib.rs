//! The brisk engine: a registry of models with load policies, admission
//! control, dynamic batching and one thread per loaded model.

pub mod batch;
pub mod cache;
mod error;
mod registry;
pub mod timeline;
mod worker;

pub use batch::BatchLimits;
pub use cache::{CacheMode, CacheSettings, CacheStatus, ResultCache};
pub use error::EngineError;
pub use registry::{EngineSettings, LoadPolicy, ModelSpec, ModelStatus, Readiness, Registry};
pub use timeline::Timeline;
