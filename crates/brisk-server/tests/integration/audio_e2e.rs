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
