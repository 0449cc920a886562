//! Times Whisper on one audio file and prints a JSON line.
//!
//! ```sh
//! cargo run --release -p brisk-backends --example whisper_bench -- \
//!     [MODEL_DIR] [AUDIO_FILE] [REPEATS] [--tile N] [--language CODE] \
//!     [--translate] [--timestamps]
//! ```
//! Defaults: `$BRISK_MODELS_DIR/whisper-tiny-en` (or `models/whisper-tiny-en`),
//! `models/testdata/beckett.wav`, 3 repeats (the best is reported).
//!
//! `--tile N` plays the clip N times in a row (6 × the 10 s beckett.wav =
//! a 60 s clip); `--language` forces the language (default: English for
//! English-only models, detected otherwise); `--translate` translates to
//! English; `--timestamps` decodes with timestamp tokens (as the server does).
//! Reported: load time, audio decoding time, best transcription time, real
//! time factor (transcription seconds / audio seconds) and the peak resident
//! set size of the process (`VmHWM`, Linux).

use std::path::PathBuf;
use std::time::Instant;

use brisk_backends::whisper::{audio, TranscribeOptions, WhisperModel};

/// Peak resident set size in MiB (`VmHWM` of /proc/self/status).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kib / 1024.0 * 10.0).round() / 10.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let models = std::env::var_os("BRISK_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models"));
    let mut positional = Vec::new();
    let mut tile = 1usize;
    let mut opts = TranscribeOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--tile" => {
                tile = args.next().ok_or("--tile needs a number")?.parse()?;
            }
            "--language" => {
                opts.language = Some(args.next().ok_or("--language needs a code")?);
            }
            "--translate" => opts.translate = true,
            "--timestamps" => opts.timestamps = true,
            s if s.starts_with("--") => return Err(format!("unknown option {s}").into()),
            _ => positional.push(a),
        }
    }
    let mut positional = positional.into_iter();
    let model_dir = positional
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| models.join("whisper-tiny-en"));
    let audio_path = positional
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| models.join("testdata/beckett.wav"));
    let repeats: usize = positional
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(3);

    let t0 = Instant::now();
    let mut model = WhisperModel::load(&model_dir).map_err(|e| {
        format!("{e} (run scripts/fetch-models whisper-tiny-en whisper-base testdata)")
    })?;
    let load_s = t0.elapsed().as_secs_f64();

    let bytes = std::fs::read(&audio_path)?;
    let t0 = Instant::now();
    let clip = audio::decode_to_mono_16k(&bytes, 3600.0)?;
    let decode_s = t0.elapsed().as_secs_f64();
    let pcm = clip.repeat(tile.max(1));
    let audio_s = pcm.len() as f64 / 16_000.0;

    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..repeats.max(1) {
        let t0 = Instant::now();
        let t = model.transcribe(&pcm, &opts)?;
        best = best.min(t0.elapsed().as_secs_f64());
        last = Some(t);
    }
    let last = last.ok_or("no run")?;
    let out = serde_json::json!({
        "model": model_dir.display().to_string(),
        "audio": audio_path.display().to_string(),
        "tile": tile.max(1),
        "load_s": load_s,
        "decode_s": decode_s,
        "audio_s": audio_s,
        "transcribe_s": best,
        "rtf": best / audio_s,
        "peak_rss_mib": peak_rss_mib(),
        "language": last.language,
        "text": last.text,
    });
    println!("{out}");
    Ok(())
}
