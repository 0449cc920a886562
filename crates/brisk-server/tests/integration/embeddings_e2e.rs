//! The real MiniLM through the HTTP API: discovery under the models folder,
//! dynamic batching under concurrency, and input limits.

use crate::common;

use axum::http::StatusCode;
use brisk_core::cosine;
use brisk_server::AppState;
use serde_json::{json, Value};

const MODEL: &str = "all-minilm-l6-v2";

fn state() -> AppState {
    let dir = common::models_dir(&[MODEL]);
    let s = common::default_state(dir, |c| {
        c.defaults.max_batch_delay_ms = 5;
        // These tests are about the model and batching: every request must
        // reach it (the cache has its own tests).
        c.cache.enabled = false;
    });
    s.registry.start();
    s
}

async fn post(s: &AppState, body: Value) -> (StatusCode, Value) {
    let (st, text) = common::post_json(s, "/v1/embeddings", &body).await;
    (st, serde_json::from_str(&text).expect("json body"))
}

fn vector(v: &Value, i: usize) -> Vec<f32> {
    serde_json::from_value(v["data"][i]["embedding"].clone()).expect("floats")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_model_serves_batched_requests_with_identical_results() {
    let s = state();
    assert!(s.registry.model_names().contains(&MODEL.to_string()));
    let sentences: Vec<String> = (0..32)
        .map(|i| format!("sentence number {i} about topic {}", i % 5))
        .collect();
    // Reference: each sentence alone (also triggers the lazy load).
    let mut alone = Vec::new();
    for t in &sentences {
        let (st, v) = post(&s, json!({"model": MODEL, "input": t})).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        alone.push(vector(&v, 0));
    }
    // 32 concurrent clients: batched together by the model thread.
    let calls: Vec<_> = sentences
        .iter()
        .map(|t| {
            let s = s.clone();
            let t = t.clone();
            tokio::spawn(async move { post(&s, json!({"model": MODEL, "input": [t]})).await })
        })
        .collect();
    for (i, c) in calls.into_iter().enumerate() {
        let (st, v) = c.await.expect("task");
        assert_eq!(st, StatusCode::OK);
        let c = cosine(&vector(&v, 0), &alone[i]);
        assert!(c > 0.9999, "sentence {i}: batched result differs (cos {c})");
    }
    // Some batch held more than one request: concurrent requests merged.
    let text = s.metrics.as_ref().expect("recorder").render();
    let series = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{prefix} not in /metrics"))
    };
    let singles = series(&format!(
        "brisk_batch_size_bucket{{model=\"{MODEL}\",le=\"1\"}}"
    ));
    let batches = series(&format!("brisk_batch_size_count{{model=\"{MODEL}\"}}"));
    assert!(
        batches < singles + 32.0 && singles < batches,
        "singles {singles}, batches {batches}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_long_input_is_400_unless_truncated_and_usage_counts_tokens() {
    let s = state();
    let long = "word ".repeat(400);
    let (st, v) = post(&s, json!({"model": MODEL, "input": ["fine", long]})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let msg = v["error"]["message"].as_str().expect("message");
    assert!(msg.contains("input[1]") && msg.contains("256"), "{msg}");

    let (st, v) = post(
        &s,
        json!({"model": MODEL, "input": [long], "truncate": true}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 256);

    let (st, v) = post(&s, json!({"model": MODEL, "input": ["a cat", "a dog"]})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["usage"]["prompt_tokens"], 8);
    assert_eq!(vector(&v, 1).len(), 384);
}
