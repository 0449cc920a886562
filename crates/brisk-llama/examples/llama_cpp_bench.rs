//! Speed of the `llama-cpp` backend, for BENCHMARKS.md, side by side with
//! `scripts/bench_llama_cpp.py` (llama-cpp-python on the same file, prompt,
//! thread count and decoding).
//!
//!     cargo run --release -p brisk-llama --example llama_cpp_bench -- \
//!         models/smollm2-135m-instruct [--weights auto|native|f16] [--threads 2] \
//!         [--context 2048] [--rss-only]
//!
//! `--rss-only` loads one slot only (llama-cpp-python's single context, for
//! the memory comparison) and stops after the single-stream runs.
//!
//! Prints JSON: cold start (process start to the first token, model load
//! included), single-stream prefill and decode speed (median of 3, the
//! prefix cache emptied before each run), 4 streams' aggregate speed (wall
//! clock with the four prefills, and the sum of the streams' decode rates),
//! the median time to first token of 8 requests sent at once (8 slots), and
//! the peak RSS.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use brisk_core::{
    BackendError, ChatMessage, GenerateParams, GenerateRequest, Prompt, Reply, Request, Response,
    Stepper,
};
use brisk_llama::{LlamaCppGenerator, Options};

const PROMPT: &str = "You are reviewing a short technical design. The service receives \
requests over HTTP, places them in a queue per model, and a worker thread per model takes \
batches from the queue and runs them through the model. Memory is limited, so models are \
loaded on demand and evicted when unused. Write a detailed, step by step explanation of how \
such a server should handle overload, cancellation and errors, with examples.";

/// What one request saw.
#[derive(Default)]
struct Seen {
    first: Option<Instant>,
    end: Option<Instant>,
    completion_tokens: usize,
    prompt_tokens: usize,
    text: String,
}

#[derive(Clone, Default)]
struct Done(Arc<Mutex<Seen>>);

impl Reply for Done {
    fn is_closed(&self) -> bool {
        false
    }
    fn send(self: Box<Self>, r: Result<Response, BackendError>) {
        let mut s = self.0.lock().expect("lock");
        s.end = Some(Instant::now());
        match r {
            Ok(Response::Generate(g)) => {
                s.completion_tokens = g.completion_tokens;
                s.prompt_tokens = g.prompt_tokens;
                s.text = g.text;
            }
            other => panic!("request failed: {other:?}"),
        }
    }
}

fn request(content: &str, max_tokens: usize, done: &Done) -> Request {
    let seen = done.0.clone();
    Request::Generate(GenerateRequest {
        prompt: Prompt::Chat(vec![ChatMessage::new("user".into(), content.into())]),
        params: GenerateParams {
            max_tokens,
            temperature: 0.0,
            ..Default::default()
        },
        sink: Some(Box::new(move |_: &str| {
            let mut s = seen.lock().expect("lock");
            if s.first.is_none() {
                s.first = Some(Instant::now());
            }
            true
        })),
    })
}

