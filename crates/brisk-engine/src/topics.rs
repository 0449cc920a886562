//! Topic analysis (BERTopic's pipeline) over a registry embeddings model:
//! the documents are embedded through the registry in chunks, so the result
//! cache and the model's batching and admission control apply, then
//! `brisk-topics` reduces, clusters and describes them on a blocking thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use brisk_core::{Request, Response, Task};
pub use brisk_topics::{NrTopics, StopWords, TopicModel, TopicParams};
use futures_util::stream::{self, StreamExt};

use crate::{CancelOnDrop, EngineError, Registry};

/// Documents per embeddings request: small enough for progress to move
/// often and for other clients' requests to interleave, large enough to
/// batch well.
const EMBED_CHUNK: usize = 64;

/// Embeddings requests queued at once (see [`analyze`]).
const CHUNKS_IN_FLIGHT: usize = 2;

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
    // Chunks of documents of similar length in tokens, as
    // sentence-transformers' encode sorts them: a batch is padded to its
    // longest text, so mixing lengths wastes the model's work on padding.
    // Sorting by characters instead left ~9% more padded tokens (and ~0.4 s
    // more embedding for 1,200 short documents). The vectors go back to the
    // documents' own order.
    let started = std::time::Instant::now();
    let tokens = registry.token_counts(model, documents.clone()).await?;
    let mut order: Vec<usize> = (0..n).collect();
    match &tokens {
        Some(tokens) => order.sort_by_key(|&i| tokens[i]),
        None => order.sort_by_key(|&i| documents[i].len()),
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; n];
    let mut done = 0;
    // Long documents are cut to the model's length, as sentence-transformers
    // does inside BERTopic.
    let chunks: Vec<Vec<usize>> = order.chunks(EMBED_CHUNK).map(<[usize]>::to_vec).collect();
    let requests = chunks.into_iter().map(|chunk| {
        let request = Request::Embed {
            texts: chunk.iter().map(|&i| documents[i].clone()).collect(),
            truncate: true,
        };
        async move { (chunk, registry.infer(model, request).await) }
    });
    // Two chunks in flight: while the model runs one, the next is already
    // tokenized and queued, so the model does not idle between chunks (one
    // at a time cost ~10% of the embedding time in round trips). Other
    // clients' requests still wait behind at most one chunk.
    let mut replies = stream::iter(requests).buffered(CHUNKS_IN_FLIGHT);
    while let Some((chunk, reply)) = replies.next().await {
        match reply? {
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
    drop(replies); // it borrows `documents`, which the analysis takes
    let embeddings: Vec<Vec<f32>> = slots.into_iter().flatten().collect();
    let embedded = started.elapsed();
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
        Ok(Ok(model)) => {
            tracing::debug!(
                documents = n,
                embed_ms = embedded.as_millis() as u64,
                topics_ms = (started.elapsed() - embedded).as_millis() as u64,
                "topics analysed"
            );
            Ok(model)
        }
        Ok(Err(brisk_topics::TopicsError::Invalid(m))) => Err(EngineError::InvalidInput(m)),
        // Only reached when the caller went away; nobody reads this.
        Ok(Err(brisk_topics::TopicsError::Cancelled)) => Err(EngineError::ShuttingDown),
        Err(_) => Err(EngineError::Panicked {
            model: model.to_string(),
        }),
    }
}
