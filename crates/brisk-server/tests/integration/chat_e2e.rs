//! The real SmolLM2 GGUF through `/v1/chat/completions`: a factual answer,
//! streaming equal to the plain answer, and context limits as 4xx.

use crate::common;

use axum::http::StatusCode;
use brisk_server::AppState;
use serde_json::{json, Value};

const MODEL: &str = "smollm2-135m-instruct";

fn state() -> AppState {
    // No server-wide max_tokens cap here: these tests reach the model's own
    // context check (the [limits] cap has its own test in security.rs).
    common::default_state(common::models_dir(&[MODEL]), |c| {
        c.limits.max_tokens = usize::MAX
    })
}

async fn post(s: &AppState, body: Value) -> (StatusCode, String) {
    common::post_json(s, "/v1/chat/completions", &body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_factually_and_streams_the_same_text() {
    let s = state();
    let ask = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "temperature": 0,
        "max_tokens": 32,
    });
    let (st, body) = post(&s, ask.clone()).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_string();
    assert!(text.contains("Paris"), "{text}");
    let usage = &v["usage"];
    assert!(usage["prompt_tokens"].as_u64().expect("prompt") > 5);
    assert!(usage["completion_tokens"].as_u64().expect("completion") >= 1);
    assert!(v["timings"]["predicted_per_second"].as_f64().expect("tps") > 0.0);

    let mut stream = ask.clone();
    stream["stream"] = json!(true);
    let (st, body) = post(&s, stream).await;
    assert_eq!(st, StatusCode::OK);
    let streamed: String = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).expect("chunk"))
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(streamed, text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_over_the_context_is_400() {
    let s = state();
    let (st, body) = post(
        &s,
        json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("context"), "{body}");
}
