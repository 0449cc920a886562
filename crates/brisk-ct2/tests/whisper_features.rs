//! Decoding features of the CTranslate2 Whisper on real models
//! (scripts/fetch-models): compute types, no-speech skip, word timestamps,
//! beam search, temperature fallback, prompts.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use brisk_core::BackendError;
use brisk_ct2::{Ct2Whisper, DecodeOptions, LoadOptions};

fn fetched(rel: &str) -> PathBuf {
    let root = std::env::var_os("BRISK_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let p = root.join(rel);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models",
        p.display()
    );
    p
}

fn tiny() -> &'static Ct2Whisper {
    static M: OnceLock<Ct2Whisper> = OnceLock::new();
    M.get_or_init(|| {
        Ct2Whisper::load(
            &fetched("whisper-tiny-en"),
            &LoadOptions {
                compute_type: "int8".into(),
                threads: 2,
            },
        )
        .expect("load tiny.en")
    })
}

fn beckett() -> Vec<f32> {
    let (pcm, rate) = common::audio::read_mono(&fetched("testdata/beckett.wav"));
    assert_eq!(rate, 16000);
    pcm
}

#[test]
fn unsupported_compute_type_is_a_load_error_naming_it() {
    let err = Ct2Whisper::load(
        &fetched("whisper-tiny-en"),
        &LoadOptions {
            compute_type: "float16".into(),
            threads: 1,
        },
    )
    .expect_err("float16 on CPU");
    assert!(matches!(err, BackendError::InvalidModel(_)), "{err}");
    assert!(err.to_string().contains("float16"), "{err}");
}

#[test]
fn missing_model_is_not_found() {
    let err = Ct2Whisper::load(Path::new("/nonexistent/whisper"), &LoadOptions::default())
        .expect_err("missing");
    assert!(matches!(err, BackendError::NotFound(_)), "{err}");
}

#[test]
fn ten_seconds_of_silence_is_an_empty_transcript() {
    let t = tiny()
        .transcribe(&vec![0.0f32; 160_000], &DecodeOptions::default())
        .expect("transcribe");
    assert!(t.segments.is_empty(), "{t:?}");
    assert_eq!(t.text(), "");
}

#[test]
fn int8_transcribes_beckett() {
    let t = tiny()
        .transcribe(&beckett(), &DecodeOptions::default())
        .expect("transcribe");
    let text = t.text().to_lowercase();
    for w in ["ever tried", "no matter", "fail better"] {
        assert!(text.contains(w), "{text}");
    }
}

#[test]
fn word_timestamps_are_ordered_and_spell_the_text() {
    let pcm = beckett();
    let opts = DecodeOptions {
        word_timestamps: true,
        ..Default::default()
    };
    let t = tiny().transcribe(&pcm, &opts).expect("transcribe");
    let duration = pcm.len() as f64 / 16000.0;
    let mut last = 0.0;
    let mut n = 0;
    for s in &t.segments {
        assert!(!s.words.is_empty(), "{s:?}");
        let joined: String = s.words.iter().map(|w| w.word.as_str()).collect();
        assert_eq!(joined.trim(), s.text.trim(), "{s:?}");
        for w in &s.words {
            assert!(
                w.start >= last - 1e-9 && w.end >= w.start,
                "{w:?} after {last}"
            );
            assert!(w.end <= duration + 0.5, "{w:?}");
            assert!((0.0..=1.0).contains(&w.probability), "{w:?}");
            last = w.start;
            n += 1;
        }
    }
    assert!(n >= 10, "{t:?}");
}

#[test]
fn word_timestamps_need_alignment_heads() {
    // A copy of tiny.en whose config.json has no alignment heads.
    let src = fetched("whisper-tiny-en");
    let dir = std::env::temp_dir().join(format!("brisk-ct2-noheads-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    for f in ["model.bin", "tokenizer.json", "vocabulary.txt"] {
        let _ = std::fs::remove_file(dir.join(f));
        std::os::unix::fs::symlink(src.join(f), dir.join(f)).expect("symlink");
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).expect("config"))
            .expect("json");
    cfg.as_object_mut()
        .expect("object")
        .remove("alignment_heads");
    std::fs::write(dir.join("config.json"), cfg.to_string()).expect("write");
    let m = Ct2Whisper::load(&dir, &LoadOptions::default()).expect("load");
    assert!(!m.has_alignment_heads());
    let err = m
        .transcribe(
            &beckett(),
            &DecodeOptions {
                word_timestamps: true,
                ..Default::default()
            },
        )
        .expect_err("no heads");
    assert!(matches!(err, BackendError::InvalidInput(_)), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn beam_search_and_prompt() {
    let pcm = beckett();
    let beam = tiny()
        .transcribe(
            &pcm,
            &DecodeOptions {
                beam_size: 5,
                ..Default::default()
            },
        )
        .expect("beam");
    assert!(
        beam.text().to_lowercase().contains("fail better"),
        "{beam:?}"
    );
    let prompted = tiny()
        .transcribe(
            &pcm,
            &DecodeOptions {
                prompt: Some("Samuel Beckett, Worstward Ho.".into()),
                ..Default::default()
            },
        )
        .expect("prompt");
    assert!(
        prompted.text().to_lowercase().contains("fail"),
        "{prompted:?}"
    );
    let err = tiny()
        .transcribe(
            &pcm,
            &DecodeOptions {
                beam_size: 0,
                ..Default::default()
            },
        )
        .expect_err("beam 0");
    assert!(err.to_string().contains("beam_size"), "{err}");
}

#[test]
fn temperature_fallback_leaves_repetitive_output() {
    // Sampling at a high temperature alone must still produce a transcript
    // (the sampled path runs); with the fallback schedule, the result's
    // temperature is one of the schedule's.
    let pcm = beckett();
    let t = tiny()
        .transcribe(&pcm, &DecodeOptions::default())
        .expect("fallback");
    for s in &t.segments {
        assert!(
            [0.0f32, 0.2, 0.4, 0.6, 0.8, 1.0].contains(&s.temperature),
            "{s:?}"
        );
        assert!(s.compression_ratio > 0.0);
    }
    let hot = tiny()
        .transcribe(
            &pcm,
            &DecodeOptions {
                temperatures: vec![1.0],
                ..Default::default()
            },
        )
        .expect("sampled");
    assert!(hot.segments.iter().all(|s| s.temperature == 1.0));
}
