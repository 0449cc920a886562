//! Times Whisper on one audio file and prints a JSON line.
//!
//! ```sh
//! cargo run --release -p brisk-backends --features whisper --example whisper_bench -- \
//!     [MODEL_DIR] [AUDIO_FILE] [REPEATS]
//! ```
//! Defaults: `$BRISK_MODELS_DIR/whisper-tiny-en` (or `models/whisper-tiny-en`),
//! `models/testdata/beckett.wav`, 3 repeats (the best is reported).

use std::path::PathBuf;
use std::time::Instant;

use brisk_backends::whisper::{audio, TranscribeOptions, WhisperModel};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let models = std::env::var_os("BRISK_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models"));
    let mut args = std::env::args().skip(1);
    let model_dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| models.join("whisper-tiny-en"));
    let audio_path = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| models.join("testdata/beckett.wav"));
    let repeats: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3);

    let t0 = Instant::now();
    let mut model = WhisperModel::load(&model_dir)
        .map_err(|e| format!("{e} (run scripts/fetch-models whisper-tiny-en testdata)"))?;
    let load_s = t0.elapsed().as_secs_f64();

    let bytes = std::fs::read(&audio_path)?;
    let t0 = Instant::now();
    let pcm = audio::decode_to_mono_16k(&bytes, 3600.0)?;
    let decode_s = t0.elapsed().as_secs_f64();
    let audio_s = pcm.len() as f64 / 16_000.0;

    let opts = TranscribeOptions::default();
    let mut best = f64::INFINITY;
    let mut text = String::new();
    for _ in 0..repeats.max(1) {
        let t0 = Instant::now();
        let t = model.transcribe(&pcm, &opts)?;
        best = best.min(t0.elapsed().as_secs_f64());
        text = t.text;
    }
    let out = serde_json::json!({
        "model": model_dir.display().to_string(),
        "audio": audio_path.display().to_string(),
        "load_s": load_s,
        "decode_s": decode_s,
        "audio_s": audio_s,
        "transcribe_s": best,
        "rtf": best / audio_s,
        "text": text,
    });
    println!("{out}");
    Ok(())
}
