#![cfg(feature = "whisper")]
//! Whisper tiny.en and multilingual base (CTranslate2, fetched by
//! scripts/fetch-models) on real speech: models/testdata/beckett.wav, "Ever
//! tried. Ever failed. No matter. Try again. Fail again. Fail better.", and
//! on speech synthesized by espeak-ng at test time (install it with
//! scripts/install-deps).

use crate::common;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};

use brisk_backends::whisper::audio::{
    decode_to_mono, decode_to_mono_16k, encode_wav_i16, resample,
};
use brisk_backends::whisper::{mel, TranscribeOptions, WhisperModel};
use brisk_core::{Backend, BackendError, Request, Task};

const BECKETT: &str = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.";

/// One model shared by all tests (loading takes a while in debug builds).
fn model() -> MutexGuard<'static, WhisperModel> {
    static MODEL: OnceLock<Mutex<WhisperModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let m = WhisperModel::load(&common::fetched("whisper-tiny-en"))
                .expect("load whisper-tiny-en");
            Mutex::new(m)
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn beckett_bytes() -> Vec<u8> {
    std::fs::read(common::fetched("testdata/beckett.wav")).expect("read beckett.wav")
}

fn beckett_16k() -> Vec<f32> {
    decode_to_mono_16k(&beckett_bytes(), 60.0).expect("decode beckett.wav")
}

