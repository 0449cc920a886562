//! Helpers shared by the server's integration tests.
// Each test module uses a different part of it, some only under a feature.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use brisk_engine::Timeline;
use brisk_server::config::Config;
use brisk_server::{build_state, router, AppState};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// The fetched models folder; fails when any of `needs` (paths relative to
/// it) is missing, pointing at the script that fetches them.
pub fn models_dir(needs: &[&str]) -> PathBuf {
    let dir = std::env::var_os("BRISK_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    for n in needs {
        assert!(
            dir.join(n).exists(),
            "{} has no {n}: run scripts/fetch-models first",
            dir.display()
        );
    }
    dir
}

/// State for the embedded default config over `models_dir`, adjusted by `tweak`.
pub fn default_state(models_dir: PathBuf, tweak: impl FnOnce(&mut Config)) -> AppState {
    let mut config = Config::from_toml(brisk_server::config::EMBEDDED_DEFAULT).expect("default");
    config.server.models_dir = models_dir;
    tweak(&mut config);
    build_state(config, Timeline::new(Instant::now())).expect("state")
}

/// One request through the router; the body comes back as text.
pub async fn send(
    s: &AppState,
    method: &str,
    uri: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(Body::from(body))
        .expect("request");
    let resp = router(s.clone()).oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// POST a JSON body; the reply body as text.
pub async fn post_json(s: &AppState, uri: &str, body: &Value) -> (StatusCode, String) {
    let (st, _, text) = send(
        s,
        "POST",
        uri,
        "application/json",
        body.to_string().into_bytes(),
    )
    .await;
    (st, text)
}

/// A multipart/form-data body with text fields and one file per
/// `(field, bytes)`; returns the content type and the body.
pub fn multipart(fields: &[(&str, &str)], files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "brisk-test-boundary-5e2a";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    for (name, bytes) in files {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A 16 kHz mono 16-bit PCM WAV of a 440 Hz tone.
pub fn tone_wav(seconds: f64) -> Vec<u8> {
    let n = (seconds * 16_000.0) as usize;
    let tone: Vec<f32> = (0..n)
        .map(|i| {
            (i as f64 * 440.0 * std::f64::consts::TAU / 16_000.0).sin() as f32 * (8000.0 / 32_768.0)
        })
        .collect();
    pcm_wav(&tone)
}

/// A 16 kHz mono 16-bit PCM WAV of `samples` (in -1..1).
pub fn pcm_wav(samples: &[f32]) -> Vec<u8> {
    let n = samples.len() as u32;
    let mut w = Vec::with_capacity(44 + 2 * n as usize);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + 2 * n).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&16_000u32.to_le_bytes());
    w.extend_from_slice(&32_000u32.to_le_bytes()); // byte rate
    w.extend_from_slice(&2u16.to_le_bytes()); // block align
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(2 * n).to_le_bytes());
    for &s in samples {
        let s = (s * 32_768.0).round().clamp(-32_768.0, 32_767.0);
        w.extend_from_slice(&(s as i16).to_le_bytes());
    }
    w
}

/// Lowercase words without punctuation, for word error rates.
pub fn words(s: &str) -> Vec<String> {
    // Hyphens split words, as Whisper's own English normaliser does:
    // "Ever-tried" and "Ever tried" are the same two words (int8 Whisper
    // writes either, depending on thread timing in its reductions).
    s.split(|c: char| c.is_whitespace() || c == '-')
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .collect::<String>()
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Edit distance over items, divided by the reference length.
pub fn error_rate<T: PartialEq>(r: &[T], h: &[T]) -> f64 {
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rc) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hc) in h.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(rc != hc))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[h.len()] as f64 / r.len().max(1) as f64
}

/// Word error rate: word-level edit distance over [`words`].
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    error_rate(&words(reference), &words(hypothesis))
}
