//! Pipelines as a pure step graph: which step needs which, validation
//! (unknown inputs, cycles), the readiness bookkeeping of one run, and an
//! async runner that starts every step as soon as its inputs are done.
//!
//! Nothing here knows about models, templates or HTTP: a step is a name and
//! the names of the steps it reads. The server turns configured steps into
//! a [`Dag`] at startup and hands [`run`] a closure that builds each step's
//! future from the outputs of the steps before it.
//!
//! ```text
//!   transcript ──▶ embedding
//!        └───────▶ reply        (embedding and reply run at the same time)
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

/// Why a step graph is not a valid pipeline. Every variant names the step
/// at fault, so a config error points at the line to fix.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum DagError {
    #[error("a pipeline needs at least one step")]
    Empty,
    #[error("step '{0}' is declared more than once")]
    Duplicate(String),
    #[error(
        "step '{step}' reads '{input}', which is not a step of this pipeline (steps: {known})"
    )]
    MissingInput {
        step: String,
        input: String,
        known: String,
    },
    /// The steps on the cycle, in order, the first repeated at the end.
    #[error("steps form a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// A validated, acyclic step graph. Steps are numbered in declaration order.
#[derive(Debug, Clone)]
pub struct Dag {
    names: Vec<String>,
    deps: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
}

impl Dag {
    /// Builds the graph from `(step, steps it reads)` in declaration order.
    /// A step may read steps declared after it; only cycles are refused.
    pub fn new(steps: Vec<(String, Vec<String>)>) -> Result<Self, DagError> {
        if steps.is_empty() {
            return Err(DagError::Empty);
        }
        let mut index = HashMap::new();
        for (i, (name, _)) in steps.iter().enumerate() {
            if index.insert(name.clone(), i).is_some() {
                return Err(DagError::Duplicate(name.clone()));
            }
        }
        let names: Vec<String> = steps.iter().map(|(n, _)| n.clone()).collect();
        let mut deps = vec![Vec::new(); steps.len()];
        let mut dependents = vec![Vec::new(); steps.len()];
        for (i, (name, inputs)) in steps.iter().enumerate() {
            for input in inputs {
                let j = *index.get(input).ok_or_else(|| DagError::MissingInput {
                    step: name.clone(),
                    input: input.clone(),
                    known: names.join(", "),
                })?;
                // The same input read twice is one dependency.
                if !deps[i].contains(&j) {
                    deps[i].push(j);
                    dependents[j].push(i);
                }
            }
        }
        let dag = Self {
            names,
            deps,
            dependents,
        };
        if let Some(cycle) = dag.find_cycle() {
            return Err(DagError::Cycle(cycle));
        }
        Ok(dag)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn name(&self, step: usize) -> &str {
        &self.names[step]
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// The steps `step` reads.
    pub fn deps(&self, step: usize) -> &[usize] {
        &self.deps[step]
    }

    /// The steps that read `step`.
    pub fn dependents(&self, step: usize) -> &[usize] {
        &self.dependents[step]
    }

    /// Steps in an order where every step comes after the steps it reads
    /// (declaration order among steps that are ready together).
    pub fn topological_order(&self) -> Vec<usize> {
        let mut schedule = Schedule::new(self);
        let mut order = Vec::with_capacity(self.len());
        loop {
            let ready = schedule.take_ready();
            if ready.is_empty() {
                break;
            }
            for &s in &ready {
                schedule.finish(s);
            }
            order.extend(ready);
        }
        order
    }

    /// The same steps, run one after another: each also waits for the step
    /// before it in topological order. For measuring what concurrency wins.
    pub fn sequential(&self) -> Dag {
        let order = self.topological_order();
        let mut deps = self.deps.clone();
        for pair in order.windows(2) {
            if !deps[pair[1]].contains(&pair[0]) {
                deps[pair[1]].push(pair[0]);
            }
        }
        let mut dependents = vec![Vec::new(); self.len()];
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependents[d].push(i);
            }
        }
        Dag {
            names: self.names.clone(),
            deps,
            dependents,
        }
    }

    /// Depth-first search with an explicit path, so a cycle can be reported
    /// as the actual loop of steps rather than just "there is one".
    fn find_cycle(&self) -> Option<Vec<String>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let mut mark = vec![Mark::New; self.len()];
        for root in 0..self.len() {
            if mark[root] != Mark::New {
                continue;
            }
            // (step, next dependency to visit)
            let mut path: Vec<(usize, usize)> = vec![(root, 0)];
            mark[root] = Mark::OnPath;
            while let Some(&mut (step, ref mut next)) = path.last_mut() {
                if let Some(&dep) = self.deps[step].get(*next) {
                    *next += 1;
                    match mark[dep] {
                        Mark::New => {
                            mark[dep] = Mark::OnPath;
                            path.push((dep, 0));
                        }
                        Mark::OnPath => {
                            // The path from `dep` to here, read in data-flow
                            // order (producer first).
                            let from = path.iter().position(|&(s, _)| s == dep).unwrap_or(0);
                            let mut cycle: Vec<String> = path[from..]
                                .iter()
                                .rev()
                                .map(|&(s, _)| self.names[s].clone())
                                .collect();
                            cycle.push(cycle[0].clone());
                            return Some(cycle);
                        }
                        Mark::Done => {}
                    }
                } else {
                    mark[step] = Mark::Done;
                    path.pop();
                }
            }
        }
        None
    }
}

