//! One error shape everywhere: every route's errors, unknown paths (404),
//! wrong methods (405 with `Allow`), bodies over the limit (413), wrong
//! content types (415) and extractor rejections are JSON in OpenAI's shape,
//! `{"error": {"message", "type", "param", "code"}}`. The routes walked are
//! `brisk_server::routes::ROUTES`, checked here against the router.

use std::time::Instant;

use axum::http::{HeaderMap, StatusCode};
use brisk_engine::Timeline;
use brisk_server::config::Config;
use brisk_server::routes::ROUTES;
use brisk_server::{build_state, AppState};
use serde_json::Value;

use crate::common;

const SIM: &str = r#"
[server]
discover = false
max_body_bytes = 4096
max_audio_bytes = 8192
[models.emb]
backend = "sim"
source = "emb"
options = { dim = 4 }
"#;

fn state() -> AppState {
    let config = Config::from_toml(SIM).expect("config parses");
    build_state(config, Timeline::new(Instant::now())).expect("state builds")
}

fn concrete(path: &str) -> String {
    path.replace("{model}", "emb")
        .replace("{id}", "no-such-job")
        .replace("{name}", "no-such-pipeline")
}

/// The body is an error in OpenAI's shape; returns its code.
fn assert_error_shape(what: &str, status: StatusCode, body: &str) -> String {
    let v: Value = serde_json::from_str(body)
        .unwrap_or_else(|_| panic!("{what}: {status} is not JSON: {body:?}"));
    let e = &v["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
    let kind = e["type"].as_str().expect("type");
    if status.is_server_error() {
        assert_eq!(kind, "server_error", "{what}: {body}");
    } else {
        assert!(kind.ends_with("_error"), "{what}: {body}");
    }
    assert!(e.get("param").is_some(), "{what}: param key: {body}");
    e["code"].as_str().expect("code").to_string()
}

async fn send(
    s: &AppState,
    method: &str,
    uri: &str,
    ct: &str,
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, String) {
    common::send(s, method, uri, ct, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_errors_in_openais_shape() {
    let s = state();
    for (method, path) in ROUTES {
        let uri = concrete(path);
        // The route exists: its own method never gets 404-for-the-path or 405.
        let (st, _, body) = send(&s, method, &uri, "application/json", b"{}".to_vec()).await;
        assert_ne!(st, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}: {body}");
        // Readiness probes answer "not ready" with the Open Inference
        // Protocol's own status object, not an error.
        let probe = path.ends_with("/ready");
        if (st.is_client_error() || st.is_server_error()) && !probe {
            assert_error_shape(&format!("{method} {uri}"), st, &body);
            assert!(
                !st.is_server_error() || st == StatusCode::SERVICE_UNAVAILABLE,
                "{method} {uri}: {st} {body}"
            );
        }
        // A method the route lacks: 405, JSON, and Allow naming the right one.
        let (st, headers, body) = send(&s, "PUT", &uri, "application/json", Vec::new()).await;
        assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED, "PUT {uri}: {body}");
        assert_eq!(assert_error_shape("405", st, &body), "method_not_allowed");
        let allow = headers
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(allow.contains(method), "PUT {uri}: Allow {allow:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_limits_and_content_types_are_shaped() {
    let s = state();
    let (st, _, body) = send(&s, "GET", "/v1/nope", "text/plain", Vec::new()).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(assert_error_shape("404", st, &body), "not_found");

    // JSON sent to an upload endpoint: 415, not axum's plain-text boundary error.
    for uri in [
        "/v1/audio/transcriptions",
        "/v1/audio/translations",
        "/v1/audio/vad",
        "/v1/ocr",
        "/v1/audio/analysis",
    ] {
        let (st, _, body) = send(&s, "POST", uri, "application/json", b"{}".to_vec()).await;
        assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{uri}: {body}");
        assert_eq!(assert_error_shape(uri, st, &body), "unsupported_media_type");
        assert!(body.contains("multipart/form-data"), "{body}");
    }
    // A form sent to a JSON endpoint: 415.
    let (st, _, body) = send(&s, "POST", "/v1/embeddings", "text/plain", b"hi".to_vec()).await;
    assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert_eq!(
        assert_error_shape("json", st, &body),
        "unsupported_media_type"
    );

    // Over the body limits: JSON routes, a raw-bytes route (jobs), uploads.
    let big = format!("{{\"model\":\"emb\",\"input\":\"{}\"}}", "a".repeat(10_000));
    for uri in ["/v1/embeddings", "/v1/jobs?endpoint=/v1/embeddings"] {
        let (st, _, body) = send(
            &s,
            "POST",
            uri,
            "application/json",
            big.clone().into_bytes(),
        )
        .await;
        assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{uri}: {body}");
        assert_error_shape(uri, st, &body);
    }
    let (ct, form) = common::multipart(&[("model", "emb")], &[("file", &[0u8; 20_000])]);
    let (st, _, body) = send(&s, "POST", "/v1/audio/transcriptions", &ct, form).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_error_shape("upload", st, &body);

    // Extractor rejections: a WebSocket route without the upgrade, a bad query.
    let (st, _, body) = send(&s, "GET", "/v1/audio/transcriptions/stream", "", Vec::new()).await;
    assert!(st.is_client_error(), "{st} {body}");
    assert_error_shape("ws", st, &body);
    let (st, _, body) = send(
        &s,
        "POST",
        "/v1/jobs?endpoint=a&endpoint=b",
        "application/json",
        b"{}".to_vec(),
    )
    .await;
    assert!(st.is_client_error(), "{st} {body}");
    assert_error_shape("query", st, &body);
}
