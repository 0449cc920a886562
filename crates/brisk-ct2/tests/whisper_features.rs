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

/// tiny.en int8, loaded once for the tests that share it.
fn tiny() -> &'static Ct2Whisper {
    static M: OnceLock<Ct2Whisper> = OnceLock::new();
    M.get_or_init(own_tiny)
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

/// A clip of tests/fixtures/whisper/ (scripts/gen_whisper_speech.py).
fn clip(name: &str) -> Vec<f32> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/whisper")
        .join(format!("{name}.flac"));
    let (pcm, rate) = common::audio::read_mono(&path);
    assert_eq!(rate, 16000, "{}", path.display());
    pcm
}

/// What must not change when a recording is decoded in a batch: the text,
/// and each segment's text and times.
fn shape(t: &brisk_ct2::Transcript) -> (String, String, Vec<(f64, f64, String)>) {
    (
        t.language.clone(),
        t.text(),
        t.segments
            .iter()
            .map(|s| (s.start, s.end, s.text.clone()))
            .collect(),
    )
}

/// Pieces of up to 30 s, as the HTTP edge cuts a long file at the VAD's
/// silences, decoded as one CTranslate2 batch give each piece the
/// transcript it gets alone (greedy, timestamps on, the fallback schedule,
/// the no-speech skip: faster-whisper's defaults but the beam).
fn check_batch_equals_alone(m: &Ct2Whisper, opts: &DecodeOptions) {
    let mut pieces = vec![beckett()];
    for name in [
        "espeak_us_175",
        "espeak_gb_140",
        "espeak_f3_220",
        "piper_joe_080",
        "piper_joe_100",
        "piper_joe_130",
    ] {
        pieces.push(clip(name));
    }
    // Silence is skipped per item (its no-speech probability).
    pieces.push(vec![0.0f32; 5 * 16_000]);
    let items: Vec<(&[f32], &DecodeOptions)> =
        pieces.iter().map(|p| (p.as_slice(), opts)).collect();
    let before = m.batched_windows();
    let batched = m.transcribe_batch(&items);
    assert_eq!(batched.len(), pieces.len());
    // Every piece went through a shared batch, none alone.
    assert_eq!(m.batched_windows() - before, pieces.len());
    for (i, (p, b)) in pieces.iter().zip(batched).enumerate() {
        let alone = m.transcribe(p, opts).expect("alone");
        let b = b.expect("batched");
        assert_eq!(shape(&b), shape(&alone), "piece {i}");
        if i + 1 == pieces.len() {
            assert_eq!(b.text(), "", "silence");
        } else {
            assert!(!b.text().is_empty(), "piece {i}");
        }
    }
}

/// A tiny.en int8 of the caller's own: a test that counts batched windows
/// sees no other test's.
fn own_tiny() -> Ct2Whisper {
    Ct2Whisper::load(
        &fetched("whisper-tiny-en"),
        &LoadOptions {
            compute_type: "int8".into(),
            threads: 2,
        },
    )
    .expect("load tiny.en")
}

#[test]
fn a_batch_of_pieces_equals_each_piece_alone() {
    check_batch_equals_alone(
        &own_tiny(),
        &DecodeOptions {
            language: Some("en".into()),
            beam_size: 1,
            ..Default::default()
        },
    );
}

#[test]
fn a_batch_detects_each_pieces_language_on_a_multilingual_model() {
    let base = Ct2Whisper::load(
        &fetched("whisper-base"),
        &LoadOptions {
            compute_type: "float32".into(),
            threads: 2,
        },
    )
    .expect("load base");
    assert!(base.is_multilingual());
    check_batch_equals_alone(
        &base,
        &DecodeOptions {
            beam_size: 1,
            ..Default::default()
        },
    );
}

