//! Real-time factor of brisk's CTranslate2 Whisper, decoded as
//! scripts/bench_faster_whisper.py decodes with faster-whisper (greedy,
//! temperature 0 without fallback, no timestamps, English, no conditioning
//! on previous text), on a 10 s clip and on the clip tiled to 60 s.
//!
//!     cargo run -p brisk-ct2 --example ct2_whisper_bench -- \
//!         MODEL_DIR WAV [COMPUTE_TYPE] [THREADS] [REPEATS]
//!
//! Prints one JSON line: load time, best-of-REPEATS wall time and RTF per
//! clip length, peak RSS (VmHWM).
//!
//! With `--pieces FILE` (lines `START END` in seconds: the speech a VAD
//! found in WAV, grouped into pieces of up to 30 s, see
//! scripts/bench_whisper_batch.py) it times instead what the HTTP edge does
//! with a long file: the pieces decoded as one batch
//! (`Ct2Whisper::transcribe_batch`) with the server's defaults (greedy,
//! timestamps, temperature fallback, no-speech skip); and once, for the
//! word error rate, the whole file in sequential 30 s windows.

#[path = "../tests/common/audio.rs"]
mod audio;

use std::time::Instant;

use brisk_ct2::{Ct2Whisper, DecodeOptions, LoadOptions};

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    let pieces = args.iter().position(|a| a == "--pieces").map(|i| {
        let file = args.get(i + 1).cloned().unwrap_or_default();
        args.drain(i..(i + 2).min(args.len()));
        file
    });
    if args.len() < 3 {
        eprintln!("usage: ct2_whisper_bench MODEL_DIR WAV [COMPUTE_TYPE] [THREADS] [REPEATS]");
        std::process::exit(2);
    }
    let compute_type = args.get(3).cloned().unwrap_or_else(|| "float32".into());
    let threads: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(2);
    let repeats: usize = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(3);
    let t0 = Instant::now();
    let model = match Ct2Whisper::load(
        std::path::Path::new(&args[1]),
        &LoadOptions {
            compute_type: compute_type.clone(),
            threads,
        },
    ) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("load: {e}");
            std::process::exit(1);
        }
    };
    let load_s = t0.elapsed().as_secs_f64();
    let (clip, rate) = audio::read_mono(std::path::Path::new(&args[2]));
    assert_eq!(rate, 16000, "expects a 16 kHz file");
    if let Some(file) = pieces {
        return batched(
            &model,
            &clip,
            &file,
            repeats,
            &compute_type,
            threads,
            load_s,
        );
    }
    let opts = DecodeOptions {
        language: Some("en".into()),
        temperatures: vec![0.0],
        timestamps: false,
        condition_on_previous_text: false,
        ..Default::default()
    };
    let mut runs = Vec::new();
    for (name, reps) in [("10s", 1usize), ("60s", 6)] {
        let audio: Vec<f32> = (0..reps).flat_map(|_| clip.iter().copied()).collect();
        let secs = audio.len() as f64 / 16000.0;
        let mut best = f64::INFINITY;
        let mut text = String::new();
        for _ in 0..repeats {
            let t = Instant::now();
            let tr = model.transcribe(&audio, &opts).expect("transcribe");
            best = best.min(t.elapsed().as_secs_f64());
            text = tr.text();
        }
        runs.push(format!(
            "{{\"audio\":\"{name}\",\"seconds\":{secs:.2},\"best_s\":{best:.3},\"rtf\":{:.4},\"text\":{:?}}}",
            best / secs,
            text.chars().take(60).collect::<String>()
        ));
    }
    println!(
        "{{\"engine\":\"brisk-ct2\",\"compute_type\":\"{compute_type}\",\"threads\":{threads},\"load_s\":{load_s:.3},\"runs\":[{}],\"peak_rss_mb\":{:.1}}}",
        runs.join(","),
        peak_rss_mb()
    );
}

/// `--pieces`: the pieces of `audio` as one batch, best of `repeats`.
fn batched(
    model: &Ct2Whisper,
    audio: &[f32],
    file: &str,
    repeats: usize,
    compute_type: &str,
    threads: usize,
    load_s: f64,
) {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let at = |s: f64| ((s * 16_000.0) as usize).min(audio.len());
    let pieces: Vec<&[f32]> = text
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace().map(|x| x.parse::<f64>());
            match (it.next(), it.next()) {
                (Some(Ok(a)), Some(Ok(b))) => Some(&audio[at(a)..at(b)]),
                _ => None,
            }
        })
        .collect();
    // The server's defaults for a request without options.
    let opts = DecodeOptions {
        language: Some("en".into()),
        ..Default::default()
    };
    let items: Vec<(&[f32], &DecodeOptions)> = pieces.iter().map(|p| (*p, &opts)).collect();
    let secs = audio.len() as f64 / 16000.0;
    let mut best = f64::INFINITY;
    let mut batched_text = String::new();
    for _ in 0..repeats {
        let t = Instant::now();
        let r = model.transcribe_batch(&items);
        best = best.min(t.elapsed().as_secs_f64());
        batched_text = r
            .into_iter()
            .map(|t| t.expect("transcribe").text())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
    }
    let t = Instant::now();
    let sequential_text = model.transcribe(audio, &opts).expect("transcribe").text();
    let sequential_s = t.elapsed().as_secs_f64();
    let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    println!(
        "{{\"engine\":\"brisk-ct2\",\"compute_type\":\"{compute_type}\",\"threads\":{threads},\"load_s\":{load_s:.3},\"audio_s\":{secs:.2},\"pieces\":{},\"batched_s\":{best:.3},\"batched_rtf\":{:.4},\"sequential_s\":{sequential_s:.3},\"batched_text\":{},\"sequential_text\":{},\"peak_rss_mb\":{:.1}}}",
        pieces.len(),
        best / secs,
        q(&batched_text),
        q(&sequential_text),
        peak_rss_mb()
    );
}