/// Starts every request at once, steps until all are done.
fn run_all(
    m: &mut LlamaCppGenerator,
    contents: &[String],
    max_tokens: usize,
) -> (Instant, Vec<Done>) {
    m.forget_cache();
    let dones: Vec<Done> = contents.iter().map(|_| Done::default()).collect();
    let t0 = Instant::now();
    for (c, d) in contents.iter().zip(&dones) {
        m.start(request(c, max_tokens, d), Box::new(d.clone()));
    }
    while m.step() {}
    (t0, dones)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let process_start = Instant::now();
    let mut args = std::env::args().skip(1);
    let mut path = None;
    let mut rss_only = false;
    let mut options = Options {
        threads: 2,
        ..Options::default()
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rss-only" => {
                rss_only = true;
                options.parallel = 1;
            }
            "--weights" => {
                options.weights = args.next().ok_or("--weights needs a value")?.parse()?
            }
            "--threads" => {
                options.threads = args.next().ok_or("--threads needs a value")?.parse()?
            }
            "--context" => {
                options.context = args.next().ok_or("--context needs a value")?.parse()?
            }
            other => path = Some(PathBuf::from(other)),
        }
    }
    let path = path.ok_or(
        "usage: llama_cpp_bench MODEL [--weights W] [--threads N] [--context N] [--rss-only]",
    )?;

    // Cold start: load, then one short request to its first token.
    let mut m = LlamaCppGenerator::load_with(&path, options.clone())?;
    let load_s = process_start.elapsed().as_secs_f64();
    let (_, d) = run_all(&mut m, &["Hi".to_string()], 1);
    let first = d[0].0.lock().expect("lock").end.expect("done");
    let cold_start_s = first.duration_since(process_start).as_secs_f64();

    run_all(&mut m, &[PROMPT.to_string()], 16); // warm-up
    let (mut prefill, mut decode, mut prompt_tps) = (Vec::new(), Vec::new(), Vec::new());
    let mut prompt_tokens = 0;
    for _ in 0..3 {
        let (t0, d) = run_all(&mut m, &[PROMPT.to_string()], 128);
        let s = d[0].0.lock().expect("lock");
        let (first, end) = (s.first.expect("first"), s.end.expect("end"));
        let p = first.duration_since(t0).as_secs_f64();
        prefill.push(p);
        prompt_tps.push(s.prompt_tokens as f64 / p);
        decode.push((s.completion_tokens - 1) as f64 / end.duration_since(first).as_secs_f64());
        prompt_tokens = s.prompt_tokens;
    }
    let single_tps = median(decode.clone());
    if rss_only {
        // One slot and llama-cpp-python's context: the memory comparison.
        println!(
            "{}",
            serde_json::json!({
                "parallel": options.parallel,
                "context": options.context,
                "gen_tps_median": (single_tps * 10.0).round() / 10.0,
                "peak_rss_mib": (peak_rss_mib() * 10.0).round() / 10.0,
            })
        );
        return Ok(());
    }

    // Four different prompts at once, 128 tokens each.
    let four: Vec<String> = (0..4).map(|i| format!("{PROMPT} (Variant {i}.)")).collect();
    let (t0, d) = run_all(&mut m, &four, 128);
    let end = d
        .iter()
        .map(|d| d.0.lock().expect("lock").end.expect("end"))
        .max()
        .expect("four");
    let tokens: usize = d
        .iter()
        .map(|d| d.0.lock().expect("lock").completion_tokens)
        .sum();
    let four_tps = tokens as f64 / end.duration_since(t0).as_secs_f64();
    // Decode speed while streaming, as the single-stream figure measures it
    // (first token to last): each stream's rate, summed. The wall figure
    // above also pays the four prompts' prefill, which a single stream's
    // decode figure does not.
    let four_decode_tps: f64 = d
        .iter()
        .map(|d| {
            let s = d.0.lock().expect("lock");
            let (first, end) = (s.first.expect("first"), s.end.expect("end"));
            (s.completion_tokens - 1) as f64 / end.duration_since(first).as_secs_f64()
        })
        .sum();

    // Peak RSS of the 4-slot model so far (before the 8-slot one loads).
    let rss = peak_rss_mib();
    // Eight at once on eight slots: time to first token.
    drop(m);
    let mut m8 = LlamaCppGenerator::load_with(
        &path,
        Options {
            parallel: 8,
            ..options.clone()
        },
    )?;
    run_all(&mut m8, &[PROMPT.to_string()], 4); // warm-up
    let eight: Vec<String> = (0..8).map(|i| format!("{PROMPT} (Variant {i}.)")).collect();
    let (t0, d) = run_all(&mut m8, &eight, 32);
    let ttft: Vec<f64> = d
        .iter()
        .map(|d| {
            d.0.lock()
                .expect("lock")
                .first
                .expect("first")
                .duration_since(t0)
                .as_secs_f64()
        })
        .collect();
    let out = serde_json::json!({
        "file": m8.file().display().to_string(),
        "threads": options.threads,
        "load_s": (load_s * 1000.0).round() / 1000.0,
        "cold_start_to_first_token_s": (cold_start_s * 1000.0).round() / 1000.0,
        "prompt_tokens": prompt_tokens,
        "prefill_s_median": (median(prefill.clone()) * 10000.0).round() / 10000.0,
        "prompt_tps_median": median(prompt_tps).round(),
        "gen_tps_median": (single_tps * 10.0).round() / 10.0,
        "four_streams_aggregate_tps": (four_tps * 10.0).round() / 10.0,
        "four_vs_single": (four_tps / single_tps * 100.0).round() / 100.0,
        "four_streams_decode_tps": (four_decode_tps * 10.0).round() / 10.0,
        "four_decode_vs_single": (four_decode_tps / single_tps * 100.0).round() / 100.0,
        "eight_streams_ttft_median_s": (median(ttft) * 1000.0).round() / 1000.0,
        "single_ttft_s": (median(prefill) * 1000.0).round() / 1000.0,
        "peak_rss_mib": (rss * 10.0).round() / 10.0,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
