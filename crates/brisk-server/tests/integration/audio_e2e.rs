//! Real Whisper tiny.en through `/v1/audio/transcriptions` (multipart), on
//! real speech (beckett.wav) and on broken uploads.

use crate::common;

use axum::http::StatusCode;
use brisk_server::AppState;
use serde_json::Value;

const MODEL: &str = "whisper-tiny-en";
const BECKETT: &str = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.";

fn models_dir() -> std::path::PathBuf {
    common::models_dir(&[MODEL, "testdata/beckett.wav"])
}

fn state(max_audio_bytes: usize, max_audio_seconds: f64) -> AppState {
    common::default_state(models_dir(), |c| {
        c.server.max_audio_bytes = max_audio_bytes;
        c.server.max_audio_seconds = max_audio_seconds;
    })
}

fn multipart(fields: &[(&str, &str)], file: Option<&[u8]>) -> (String, Vec<u8>) {
    let boundary = "brisk-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    if let Some(bytes) = file {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post(
    s: &AppState,
    uri: &str,
    fields: &[(&str, &str)],
    file: Option<&[u8]>,
) -> (StatusCode, String) {
    let (ct, body) = multipart(fields, file);
    let (st, _, text) = common::send(s, "POST", uri, &ct, body).await;
    (st, text)
}

