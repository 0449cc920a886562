//! Topic analysis (BERTopic's pipeline) over a registry embeddings model:
//! the documents are embedded through the registry in chunks, so the result
//! cache and the model's batching and admission control apply, then
//! `brisk-topics` reduces, clusters and describes them on a blocking thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use brisk_core::{Request, Response, Task};
pub use brisk_topics::{NrTopics, StopWords, TopicModel, TopicParams};

use crate::{CancelOnDrop, EngineError, Registry};

/// Documents per embeddings request: small enough for progress to move
/// often and for other clients' requests to interleave, large enough to
/// batch well.
const EMBED_CHUNK: usize = 64;

/// Share of the progress bar given to embedding; the rest is UMAP, HDBSCAN
/// and keywords. Embedding dominates on CPU.
const EMBED_SHARE: f32 = 0.6;

/// Receives the fraction done, 0..=1, increasing.
pub type Progress = Arc<dyn Fn(f32) + Send + Sync>;

/// Checks that need neither model nor embeddings: the HTTP edge calls them
/// first so a bad request fails before any work.
pub fn validate(documents: &[String], params: &TopicParams) -> Result<(), EngineError> {
    brisk_topics::validate(documents, params).map_err(|e| EngineError::InvalidInput(e.to_string()))
}

/// Topics of `documents` embedded by `model` (an embeddings model).
pub async fn analyze(
    registry: &Registry,
    model: &str,
    documents: Vec<String>,
    params: TopicParams,
    progress: Progress,
) -> Result<TopicModel, EngineError> {
    validate(&documents, &params)?;
    let serves = registry.task_of(model)?;
    if serves != Task::Embeddings {
        return Err(EngineError::WrongTask {
            model: model.to_string(),
            serves,
            asked: Task::Embeddings,
        });
    }
    let n = documents.len();
    // Chunks of documents of similar length, as sentence-transformers'
    // encode sorts them: a batch is padded to its longest text, so mixing
    // lengths wastes most of the model's work on padding. The vectors go
    // back to the documents' own order.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| documents[i].len());
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; n];
    let mut done = 0;
    for chunk in order.chunks(EMBED_CHUNK) {
        // Long documents are cut to the model's length, as
        // sentence-transformers does inside BERTopic.
        let request = Request::Embed {
            texts: chunk.iter().map(|&i| documents[i].clone()).collect(),
            truncate: true,
        };
        match registry.infer(model, request).await? {
            Response::Embed { vectors, .. } if vectors.len() == chunk.len() => {
                for (&i, v) in chunk.iter().zip(vectors) {
                    slots[i] = Some(v);
                }
            }
            other => {
                return Err(EngineError::Backend(brisk_core::BackendError::Inference(
                    format!("unexpected reply to an embeddings request: {other:?}"),
                )))
            }
        }
        done += chunk.len();
        progress(EMBED_SHARE * done as f32 / n as f32);
    }
    let embeddings: Vec<Vec<f32>> = slots.into_iter().flatten().collect();
    // The blocking analysis polls the flag, so dropping this future (a
    // client gone, a job cancelled) stops the work.
    let cancelled = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancelled.clone());
    let task = tokio::task::spawn_blocking(move || {
        brisk_topics::analyze(&documents, &embeddings, &params, &mut |f| {
            progress(EMBED_SHARE + (1.0 - EMBED_SHARE) * f);
            !cancelled.load(Ordering::Relaxed)
        })
    });
    match task.await {
        Ok(Ok(model)) => Ok(model),
        Ok(Err(brisk_topics::TopicsError::Invalid(m))) => Err(EngineError::InvalidInput(m)),
        // Only reached when the caller went away; nobody reads this.
        Ok(Err(brisk_topics::TopicsError::Cancelled)) => Err(EngineError::ShuttingDown),
        Err(_) => Err(EngineError::Panicked {
            model: model.to_string(),
        }),
    }
}
