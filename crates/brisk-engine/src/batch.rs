//! Dynamic batching as a pure state machine.
//!
//! The model thread owns a [`BatchState`]: it pushes arriving jobs, then asks
//! [`BatchState::next`] what to do. Time is passed in, never read, so every
//! decision here is unit-tested without threads or clocks.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Limits on one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most requests in one batch (1 disables batching).
    pub max_requests: usize,
    /// Most tokens in one batch, summed over its requests.
    pub max_tokens: usize,
    /// How long the oldest waiting request may be held back for company.
    pub max_delay: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_requests: 32,
            max_tokens: 16_384,
            max_delay: Duration::from_millis(2),
        }
    }
}

/// What the batching state machine needs to know of a job.
pub trait Batchable {
    /// Token count used to bound batches.
    fn tokens(&self) -> usize;
    /// The caller went away (its reply channel is closed): skip the work.
    fn is_cancelled(&self) -> bool;
    fn enqueued_at(&self) -> Instant;
    /// After this instant nobody waits for the answer any more.
    fn deadline(&self) -> Instant;
}

/// What the model thread should do next.
#[derive(Debug, PartialEq)]
pub enum Next<T> {
    /// Nothing is queued: block until a job arrives.
    Idle,
    /// Run this batch now.
    Run(Vec<T>),
    /// Wait at most this long for more jobs, then ask again.
    Wait(Duration),
}

/// The queue of one model and the rule for cutting it into batches.
#[derive(Debug)]
pub struct BatchState<T> {
    limits: BatchLimits,
    queue: VecDeque<T>,
    queued_tokens: usize,
}

impl<T: Batchable> BatchState<T> {
    pub fn new(limits: BatchLimits) -> Self {
        Self {
            limits: BatchLimits {
                max_requests: limits.max_requests.max(1),
                max_tokens: limits.max_tokens.max(1),
                ..limits
            },
            queue: VecDeque::new(),
            queued_tokens: 0,
        }
    }

