//! Pipelines over HTTP with simulated models: branches overlap in time, a
//! failing step fails the request with the step named and cancels its
//! dependents, streaming sends one event per step, and startup validation.

use crate::common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine as _;
use brisk_engine::Timeline;
use brisk_server::config::Config;
use brisk_server::{build_state, AppState};
use serde_json::{json, Value};

/// voice: stt (40 ms) → {vec: 150 ms embedding, reply: 6 words × 50 ms}.
const SIM: &str = r#"
[server]
discover = false
[models.stt]
backend = "sim"
source = "stt"
options = { task = "transcription", infer_ms = 40, text = "ever tried ever failed" }
[models.emb]
backend = "sim"
source = "emb"
options = { infer_ms = 150, dim = 16 }
[models.tiny-emb]
backend = "sim"
source = "tiny-emb"
options = { max_tokens = 2 }
[models.llm]
backend = "sim"
source = "llm"
options = { task = "generation", token_ms = 50 }
[models.slow-llm]
backend = "sim"
source = "slow-llm"
max_queue = 1
policy = "preload"
options = { task = "generation", token_ms = 200 }
[models.after-llm]
backend = "sim"
source = "after-llm"
options = { task = "generation" }

[pipelines.voice]
description = "stt then two branches"
[[pipelines.voice.steps]]
name = "transcript"
model = "stt"
input = "request.file"
[[pipelines.voice.steps]]
name = "vec"
model = "emb"
input = "transcript.text"
[[pipelines.voice.steps]]
name = "reply"
model = "llm"
system = "You are a tutor."
prompt = "Well said: {{ transcript.text }}"
options = { max_tokens = 16 }

[pipelines.failing]
[[pipelines.failing.steps]]
name = "transcript"
model = "stt"
input = "request.file"
[[pipelines.failing.steps]]
name = "vec"
model = "tiny-emb"
input = "transcript.text"
[[pipelines.failing.steps]]
name = "slow"
model = "slow-llm"
input = "transcript.text"
[[pipelines.failing.steps]]
name = "after"
model = "after-llm"
prompt = "{{ vec.dimensions }} dimensions"

[pipelines.text]
[[pipelines.text.steps]]
name = "reply"
model = "llm"
prompt = "{{ request.question }}"
options = { max_tokens = 3, temperature = 0.0 }
"#;

fn state(toml: &str) -> AppState {
    let s = build_state(
        Config::from_toml(toml).expect("config parses"),
        Timeline::new(Instant::now()),
    )
    .expect("state builds");
    s.registry.start();
    s
}