fn beckett() -> Vec<u8> {
    std::fs::read(models_dir().join("testdata/beckett.wav")).expect("beckett.wav")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcribes_real_speech_in_every_response_format() {
    let s = state(50 << 20, 600.0);
    let wav = beckett();
    let (st, body) = post(
        &s,
        "/v1/audio/transcriptions",
        &[("model", MODEL)],
        Some(&wav),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    let text = v["text"].as_str().expect("text");
    assert!(common::wer(BECKETT, text) <= 0.2, "{text}");

    let (st, body) = post(
        &s,
        "/v1/audio/transcriptions",
        &[("model", MODEL), ("response_format", "verbose_json")],
        Some(&wav),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["task"], "transcribe");
    assert_eq!(v["language"], "en");
    assert!((v["duration"].as_f64().expect("duration") - 10.0).abs() < 0.5);
    let segs = v["segments"].as_array().expect("segments");
    assert!(!segs.is_empty());
    let last_end = segs.last().and_then(|s| s["end"].as_f64()).expect("end");
    assert!(last_end > 5.0 && last_end <= 10.5, "{last_end}");

    let (st, srt) = post(
        &s,
        "/v1/audio/transcriptions",
        &[("model", MODEL), ("response_format", "srt")],
        Some(&wav),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(srt.starts_with("1\n00:00:"), "{srt}");
    let (_, vtt) = post(
        &s,
        "/v1/audio/transcriptions",
        &[("model", MODEL), ("response_format", "vtt")],
        Some(&wav),
    )
    .await;
    assert!(vtt.starts_with("WEBVTT\n\n00:00:"), "{vtt}");
    let (_, plain) = post(
        &s,
        "/v1/audio/transcriptions",
        &[("model", MODEL), ("response_format", "text")],
        Some(&wav),
    )
    .await;
    assert!(common::wer(BECKETT, &plain) <= 0.2, "{plain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_uploads_get_clear_4xx() {
    let s = state(1 << 20, 5.0);
    let wav = beckett();
    /// Form fields, file bytes, expected status, expected message part.
    type Case<'a> = (
        Vec<(&'a str, &'a str)>,
        Option<Vec<u8>>,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            vec![("model", MODEL)],
            Some(b"this is not audio at all".to_vec()),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            vec![("model", MODEL)],
            Some(Vec::new()),
            StatusCode::BAD_REQUEST,
            "empty",
        ),
        (
            vec![("model", MODEL)],
            None,
            StatusCode::BAD_REQUEST,
            "'file' is required",
        ),
        (
            vec![],
            Some(wav[..2000].to_vec()),
            StatusCode::BAD_REQUEST,
            "'model' is required",
        ),
        (
            vec![("model", MODEL)],
            Some(wav[..300].to_vec()),
            StatusCode::BAD_REQUEST,
            "",
        ),
        // 10 s of speech over a 5 s limit.
        (
            vec![("model", MODEL)],
            Some(wav.clone()),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            vec![("model", MODEL), ("response_format", "xml")],
            Some(wav.clone()),
            StatusCode::BAD_REQUEST,
            "response_format",
        ),
        (
            vec![("model", MODEL), ("language", "english!")],
            Some(wav.clone()),
            StatusCode::BAD_REQUEST,
            "language",
        ),
        (
            vec![("model", "nope")],
            Some(wav.clone()),
            StatusCode::NOT_FOUND,
            "nope",
        ),
        // Over the 1 MiB upload limit.
        (
            vec![("model", MODEL)],
            Some(vec![0u8; 2 << 20]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
        ),
    ];
    for (fields, file, status, needle) in cases {
        let (st, body) = post(&s, "/v1/audio/transcriptions", &fields, file.as_deref()).await;
        assert_eq!(st, status, "{fields:?}: {body}");
        let v: Value = serde_json::from_str(&body).expect("OpenAI error JSON");
        let msg = v["error"]["message"].as_str().expect("message");
        assert!(msg.contains(needle), "{fields:?}: {msg}");
    }
    // Translation needs a multilingual model.
    let short = state(50 << 20, 600.0);
    let (st, body) = post(
        &short,
        "/v1/audio/translations",
        &[("model", MODEL)],
        Some(&wav),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("English-only"), "{body}");
}

/// beckett.wav `times` times with a second of silence between: a file past
/// Whisper's 30 s window when `times` is 4.
/// A synthesized 40.2 s clip of varied speech (tests/fixtures/whisper/,
/// scripts/gen_whisper_speech.py) and the text it speaks.
///
/// Not beckett.wav repeated: one 30 s window holding the same sentences
/// three times gzips past the compression-ratio threshold (2.4), so the
/// decoder falls back to sampling at temperature 0.2, which is random, as
/// in faster-whisper; the test then checked luck, not VAD cutting.
fn long_speech() -> (Vec<u8>, String) {
    const CLIP: &str = "piper_long_110";
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/whisper");
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("truth.json")).expect("truth.json"))
            .expect("json");
    let text = truth[CLIP].as_str().expect("text").to_string();
    let audio = std::fs::read(dir.join(format!("{CLIP}.flac"))).expect("flac");
    (audio, text)
}

/// Over 60 s of varied speech (so the VAD cuts it into several pieces):
/// two synthesized clips of tests/fixtures/whisper/ one after the other
/// with a second of silence between, as a WAV, and the text they speak.
fn longer_speech() -> (Vec<u8>, String) {
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/whisper");
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("truth.json")).expect("truth.json"))
            .expect("json");
    let mut pcm = Vec::new();
    let mut text = Vec::new();
    for clip in ["piper_long_110", "espeak_long_160"] {
        let flac = std::fs::read(dir.join(format!("{clip}.flac"))).expect("flac");
        pcm.extend(brisk_server::api::decode::decode_audio(&flac, 600.0).expect("decodes"));
        pcm.extend(std::iter::repeat_n(0.0f32, 16_000));
        text.push(truth[clip].as_str().expect("text").to_string());
    }
    (common::pcm_wav(&pcm), text.join(" "))
}

