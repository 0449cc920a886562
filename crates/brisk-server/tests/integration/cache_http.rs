//! The result cache through the HTTP API, with the simulated backend:
//! `x-brisk-cache`, `Cache-Control`, stats, clearing, streaming hits,
//! prewarming, the disk tier across a restart, and metrics.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use brisk_engine::Timeline;
use brisk_server::config::Config;
use brisk_server::{build_state, router, AppState};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

const SIM: &str = r#"
[server]
discover = false
[models.emb]
backend = "sim"
source = "emb"
options = { dim = 8, infer_ms = 20 }
[models.gen]
backend = "sim"
source = "gen"
options = { task = "generation" }
[models.raw]
backend = "sim"
source = "raw"
cache = false
"#;

fn state(toml: &str) -> AppState {
    let config = Config::from_toml(toml).expect("config parses");
    let s = build_state(config, Timeline::new(Instant::now())).expect("state builds");
    s.registry.start();
    s
}

async fn call(
    s: &AppState,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, String, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let resp = router(s.clone())
        .oneshot(req.body(Body::from(body)).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let cache = resp
        .headers()
        .get("x-brisk-cache")
        .map(|v| v.to_str().expect("ascii").to_string())
        .unwrap_or_default();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, cache, String::from_utf8_lossy(&bytes).into_owned())
}