/// Where one step is in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    /// Some input is not done yet.
    Waiting,
    Running,
    Done,
    Failed,
    /// Never started because a step it (transitively) reads failed.
    Cancelled,
    /// Was running when another step failed, and was dropped.
    Aborted,
}

/// The bookkeeping of one run: which steps may start, and what a failure
/// cancels. Pure state, no clock and no tasks, so it is tested directly.
#[derive(Debug, Clone)]
pub struct Schedule<'a> {
    dag: &'a Dag,
    state: Vec<StepState>,
    /// Inputs of each step not done yet.
    missing: Vec<usize>,
}

impl<'a> Schedule<'a> {
    pub fn new(dag: &'a Dag) -> Self {
        Self {
            dag,
            state: vec![StepState::Waiting; dag.len()],
            missing: (0..dag.len()).map(|i| dag.deps(i).len()).collect(),
        }
    }

    pub fn state(&self, step: usize) -> StepState {
        self.state[step]
    }

    /// Steps whose inputs are all done and that have not started; they are
    /// marked running.
    pub fn take_ready(&mut self) -> Vec<usize> {
        let ready: Vec<usize> = (0..self.dag.len())
            .filter(|&i| self.state[i] == StepState::Waiting && self.missing[i] == 0)
            .collect();
        for &i in &ready {
            self.state[i] = StepState::Running;
        }
        ready
    }

    /// A running step finished; its dependents lose one missing input.
    pub fn finish(&mut self, step: usize) {
        debug_assert_eq!(self.state[step], StepState::Running);
        self.state[step] = StepState::Done;
        for &d in self.dag.dependents(step) {
            self.missing[d] -= 1;
        }
    }

    /// A running step failed: every step that reads it, directly or not, is
    /// cancelled, and every other running step aborted (the run's answer is
    /// an error either way, so their work would be wasted).
    pub fn fail(&mut self, step: usize) {
        self.state[step] = StepState::Failed;
        let mut stack = vec![step];
        while let Some(s) = stack.pop() {
            for &d in self.dag.dependents(s) {
                if self.state[d] == StepState::Waiting {
                    self.state[d] = StepState::Cancelled;
                    stack.push(d);
                }
            }
        }
        for s in &mut self.state {
            match *s {
                StepState::Running => *s = StepState::Aborted,
                // Independent steps that had not started never will.
                StepState::Waiting => *s = StepState::Cancelled,
                _ => {}
            }
        }
    }

    pub fn steps_in(&self, state: StepState) -> Vec<usize> {
        (0..self.dag.len())
            .filter(|&i| self.state[i] == state)
            .collect()
    }

    pub fn is_complete(&self) -> bool {
        self.state.iter().all(|s| *s == StepState::Done)
    }
}

/// When a step ran, as offsets from the start of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepTiming {
    pub start: Duration,
    pub end: Duration,
}

impl StepTiming {
    pub fn duration(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }

