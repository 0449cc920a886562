//! brisk's Whisper on CTranslate2 against faster-whisper: the transcripts in
//! tests/fixtures/whisper_reference.json (scripts/gen_whisper_reference.py)
//! of beckett.wav and of the synthesized clips in tests/fixtures/whisper/
//! (scripts/gen_whisper_speech.py), for whisper-tiny-en and whisper-base,
//! greedy at temperature 0, with and without timestamps, float32.
//!
//! The models come from scripts/fetch-models (`BRISK_MODELS_DIR`, else the
//! workspace's `models/`).

mod common;

use std::path::{Path, PathBuf};

use brisk_ct2::{Ct2Whisper, DecodeOptions, LoadOptions};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn models_dir() -> PathBuf {
    std::env::var_os("BRISK_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models"))
}

fn fetched(rel: &str) -> PathBuf {
    let p = models_dir().join(rel);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models first (or set BRISK_MODELS_DIR)",
        p.display()
    );
    p
}

fn audio(clip: &str) -> Vec<f32> {
    let path = if clip == "beckett" {
        fetched("testdata/beckett.wav")
    } else {
        root().join(format!("tests/fixtures/whisper/{clip}.flac"))
    };
    let (pcm, rate) = common::audio::read_mono(&path);
    assert_eq!(rate, 16000, "{}", path.display());
    pcm
}

fn reference() -> serde_json::Value {
    let p = root().join("tests/fixtures/whisper_reference.json");
    serde_json::from_str(&std::fs::read_to_string(&p).expect("read the reference")).expect("json")
}

fn load(model: &str, compute_type: &str) -> Ct2Whisper {
    Ct2Whisper::load(
        Path::new(&fetched(model)),
        &LoadOptions {
            compute_type: compute_type.into(),
            threads: 2,
        },
    )
    .unwrap_or_else(|e| panic!("load {model}: {e}"))
}

fn greedy(timestamps: bool) -> DecodeOptions {
    DecodeOptions {
        language: Some("en".into()),
        temperatures: vec![0.0],
        beam_size: 1,
        timestamps,
        ..Default::default()
    }
}

/// Every case of the fixture for `model`: the text and every segment's
/// text and times (to 0.01 s) equal faster-whisper's.
fn check_model(model: &str) {
    let r = reference();
    let m = load(model, "float32");
    let mut failures = Vec::new();
    let mut n = 0;
    for case in r["cases"].as_array().expect("cases") {
        if case["model"] != model {
            continue;
        }
        n += 1;
        let clip = case["clip"].as_str().expect("clip");
        let ts = case["timestamps"].as_bool().expect("timestamps");
        let t = m.transcribe(&audio(clip), &greedy(ts)).expect("transcribe");
        let want = case["text"].as_str().expect("text");
        let got = t.text();
        let want_segs: Vec<(f64, f64, String)> = case["segments"]
            .as_array()
            .expect("segments")
            .iter()
            .map(|s| {
                (
                    s["start"].as_f64().expect("start"),
                    s["end"].as_f64().expect("end"),
                    s["text"].as_str().expect("text").to_string(),
                )
            })
            .collect();
        let got_segs: Vec<(f64, f64, String)> = t
            .segments
            .iter()
            .map(|s| {
                let r2 = |x: f64| (x * 100.0).round() / 100.0;
                (r2(s.start), r2(s.end), s.text.clone())
            })
            .collect();
        let same_segs = want_segs.len() == got_segs.len()
            && want_segs
                .iter()
                .zip(&got_segs)
                .all(|(a, b)| (a.0 - b.0).abs() < 0.011 && (a.1 - b.1).abs() < 0.011 && a.2 == b.2);
        if got != want || !same_segs {
            failures.push(format!(
                "{model} {clip} timestamps={ts}\n  want: {want:?}\n  got:  {got:?}\n  want segs: {want_segs:?}\n  got segs:  {got_segs:?}"
            ));
        }
    }
    assert!(n > 0, "no cases for {model}");
    assert!(
        failures.is_empty(),
        "{} of {n} cases differ from faster-whisper:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn tiny_en_equals_faster_whisper() {
    check_model("whisper-tiny-en");
}

#[test]
fn base_equals_faster_whisper() {
    check_model("whisper-base");
}

/// int8 is the CPU default only while its word error rate on the speech
/// set (the clips' own texts as the truth) stays within 0.02 of float32's.
#[test]
fn int8_word_error_rate_within_002_of_float32() {
    let truth: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/whisper/truth.json")).expect("truth"),
    )
    .expect("json");
    let mut clips: Vec<(String, String)> = truth
        .as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("text").to_string()))
        .collect();
    clips.push((
        "beckett".into(),
        "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.".into(),
    ));
    for model in ["whisper-tiny-en", "whisper-base"] {
        let mut mean = Vec::new();
        for ct in ["float32", "int8"] {
            let m = load(model, ct);
            let opts = DecodeOptions {
                language: Some("en".into()),
                ..Default::default()
            };
            let total: f64 = clips
                .iter()
                .map(|(clip, text)| {
                    let t = m.transcribe(&audio(clip), &opts).expect("transcribe");
                    let e = common::wer(text, &t.text());
                    eprintln!("{model} {ct} {clip}: WER {e:.3}");
                    e
                })
                .sum();
            mean.push(total / clips.len() as f64);
        }
        eprintln!(
            "{model}: mean WER float32 {:.4}, int8 {:.4}",
            mean[0], mean[1]
        );
        assert!(mean[1] <= mean[0] + 0.02, "{model}: {mean:?}");
    }
}