async fn post_audio(s: &AppState, uri: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
    let wav = common::tone_wav(0.5);
    let (ct, body) = common::multipart(fields, &[("file", &wav)]);
    let (st, _, text) = common::send(s, "POST", uri, &ct, body).await;
    (st, text)
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn interval(v: &Value, step: &str) -> (f64, f64) {
    let t = &v["timings"]["steps"][step];
    (
        t["start_ms"].as_f64().expect("start_ms"),
        t["end_ms"].as_f64().expect("end_ms"),
    )
}

#[tokio::test]
async fn branches_run_concurrently_and_outputs_flow_between_steps() {
    let s = state(SIM);
    let (st, text) = post_audio(&s, "/v1/pipelines/voice", &[]).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let v = parse(&text);
    let out = &v["outputs"];
    assert_eq!(out["transcript"]["text"], "ever tried ever failed");
    assert!((out["transcript"]["duration"].as_f64().expect("duration") - 0.5).abs() < 0.01);
    assert_eq!(out["vec"]["dimensions"], 16);
    assert_eq!(
        out["vec"]["embeddings"][0].as_array().expect("vec").len(),
        16
    );
    // The sim echoes the rendered user message: the template was applied.
    assert_eq!(out["reply"]["text"], "Well said: ever tried ever failed");

    let stt = interval(&v, "transcript");
    let vec = interval(&v, "vec");
    let reply = interval(&v, "reply");
    assert!(
        vec.0 >= stt.1 && reply.0 >= stt.1,
        "branches waited for stt"
    );
    // Overlap both ways: each branch started before the other ended.
    assert!(
        vec.0 < reply.1 && reply.0 < vec.1,
        "vec {vec:?} and reply {reply:?} ran one after the other"
    );
    let total = v["timings"]["total_ms"].as_f64().expect("total");
    let sum = v["timings"]["steps_sum_ms"].as_f64().expect("sum");
    assert!(
        total < sum - 60.0,
        "total {total} ms not below the sequential {sum} ms"
    );
    // Steps run through the registry like direct calls (lazy loads).
    let (_, _, models) = common::send(&s, "GET", "/v1/models/emb", "", vec![]).await;
    assert_eq!(parse(&models)["brisk"]["loads"], 1);
}

#[tokio::test]
async fn json_request_and_listing() {
    let s = state(SIM);
    let (st, text) = common::post_json(
        &s,
        "/v1/pipelines/text",
        &json!({"question": "one two three four"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let v = parse(&text);
    assert_eq!(v["outputs"]["reply"]["text"], "one two three");
    assert_eq!(v["outputs"]["reply"]["finish_reason"], "length");
    assert_eq!(v["outputs"]["reply"]["cache"], "miss");
    // Steps go through the result cache like direct calls do.
    let (_, text) = common::post_json(
        &s,
        "/v1/pipelines/text",
        &json!({"question": "one two three four"}),
    )
    .await;
    let again = parse(&text);
    assert_eq!(again["outputs"]["reply"]["cache"], "hit");
    assert_eq!(again["outputs"]["reply"]["text"], "one two three");

    // Audio as base64 in JSON works too.
    let b64 = base64::engine::general_purpose::STANDARD.encode(common::tone_wav(0.25));
    let (st, text) = common::post_json(&s, "/v1/pipelines/voice", &json!({ "file": b64 })).await;
    assert_eq!(st, StatusCode::OK, "{text}");

    let (st, _, text) = common::send(&s, "GET", "/v1/pipelines", "", vec![]).await;
    assert_eq!(st, StatusCode::OK);
    let list = parse(&text);
    let voice = list["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|p| p["id"] == "voice")
        .expect("voice listed");
    assert_eq!(voice["steps"][2]["inputs"], json!(["transcript"]));
    assert_eq!(voice["steps"][0]["task"], "transcription");
}

#[tokio::test]
async fn failing_step_names_itself_cancels_dependents_and_drops_siblings() {
    let s = state(SIM);
    // Loaded up front, so `slow` is generating when `vec` fails.
    s.registry.wait_ready().await;
    let t0 = Instant::now();
    // tiny-emb accepts 2 tokens; the 4-word transcript fails with 400.
    let (st, text) = post_audio(&s, "/v1/pipelines/failing", &[]).await;
    let took = t0.elapsed();
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    let e = &parse(&text)["error"];
    assert_eq!(e["step"], "vec", "{text}");
    assert_eq!(e["code"], "invalid_input");
    let msg = e["message"].as_str().expect("message");
    assert!(
        msg.contains("pipeline step 'vec' failed") && msg.contains("tokens"),
        "{msg}"
    );
    // The sibling branch (4 words × 200 ms) was dropped, not awaited.
    assert!(took < Duration::from_millis(600), "waited {took:?}");
    // ...and its generation stopped at the next token: with one queue
    // slot, a direct call 450 ms later is admitted, while the dropped
    // generation would hold the slot for 800 ms had it run on.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let (st, text) = common::post_json(
        &s,
        "/v1/chat/completions",
        &json!({"model": "slow-llm", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "sibling still generating: {text}");
    // The dependent never ran: its model was never even loaded.
    let (_, _, m) = common::send(&s, "GET", "/v1/models/after-llm", "", vec![]).await;
    assert_eq!(parse(&m)["brisk"]["loads"], 0, "{m}");
}

#[tokio::test]
async fn request_errors_name_the_step_or_the_pipeline() {
    let s = state(SIM);
    let (st, text) = common::post_json(&s, "/v1/pipelines/nope", &json!({})).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{text}");
    assert!(text.contains("voice"), "lists served pipelines: {text}");
    let (st, text) = common::post_json(&s, "/v1/pipelines/voice", &json!({"x": 1})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    let e = &parse(&text)["error"];
    assert_eq!(e["step"], "transcript");
    assert!(
        e["message"].as_str().expect("msg").contains("'file'"),
        "{text}"
    );
    let (st, text) = common::post_json(&s, "/v1/pipelines/text", &json!({"q": "typo"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(parse(&text)["error"]["step"], "reply");
}

#[tokio::test]
async fn stream_sends_each_step_when_done_then_a_final_event() {
    let s = state(SIM);
    let (st, text) = post_audio(&s, "/v1/pipelines/voice?stream=true", &[]).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let events: Vec<(String, Value)> = text
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            (field("event:"), parse(&field("data:")))
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names, ["step", "step", "step", "done"], "{text}");
    // In finishing order: stt first, the 150 ms embedding before the
    // ~300 ms reply (margin for a loaded machine).
    let steps: Vec<&str> = events[..3]
        .iter()
        .map(|(_, d)| d["step"].as_str().expect("step"))
        .collect();
    assert_eq!(steps, ["transcript", "vec", "reply"]);
    assert_eq!(events[1].1["output"]["dimensions"], 16);
    assert!(events[2].1["timing"]["duration_ms"].as_f64().expect("ms") > 100.0);
    assert!(events[3].1["timings"]["total_ms"].as_f64().is_some());

    // A failure mid-stream is an error event naming the step.
    let (st, text) = post_audio(&s, "/v1/pipelines/failing", &[("stream", "true")]).await;
    assert_eq!(st, StatusCode::OK);
    assert!(text.contains("event: error"), "{text}");
    assert!(text.contains("\"step\":\"vec\""), "{text}");
    assert!(!text.contains("event: done"), "{text}");
}

#[test]
fn startup_rejects_a_pipeline_with_an_unknown_model_naming_the_step() {
    let bad = SIM.replace("model = \"llm\"\nsystem", "model = \"llm-typo\"\nsystem");
    let err = build_state(
        Config::from_toml(&bad).expect("parses"),
        Timeline::new(Instant::now()),
    )
    .err()
    .expect("must fail")
    .to_string();
    assert!(
        err.contains("pipeline 'voice', step 'reply'") && err.contains("llm-typo"),
        "{err}"
    );
    let cyclic = SIM
        .replacen("input = \"transcript.text\"", "input = \"reply.text\"", 1)
        .replace("Well said: {{ transcript.text }}", "{{ vec.dimensions }}");
    let err = build_state(
        Config::from_toml(&cyclic).expect("parses"),
        Timeline::new(Instant::now()),
    )
    .err()
    .expect("must fail")
    .to_string();
    assert!(
        err.contains("pipeline 'voice'") && err.contains("cycle") && err.contains("vec -> reply"),
        "{err}"
    );
}

#[test]
fn default_config_starts_without_models_and_skips_its_example() {
    let empty = std::env::temp_dir().join("brisk-pipelines-no-models");
    let s = common::default_state(empty, |_| {});
    assert!(s.pipelines.get("voice-note").is_none());
    let c = Config::from_toml(brisk_server::config::EMBEDDED_DEFAULT).expect("parses");
    assert!(c.pipelines["voice-note"].optional);
}
