//! Text generation on llama.cpp through the HTTP API, with the real
//! SmolLM2 GGUF: concurrent streams decode together (continuous batching),
//! a client that disconnects frees its slot, the second turn of a chat
//! reuses the cached prefix, JSON-schema output validates, LoRA adapters
//! are models of their own (`X:NAME`), and bad input is a 400 that says why.

use crate::common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use brisk_server::{router, AppState};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

const MODEL: &str = "smollm2-135m-instruct";

fn state() -> AppState {
    // No result cache: every request here must reach the model.
    common::default_state(common::models_dir(&[MODEL]), |c| {
        c.cache.enabled = false;
        c.limits.max_tokens = usize::MAX;
    })
}

async fn post(s: &AppState, body: Value) -> (StatusCode, Value) {
    let (st, text) = common::post_json(s, "/v1/chat/completions", &body).await;
    let v = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
    (st, v)
}

/// Posts a chat with a `response_format`; its reply, parsed as JSON.
async fn json_reply(s: &AppState, body: Value) -> Value {
    let (st, v) = post(s, body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .expect("content");
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn ask(content: &str, max_tokens: usize) -> Value {
    json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        "max_tokens": max_tokens,
    })
}

/// Opens a streaming chat; the response body is read frame by frame.
async fn open_stream(s: &AppState, content: &str, max_tokens: usize) -> Body {
    let mut body = ask(content, max_tokens);
    body["stream"] = json!(true);
    let req = Request::builder()
        .method("POST")
        .uri("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let resp = router(s.clone()).oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.into_body()
}

/// Arrival times of the content chunks of one stream.
async fn chunk_times(mut body: Body, t0: Instant) -> Vec<Duration> {
    let mut times = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("frame");
        if let Some(data) = frame.data_ref() {
            let text = String::from_utf8_lossy(data);
            let n = text.matches("\"content\":").count();
            for _ in 0..n {
                times.push(t0.elapsed());
            }
        }
    }
    times
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_streams_arrive_interleaved_in_time() {
    let s = state();
    // Load the model first: the load must not look like serialisation.
    let (st, _) = post(&s, ask("Hi", 1)).await;
    assert_eq!(st, StatusCode::OK);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for topic in ["the sea", "a cat", "the moon", "bread"] {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let body = open_stream(&s, &format!("Write a long story about {topic}."), 24).await;
            chunk_times(body, t0).await
        }));
    }
    let mut streams = Vec::new();
    for t in tasks {
        streams.push(t.await.expect("task"));
    }
    for times in &streams {
        assert!(times.len() >= 10, "{streams:?}");
    }
    // Interleaved: every stream's first token arrives before any stream's
    // last one. One request after another would put a whole stream first.
    let latest_first = streams.iter().map(|t| t[0]).max().expect("4");
    let earliest_last = streams.iter().map(|t| t[t.len() - 1]).min().expect("4");
    assert!(
        latest_first < earliest_last,
        "streams ran one after another: {streams:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_mid_stream_frees_the_slot() {
    let s = state();
    let mut body = open_stream(&s, "Tell me a very long story about dragons.", 2000).await;
    // Read a few chunks, then go away.
    let mut chunks = 0;
    while chunks < 3 {
        let frame = body.frame().await.expect("more frames").expect("frame");
        if frame.data_ref().is_some() {
            chunks += 1;
        }
    }
    let in_flight = |s: &AppState| {
        s.registry
            .status()
            .iter()
            .find(|m| m.name == MODEL)
            .map_or(0, |m| m.in_flight)
    };
    assert_eq!(in_flight(&s), 1);
    drop(body);
    let gone = Instant::now();
    while in_flight(&s) > 0 {
        assert!(
            gone.elapsed() < Duration::from_secs(5),
            "the slot was not freed after the client left"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_chat_turn_reports_cached_tokens() {
    let s = state();
    let first_turn = json!([{"role": "user", "content": "What is the capital of France?"}]);
    let (st, v) = post(
        &s,
        json!({"model": MODEL, "messages": first_turn, "temperature": 0, "max_tokens": 16}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let answer = v["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_string();
    let first_prompt = v["usage"]["prompt_tokens"].as_u64().expect("prompt tokens");
    let messages = json!([
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "And of Germany?"},
    ]);
    let (st, v) = post(
        &s,
        json!({"model": MODEL, "messages": messages, "temperature": 0, "max_tokens": 8}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let cached = v["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .expect("cached_tokens");
    assert!(cached >= first_prompt - 1, "{cached} of {}", v["usage"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_schema_output_validates() {
    let s = state();
    let schema = json!({
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "population_millions": {"type": "integer", "minimum": 0},
            "tags": {"type": "array", "items": {"enum": ["capital", "port", "old"]}, "maxItems": 3}
        },
        "required": ["city", "population_millions", "tags"],
        "additionalProperties": false
    });
    let mut body = ask("Describe Paris as JSON.", 80);
    body["response_format"] =
        json!({"type": "json_schema", "json_schema": {"name": "city", "schema": schema}});
    let out = json_reply(&s, body).await;
    let obj = out.as_object().expect("an object");
    assert!(obj["city"].is_string(), "{out}");
    assert!(obj["population_millions"].as_u64().is_some(), "{out}");
    let tags = obj["tags"].as_array().expect("tags");
    assert!(tags.len() <= 3);
    assert!(tags
        .iter()
        .all(|t| ["capital", "port", "old"].contains(&t.as_str().unwrap_or(""))));
    assert_eq!(obj.len(), 3, "{out}");

    // Room for the grammar to close the object: text cut by max_tokens
    // (finish_reason "length") is unfinished JSON, as with OpenAI.
    let mut body = ask(
        "Reply with a JSON object with one key, \"city\", whose value is the capital of France.",
        300,
    );
    body["response_format"] = json!({"type": "json_object"});
    let out = json_reply(&s, body).await;
    assert!(out.is_object(), "{out}");

    // A keyword the grammar cannot enforce is refused by name.
    let mut body = ask("Hi", 8);
    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "x",
        "schema": {"type": "array", "items": {"type": "integer"}, "uniqueItems": true}}});
    let (st, v) = post(&s, body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("uniqueItems"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_options_and_logprobs() {
    let s = state();
    let mut body = ask("What is the capital of France?", 6);
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(3);
    let (st, v) = post(&s, body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let content = v["choices"][0]["logprobs"]["content"]
        .as_array()
        .expect("logprobs content");
    assert_eq!(
        content.len() as u64,
        v["usage"]["completion_tokens"].as_u64().expect("n")
    );
    for t in content {
        let lp = t["logprob"].as_f64().expect("logprob");
        assert!(lp <= 0.0);
        let top = t["top_logprobs"].as_array().expect("top");
        assert_eq!(top.len(), 3);
        // Greedy: the chosen token is the most likely one.
        assert_eq!(top[0]["token"], t["token"], "{t}");
        assert!((top[0]["logprob"].as_f64().expect("top lp") - lp).abs() < 1e-4);
    }

    // Penalties change greedy text that repeats itself.
    let repeat = "Repeat the word 'cat' twenty times.";
    let (_, plain) = post(&s, ask(repeat, 24)).await;
    let mut body = ask(repeat, 24);
    body["frequency_penalty"] = json!(2.0);
    body["presence_penalty"] = json!(2.0);
    let (st, penalised) = post(&s, body).await;
    assert_eq!(st, StatusCode::OK, "{penalised}");
    assert_ne!(
        plain["choices"][0]["message"]["content"],
        penalised["choices"][0]["message"]["content"]
    );

    // max_completion_tokens wins over max_tokens.
    let mut body = ask("Tell me a story.", 50);
    body["max_completion_tokens"] = json!(3);
    let (st, v) = post(&s, body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["choices"][0]["finish_reason"], "length");

    for (field, value) in [
        ("presence_penalty", json!(3.0)),
        ("top_logprobs", json!(50)),
        ("response_format", json!({"type": "yaml"})),
    ] {
        let mut body = ask("Hi", 4);
        body[field] = value;
        if field == "top_logprobs" {
            body["logprobs"] = json!(true);
        }
        let (st, v) = post(&s, body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{field}: {v}");
        assert!(v.to_string().contains(field), "{field}: {v}");
    }
}

/// The chat default of the README (Qwen2.5-Coder-0.5B-Instruct, Q4_K_M as
/// stored) answers simple facts right, greedily, where SmolLM2-135M does
/// not (BENCHMARKS.md has all ten questions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_chat_model_answers_simple_facts() {
    const DEFAULT: &str = "qwen2.5-coder-0.5b-instruct";
    let s = common::default_state(common::models_dir(&[DEFAULT]), |c| {
        c.cache.enabled = false;
    });
    for (question, answer) in [
        ("What is the capital of Italy?", "Rome"),
        ("What is the largest planet in the solar system?", "Jupiter"),
        ("Who wrote Romeo and Juliet?", "Shakespeare"),
    ] {
        let mut body = ask(question, 32);
        body["model"] = json!(DEFAULT);
        let (st, v) = post(&s, body).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let text = v["choices"][0]["message"]["content"]
            .as_str()
            .expect("content");
        assert!(text.contains(answer), "{question} -> {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_longer_than_the_context_is_400_naming_it() {
    let s = common::default_state(common::models_dir(&[MODEL]), |c| {
        c.cache.enabled = false;
        c.models.insert(
            "tiny-context".into(),
            toml::from_str(&format!(
                "source = \"{MODEL}\"\noptions = {{ context = \"64\" }}"
            ))
            .expect("model config"),
        );
    });
    let long = "Please summarise this text. ".repeat(20);
    let (st, v) = post(
        &s,
        json!({"model": "tiny-context", "messages": [{"role": "user", "content": long}], "max_tokens": 4}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("context is 64 tokens"), "{v}");
}

/// Writes a rank-2 LoRA adapter of `blk.2.attn_output.weight` (576 x 576)
/// whose B matrix is `b_value` everywhere.
fn write_adapter(path: &std::path::Path, b_value: f32) {
    let (n, rank) = (576, 2);
    let a: Vec<f32> = (0..n * rank)
        .map(|i| ((i % 7) as f32 - 3.0) * 0.05)
        .collect();
    let t = |name: &str, dims: [usize; 2], values: Vec<f32>| brisk_llama::lora_file::Tensor {
        name: format!("blk.2.attn_output.weight.{name}"),
        dims,
        values,
    };
    let tensors = [
        t("lora_a", [n, rank], a),
        t("lora_b", [rank, n], vec![b_value; rank * n]),
    ];
    brisk_llama::lora_file::write(path, "llama", 2.0, &tensors).expect("write adapter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lora_adapters_are_served_as_their_own_models() {
    let dir = std::env::temp_dir().join(format!("brisk-lora-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    write_adapter(&dir.join("zero.gguf"), 0.0);
    write_adapter(&dir.join("shift.gguf"), 0.2);
    let s = common::default_state(common::models_dir(&[MODEL]), |c| {
        c.cache.enabled = false;
        c.models.insert(
            "tuned".into(),
            toml::from_str(&format!(
                "source = \"{MODEL}\"\nadapters = {{ zero = \"{}\", shift = \"{}\" }}",
                dir.join("zero.gguf").display(),
                dir.join("shift.gguf").display()
            ))
            .expect("model config"),
        );
    });

    // /v1/models lists each adapter as its own id.
    let (st, _, text) = common::send(&s, "GET", "/v1/models", "application/json", Vec::new()).await;
    assert_eq!(st, StatusCode::OK);
    let list: Value = serde_json::from_str(&text).expect("json");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    for id in ["tuned", "tuned:shift", "tuned:zero"] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    let shift = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|m| m["id"] == "tuned:shift")
        .expect("tuned:shift");
    assert_eq!(shift["brisk"]["adapter_of"], "tuned");

    let first_logprob = |v: &Value| {
        v["choices"][0]["logprobs"]["content"][0]["logprob"]
            .as_f64()
            .expect("logprob")
    };
    let mut outs = Vec::new();
    for model in ["tuned", "tuned:zero", "tuned:shift"] {
        let mut body = ask("Name a fruit.", 6);
        body["model"] = json!(model);
        body["logprobs"] = json!(true);
        let (st, v) = post(&s, body).await;
        assert_eq!(st, StatusCode::OK, "{model}: {v}");
        assert_eq!(v["model"], model);
        outs.push(v);
    }
    // A zero B matrix is the base model; a non-zero one moves the logits.
    assert_eq!(
        outs[0]["choices"][0]["message"]["content"],
        outs[1]["choices"][0]["message"]["content"]
    );
    assert!((first_logprob(&outs[0]) - first_logprob(&outs[1])).abs() < 1e-4);
    assert!(
        (first_logprob(&outs[0]) - first_logprob(&outs[2])).abs() > 1e-3,
        "{} vs {}",
        outs[0],
        outs[2]
    );

    // An adapter the model does not have is an unknown model.
    let mut body = ask("Hi", 2);
    body["model"] = json!("tuned:nope");
    let (st, v) = post(&s, body).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}
