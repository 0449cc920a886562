//! Speed of the `candle-llama` backend: load time, prompt (prefill) and
//! generation (decode) tokens per second, as one JSON line.
//!
//! ```text
//! cargo run --release -p brisk-backends --features llama --example llama_bench -- \
//!     [MODEL_DIR_OR_GGUF] [--runs N] [--max-tokens N] [--prompt TEXT]
//!     [--weights auto|native|fast|q8_0|f32]
//! ```
//!
//! The model defaults to `$BRISK_MODELS_DIR/smollm2-135m-instruct` (or
//! `models/` of the workspace). The request is fixed: a chat prompt, greedy
//! decoding. Each run is timed separately after one warm-up run; the
//! numbers are medians over the runs.
//!
//! - `prompt_tps` = prompt tokens / prefill seconds
//! - `gen_tps` = decode steps / decode seconds (the first completion token
//!   comes from the prefill, so a run of N tokens has N - 1 decode steps)

use std::path::PathBuf;
use std::time::Instant;

use brisk_backends::llama::{LlamaGenerator, WeightFormat};
use brisk_core::Backend;
use brisk_core::{ChatMessage, GenerateParams, GenerateRequest, Prompt};

const PROMPT: &str = "You are reviewing a short technical design. The service receives \
requests over HTTP, places them in a queue per model, and a worker thread per model takes \
batches from the queue and runs them through the model. Memory is limited, so models are \
loaded on demand and evicted when unused. Write a detailed, step by step explanation of how \
such a server should handle overload, cancellation and errors, with examples.";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Resident memory of this process in MiB (Linux), if readable.
fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut path = None;
    let mut runs = 3usize;
    let mut max_tokens = 128usize;
    let mut prompt = PROMPT.to_string();
    let mut weights = WeightFormat::Auto;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => runs = args.next().ok_or("--runs needs a value")?.parse()?,
            "--max-tokens" => {
                max_tokens = args.next().ok_or("--max-tokens needs a value")?.parse()?
            }
            "--weights" => weights = args.next().ok_or("--weights needs a value")?.parse()?,
            "--prompt" => prompt = args.next().ok_or("--prompt needs a value")?,
            _ => path = Some(PathBuf::from(arg)),
        }
    }
    let path = path.unwrap_or_else(|| {
        std::env::var_os("BRISK_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models")))
            .join("smollm2-135m-instruct")
    });

    let started = Instant::now();
    let model = LlamaGenerator::load_with(&path, weights)?;
    let load_s = started.elapsed().as_secs_f64();
    let rss_after_load = rss_mib();

    let request = || GenerateRequest {
        prompt: Prompt::Chat(vec![ChatMessage {
            role: "user".into(),
            content: prompt.clone(),
        }]),
        params: GenerateParams {
            max_tokens,
            temperature: 0.0,
            ..Default::default()
        },
        sink: None,
    };

    model.generate(request())?; // warm-up
    let (mut prompt_tps, mut gen_tps) = (Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..runs.max(1) {
        let g = model.generate(request())?;
        prompt_tps.push(g.prompt_tokens as f64 / g.prompt_eval_s);
        gen_tps.push(g.completion_tokens.saturating_sub(1) as f64 / g.eval_s);
        last = Some(g);
    }
    let last = last.ok_or("no run")?;
    let round = |x: f64, digits: i32| (x * 10f64.powi(digits)).round() / 10f64.powi(digits);
    let json = serde_json::json!({
        "model": model.file().display().to_string(),
        "weights": format!("{:?}", model.weight_format()),
        "load_s": round(load_s, 3),
        "memory_bytes": model.memory_bytes(),
        "prompt_tokens": last.prompt_tokens,
        "prompt_tps": round(median(prompt_tps), 1),
        "completion_tokens": last.completion_tokens,
        "gen_tps": round(median(gen_tps), 1),
        "runs": runs.max(1),
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "rss_mib_after_load": rss_after_load.map(|m| m.round()),
        "rss_mib_after_runs": rss_mib().map(|m| m.round()),
        "text": last.text,
    });
    println!("{json}");
    Ok(())
}
