//! API keys, admin keys, CORS and per-request limits, against the router
//! with the simulated backend.

use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use brisk_engine::Timeline;
use brisk_server::config::Config;
use brisk_server::{build_state, router, AppState};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

const MODELS: &str = r#"
[server]
discover = false
[models.emb]
backend = "sim"
source = "emb"
[models.gen]
backend = "sim"
source = "gen"
options = { task = "generation" }
"#;

const KEYS: &str = r#"
[auth]
api_keys = ["sk-client-0123456789"]
admin_keys = ["sk-admin-0123456789"]
"#;

fn state(extra: &str) -> AppState {
    let config = Config::from_toml(&format!("{MODELS}\n{extra}")).expect("config parses");
    let s = build_state(config, Timeline::new(Instant::now())).expect("state builds");
    s.registry.start();
    s
}

async fn send(
    s: &AppState,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let resp = router(s.clone())
        .oneshot(req.body(body).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, v)
}

fn embed_body() -> Value {
    json!({"model": "emb", "input": "hello"})
}

const CLIENT: (&str, &str) = ("authorization", "Bearer sk-client-0123456789");
const ADMIN: (&str, &str) = ("authorization", "Bearer sk-admin-0123456789");

#[tokio::test]
async fn without_keys_everything_is_open() {
    let s = state("");
    let (st, _, _) = send(&s, "POST", "/v1/embeddings", &[], Some(embed_body())).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = send(&s, "POST", "/v1/models/emb/unload", &[], None).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn api_keys_guard_every_endpoint_but_probes() {
    let s = state(KEYS);
    let (st, h, v) = send(&s, "POST", "/v1/embeddings", &[], Some(embed_body())).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(h["www-authenticate"], "Bearer");
    assert_eq!(
        v["error"]["code"], "invalid_api_key",
        "OpenAI error shape: {v}"
    );
    let wrong = ("authorization", "Bearer sk-client-0123456788");
    let (st, _, _) = send(&s, "POST", "/v1/embeddings", &[wrong], Some(embed_body())).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let basic = ("authorization", "Basic c2stY2xpZW50");
    let (st, _, _) = send(&s, "POST", "/v1/embeddings", &[basic], Some(embed_body())).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _, v) = send(&s, "POST", "/v1/embeddings", &[CLIENT], Some(embed_body())).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // The admin key works everywhere.
    let (st, _, _) = send(&s, "POST", "/v1/embeddings", &[ADMIN], Some(embed_body())).await;
    assert_eq!(st, StatusCode::OK);
    for path in ["/v1/models", "/metrics", "/v1/cache/stats", "/v1/pipelines"] {
        let (st, _, _) = send(&s, "GET", path, &[], None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{path}");
    }
    // Orchestrators' probes need no secret.
    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/emb/ready",
    ] {
        let (st, _, _) = send(&s, "GET", path, &[], None).await;
        assert_ne!(st, StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn admin_endpoints_need_an_admin_key() {
    let s = state(KEYS);
    for (method, path) in [
        ("POST", "/v1/models/emb/load"),
        ("POST", "/v1/models/emb/unload"),
        ("DELETE", "/v1/cache"),
    ] {
        let (st, _, v) = send(&s, method, path, &[CLIENT], None).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{method} {path}: {v}");
        assert_eq!(v["error"]["code"], "permission_denied");
        let (st, _, _) = send(&s, method, path, &[], None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{method} {path}");
        let (st, _, v) = send(&s, method, path, &[ADMIN], None).await;
        assert_eq!(st, StatusCode::OK, "{method} {path}: {v}");
    }
}

#[tokio::test]
async fn public_metrics_can_be_enabled() {
    let s = state(&format!("{KEYS}public_metrics = true\n"));
    let (st, _, _) = send(&s, "GET", "/metrics", &[], None).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn cors_answers_only_configured_origins() {
    let preflight = |origin: &'static str| {
        [
            ("origin", origin),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization,content-type",
            ),
        ]
    };
    let s = state("");
    let (_, h, _) = send(
        &s,
        "OPTIONS",
        "/v1/embeddings",
        &preflight("https://app.example"),
        None,
    )
    .await;
    assert!(
        h.get("access-control-allow-origin").is_none(),
        "off by default"
    );

    let config = Config::from_toml(&MODELS.replace(
        "[server]\n",
        "[server]\ncors_origins = [\"https://app.example\"]\n",
    ))
    .expect("config");
    let s = build_state(config, Timeline::new(Instant::now())).expect("state");
    let (_, h, _) = send(
        &s,
        "OPTIONS",
        "/v1/embeddings",
        &preflight("https://app.example"),
        None,
    )
    .await;
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    let (_, h, _) = send(
        &s,
        "OPTIONS",
        "/v1/embeddings",
        &preflight("https://evil.example"),
        None,
    )
    .await;
    assert!(h.get("access-control-allow-origin").is_none());

    let wildcard =
        Config::from_toml(&MODELS.replace("[server]\n", "[server]\ncors_origins = [\"*\"]\n"))
            .expect("parses");
    let err = build_state(wildcard, Timeline::new(Instant::now()))
        .err()
        .expect("'*' is refused")
        .to_string();
    assert!(err.contains("explicit origins"), "{err}");
}

#[tokio::test]
async fn request_limits_are_clear_400s() {
    let s = state(
        "[limits]\nmax_inputs = 3\nmax_input_chars = 20\nmax_tokens = 64\nmax_messages = 2\n",
    );
    let cases = [
        (
            "/v1/embeddings",
            json!({"model": "emb", "input": ["a", "b", "c", "d"]}),
            "at most 3",
        ),
        (
            "/v1/embeddings",
            json!({"model": "emb", "input": "x".repeat(21)}),
            "at most 20",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gen", "max_tokens": 65, "messages": [{"role": "user", "content": "hi"}]}),
            "at most 64",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gen", "messages": [
                {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                {"role": "user", "content": "c"}]}),
            "at most 2",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gen", "messages": [{"role": "user", "content": "y".repeat(21)}]}),
            "at most 20",
        ),
        (
            "/v1/completions",
            json!({"model": "gen", "prompt": "z".repeat(21)}),
            "at most 20",
        ),
    ];
    for (path, body, says) in cases {
        let (st, _, v) = send(&s, "POST", path, &[], Some(body.clone())).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{path} {body}: {v}");
        let msg = v["error"]["message"].as_str().expect("message");
        assert!(msg.contains(says), "{path}: {msg}");
    }
    let (st, _, _) = send(
        &s,
        "POST",
        "/v1/embeddings",
        &[],
        Some(json!({"model": "emb", "input": ["a", "b", "c"]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "at the limit is fine");
}
