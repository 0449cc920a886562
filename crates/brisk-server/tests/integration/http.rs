//! HTTP behaviour against the router (`oneshot`) and against real servers
//! on loopback, using the simulated backend.

use crate::common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use brisk_engine::Timeline;
use brisk_server::config::Config;
use brisk_server::{build_state, router, AppState};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

fn state(toml: &str) -> AppState {
    let config = Config::from_toml(toml).expect("config parses");
    let s = build_state(config, Timeline::new(Instant::now())).expect("state builds");
    s.registry.start();
    s
}

const SIM: &str = r#"
[server]
discover = false
[engine]
failure_cooldown_s = 30
[models.fast]
backend = "sim"
source = "fast"
options = { dim = 4 }
[models.slowpre]
backend = "sim"
source = "slowpre"
policy = "preload"
options = { load_ms = 300 }
[models.broken]
backend = "sim"
source = "broken"
options = { fail_loads = 100 }
[models.tiny]
backend = "sim"
source = "tiny"
max_queue = 1
max_batch_requests = 1
options = { infer_ms = 300 }
"#;

async fn call(
    s: &AppState,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let (status, headers, text) = common::send(s, method, uri, "application/json", body).await;
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, v)
}

fn assert_openai_error(v: &Value, code: &str) {
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].as_str().is_some(), "{v}");
    assert_eq!(e["code"], code, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_at_once_ready_after_preloads() {
    let s = state(SIM);
    let (st, _, v) = call(&s, "GET", "/v2/health/live", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["live"], true);
    let (st, _, v) = call(&s, "GET", "/v2/health/ready", None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        v["reason"].as_str().expect("reason").contains("slowpre"),
        "{v}"
    );
    s.registry.wait_ready().await;
    let (st, _, v) = call(&s, "GET", "/v2/health/ready", None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _, _) = call(&s, "GET", "/v2/models/slowpre/ready", None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, v) = call(&s, "GET", "/v2/models/fast/ready", None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["state"], "unloaded");
    let (st, _, v) = call(&s, "GET", "/v2/models/nope/ready", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_openai_error(&v, "model_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_in_openai_shape_float_and_base64() {
    let s = state(SIM);
    let (st, _, v) = call(
        &s,
        "POST",
        "/v1/embeddings",
        Some(json!({"model": "fast", "input": ["hello world", "bye"]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "fast");
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["object"], "embedding");
    let first: Vec<f32> =
        serde_json::from_value(v["data"][0]["embedding"].clone()).expect("floats");
    assert_eq!(first.len(), 4);
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], 3);

    let (st, _, b) = call(
        &s,
        "POST",
        "/v1/embeddings",
        Some(json!({"model": "fast", "input": "hello world", "encoding_format": "base64"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b["data"][0]["embedding"].as_str().expect("base64 string"))
        .expect("valid base64");
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(decoded, first);

    let (st, _, v) = call(
        &s,
        "POST",
        "/v2/models/fast/infer",
        Some(json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hello world"]}]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["outputs"][0]["shape"], json!([1, 4]));
    let flat: Vec<f32> = serde_json::from_value(v["outputs"][0]["data"].clone()).expect("floats");
    assert_eq!(flat, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_in_openai_shape() {
    let s = state(SIM);
    let cases = [
        (
            json!({"model": "fast", "input": []}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "empty list",
        ),
        (
            json!({"model": "fast", "input": ["ok", 3]}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "input[1]",
        ),
        (
            json!({"model": "fast", "input": {"a": 1}}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "an object",
        ),
        (
            json!({"model": "fast", "input": ["ok", ""]}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "input[1] is empty",
        ),
        (
            json!({"input": "x"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "'model' is required",
        ),
        (
            json!({"model": "nope", "input": "x"}),
            StatusCode::NOT_FOUND,
            "model_not_found",
            "nope",
        ),
        (
            json!({"model": "fast", "input": "x", "encoding_format": "hex"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "encoding_format",
        ),
        (
            json!({"model": "fast", "input": "x", "dimensions": 3}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "dimensions",
        ),
    ];
    for (body, status, code, needle) in cases {
        let (st, _, v) = call(&s, "POST", "/v1/embeddings", Some(body.clone())).await;
        assert_eq!(st, status, "{body} -> {v}");
        assert_openai_error(&v, code);
        assert!(
            v["error"]["message"]
                .as_str()
                .expect("msg")
                .contains(needle),
            "{body} -> {v}"
        );
    }
    // Not JSON at all.
    let req = Request::builder()
        .method("POST")
        .uri("/v1/embeddings")
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .expect("request");
    let resp = router(s.clone()).oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value =
        serde_json::from_slice(&resp.into_body().collect().await.expect("body").to_bytes())
            .expect("json");
    assert_openai_error(&v, "invalid_request");
    // Unknown endpoint.
    let (st, _, v) = call(&s, "GET", "/v1/nothing", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_openai_error(&v, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413() {
    let s = state(&format!("{SIM}\n"));
    let big = "x ".repeat(2 * 1024 * 1024);
    let (st, _, v) = call(
        &s,
        "POST",
        "/v1/embeddings",
        Some(json!({"model": "fast", "input": big})),
    )
    .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_openai_error(&v, "payload_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_model_is_503_with_retry_after_and_reported_in_models() {
    let s = state(SIM);
    let (st, h, v) = call(
        &s,
        "POST",
        "/v1/embeddings",
        Some(json!({"model": "broken", "input": "x"})),
    )
    .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_openai_error(&v, "model_load_failed");
    let after: u64 = h["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=30).contains(&after));
    let (_, _, v) = call(&s, "GET", "/v1/models", None).await;
    let broken = v["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|m| m["id"] == "broken")
        .expect("listed")
        .clone();
    assert_eq!(broken["brisk"]["state"], "failed");
    assert!(broken["brisk"]["last_error"]
        .as_str()
        .expect("reason")
        .contains("simulated"));
    // Other models keep serving.
    let (st, _, _) = call(
        &s,
        "POST",
        "/v1/embeddings",
        Some(json!({"model": "fast", "input": "x"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_429_with_retry_after() {
    let s = state(SIM);
    let busy = {
        let s = s.clone();
        tokio::spawn(async move {
            call(
                &s,
                "POST",
                "/v1/embeddings",
                Some(json!({"model": "tiny", "input": "x"})),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (st, h, v) = call(
        &s,
        "POST",
        "/v1/embeddings",
        Some(json!({"model": "tiny", "input": "y"})),
    )
    .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_openai_error(&v, "queue_full");
    assert!(h.contains_key("retry-after"));
    assert_eq!(busy.await.expect("task").0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_list_load_unload_metrics_and_startup() {
    let s = state(SIM);
    let (st, _, v) = call(&s, "GET", "/v1/models", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| m["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, vec!["broken", "fast", "slowpre", "tiny"]);

    let (st, _, v) = call(&s, "POST", "/v1/models/fast/load", None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["brisk"]["state"], "ready");
    assert!(v["brisk"]["load_duration_ms"].is_u64());
    assert_eq!(v["brisk"]["memory_bytes"], 1 << 20);
    let (_, _, v) = call(&s, "POST", "/v1/models/fast/unload", None).await;
    assert_eq!(v["brisk"]["state"], "unloaded");
    let (st, _, _) = call(&s, "POST", "/v1/models/nope/load", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    s.registry.wait_ready().await;
    let (_, _, v) = call(&s, "GET", "/v1/startup", None).await;
    let events = v["events"].as_array().expect("events");
    assert!(
        events
            .iter()
            .any(|e| e["subject"] == "slowpre" && e["event"] == "ready"),
        "{v}"
    );

    let req = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .expect("request");
    let resp = router(s.clone()).oneshot(req).await.expect("infallible");
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec(),
    )
    .expect("utf8");
    for name in [
        "brisk_model_load_duration_seconds",
        "brisk_model_loaded",
        "brisk_requests_total",
        "brisk_request_duration_seconds",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_listener_on_port_zero_serves_the_same_api() {
    let s = state(SIM);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, router(s)).await });
    let (status, body) = tokio::task::spawn_blocking(move || {
        brisk_server::cli::bench::http(
            addr,
            "POST",
            "/v1/embeddings",
            Some(r#"{"model":"fast","input":"over tcp"}"#),
        )
    })
    .await
    .expect("join")
    .expect("http");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["data"][0]["embedding"].as_array().map(Vec::len), Some(4));
    server.abort();
}

const GEN: &str = r#"
[server]
discover = false
[models.echo]
backend = "sim"
source = "echo"
options = { task = "generation", token_ms = 5 }
[models.slowecho]
backend = "sim"
source = "slowecho"
options = { task = "generation", token_ms = 100 }
[models.emb]
backend = "sim"
source = "emb"
"#;

async fn raw(s: &AppState, uri: &str, body: Value) -> (StatusCode, String) {
    common::post_json(s, uri, &body).await
}

/// The `data:` payloads of an SSE body.
fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completion_shape_usage_and_finish_reasons() {
    let s = state(GEN);
    let msgs = json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "one two three four"}]);
    let (st, _, v) = call(
        &s,
        "POST",
        "/v1/chat/completions",
        Some(json!({"model": "echo", "messages": msgs})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().expect("id").starts_with("chatcmpl-"));
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "one two three four");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_eq!(
        v["usage"]["total_tokens"].as_u64(),
        Some(v["usage"]["prompt_tokens"].as_u64().expect("n") + 4)
    );
    assert!(v["timings"]["predicted_ms"].as_f64().is_some());

    let (_, _, v) = call(
        &s,
        "POST",
        "/v1/chat/completions",
        Some(json!({"model": "echo", "messages": msgs, "max_tokens": 2})),
    )
    .await;
    assert_eq!(v["choices"][0]["message"]["content"], "one two");
    assert_eq!(v["choices"][0]["finish_reason"], "length");

    let (_, _, v) = call(
        &s,
        "POST",
        "/v1/chat/completions",
        Some(json!({"model": "echo", "messages": msgs, "stop": " three"})),
    )
    .await;
    assert_eq!(v["choices"][0]["message"]["content"], "one two");

    let (st, _, v) = call(
        &s,
        "POST",
        "/v1/completions",
        Some(json!({"model": "echo", "prompt": "alpha beta"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], "alpha beta");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_chunks_reassemble_into_the_full_text() {
    let s = state(GEN);
    let msgs = json!([{"role": "user", "content": "the quick brown fox jumps"}]);
    let (st, body) = raw(&s, "/v1/chat/completions", json!({"model": "echo", "messages": msgs, "stream": true, "stream_options": {"include_usage": true}})).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let data = sse_data(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("chunk json"))
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "the quick brown fox jumps");
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, vec![&json!("stop")]);
    let usage = chunks.last().expect("usage chunk");
    assert_eq!(usage["usage"]["completion_tokens"], 5);
    assert_eq!(usage["choices"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_bad_input_is_4xx_and_errors_before_streaming_keep_their_status() {
    let s = state(GEN);
    let cases = [
        (
            json!({"model": "echo", "messages": []}),
            StatusCode::BAD_REQUEST,
            "messages",
        ),
        (
            json!({"model": "echo", "messages": [{"role": "wizard", "content": "hi"}]}),
            StatusCode::BAD_REQUEST,
            "wizard",
        ),
        (
            json!({"model": "echo", "messages": [{"role": "user"}]}),
            StatusCode::BAD_REQUEST,
            "content",
        ),
        (
            json!({"model": "echo", "messages": [{"role": "user", "content": "x"}], "temperature": 5}),
            StatusCode::BAD_REQUEST,
            "temperature",
        ),
        (
            json!({"model": "echo", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
            StatusCode::BAD_REQUEST,
            "max_tokens",
        ),
        (
            json!({"model": "echo", "messages": [{"role": "user", "content": "x"}], "n": 2}),
            StatusCode::BAD_REQUEST,
            "n = 1",
        ),
        (
            json!({"model": "emb", "messages": [{"role": "user", "content": "x"}]}),
            StatusCode::BAD_REQUEST,
            "serves embeddings",
        ),
        (
            json!({"model": "nope", "messages": [{"role": "user", "content": "x"}], "stream": true}),
            StatusCode::NOT_FOUND,
            "nope",
        ),
    ];
    for (body, status, needle) in cases {
        let (st, _, v) = call(&s, "POST", "/v1/chat/completions", Some(body.clone())).await;
        assert_eq!(st, status, "{body} -> {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .expect("message")
                .contains(needle),
            "{body} -> {v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_a_stream_stops_the_generation() {
    let s = state(GEN);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = router(s.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let words = "w ".repeat(50);
    let body = json!({"model": "slowecho", "messages": [{"role": "user", "content": words}], "stream": true}).to_string();
    // Read the first bytes of the stream, then hang up.
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(addr).expect("connect");
        write!(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).expect("write");
        let mut buf = [0u8; 512];
        let n = c.read(&mut buf).expect("read");
        assert!(String::from_utf8_lossy(&buf[..n]).contains("200 OK"));
    })
    .await
    .expect("client");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let status = s.registry.model_status("slowecho").expect("status");
    assert_eq!(
        status.in_flight, 0,
        "generation stopped after the client left"
    );
    server.abort();
}