/// Items that cannot share a batch (a file over 30 s, word timestamps, a
/// prompt of their own, beam search, bad input) keep their own result next
/// to items that do.
#[test]
fn a_mixed_batch_gives_each_item_its_own_result() {
    let m = &own_tiny();
    let greedy = DecodeOptions {
        language: Some("en".into()),
        beam_size: 1,
        ..Default::default()
    };
    let words = DecodeOptions {
        word_timestamps: true,
        ..greedy.clone()
    };
    let prompted = DecodeOptions {
        prompt: Some("Samuel Beckett, Worstward Ho.".into()),
        ..greedy.clone()
    };
    let beam = DecodeOptions {
        beam_size: 5,
        ..greedy.clone()
    };
    let b = beckett();
    let long = clip("espeak_long_160");
    assert!(long.len() > 30 * 16_000);
    let a = clip("espeak_us_175");
    let items: Vec<(&[f32], &DecodeOptions)> = vec![
        (&b, &greedy),
        (&long, &greedy),
        (&a, &words),
        (&b, &prompted),
        (&a, &greedy),
        (&[], &greedy),
        (&a, &prompted),
        (&b, &beam),
    ];
    let before = m.batched_windows();
    let results = m.transcribe_batch(&items);
    // Two batches of two: the greedy pair and the prompted pair.
    assert_eq!(m.batched_windows() - before, 4);
    for (i, ((pcm, opts), r)) in items.iter().zip(results).enumerate() {
        match m.transcribe(pcm, opts) {
            Ok(alone) => {
                let r = r.unwrap_or_else(|e| panic!("item {i}: {e}"));
                assert_eq!(shape(&r), shape(&alone), "item {i}");
                let w = |t: &brisk_ct2::Transcript| {
                    t.segments.iter().map(|s| s.words.len()).sum::<usize>()
                };
                assert_eq!(w(&r), w(&alone), "item {i}");
            }
            Err(e) => {
                let got = r.expect_err("an error, as alone");
                assert_eq!(got.to_string(), e.to_string(), "item {i}");
            }
        }
    }
}

/// Pieces of nearly 30 s, where Whisper's timestamps often end the first
/// window some seconds early: the rest of each such piece is decoded in a
/// second batched round (not alone), with its conditioning text cut to the
/// shortest in that round, so the transcripts stay close to each piece's
/// alone (same words but for the odd one).
#[test]
fn the_rest_of_long_pieces_is_decoded_in_a_batched_round() {
    let m = &own_tiny();
    let opts = DecodeOptions {
        language: Some("en".into()),
        beam_size: 1,
        ..Default::default()
    };
    // beckett.wav and the speech clips one after another with a second of
    // silence between (scripts/bench_whisper_batch.py's long file), cut
    // where the silero VAD cuts it: the first two pieces, 28.3 and 29.6 s.
    // Alone, tiny.en's timestamps end the first window of each at 21.2 and
    // 25.7 s.
    let mut long = Vec::new();
    for part in [
        beckett(),
        clip("espeak_f3_220"),
        clip("espeak_gb_140"),
        clip("espeak_long_160"),
    ] {
        long.extend(part);
        long.extend(std::iter::repeat_n(0.0f32, 16_000));
    }
    let at = |s: f64| ((s * 16_000.0) as usize).min(long.len());
    let pieces: Vec<Vec<f32>> = [(0.29, 28.638), (28.738, 58.366)]
        .iter()
        .map(|&(a, b)| long[at(a)..at(b)].to_vec())
        .collect();
    let items: Vec<(&[f32], &DecodeOptions)> =
        pieces.iter().map(|p| (p.as_slice(), &opts)).collect();
    let before = m.batched_windows();
    let batched = m.transcribe_batch(&items);
    assert!(
        m.batched_windows() - before > pieces.len(),
        "{} windows batched: no second round",
        m.batched_windows() - before
    );
    for (i, (p, b)) in pieces.iter().zip(batched).enumerate() {
        let alone = m.transcribe(p, &opts).expect("alone").text();
        let b = b.expect("batched").text();
        let e = common::wer(&alone, &b);
        assert!(
            e <= 0.05,
            "piece {i}: WER {e:.3} against alone\n{b}\n{alone}"
        );
    }
}
