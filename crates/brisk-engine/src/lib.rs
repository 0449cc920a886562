//! The brisk engine: a registry of models with load policies, admission
//! control, dynamic batching and one thread per loaded model.

pub mod batch;
pub mod cache;
mod error;
pub mod pipeline;
mod registry;
pub mod speech;
pub mod timeline;
pub mod topics;
mod worker;

pub use batch::BatchLimits;
pub use cache::{CacheMode, CacheSettings, CacheStatus, ResultCache};
pub use error::EngineError;
pub use registry::{EngineSettings, LoadPolicy, ModelSpec, ModelStatus, Readiness, Registry};
pub use timeline::Timeline;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Sets its flag when dropped. A request future holds one while a model
/// generates for it; the token sink reads the flag, so a client that goes
/// away (its future dropped) stops the generation at the next token
/// instead of letting it run to the end.
pub struct CancelOnDrop(pub Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