    /// Whether two steps ran at the same time for a while.
    pub fn overlaps(&self, other: &StepTiming) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// A finished step of a run.
#[derive(Debug, Clone)]
pub struct StepResult<T> {
    pub output: Arc<T>,
    pub timing: StepTiming,
}

/// How a run failed: the step, its error, and what it took down with it.
#[derive(Debug)]
pub struct StepFailure<E> {
    pub step: String,
    pub error: E,
    pub timing: StepTiming,
    /// Steps that never started.
    pub cancelled: Vec<String>,
    /// Steps that were running and were dropped.
    pub aborted: Vec<String>,
}

/// Runs a pipeline: every step starts as soon as the steps it reads are
/// done, so independent branches run concurrently. `start` builds a step's
/// future from the outputs so far (indexed by step; the step's inputs are
/// always `Some`). `on_done` sees each step as it finishes, for streaming.
///
/// The first failing step ends the run: steps not yet started never start,
/// and running ones are aborted (their tasks are dropped, which also drops
/// their pending engine replies).
pub async fn run<T, E, F, Fut>(
    dag: &Dag,
    mut start: F,
    mut on_done: impl FnMut(usize, &StepResult<T>),
) -> Result<Vec<StepResult<T>>, StepFailure<E>>
where
    T: Send + Sync + 'static,
    E: Send + 'static,
    F: FnMut(usize, &[Option<Arc<T>>]) -> Fut,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    let t0 = Instant::now();
    let mut schedule = Schedule::new(dag);
    let mut outputs: Vec<Option<Arc<T>>> = (0..dag.len()).map(|_| None).collect();
    let mut results: Vec<Option<StepResult<T>>> = (0..dag.len()).map(|_| None).collect();
    // Dropping the set aborts whatever still runs in it.
    let mut tasks = JoinSet::new();
    loop {
        for step in schedule.take_ready() {
            let fut = start(step, &outputs);
            tasks.spawn(async move {
                let begin = t0.elapsed();
                let r = fut.await;
                (
                    step,
                    StepTiming {
                        start: begin,
                        end: t0.elapsed(),
                    },
                    r,
                )
            });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let (step, timing, r) = match joined {
            Ok(v) => v,
            // A step future panicked: that is a bug, not a step error.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Tasks are only aborted by dropping the set, which ends this loop.
            Err(e) => unreachable!("pipeline task cancelled while awaited: {e}"),
        };
        match r {
            Ok(output) => {
                schedule.finish(step);
                let output = Arc::new(output);
                outputs[step] = Some(output.clone());
                let result = StepResult { output, timing };
                on_done(step, &result);
                results[step] = Some(result);
            }
            Err(error) => {
                schedule.fail(step);
                tasks.abort_all();
                let names = |st| {
                    schedule
                        .steps_in(st)
                        .into_iter()
                        .map(|i| dag.name(i).to_string())
                        .collect()
                };
                return Err(StepFailure {
                    step: dag.name(step).to_string(),
                    error,
                    timing,
                    cancelled: names(StepState::Cancelled),
                    aborted: names(StepState::Aborted),
                });
            }
        }
    }
    debug_assert!(schedule.is_complete(), "an acyclic graph always completes");
    Ok(results.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn dag(steps: &[(&str, &[&str])]) -> Result<Dag, DagError> {
        Dag::new(
            steps
                .iter()
                .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
                .collect(),
        )
    }

    /// stt → {a, b} → join: the tutor flow's shape.
    fn diamond() -> Dag {
        dag(&[
            ("stt", &[]),
            ("a", &["stt"]),
            ("b", &["stt"]),
            ("join", &["a", "b"]),
        ])
        .expect("valid")
    }

    #[test]
    fn validation_names_the_step_at_fault() {
        assert_eq!(dag(&[]).expect_err("empty"), DagError::Empty);
        assert_eq!(
            dag(&[("a", &[]), ("a", &[])]).expect_err("dup"),
            DagError::Duplicate("a".into())
        );
        let e = dag(&[("a", &[]), ("b", &["nope"])]).expect_err("missing");
        assert_eq!(
            e,
            DagError::MissingInput {
                step: "b".into(),
                input: "nope".into(),
                known: "a, b".into()
            }
        );
        assert!(e.to_string().contains("step 'b' reads 'nope'"), "{e}");
    }

    #[test]
    fn cycles_are_reported_as_the_loop_of_steps() {
        let e = dag(&[("x", &[]), ("a", &["c", "x"]), ("b", &["a"]), ("c", &["b"])])
            .expect_err("cycle");
        let DagError::Cycle(steps) = &e else {
            panic!("expected a cycle, got {e}");
        };
        // Any rotation of a -> b -> c -> a is the same loop.
        assert_eq!(steps.len(), 4, "{e}");
        assert_eq!(steps.first(), steps.last());
        let pos = |s: &str| steps.iter().position(|x| x == s).expect("on the cycle");
        assert_eq!((pos("a") + 1) % 3, pos("b") % 3, "{e}");
        assert!(!steps.contains(&"x".to_string()), "{e}");
        assert_eq!(
            dag(&[("s", &["s"])]).expect_err("self loop"),
            DagError::Cycle(vec!["s".into(), "s".into()])
        );
    }

    #[test]
    fn forward_references_and_repeated_inputs_are_fine() {
        let d = dag(&[("late", &["early", "early"]), ("early", &[])]).expect("valid");
        assert_eq!(d.deps(0), &[1]);
        assert_eq!(d.dependents(1), &[0]);
    }

    #[test]
    fn topological_and_sequential_orders() {
        let d = dag(&[
            ("join", &["b", "a"]),
            ("b", &["stt"]),
            ("stt", &[]),
            ("a", &["stt"]),
        ])
        .expect("valid");
        assert_eq!(d.topological_order(), vec![2, 1, 3, 0]);
        let seq = d.sequential();
        let mut s = Schedule::new(&seq);
        let mut waves = Vec::new();
        loop {
            let r = s.take_ready();
            if r.is_empty() {
                break;
            }
            r.iter().for_each(|&i| s.finish(i));
            waves.push(r);
        }
        assert_eq!(
            waves,
            vec![vec![2], vec![1], vec![3], vec![0]],
            "one at a time"
        );
        assert_eq!(seq.deps(0), d.deps(0), "original inputs kept");
    }

    #[test]
    fn schedule_releases_branches_together_and_joins_after_both() {
        let d = diamond();
        let mut s = Schedule::new(&d);
        assert_eq!(s.take_ready(), vec![0]);
        assert!(s.take_ready().is_empty(), "nothing else before stt");
        s.finish(0);
        assert_eq!(s.take_ready(), vec![1, 2], "both branches at once");
        s.finish(2);
        assert!(s.take_ready().is_empty(), "join waits for a as well");
        s.finish(1);
        assert_eq!(s.take_ready(), vec![3]);
        s.finish(3);
        assert!(s.is_complete());
    }

    #[test]
    fn failure_cancels_dependents_and_aborts_siblings() {
        let d = dag(&[
            ("stt", &[]),
            ("a", &["stt"]),
            ("b", &["stt"]),
            ("after_a", &["a"]),
            ("after_b", &["b"]),
        ])
        .expect("valid");
        let mut s = Schedule::new(&d);
        s.take_ready();
        s.finish(0);
        assert_eq!(s.take_ready(), vec![1, 2]);
        s.fail(1);
        assert_eq!(s.state(1), StepState::Failed);
        assert_eq!(s.steps_in(StepState::Cancelled), vec![3, 4]);
        assert_eq!(s.steps_in(StepState::Aborted), vec![2]);
        assert!(s.take_ready().is_empty(), "nothing starts after a failure");
        assert!(!s.is_complete());
    }

    async fn sleep_step(ms: u64, out: &'static str) -> Result<String, String> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(out.to_string())
    }

    #[tokio::test]
    async fn run_overlaps_independent_branches_and_passes_outputs() {
        let d = diamond();
        let mut order = Vec::new();
        let t0 = Instant::now();
        let results = run(
            &d,
            |step, outs: &[Option<Arc<String>>]| {
                // Each step sees its inputs' outputs.
                for &dep in d.deps(step) {
                    assert!(outs[dep].is_some(), "input of {step} not ready");
                }
                let joined: Vec<String> = d
                    .deps(step)
                    .iter()
                    .filter_map(|&i| outs[i].as_deref().cloned())
                    .collect();
                async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, String>(format!("{step}({})", joined.join(",")))
                }
            },
            |step, _| order.push(step),
        )
        .await
        .expect("runs");
        let wall = t0.elapsed();
        assert_eq!(*results[3].output, "3(1(0()),2(0()))");
        assert_eq!(order[0], 0);
        assert_eq!(order[3], 3);
        let (a, b) = (results[1].timing, results[2].timing);
        assert!(
            a.overlaps(&b),
            "branches ran one after the other: {a:?} {b:?}"
        );
        assert!(a.start >= results[0].timing.end && results[3].timing.start >= b.end);
        // Three levels of 100 ms, not four steps of 100 ms.
        assert!(wall < Duration::from_millis(380), "took {wall:?}");
    }

    #[tokio::test]
    async fn run_failure_names_step_cancels_dependents_and_drops_siblings() {
        let d = dag(&[
            ("stt", &[]),
            ("bad", &["stt"]),
            ("slow", &["stt"]),
            ("after_bad", &["bad"]),
        ])
        .expect("valid");
        let slow_finished = Arc::new(AtomicBool::new(false));
        let after_started = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        let err = run(
            &d,
            |step, _: &[Option<Arc<String>>]| {
                let slow_finished = slow_finished.clone();
                let after_started = after_started.clone();
                async move {
                    match step {
                        0 => sleep_step(1, "text").await,
                        1 => Err("boom".to_string()),
                        2 => {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            slow_finished.store(true, Ordering::SeqCst);
                            Ok("late".into())
                        }
                        _ => {
                            after_started.store(true, Ordering::SeqCst);
                            Ok("never".into())
                        }
                    }
                }
            },
            |_, _| {},
        )
        .await
        .expect_err("fails");
        assert!(t0.elapsed() < Duration::from_millis(200), "waited for slow");
        assert_eq!(err.step, "bad");
        assert_eq!(err.error, "boom");
        assert_eq!(err.cancelled, vec!["after_bad".to_string()]);
        assert_eq!(err.aborted, vec!["slow".to_string()]);
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(!slow_finished.load(Ordering::SeqCst), "sibling not dropped");
        assert!(!after_started.load(Ordering::SeqCst), "dependent started");
    }
}
