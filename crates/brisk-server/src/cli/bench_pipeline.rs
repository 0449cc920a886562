//! `brisk bench pipeline`: a pipeline's latency against the same steps run
//! one after another, in process (no HTTP), on the configured models.
//!
//! Both variants run the very same step code through the same registry;
//! the only difference is the graph: the one-by-one variant makes every
//! step also wait for the previous one. Runs alternate between the two so
//! slow drift (thermal, other load) hits both alike. The first run, which
//! includes lazy model loads, is reported apart and not counted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use brisk_engine::Timeline;
use serde::Serialize;
use serde_json::Value;

use crate::serve::{build_state, load_config, ServeOptions};
use brisk_engine::pipeline::{execute, Pipeline, PipelineInput};

#[derive(Debug, Clone)]
pub struct PipelineBenchOptions {
    pub config: Option<PathBuf>,
    pub models_dir: Option<PathBuf>,
    pub pipeline: String,
    /// Text fields of the request, `(name, value)`.
    pub fields: Vec<(String, String)>,
    /// Uploaded files of the request, `(field, path)`.
    pub files: Vec<(String, PathBuf)>,
    pub runs: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Variant {
    /// Wall time of each measured run.
    pub runs_ms: Vec<f64>,
    pub median_ms: f64,
    pub min_ms: f64,
    /// Median duration of each step, in step order.
    pub steps: Vec<StepMedian>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepMedian {
    pub step: String,
    pub median_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineBenchSummary {
    pub pipeline: String,
    /// First run, including lazy model loads.
    pub cold_ms: f64,
    pub concurrent: Variant,
    pub one_by_one: Variant,
    /// one_by_one median / concurrent median.
    pub speedup: f64,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

struct Samples {
    totals: Vec<f64>,
    steps: Vec<(String, Vec<f64>)>,
}

impl Samples {
    fn summary(&self) -> Variant {
        Variant {
            median_ms: median(&self.totals),
            min_ms: self.totals.iter().copied().fold(f64::INFINITY, f64::min),
            runs_ms: self.totals.clone(),
            steps: self
                .steps
                .iter()
                .map(|(n, v)| StepMedian {
                    step: n.clone(),
                    median_ms: median(v),
                })
                .collect(),
        }
    }
}

pub fn run(opts: &PipelineBenchOptions) -> anyhow::Result<PipelineBenchSummary> {
    if opts.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let config = load_config(&ServeOptions {
        config: opts.config.clone(),
        models_dir: opts.models_dir.clone(),
        ..Default::default()
    })?;
    let mut input = PipelineInput::default();
    for (k, v) in &opts.fields {
        input.fields.insert(k.clone(), Value::String(v.clone()));
    }
    let mut files = HashMap::new();
    for (k, path) in &opts.files {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        files.insert(k.clone(), bytes);
    }
    input.files = files;
    let input = Arc::new(input);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let state = build_state(config, Timeline::new(Instant::now()))?;
        state.registry.start();
        let concurrent = state.pipelines.get(&opts.pipeline).with_context(|| {
            format!(
                "no pipeline '{}' (served: {}); are its models in the models folder?",
                opts.pipeline,
                state.pipelines.names().join(", ")
            )
        })?;
        let sequential = Arc::new(concurrent.one_by_one());
        let once = |p: Arc<Pipeline>| {
            let runner = state.pipeline_runner();
            let input = input.clone();
            async move {
                let t0 = Instant::now();
                let outcome = execute(&runner, &p, input, |_, _, _| {})
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let steps: Vec<(String, f64)> = outcome
                    .steps
                    .iter()
                    .map(|(n, _, r)| (n.clone(), r.timing.duration().as_secs_f64() * 1000.0))
                    .collect();
                anyhow::Ok((t0.elapsed().as_secs_f64() * 1000.0, steps))
            }
        };
        let (cold_ms, _) = once(concurrent.clone()).await?;
        let mut samples = [
            Samples {
                totals: Vec::new(),
                steps: Vec::new(),
            },
            Samples {
                totals: Vec::new(),
                steps: Vec::new(),
            },
        ];
        for _ in 0..opts.runs {
            for (i, p) in [concurrent.clone(), sequential.clone()]
                .into_iter()
                .enumerate()
            {
                let (total, steps) = once(p).await?;
                samples[i].totals.push(total);
                if samples[i].steps.is_empty() {
                    samples[i].steps = steps.iter().map(|(n, _)| (n.clone(), Vec::new())).collect();
                }
                for (slot, (_, ms)) in samples[i].steps.iter_mut().zip(steps) {
                    slot.1.push(ms);
                }
            }
        }
        state.registry.unload_all();
        let concurrent = samples[0].summary();
        let one_by_one = samples[1].summary();
        Ok(PipelineBenchSummary {
            pipeline: opts.pipeline.clone(),
            cold_ms,
            speedup: one_by_one.median_ms / concurrent.median_ms.max(f64::MIN_POSITIVE),
            concurrent,
            one_by_one,
        })
    })
}

/// Human-readable lines, then the JSON summary.
pub fn report(s: &PipelineBenchSummary) -> anyhow::Result<()> {
    println!(
        "pipeline {}: cold first run {:.0} ms",
        s.pipeline, s.cold_ms
    );
    for (name, v) in [("concurrent", &s.concurrent), ("one by one", &s.one_by_one)] {
        let steps: Vec<String> = v
            .steps
            .iter()
            .map(|s| format!("{} {:.0}", s.step, s.median_ms))
            .collect();
        println!(
            "{name:>11}: median {:.0} ms, min {:.0} ms over {} runs (steps, median ms: {})",
            v.median_ms,
            v.min_ms,
            v.runs_ms.len(),
            steps.join(", ")
        );
    }
    println!("speedup (one by one / concurrent): {:.2}x", s.speedup);
    println!("{}", serde_json::to_string_pretty(s)?);
    Ok(())
}
