//! The model thread: one OS thread per loaded model, fed by a channel.
//!
//! Inference is CPU-bound and would stall the async runtime, so it never runs
//! there. The thread owns the backend (so the backend needs no locks), batches
//! what is queued with [`BatchState`], and answers each job on its oneshot.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use brisk_core::{Backend, Prepared, Request, Response};
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use crate::batch::{BatchLimits, BatchState, Batchable, Next};
use crate::error::EngineError;

/// One queued request.
pub(crate) struct Job {
    pub request: Request,
    /// The request as the model's tokenizer saw it in the engine, so the
    /// backend does not tokenize it again.
    pub prepared: Option<Prepared>,
    pub tokens: usize,
    pub enqueued: Instant,
    pub deadline: Instant,
    pub reply: oneshot::Sender<Result<Response, EngineError>>,
    /// The admission slot. It is released only when the job is answered or
    /// dropped, so the queue bound covers work inside the thread too.
    pub _permit: OwnedSemaphorePermit,
}

impl Batchable for Job {
    fn tokens(&self) -> usize {
        self.tokens
    }
    fn is_cancelled(&self) -> bool {
        self.reply.is_closed()
    }
    fn enqueued_at(&self) -> Instant {
        self.enqueued
    }
    fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// Why a model thread ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WorkerExit {
    /// Every sender was dropped (unload, eviction, shutdown) and the queue drained.
    Drained,
    /// The backend panicked; it is dropped and must be loaded again.
    Panicked,
}

pub(crate) fn run(
    model: String,
    mut backend: Box<dyn Backend>,
    limits: BatchLimits,
    rx: Receiver<Job>,
    deadline_budget: Duration,
) -> WorkerExit {
    let mut state: BatchState<Job> = BatchState::new(limits);
    let labels = [("model", model.clone())];
    loop {
        let now = Instant::now();
        for job in state.prune(now) {
            if !job.reply.is_closed() {
                metrics::counter!("brisk_deadline_exceeded_total", &labels).increment(1);
                let _ = job.reply.send(Err(EngineError::DeadlineExceeded {
                    model: model.clone(),
                    deadline: deadline_budget,
                }));
            }
        }
        match state.next(now) {
            Next::Idle => match rx.recv() {
                Ok(job) => state.push(job),
                // Senders gone and nothing queued: the model was unloaded.
                Err(_) => return WorkerExit::Drained,
            },
            Next::Wait(d) => match rx.recv_timeout(d) {
                Ok(job) => state.push(job),
                Err(RecvTimeoutError::Timeout) => {}
                // Keep serving what is queued: accepted work is never lost.
                Err(RecvTimeoutError::Disconnected) => {
                    if let Next::Run(batch) = state.next(now + d) {
                        if !run_batch(&model, &mut *backend, batch) {
                            return WorkerExit::Panicked;
                        }
                    }
                }
            },
            Next::Run(batch) => {
                if !run_batch(&model, &mut *backend, batch) {
                    return WorkerExit::Panicked;
                }
            }
        }
        // Take everything that arrived meanwhile without blocking, so the
        // next decision sees the whole queue.
        while let Ok(job) = rx.try_recv() {
            state.push(job);
        }
        metrics::gauge!("brisk_queue_depth", &labels).set(state.len() as f64);
    }
}

/// Runs one batch; returns false when the backend panicked.
fn run_batch(model: &str, backend: &mut dyn Backend, batch: Vec<Job>) -> bool {
    let labels = [("model", model.to_string())];
    metrics::histogram!("brisk_batch_size", &labels).record(batch.len() as f64);
    let (requests, replies): (Vec<(Request, Option<Prepared>)>, Vec<_>) = batch
        .into_iter()
        .map(|j| ((j.request, j.prepared), (j.reply, j._permit)))
        .unzip();
    let n = requests.len();
    let span = tracing::debug_span!("infer", model, batch = n);
    let _enter = span.enter();
    let started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| backend.infer_prepared(requests)));
    metrics::histogram!("brisk_inference_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    match outcome {
        Ok(results) => {
            let mut results = results.into_iter();
            for (reply, permit) in replies {
                // Free the slot before answering: a caller that reacts to
                // the reply must already see this model as idle.
                drop(permit);
                let r = results.next().unwrap_or_else(|| {
                    Err(brisk_core::BackendError::Inference(format!(
                        "backend returned fewer than {n} results"
                    )))
                });
                let _ = reply.send(r.map_err(EngineError::from));
            }
            true
        }
        Err(_) => {
            tracing::error!(model, "backend panicked; dropping it");
            metrics::counter!("brisk_backend_panics_total", &labels).increment(1);
            for (reply, permit) in replies {
                drop(permit);
                let _ = reply.send(Err(EngineError::Panicked {
                    model: model.to_string(),
                }));
            }
            false
        }
    }
}