fn words(s: &str) -> Vec<String> {
    s.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' || c.is_whitespace() {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Word error rate: word-level Levenshtein distance / reference length.
fn wer(reference: &str, hypothesis: &str) -> f64 {
    let r = words(reference);
    let h = words(hypothesis);
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            let sub = prev[j] + usize::from(rw != hw);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[h.len()] as f64 / r.len().max(1) as f64
}

#[test]
fn wer_function() {
    assert_eq!(wer("a b c", "a b c"), 0.0);
    assert!((wer("a b c d", "A, b; x d!") - 0.25).abs() < 1e-9);
    assert!((wer("a b", "a b c d") - 1.0).abs() < 1e-9);
}

#[test]
fn beckett_transcribes() {
    let pcm = beckett_16k();
    assert!(
        (9.0..12.0).contains(&(pcm.len() as f64 / 16000.0)),
        "{}",
        pcm.len()
    );
    let t = model()
        .transcribe(&pcm, &TranscribeOptions::default())
        .expect("transcribe");
    eprintln!("beckett: {t:?}");
    let e = wer(BECKETT, &t.text);
    assert!(e <= 0.2, "WER {e:.3} for {:?}", t.text);
    assert_eq!(t.language, "en");
    assert_eq!(t.segments.len(), 1);
    assert!((t.duration_s - pcm.len() as f64 / 16000.0).abs() < 1e-9);
}

#[test]
fn beckett_with_timestamps() {
    let pcm = beckett_16k();
    let opts = TranscribeOptions {
        timestamps: true,
        ..Default::default()
    };
    let t = model().transcribe(&pcm, &opts).expect("transcribe");
    eprintln!("beckett timestamps: {t:#?}");
    assert!(wer(BECKETT, &t.text) <= 0.2, "{:?}", t.text);
    assert!(!t.segments.is_empty());
    let mut last = 0.0;
    for s in &t.segments {
        assert!(s.start_s >= last - 1e-9 && s.end_s >= s.start_s, "{t:?}");
        assert!(s.end_s <= t.duration_s + 1e-9, "{t:?}");
        last = s.start_s;
    }
}

#[test]
fn long_audio_is_transcribed_window_by_window() {
    let one = beckett_16k();
    let mut pcm = Vec::new();
    for _ in 0..4 {
        pcm.extend_from_slice(&one);
    }
    let secs = pcm.len() as f64 / 16000.0;
    assert!(secs > 35.0, "{secs}");
    let t = model()
        .transcribe(&pcm, &TranscribeOptions::default())
        .expect("transcribe");
    eprintln!("4x beckett: {t:#?}");
    assert_eq!(t.segments.len(), 2, "{t:?}");
    assert_eq!(t.segments[0].start_s, 0.0);
    assert!((t.segments[0].end_s - 30.0).abs() < 1e-9);
    assert!((t.segments[1].start_s - 30.0).abs() < 1e-9);
    assert!((t.segments[1].end_s - secs).abs() < 1e-3);
    // Both windows heard speech: each has Beckett's words.
    for s in &t.segments {
        let w = words(&s.text);
        assert!(w.iter().any(|x| x == "fail"), "{:?}", s.text);
        assert!(w.iter().any(|x| x == "again"), "{:?}", s.text);
    }
    // The second window (about 10 s = one full clip) is nearly exact.
    assert!(
        wer(BECKETT, &t.segments[1].text) <= 0.35,
        "{:?}",
        t.segments[1].text
    );
}

#[test]
fn long_audio_with_timestamps_seeks_to_the_last_full_segment() {
    let one = beckett_16k();
    let mut pcm = Vec::new();
    for _ in 0..4 {
        pcm.extend_from_slice(&one);
    }
    let opts = TranscribeOptions {
        timestamps: true,
        ..Default::default()
    };
    let t = model().transcribe(&pcm, &opts).expect("transcribe");
    eprintln!("4x beckett, timestamps: {t:#?}");
    let mut last = 0.0;
    for s in &t.segments {
        assert!(s.start_s >= last - 1e-9 && s.end_s >= s.start_s, "{t:?}");
        assert!(s.end_s <= t.duration_s + 1e-9, "{t:?}");
        last = s.start_s;
    }
    assert!(t.segments.last().is_some_and(|s| s.end_s > 35.0), "{t:?}");
    let reference = [BECKETT; 4].join(" ");
    assert!(wer(&reference, &t.text) <= 0.2, "{:?}", t.text);
}

#[test]
fn prompt_and_language_options() {
    let pcm = beckett_16k();
    let mut m = model();
    let opts = TranscribeOptions {
        language: Some("en".into()),
        prompt: Some("Samuel Beckett, Worstward Ho.".into()),
        ..Default::default()
    };
    let t = m.transcribe(&pcm, &opts).expect("transcribe");
    assert!(wer(BECKETT, &t.text) <= 0.2, "{:?}", t.text);
    // A prompt longer than the decoder context keeps only its tail.
    let long = TranscribeOptions {
        prompt: Some("Beckett wrote this. ".repeat(300)),
        language: Some("EN".into()),
        ..Default::default()
    };
    // (A repetitive prompt like this one can make tiny.en parrot it, as in
    // Whisper itself, so only the absence of errors is checked.)
    m.transcribe(&pcm, &long)
        .expect("transcribe with a long prompt");
    let de = TranscribeOptions {
        language: Some("de".into()),
        ..Default::default()
    };
    assert!(matches!(
        m.transcribe(&pcm, &de),
        Err(BackendError::InvalidInput(_))
    ));
    let hot = TranscribeOptions {
        temperature: f32::NAN,
        ..Default::default()
    };
    assert!(matches!(
        m.transcribe(&pcm, &hot),
        Err(BackendError::InvalidInput(_))
    ));
    assert!(matches!(
        m.transcribe(&[], &TranscribeOptions::default()),
        Err(BackendError::InvalidInput(_))
    ));
}

#[test]
fn sampling_at_temperature_is_reasonable() {
    let pcm = beckett_16k();
    let opts = TranscribeOptions {
        temperature: 0.2,
        ..Default::default()
    };
    let t = model().transcribe(&pcm, &opts).expect("transcribe");
    assert!(wer(BECKETT, &t.text) <= 0.4, "{:?}", t.text);
}

#[test]
fn silence_yields_no_text() {
    let pcm = vec![0.0f32; 16000 * 3];
    let t = model()
        .transcribe(&pcm, &TranscribeOptions::default())
        .expect("transcribe");
    assert!(words(&t.text).len() <= 2, "{t:?}");
}

#[test]
fn backend_trait() {
    let mut m = model();
    assert_eq!(m.task(), Task::Transcription);
    assert!(m.memory_bytes() > 100_000_000, "{}", m.memory_bytes());
    let out = m.infer(vec![Request::Embed {
        texts: vec!["x".into()],
        truncate: false,
    }]);
    assert!(matches!(out[0], Err(BackendError::Unsupported(_))));
}

#[test]
fn loader_detects_and_describes_whisper() {
    use brisk_backends::{available_backends, detect, BriskLoader};
    use brisk_core::{Loader, ModelSource};
    let dir = common::fetched("whisper-tiny-en");
    assert!(available_backends().contains(&"candle-whisper"));
    // With the CTranslate2 engine compiled in, it serves Whisper folders.
    let expected = if cfg!(feature = "ct2") {
        "ct2-whisper"
    } else {
        "candle-whisper"
    };
    assert_eq!(detect(&dir), Some(expected));
    assert_eq!(detect(&common::fetched("testdata")), None);
    let src = ModelSource {
        backend: "candle-whisper".into(),
        path: dir.clone(),
        options: Default::default(),
        adapters: Default::default(),
    };
    let loader = BriskLoader::new();
    assert_eq!(loader.task(&src).expect("task"), Task::Transcription);
    let bin = std::fs::metadata(dir.join("model.bin"))
        .expect("model.bin")
        .len();
    assert_eq!(loader.estimate_bytes(&src), Some(bin * 2));
}

#[test]
fn missing_model_is_not_found() {
    let err =
        WhisperModel::load(std::path::Path::new("/nonexistent/whisper")).expect_err("missing");
    assert!(matches!(err, BackendError::NotFound(_)), "{err}");
    assert!(err.to_string().contains("fetch-models"), "{err}");
}

// ---- audio decoding --------------------------------------------------------

fn is_invalid_input<T: std::fmt::Debug>(r: Result<T, BackendError>) -> bool {
    matches!(r, Err(BackendError::InvalidInput(_)))
}

#[test]
fn decode_rejects_bad_input() {
    let wav = beckett_bytes();
    assert!(is_invalid_input(decode_to_mono_16k(&[], 60.0)));
    assert!(is_invalid_input(decode_to_mono_16k(
        b"definitely not audio, just text",
        60.0
    )));
    let noise: Vec<u8> = (0..10_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    assert!(is_invalid_input(decode_to_mono_16k(&noise, 60.0)));
    // Header only, and header cut in the middle.
    assert!(is_invalid_input(decode_to_mono_16k(&wav[..44], 60.0)));
    assert!(is_invalid_input(decode_to_mono_16k(&wav[..20], 60.0)));
    // Half of the data chunk missing.
    assert!(is_invalid_input(decode_to_mono_16k(
        &wav[..wav.len() / 2],
        60.0
    )));
    // Longer than allowed (beckett is ~10 s).
    assert!(is_invalid_input(decode_to_mono_16k(&wav, 5.0)));
    assert!(is_invalid_input(decode_to_mono_16k(&wav, 0.0)));
    // 20 s of audio against limits of 19 s and 21 s.
    let long = encode_wav_i16(&vec![0.1; 16000 * 20], 16000, 1);
    assert!(is_invalid_input(decode_to_mono_16k(&long, 19.0)));
    assert!(decode_to_mono_16k(&long, 21.0).is_ok());
}

#[test]
fn decode_never_panics_on_damaged_files() {
    let wav = beckett_bytes();
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..200 {
        let mut b = wav.clone();
        // Cut somewhere, and flip a few bytes, mostly in the header.
        let cut = 1 + (next() as usize) % b.len();
        b.truncate(cut);
        for _ in 0..(i % 4) {
            let span = if next() % 2 == 0 { 64 } else { b.len() };
            let at = (next() as usize) % span.min(b.len());
            b[at] ^= (next() as u8) | 1;
        }
        match decode_to_mono_16k(&b, 60.0) {
            Ok(pcm) => assert!(pcm.len() <= 60 * 16_000),
            Err(BackendError::InvalidInput(_)) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
}

#[test]
fn decode_resamples_and_mixes_down() {
    // A 440 Hz tone at 44.1 kHz stereo (left tone, right silence): mono at
    // 16 kHz keeps the length, the frequency, and half the amplitude.
    let rate = 44_100u32;
    let secs = 2.0;
    let n = (rate as f64 * secs) as usize;
    let mut inter = Vec::with_capacity(n * 2);
    for i in 0..n {
        let v = 0.8 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / rate as f64).sin();
        inter.push(v as f32);
        inter.push(0.0);
    }
    let wav = encode_wav_i16(&inter, rate, 2);
    let (mono, r) = decode_to_mono(&wav, 60.0).expect("decode");
    assert_eq!(r, rate);
    assert_eq!(mono.len(), n);
    let pcm = decode_to_mono_16k(&wav, 60.0).expect("decode");
    assert!((pcm.len() as i64 - 32_000).abs() <= 2, "{}", pcm.len());
    let peak = pcm[1000..31_000].iter().fold(0f32, |m, &x| m.max(x.abs()));
    assert!((peak - 0.4).abs() < 0.02, "{peak}");
    // Zero crossings: 440 Hz = 880 per second.
    let crossings = pcm[..32_000]
        .windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count();
    assert!((crossings as i64 - 1760).abs() <= 6, "{crossings}");
}

#[test]
fn resampled_beckett_still_transcribes() {
    // beckett at 16 kHz -> 44.1 kHz stereo wav -> decode back to 16 kHz.
    let pcm = beckett_16k();
    let up = resample(&pcm, 16_000, 44_100).expect("upsample");
    let stereo: Vec<f32> = up.iter().flat_map(|&x| [x, x]).collect();
    let wav = encode_wav_i16(&stereo, 44_100, 2);
    let back = decode_to_mono_16k(&wav, 60.0).expect("decode");
    assert!((back.len() as i64 - pcm.len() as i64).abs() <= 2);
    let t = model()
        .transcribe(&back, &TranscribeOptions::default())
        .expect("transcribe");
    assert!(wer(BECKETT, &t.text) <= 0.2, "{:?}", t.text);
}

/// Writes beckett's 16 kHz samples and its log-mel window (raw f32 LE) to
/// `$WHISPER_MEL_DUMP.{pcm,mel}`, to compare with a NumPy port of Whisper's
/// `log_mel_spectrogram`. Run with `--ignored`.
#[test]
#[ignore]
fn dump_log_mel() {
    let Some(base) = std::env::var_os("WHISPER_MEL_DUMP") else {
        return;
    };
    let base = PathBuf::from(base);
    let pcm = beckett_16k();
    let cfg = model().config().clone();
    let filters = mel::mel_filters(16_000, 400, cfg.num_mel_bins);
    let m = mel::log_mel_window(&cfg, &filters, &pcm);
    let raw = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    std::fs::write(base.with_extension("pcm"), raw(&pcm)).expect("write pcm");
    std::fs::write(base.with_extension("mel"), raw(&m)).expect("write mel");
}

// ---- multilingual base, translation, synthesized speech --------------------

/// Multilingual Whisper base, shared by the tests below.
fn base_model() -> MutexGuard<'static, WhisperModel> {
    static MODEL: OnceLock<Mutex<WhisperModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let m =
                WhisperModel::load(&common::fetched("whisper-base")).expect("load whisper-base");
            Mutex::new(m)
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Speaks `text` with espeak-ng (`voice`, `speed` words per minute) and
/// returns mono 16 kHz samples. Fails (never skips) when espeak-ng is not
/// installed.
fn espeak(voice: &str, speed: u32, text: &str) -> Vec<f32> {
    let wav = std::env::temp_dir().join(format!(
        "brisk-whisper-test-{}-{voice}-{speed}.wav",
        std::process::id()
    ));
    let out = std::process::Command::new("espeak-ng")
        .args(["-v", voice, "-s", &speed.to_string(), "-w"])
        .arg(&wav)
        .arg(text)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "espeak-ng is not installed (needed to synthesize test speech): \
             run scripts/install-deps"
        ),
        Err(e) => panic!("cannot run espeak-ng: {e} (run scripts/install-deps)"),
    };
    assert!(
        out.status.success(),
        "espeak-ng -v {voice} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&wav).expect("read espeak-ng output");
    let _ = std::fs::remove_file(&wav);
    let pcm = decode_to_mono_16k(&bytes, 60.0).expect("decode espeak-ng wav");
    assert!(
        pcm.len() > 16_000,
        "espeak-ng produced {} samples",
        pcm.len()
    );
    pcm
}

/// How many of `expected` occur as words of `text`.
fn hits(text: &str, expected: &[&str]) -> usize {
    let w = words(text);
    expected
        .iter()
        .filter(|e| w.iter().any(|x| x == *e))
        .count()
}

#[test]
fn base_transcribes_beckett_and_detects_english() {
    let pcm = beckett_16k();
    let mut m = base_model();
    assert!(m.is_multilingual());
    let t = m
        .transcribe(&pcm, &TranscribeOptions::default())
        .expect("transcribe");
    eprintln!("base beckett: {t:?}");
    assert_eq!(t.language, "en", "{t:?}");
    let e = wer(BECKETT, &t.text);
    assert!(e <= 0.25, "WER {e:.3} for {:?}", t.text);
    // Language codes are checked against the model's language tokens.
    let bad = TranscribeOptions {
        language: Some("xx".into()),
        ..Default::default()
    };
    assert!(matches!(
        m.transcribe(&pcm, &bad),
        Err(BackendError::InvalidInput(_))
    ));
}

#[test]
fn english_only_model_refuses_translation() {
    let opts = TranscribeOptions {
        translate: true,
        ..Default::default()
    };
    let err = model()
        .transcribe(&beckett_16k(), &opts)
        .expect_err("tiny.en cannot translate");
    assert!(matches!(err, BackendError::InvalidInput(_)), "{err}");
}

#[test]
fn espeak_english_with_tiny_en() {
    const TEXT: &str = "We will meet at the train station tomorrow morning. \
                        Please bring your ticket and a warm coat.";
    let pcm = espeak("en", 175, TEXT);
    let t = model()
        .transcribe(&pcm, &TranscribeOptions::default())
        .expect("transcribe");
    eprintln!("espeak en, tiny.en: {t:?}");
    let e = wer(TEXT, &t.text);
    assert!(e <= 0.35, "WER {e:.3} for {:?}", t.text);
}

/// Spanish: of German, French and Spanish, the one base handles best on
/// espeak-ng's voices (slowed down to 130 words per minute).
#[test]
fn espeak_spanish_detected_transcribed_and_translated_by_base() {
    const TEXT: &str = "El tiempo está muy bueno hoy. Voy al parque con mi perro.";
    const SPANISH: &[&str] = &["el", "tiempo", "muy", "bueno", "hoy", "parque", "con", "mi"];
    const ENGLISH: &[&str] = &["weather", "good", "today", "park", "dog", "very", "my"];
    let pcm = espeak("es", 130, TEXT);
    let mut m = base_model();

    // Language detected from the audio, transcribed in Spanish.
    let t = m
        .transcribe(&pcm, &TranscribeOptions::default())
        .expect("transcribe");
    eprintln!("espeak es, base transcribe: {t:?}");
    assert_eq!(t.language, "es", "{t:?}");
    assert!(hits(&t.text, SPANISH) >= 4, "not Spanish: {:?}", t.text);
    assert!(hits(&t.text, ENGLISH) <= 1, "not Spanish: {:?}", t.text);

    // The same audio translated to English (language still detected).
    let opts = TranscribeOptions {
        translate: true,
        ..Default::default()
    };
    let tr = m.transcribe(&pcm, &opts).expect("translate");
    eprintln!("espeak es, base translate: {tr:?}");
    assert_eq!(tr.language, "es", "{tr:?}");
    assert!(
        hits(&tr.text, ENGLISH) >= 2,
        "translation lacks English words {ENGLISH:?}: {:?}",
        tr.text
    );
    assert!(
        hits(&tr.text, SPANISH) <= 1,
        "translation is still Spanish: {:?}",
        tr.text
    );
}
