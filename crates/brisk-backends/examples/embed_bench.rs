//! In-process MiniLM throughput, without HTTP: load time, batch-1 latency
//! and sentences/s, sentences/s in batches of 32, peak RSS. Prints JSON.
//!
//! ```sh
//! cargo run --release -p brisk-backends --no-default-features --features onnx \
//!     --example embed_bench -- models/all-minilm-l6-v2 --backend onnx [--quantize int8] \
//!     [--sentences FILE] [--threads 2]
//! ```
//!
//! `--sentences FILE` (batches of 32) and `--single FILE` (batch 1): one
//! sentence a line (scripts/bench_embeddings_vs_st.py writes the ones
//! sentence-transformers' benchmark uses); by default 1024 generated ones,
//! the first 200 of them at batch 1. `--backend candle` needs the `candle` feature.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

type Embed = Box<dyn FnMut(&[&str]) -> Result<(), brisk_core::BackendError>>;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn load(dir: &std::path::Path, backend: &str, options: BTreeMap<String, String>) -> Embed {
    match backend {
        #[cfg(feature = "onnx")]
        "onnx" => {
            let mut m = brisk_backends::onnx::bert::OnnxBert::load(dir, &options)
                .unwrap_or_else(|e| panic!("load: {e}"));
            Box::new(move |t| m.embed(t, true).map(|_| ()))
        }
        #[cfg(feature = "candle")]
        "candle" => {
            let _ = options;
            let m = brisk_backends::bert::BertEmbedder::load(dir)
                .unwrap_or_else(|e| panic!("load: {e}"));
            Box::new(move |t| m.embed(t, true).map(|_| ()))
        }
        other => panic!("backend {other} is not compiled in (features onnx, candle)"),
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(
        args.get(1)
            .filter(|a| !a.starts_with("--"))
            .cloned()
            .unwrap_or_else(|| "models/all-minilm-l6-v2".into()),
    );
    let backend = arg(&args, "--backend").unwrap_or_else(|| "onnx".into());
    let mut options = BTreeMap::new();
    if let Some(q) = arg(&args, "--quantize") {
        options.insert("quantize".to_string(), q);
    }
    if let Some(t) = arg(&args, "--threads") {
        options.insert("threads".to_string(), t);
    }
    let sentences: Vec<String> = match arg(&args, "--sentences") {
        Some(f) => std::fs::read_to_string(f)?
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        None => (0..1024)
            .map(|i| {
                format!(
                    "Sentence number {i} talks about topic {} in a few more words.",
                    i % 7
                )
            })
            .collect(),
    };
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let single: Vec<String> = match arg(&args, "--single") {
        Some(f) => std::fs::read_to_string(f)?
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        None => sentences.iter().take(200).cloned().collect(),
    };
    let t = Instant::now();
    let mut embed = load(&dir, &backend, options);
    let load_s = t.elapsed().as_secs_f64();
    for chunk in refs[..8].chunks(4) {
        embed(chunk)?; // warm-up
    }
    let n1 = single.len();
    let mut lat = Vec::with_capacity(n1);
    let t = Instant::now();
    for s in &single {
        let one = Instant::now();
        embed(&[s])?;
        lat.push(one.elapsed().as_secs_f64() * 1000.0);
    }
    let batch1 = n1 as f64 / t.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    let t = Instant::now();
    for chunk in refs.chunks(32) {
        embed(chunk)?;
    }
    let batch32 = refs.len() as f64 / t.elapsed().as_secs_f64();
    println!(
        "{{\"backend\":\"{backend}\",\"load_s\":{load_s:.3},\"batch1_sentences_per_s\":{batch1:.1},\"batch1_p50_ms\":{:.2},\"batch1_p99_ms\":{:.2},\"batch32_sentences_per_s\":{batch32:.1},\"n_batched\":{},\"peak_rss_mib\":{:.0}}}",
        lat[lat.len() / 2],
        lat[(lat.len() * 99 / 100).min(lat.len() - 1)],
        refs.len(),
        peak_rss_mib()
    );
    Ok(())
}
