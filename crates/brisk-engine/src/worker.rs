//! The model thread: one OS thread per loaded model, fed by a channel.
//!
//! Inference is CPU-bound and would stall the async runtime, so it never runs
//! there. The thread owns the backend (so the backend needs no locks), batches
//! what is queued with [`BatchState`], and answers each job on its oneshot.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use brisk_core::{Backend, BackendError, Prepared, Reply, Request, Response};
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
    if backend.stepper().is_some() {
        return run_stepped(model, backend, rx, deadline_budget);
    }
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

/// A job's reply channel and admission slot, handed to a stepping backend:
/// the slot is held until the request is answered, so the queue bound
/// covers the requests running inside the backend too.
struct JobReply {
    reply: oneshot::Sender<Result<Response, EngineError>>,
    permit: OwnedSemaphorePermit,
}

impl Reply for JobReply {
    fn is_closed(&self) -> bool {
        self.reply.is_closed()
    }

    fn send(self: Box<Self>, result: Result<Response, BackendError>) {
        let JobReply { reply, permit } = *self;
        // Free the slot before answering (see `run_batch`).
        drop(permit);
        let _ = reply.send(result.map_err(EngineError::from));
    }
}

/// The model thread of a backend with continuous batching
/// ([`Backend::stepper`]): between two steps it starts queued requests in
/// the backend's free slots (oldest first), so a new request joins at the
/// next step instead of waiting for the running ones to end. The backend
/// decides what each step computes; this loop only feeds it and sleeps
/// when there is nothing to do.
fn run_stepped(
    model: String,
    mut backend: Box<dyn Backend>,
    rx: Receiver<Job>,
    deadline_budget: Duration,
) -> WorkerExit {
    let labels = [("model", model.clone())];
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut senders_gone = false;
    loop {
        let Some(stepper) = backend.stepper() else {
            return WorkerExit::Drained;
        };
        // Waiting requests whose caller left, or whose deadline passed,
        // never start.
        let now = Instant::now();
        let mut kept = VecDeque::with_capacity(waiting.len());
        for job in waiting.drain(..) {
            if job.reply.is_closed() {
                continue;
            }
            if job.deadline <= now {
                metrics::counter!("brisk_deadline_exceeded_total", &labels).increment(1);
                let _ = job.reply.send(Err(EngineError::DeadlineExceeded {
                    model: model.clone(),
                    deadline: deadline_budget,
                }));
                continue;
            }
            kept.push_back(job);
        }
        waiting = kept;
        let admitted = catch_unwind(AssertUnwindSafe(|| {
            while stepper.free_slots() > 0 {
                let Some(job) = waiting.pop_front() else {
                    break;
                };
                metrics::histogram!("brisk_queue_wait_seconds", &labels)
                    .record(job.enqueued.elapsed().as_secs_f64());
                let reply = Box::new(JobReply {
                    reply: job.reply,
                    permit: job._permit,
                });
                stepper.start(job.request, reply);
            }
            stepper.step()
        }));
        let busy = match admitted {
            Ok(busy) => busy,
            Err(_) => {
                // The requests inside the backend are dropped with it: their
                // callers see the closed channel as a failed request.
                tracing::error!(model, "backend panicked; dropping it");
                metrics::counter!("brisk_backend_panics_total", &labels).increment(1);
                for job in waiting {
                    let _ = job.reply.send(Err(EngineError::Panicked {
                        model: model.clone(),
                    }));
                }
                return WorkerExit::Panicked;
            }
        };
        if !busy && waiting.is_empty() {
            if senders_gone {
                return WorkerExit::Drained;
            }
            // Nothing running, nothing queued: sleep until a request comes.
            match rx.recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => return WorkerExit::Drained,
            }
        }
        // Take everything that arrived during the step without blocking.
        loop {
            match rx.try_recv() {
                Ok(job) => waiting.push_back(job),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    senders_gone = true;
                    break;
                }
            }
        }
        metrics::gauge!("brisk_queue_depth", &labels).set(waiting.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brisk_core::{
        BackendError, FinishReason, GenerateRequest, Generation, Prompt, Stepper, Task,
    };
    use std::sync::Arc;
    use tokio::sync::Semaphore;

    /// A stepping backend with `slots` slots; request i runs for
    /// `max_tokens` steps. Records which requests ran in each step.
    struct Fake {
        slots: usize,
        running: Vec<(usize, usize, Box<dyn Reply>)>,
        log: Arc<parking_lot::Mutex<Vec<Vec<usize>>>>,
    }

    impl Backend for Fake {
        fn task(&self) -> Task {
            Task::Generation
        }
        fn memory_bytes(&self) -> u64 {
            0
        }
        fn infer(&mut self, _: Vec<Request>) -> Vec<Result<Response, BackendError>> {
            unreachable!("a stepping backend is driven by steps")
        }
        fn stepper(&mut self) -> Option<&mut dyn Stepper> {
            Some(self)
        }
    }

    impl Stepper for Fake {
        fn free_slots(&self) -> usize {
            self.slots - self.running.len()
        }
        fn start(&mut self, request: Request, reply: Box<dyn Reply>) {
            let Request::Generate(g) = request else {
                return reply.send(Err(BackendError::Unsupported("x".into())));
            };
            let id = g.params.seed.unwrap_or(0) as usize;
            self.running.push((id, g.params.max_tokens, reply));
        }
        fn step(&mut self) -> bool {
            if self.running.is_empty() {
                return false;
            }
            self.log
                .lock()
                .push(self.running.iter().map(|r| r.0).collect());
            for r in &mut self.running {
                r.1 -= 1;
            }
            let (done, running): (Vec<_>, Vec<_>) = self.running.drain(..).partition(|r| r.1 == 0);
            self.running = running;
            for (_, _, reply) in done {
                reply.send(Ok(Response::Generate(Generation {
                    text: String::new(),
                    prompt_tokens: 1,
                    completion_tokens: 1,
                    finish_reason: FinishReason::Stop,
                    prompt_eval_s: 0.0,
                    eval_s: 0.0,
                    cached_tokens: 0,
                    logprobs: Vec::new(),
                })));
            }
            true
        }
    }

    fn job(
        id: u64,
        steps: usize,
        admission: &Arc<Semaphore>,
    ) -> (Job, oneshot::Receiver<Result<Response, EngineError>>) {
        let (reply, rx) = oneshot::channel();
        let now = Instant::now();
        let request = Request::Generate(GenerateRequest {
            prompt: Prompt::Text("x".into()),
            params: brisk_core::GenerateParams {
                max_tokens: steps,
                seed: Some(id),
                ..Default::default()
            },
            sink: None,
        });
        let job = Job {
            request,
            prepared: None,
            tokens: 1,
            enqueued: now,
            deadline: now + Duration::from_secs(60),
            reply,
            _permit: admission.clone().try_acquire_owned().expect("permit"),
        };
        (job, rx)
    }

    #[test]
    fn requests_join_free_slots_between_steps() {
        let log = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let backend = Box::new(Fake {
            slots: 2,
            running: Vec::new(),
            log: log.clone(),
        });
        let admission = Arc::new(Semaphore::new(8));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut replies = Vec::new();
        // Two long requests and a short one fill the two slots and wait;
        // the third starts as soon as the short one ends.
        for (id, steps) in [(1, 5), (2, 2), (3, 2)] {
            let (j, r) = job(id, steps, &admission);
            tx.send(j).expect("send");
            replies.push(r);
        }
        drop(tx);
        let limits = BatchLimits {
            max_requests: 8,
            max_tokens: 1024,
            max_delay: Duration::ZERO,
        };
        let exit = run("m".into(), backend, limits, rx, Duration::from_secs(60));
        assert_eq!(exit, WorkerExit::Drained);
        for r in replies {
            assert!(matches!(r.blocking_recv(), Ok(Ok(Response::Generate(_)))));
        }
        let log = log.lock().clone();
        assert_eq!(
            log,
            vec![vec![1, 2], vec![1, 2], vec![1, 3], vec![1, 3], vec![1]]
        );
        // Every admission slot is back once everything is answered.
        assert_eq!(admission.available_permits(), 8);
    }
}