fn vad_loads(s: &AppState) -> u64 {
    s.registry
        .status()
        .into_iter()
        .find(|m| m.task == brisk_core::Task::Vad)
        .expect("a VAD model under the models dir")
        .loads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn word_timestamps_beam_size_and_their_bad_values() {
    let s = state(50 << 20, 600.0);
    let wav = beckett();
    let words = [
        ("model", MODEL),
        ("response_format", "verbose_json"),
        ("timestamp_granularities[]", "word"),
        ("timestamp_granularities[]", "segment"),
    ];
    let (st, body) = post(&s, "/v1/audio/transcriptions", &words, Some(&wav)).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    let list = v["words"].as_array().expect("words");
    assert!(list.len() >= 10, "{body}");
    let duration = v["duration"].as_f64().expect("duration");
    let mut last = 0.0;
    for w in list {
        let (start, end) = (
            w["start"].as_f64().expect("number"),
            w["end"].as_f64().expect("number"),
        );
        assert!(
            start >= last && end >= start && end <= duration,
            "{w} after {last}"
        );
        last = start;
    }
    let joined: String = list
        .iter()
        .map(|w| w["word"].as_str().expect("string"))
        .collect();
    assert_eq!(
        common::words(&joined),
        common::words(v["text"].as_str().expect("string"))
    );
    // Without the granularity there are no words, as OpenAI answers.
    let (_, plain) = post(
        &s,
        "/v1/audio/transcriptions",
        &[("model", MODEL), ("response_format", "verbose_json")],
        Some(&wav),
    )
    .await;
    let plain: Value = serde_json::from_str(&plain).expect("json");
    assert!(plain.get("words").is_none(), "{plain}");
    assert!(plain["segments"].as_array().is_some_and(|s| !s.is_empty()));

    // Words only fit in verbose_json.
    let (st, body) = post(
        &s,
        "/v1/audio/transcriptions",
        &[("model", MODEL), ("timestamp_granularities[]", "word")],
        Some(&wav),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("\"param\":\"timestamp_granularities\""),
        "{body}"
    );

    // Beam search (faster-whisper's beam_size): same words on clear speech.
    let (st, body) = post(
        &s,
        "/v1/audio/transcriptions",
        &[("model", MODEL), ("beam_size", "5")],
        Some(&wav),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert!(
        common::wer(BECKETT, v["text"].as_str().expect("string")) <= 0.2,
        "{body}"
    );
    for bad in ["0", "17", "two", "-1"] {
        let (st, body) = post(
            &s,
            "/v1/audio/transcriptions",
            &[("model", MODEL), ("beam_size", bad)],
            Some(&wav),
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body.contains("\"param\":\"beam_size\""), "{body}");
    }
    let (st, body) = post(
        &s,
        "/v1/audio/transcriptions",
        &[("model", MODEL), ("vad_filter", "yes")],
        Some(&wav),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("\"param\":\"vad_filter\""), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn word_timestamps_on_a_model_without_alignment_heads_are_a_400() {
    // A models dir holding a copy of tiny.en whose config.json lists no
    // alignment heads (the weights are symlinks).
    let src = models_dir().join(MODEL);
    let dir = std::env::temp_dir().join(format!("brisk-noheads-{}", std::process::id()));
    let model = dir.join("whisper-noheads");
    std::fs::create_dir_all(&model).expect("mkdir");
    for f in ["model.bin", "tokenizer.json", "vocabulary.txt"] {
        let _ = std::fs::remove_file(model.join(f));
        std::os::unix::fs::symlink(src.join(f), model.join(f)).expect("symlink");
    }
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).expect("config"))
            .expect("json");
    cfg.as_object_mut()
        .expect("object")
        .remove("alignment_heads");
    std::fs::write(model.join("config.json"), cfg.to_string()).expect("write");
    let s = common::default_state(dir.clone(), |_| {});
    let wav = beckett();
    let ask = |words: bool| {
        let mut f = vec![
            ("model", "whisper-noheads"),
            ("response_format", "verbose_json"),
        ];
        if words {
            f.push(("timestamp_granularities[]", "word"));
        }
        f
    };
    let (st, body) = post(&s, "/v1/audio/transcriptions", &ask(true), Some(&wav)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("alignment_heads") && body.contains("timestamp_granularities"),
        "{body}"
    );
    // The same model still transcribes without word times.
    let (st, body) = post(&s, "/v1/audio/transcriptions", &ask(false), Some(&wav)).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_audio_is_cut_at_the_vads_silences_by_default() {
    let (wav, truth) = long_speech();
    // Default: past 30 s, the VAD model finds the silences.
    let s = state(50 << 20, 600.0);
    assert_eq!(vad_loads(&s), 0);
    let (st, body) = post(
        &s,
        "/v1/audio/transcriptions",
        &[("model", MODEL), ("response_format", "verbose_json")],
        Some(&wav),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(vad_loads(&s), 1, "the VAD model ran");
    let v: Value = serde_json::from_str(&body).expect("json");
    let text = v["text"].as_str().expect("string");
    let e = common::wer(&truth, text);
    eprintln!("WER with VAD {e:.3}");
    assert!(e <= 0.2, "{text}");
    assert!(v["duration"].as_f64().expect("number") > 40.0, "{body}");

    // Past 60 s the file is cut into several pieces of up to 30 s, and the
    // CTranslate2 engine decodes pieces that wait together as one batch.
    // The model is served under a name of this test's own, so its batch
    // sizes in the process-wide /metrics are this request's alone.
    let s = common::default_state(models_dir(), |c| {
        c.models.insert(
            "whisper-batched".into(),
            brisk_server::config::ModelConfig {
                source: MODEL.into(),
                ..Default::default()
            },
        );
    });
    // Loaded first, so that the pieces meet a model already serving (a cold
    // load would hold them all in the queue anyway).
    let (st, body) = post(
        &s,
        "/v1/audio/transcriptions",
        &[("model", "whisper-batched")],
        Some(&beckett()),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (long, long_truth) = longer_speech();
    let (st, body) = post(
        &s,
        "/v1/audio/transcriptions",
        &[
            ("model", "whisper-batched"),
            ("response_format", "verbose_json"),
        ],
        Some(&long),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert!(v["duration"].as_f64().expect("number") > 60.0, "{body}");
    let text = v["text"].as_str().expect("string");
    let e = common::wer(&long_truth, text);
    eprintln!("WER of the batched pieces {e:.3}");
    assert!(e <= 0.2, "{text}");
    let metrics = s.metrics.as_ref().expect("recorder").render();
    let series = |name: &str| -> f64 {
        let prefix = format!("{name}{{model=\"whisper-batched\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{prefix} not in /metrics"))
    };
    // Requests (the warm-up and the pieces) and the batches they ran in.
    let (requests, batches) = (
        series("brisk_batch_size_sum"),
        series("brisk_batch_size_count"),
    );
    assert!(requests >= 4.0, "{requests} requests: the file was not cut");
    assert!(
        batches < requests,
        "{requests} requests ran in {batches} batches: no piece shared one"
    );

    // vad_filter=false: one pass over the whole file, no VAD.
    let s = state(50 << 20, 600.0);
    let (st, body) = post(
        &s,
        "/v1/audio/transcriptions",
        &[("model", MODEL), ("vad_filter", "false")],
        Some(&wav),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(vad_loads(&s), 0, "no VAD with vad_filter=false");
    let text: Value = serde_json::from_str(&body).expect("json");
    let text = text["text"].as_str().expect("string");
    assert!(common::wer(&truth, text) <= 0.2, "{body}");

    // Short audio with vad_filter=true goes through the VAD too.
    let (st, body) = post(
        &s,
        "/v1/audio/transcriptions",
        &[("model", MODEL), ("vad_filter", "true")],
        Some(&beckett()),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(vad_loads(&s), 1);

    // vad_filter=false contradicts an explicit chunking_strategy.
    let (st, body) = post(
        &s,
        "/v1/audio/transcriptions",
        &[
            ("model", MODEL),
            ("vad_filter", "false"),
            ("chunking_strategy", "auto"),
        ],
        Some(&beckett()),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("\"param\":\"vad_filter\""), "{body}");
}