async fn embed(s: &AppState, model: &str, text: &str, headers: &[(&str, &str)]) -> (String, Value) {
    let (st, cache, body) = call(
        s,
        "POST",
        "/v1/embeddings",
        headers,
        Some(json!({"model": model, "input": text})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    (cache, serde_json::from_str(&body).expect("json"))
}

async fn stats(s: &AppState) -> Value {
    let (st, _, body) = call(s, "GET", "/v1/cache/stats", &[], None).await;
    assert_eq!(st, StatusCode::OK);
    serde_json::from_str(&body).expect("json")
}

#[tokio::test]
async fn repeated_embeddings_hit_and_cache_control_is_honoured() {
    let s = state(SIM);
    let (c1, v1) = embed(&s, "emb", "the same words", &[]).await;
    let (c2, v2) = embed(&s, "emb", "the same words", &[]).await;
    assert_eq!((c1.as_str(), c2.as_str()), ("miss", "hit"));
    assert_eq!(v1["data"], v2["data"], "a hit returns the stored vectors");
    assert_eq!(v1["usage"], v2["usage"]);
    let (c, _) = embed(&s, "emb", "other words", &[]).await;
    assert_eq!(c, "miss");
    let (c, _) = embed(
        &s,
        "emb",
        "the same words",
        &[("cache-control", "no-store")],
    )
    .await;
    assert_eq!(c, "bypass");
    let (c, _) = embed(
        &s,
        "emb",
        "the same words",
        &[("cache-control", "no-cache")],
    )
    .await;
    assert_eq!(c, "bypass");
    let (c, _) = embed(&s, "raw", "the same words", &[]).await;
    assert_eq!(c, "bypass", "model with cache = false");

    let st = stats(&s).await;
    assert_eq!(st["enabled"], true);
    assert_eq!(st["hits"], 1, "{st}");
    assert_eq!(st["misses"], 2, "{st}");
    assert!(st["tiers"]["memory"]["entries"].as_u64() >= Some(2), "{st}");

    let (status, _, body) = call(&s, "DELETE", "/v1/cache", &[], None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(stats(&s).await["tiers"]["memory"]["entries"], 0);
    let (c, _) = embed(&s, "emb", "the same words", &[]).await;
    assert_eq!(c, "miss", "cleared");

    let (_, _, metrics) = call(&s, "GET", "/metrics", &[], None).await;
    assert!(
        metrics.contains("brisk_cache_hits_total{tier=\"memory\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("brisk_cache_misses_total{tier=\"memory\"}"));
    assert!(metrics.contains("brisk_cache_bytes{tier=\"memory\"}"));
}

#[tokio::test]
async fn concurrent_identical_requests_run_the_model_once() {
    let s = state(SIM);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { embed(&s, "emb", "burst", &[]).await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for c in calls {
        statuses.push(c.await.expect("task"));
    }
    assert_eq!(
        statuses.iter().filter(|c| *c == "miss").count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|c| *c == "hit").count(),
        7,
        "{statuses:?}"
    );
}

fn chat_body(temperature: f64, stream: bool) -> Value {
    json!({
        "model": "gen",
        "messages": [{"role": "user", "content": "tell me something"}],
        "max_tokens": 6,
        "temperature": temperature,
        "stream": stream,
    })
}

/// The concatenated `delta.content` of an SSE body.
fn streamed_text(body: &str) -> String {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test]
async fn greedy_chat_is_cached_sampled_chat_is_not_and_streams_replay_hits() {
    let s = state(SIM);
    let (st, c1, b1) = call(
        &s,
        "POST",
        "/v1/chat/completions",
        &[],
        Some(chat_body(0.0, false)),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b1}");
    let (_, c2, b2) = call(
        &s,
        "POST",
        "/v1/chat/completions",
        &[],
        Some(chat_body(0.0, false)),
    )
    .await;
    assert_eq!((c1.as_str(), c2.as_str()), ("miss", "hit"));
    let text = |b: &str| -> String {
        serde_json::from_str::<Value>(b).expect("json")["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
            .to_string()
    };
    assert_eq!(text(&b1), text(&b2));
    assert!(!text(&b1).is_empty());

    let (_, c, _) = call(
        &s,
        "POST",
        "/v1/chat/completions",
        &[],
        Some(chat_body(0.9, false)),
    )
    .await;
    assert_eq!(c, "bypass", "sampling without a seed");

    // Streaming the cached greedy answer: one chunk with the whole text.
    let (st, c, body) = call(
        &s,
        "POST",
        "/v1/chat/completions",
        &[],
        Some(chat_body(0.0, true)),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(c, "hit");
    assert_eq!(streamed_text(&body), text(&b1));
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    // A new streamed prompt is a miss and is stored for the next caller.
    let mut fresh = chat_body(0.0, true);
    fresh["messages"][0]["content"] = json!("a new question");
    let (_, c, streamed) = call(&s, "POST", "/v1/chat/completions", &[], Some(fresh.clone())).await;
    assert_eq!(c, "miss");
    fresh["stream"] = json!(false);
    let (_, c, whole) = call(&s, "POST", "/v1/chat/completions", &[], Some(fresh)).await;
    assert_eq!(c, "hit");
    assert_eq!(streamed_text(&streamed), text(&whole));
}

#[tokio::test]
async fn prewarm_fills_the_cache_in_the_background() {
    let toml = format!(
        "{SIM}\n[[cache.prewarm]]\nendpoint = \"/v1/embeddings\"\nbody = {{ model = \"emb\" }}\ninputs = [\"hello\", \"thank you\"]\n\
         [[cache.prewarm]]\nendpoint = \"/v1/chat/completions\"\n\
         body = {{ model = \"gen\", max_tokens = 6, temperature = 0, messages = [{{ role = \"user\", content = \"hi\" }}] }}\n"
    );
    let s = state(&toml);
    brisk_server::api::cache::spawn_prewarm(
        router(s.clone()),
        s.registry.clone(),
        s.config.cache.prewarm.clone(),
        s.config.server.models_dir.clone(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats(&s).await["tiers"]["memory"]["entries"].as_u64() < Some(3) {
        assert!(
            Instant::now() < deadline,
            "prewarm did not finish: {}",
            stats(&s).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (c, _) = embed(&s, "emb", "thank you", &[]).await;
    assert_eq!(c, "hit");
    let body = json!({"model": "gen", "max_tokens": 6, "temperature": 0,
        "messages": [{"role": "user", "content": "hi"}]});
    let (_, c, _) = call(&s, "POST", "/v1/chat/completions", &[], Some(body)).await;
    assert_eq!(c, "hit", "a client's request has the prewarmed key");
}

#[tokio::test]
async fn disk_tier_answers_after_a_restart() {
    let dir = std::env::temp_dir().join(format!("brisk-cache-http-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let toml = format!(
        "{SIM}\n[cache]\ndisk_path = \"{}\"\n",
        dir.join("cache.sqlite").display()
    );
    let first = {
        let s = state(&toml);
        let (c, v) = embed(&s, "emb", "persist me", &[]).await;
        assert_eq!(c, "miss");
        v
    };
    let s = state(&toml);
    let (c, v) = embed(&s, "emb", "persist me", &[]).await;
    assert_eq!(c, "hit", "found in the disk tier by the new process state");
    assert_eq!(v["data"], first["data"]);
    assert_eq!(stats(&s).await["tiers"]["disk"]["hits"], 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_down_redis_never_fails_a_request() {
    // Nothing listens on this port: every Redis call fails fast.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let toml = format!("{SIM}\n[cache]\nredis_url = \"redis://127.0.0.1:{port}\"\n");
    let s = state(&toml);
    for i in 0..5 {
        let (c, _) = embed(&s, "emb", &format!("text {i}"), &[]).await;
        assert_eq!(c, "miss");
    }
    let (c, _) = embed(&s, "emb", "text 0", &[]).await;
    assert_eq!(c, "hit", "the memory tier still works");
    let st = stats(&s).await;
    assert!(st["tiers"]["redis"]["errors"].as_u64() >= Some(1), "{st}");
}
