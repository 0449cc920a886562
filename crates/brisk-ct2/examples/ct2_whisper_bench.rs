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
    let args: Vec<String> = std::env::args().collect();
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