    pub fn push(&mut self, job: T) {
        self.queued_tokens += job.tokens();
        self.queue.push_back(job);
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Removes the jobs nobody waits for any more and returns them, so the
    /// caller can answer the expired ones with a deadline error.
    pub fn prune(&mut self, now: Instant) -> Vec<T> {
        let mut dropped = Vec::new();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for job in self.queue.drain(..) {
            if job.is_cancelled() || job.deadline() <= now {
                self.queued_tokens -= job.tokens();
                dropped.push(job);
            } else {
                kept.push_back(job);
            }
        }
        self.queue = kept;
        dropped
    }

    /// Decides whether to run a batch now. A batch is cut when it is full (by
    /// requests or tokens) or when the oldest job has waited `max_delay`.
    /// A single job larger than `max_tokens` still runs, alone: the engine
    /// has already checked it against the model's own limit.
    pub fn next(&mut self, now: Instant) -> Next<T> {
        let Some(oldest) = self.queue.front() else {
            return Next::Idle;
        };
        let full = self.queue.len() >= self.limits.max_requests
            || self.queued_tokens >= self.limits.max_tokens;
        let waited = now.saturating_duration_since(oldest.enqueued_at());
        if !full && waited < self.limits.max_delay {
            return Next::Wait(self.limits.max_delay - waited);
        }
        let mut batch = Vec::new();
        let mut tokens = 0;
        while let Some(job) = self.queue.front() {
            let t = job.tokens();
            let fits = batch.len() < self.limits.max_requests
                && (batch.is_empty() || tokens + t <= self.limits.max_tokens);
            if !fits {
                break;
            }
            tokens += t;
            self.queued_tokens -= t;
            if let Some(job) = self.queue.pop_front() {
                batch.push(job);
            }
        }
        Next::Run(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct J {
        id: u32,
        tokens: usize,
        at: Instant,
        deadline: Instant,
        cancelled: bool,
    }

    impl Batchable for J {
        fn tokens(&self) -> usize {
            self.tokens
        }
        fn is_cancelled(&self) -> bool {
            self.cancelled
        }
        fn enqueued_at(&self) -> Instant {
            self.at
        }
        fn deadline(&self) -> Instant {
            self.deadline
        }
    }

    fn job(id: u32, tokens: usize, at: Instant) -> J {
        J {
            id,
            tokens,
            at,
            deadline: at + Duration::from_secs(60),
            cancelled: false,
        }
    }

    fn limits(req: usize, tok: usize, delay_ms: u64) -> BatchLimits {
        BatchLimits {
            max_requests: req,
            max_tokens: tok,
            max_delay: Duration::from_millis(delay_ms),
        }
    }

    fn ids(n: Next<J>) -> Vec<u32> {
        match n {
            Next::Run(b) => b.into_iter().map(|j| j.id).collect(),
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    #[test]
    fn empty_queue_is_idle() {
        let mut s: BatchState<J> = BatchState::new(BatchLimits::default());
        assert_eq!(s.next(Instant::now()), Next::Idle);
    }

    #[test]
    fn waits_for_company_until_the_delay_passes() {
        let t0 = Instant::now();
        let mut s = BatchState::new(limits(8, 1000, 10));
        s.push(job(1, 5, t0));
        assert_eq!(
            s.next(t0 + Duration::from_millis(4)),
            Next::Wait(Duration::from_millis(6))
        );
        s.push(job(2, 5, t0 + Duration::from_millis(5)));
        assert_eq!(ids(s.next(t0 + Duration::from_millis(10))), vec![1, 2]);
        assert!(s.is_empty());
    }

    #[test]
    fn full_batch_runs_without_waiting_and_respects_request_limit() {
        let t0 = Instant::now();
        let mut s = BatchState::new(limits(3, 1000, 1000));
        for i in 0..5 {
            s.push(job(i, 1, t0));
        }
        assert_eq!(ids(s.next(t0)), vec![0, 1, 2]);
        // Two left, not full, delay not reached.
        assert!(matches!(s.next(t0), Next::Wait(_)));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn token_budget_cuts_the_batch() {
        let t0 = Instant::now();
        let mut s = BatchState::new(limits(100, 10, 0));
        s.push(job(1, 4, t0));
        s.push(job(2, 4, t0));
        s.push(job(3, 4, t0));
        assert_eq!(ids(s.next(t0)), vec![1, 2]);
        assert_eq!(ids(s.next(t0)), vec![3]);
        assert_eq!(s.next(t0), Next::Idle);
    }

    #[test]
    fn oversized_job_runs_alone() {
        let t0 = Instant::now();
        let mut s = BatchState::new(limits(100, 10, 0));
        s.push(job(1, 50, t0));
        s.push(job(2, 1, t0));
        assert_eq!(ids(s.next(t0)), vec![1]);
        assert_eq!(ids(s.next(t0)), vec![2]);
    }

    #[test]
    fn prune_drops_cancelled_and_expired_jobs_and_their_tokens() {
        let t0 = Instant::now();
        let mut s = BatchState::new(limits(100, 10, 0));
        let mut gone = job(1, 6, t0);
        gone.cancelled = true;
        let mut late = job(2, 6, t0);
        late.deadline = t0 + Duration::from_millis(1);
        s.push(gone);
        s.push(late);
        s.push(job(3, 6, t0));
        s.push(job(4, 3, t0));
        let dropped: Vec<u32> = s
            .prune(t0 + Duration::from_millis(2))
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(dropped, vec![1, 2]);
        // With the dropped tokens forgotten, 6 + 3 fits in 10.
        assert_eq!(ids(s.next(t0)), vec![3, 4]);
    }

    #[test]
    fn zero_limits_are_clamped_to_one() {
        let t0 = Instant::now();
        let mut s = BatchState::new(limits(0, 0, 0));
        s.push(job(1, 3, t0));
        s.push(job(2, 3, t0));
        assert_eq!(ids(s.next(t0)), vec![1]);
    }
}
