//! A corpus of malformed request bodies for every JSON endpoint: a fixed
//! list of known-nasty inputs plus seeded random mutations of valid bodies.
//! Each must get a 2xx or a 4xx in the OpenAI error shape within a time
//! bound — never a 5xx, a panic or a hang. This is the regression run of
//! the `request_json` fuzz target under `fuzz/`.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
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
[models.gen]
backend = "sim"
source = "gen"
options = { task = "generation", max_tokens = 64 }
[models.stt]
backend = "sim"
source = "stt"
options = { task = "transcription", text = "hello" }

[pipelines.p]
[[pipelines.p.steps]]
name = "vec"
model = "emb"
input = "request.text"
"#;

fn state() -> AppState {
    let config = Config::from_toml(SIM).expect("config parses");
    let s = build_state(config, Timeline::new(Instant::now())).expect("state builds");
    s.registry.start();
    s
}

/// (status, body) of one POST; panics on a hang.
async fn post(s: &AppState, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let req = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request");
    let fut = async {
        let resp = router(s.clone()).oneshot(req).await.expect("infallible");
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, bytes.to_vec())
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("{path}: request hung"))
}

const ENDPOINTS: &[(&str, &str)] = &[
    (
        "/v1/embeddings",
        r#"{"model":"emb","input":["a b","c"],"encoding_format":"float"}"#,
    ),
    (
        "/v1/chat/completions",
        r#"{"model":"gen","messages":[{"role":"user","content":"hi"}],"max_tokens":4,"temperature":0,"stop":["x"]}"#,
    ),
    (
        "/v1/completions",
        r#"{"model":"gen","prompt":"once","max_tokens":4,"seed":3}"#,
    ),
    (
        "/v2/models/emb/infer",
        r#"{"inputs":[{"name":"text","datatype":"BYTES","shape":[1],"data":["a"]}]}"#,
    ),
    ("/v1/pipelines/p", r#"{"text":"some words"}"#),
];

fn nasty() -> Vec<Vec<u8>> {
    let deep_array = "[".repeat(100_000);
    let deep_object = "{\"a\":".repeat(50_000);
    let mut v: Vec<Vec<u8>> = [
        "",
        " ",
        "null",
        "true",
        "0",
        "-1e999",
        "\"string\"",
        "[]",
        "{}",
        "{",
        "}",
        "{\"model\":}",
        "{\"model\":null,\"input\":null}",
        "{\"model\":1e400}",
        "{\"model\":\"emb\",\"input\":[[1,2,3]]}",
        "{\"model\":\"emb\",\"input\":[null]}",
        "{\"model\":\"emb\",\"input\":[]}",
        "{\"model\":\"emb\",\"input\":\"\"}",
        "{\"model\":\"emb\",\"input\":{\"a\":1}}",
        "{\"model\":\"emb\",\"input\":\"x\",\"dimensions\":-5}",
        "{\"model\":\"emb\",\"input\":\"x\",\"encoding_format\":\"int8\"}",
        "{\"model\":\"nope\",\"input\":\"x\"}",
        "{\"model\":\"gen\",\"input\":\"x\"}",
        "{\"model\":\"gen\",\"messages\":[]}",
        "{\"model\":\"gen\",\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}",
        "{\"model\":\"gen\",\"messages\":[{\"role\":\"user\"}]}",
        "{\"model\":\"gen\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
        "{\"model\":\"gen\",\"messages\":\"hi\"}",
        "{\"model\":\"gen\",\"prompt\":\"x\",\"max_tokens\":0}",
        "{\"model\":\"gen\",\"prompt\":\"x\",\"max_tokens\":-1}",
        "{\"model\":\"gen\",\"prompt\":\"x\",\"max_tokens\":18446744073709551616}",
        "{\"model\":\"gen\",\"prompt\":\"x\",\"temperature\":\"hot\"}",
        "{\"model\":\"gen\",\"prompt\":\"x\",\"temperature\":1e308}",
        "{\"model\":\"gen\",\"prompt\":\"x\",\"top_p\":0}",
        "{\"model\":\"gen\",\"prompt\":\"x\",\"n\":5}",
        "{\"model\":\"gen\",\"prompt\":\"x\",\"stop\":[1,2]}",
        "{\"model\":\"gen\",\"prompt\":\"x\",\"stop\":[\"\",\"\"]}",
        "{\"model\":\"gen\",\"prompt\":[\"a\",\"b\"]}",
        "{\"model\":\"gen\",\"prompt\":\"x\",\"stream\":\"yes\"}",
        "{\"inputs\":[]}",
        "{\"inputs\":[{\"name\":\"t\",\"datatype\":\"FP32\",\"data\":[1]}]}",
        "{\"inputs\":[{\"name\":\"t\",\"data\":null}]}",
        "{\"text\":null}",
        "{\"text\":[1,2]}",
        "{\"model\":\"emb\",\"input\":\"\\ud800\"}",
        "{\"model\":\"emb\",\"input\":\"a\u{0}b\"}",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    v.push(deep_array.into_bytes());
    v.push(deep_object.into_bytes());
    v.push(b"{\"model\":\"emb\",\"input\":\"\xff\xfe\"}".to_vec());
    v.push(vec![0xff; 64]);
    v.push(
        json!({"model": "emb", "input": "word ".repeat(50_000)})
            .to_string()
            .into_bytes(),
    );
    v
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Byte-level mutations of a valid body: flips, deletions, insertions of
/// JSON-significant bytes, duplication of spans, truncation.
fn mutate(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
    let mut b = body.to_vec();
    for _ in 0..1 + rng.below(4) {
        if b.is_empty() {
            b.push(b'{');
        }
        let at = rng.below(b.len());
        match rng.below(6) {
            0 => b[at] ^= 1 << rng.below(8),
            1 => {
                b.remove(at);
            }
            2 => {
                const SIGNIFICANT: &[u8] = b"{}[]\":,-0e.\\ n9";
                b.insert(at, SIGNIFICANT[rng.below(SIGNIFICANT.len())]);
            }
            3 => {
                let end = (at + 1 + rng.below(16)).min(b.len());
                let span = b[at..end].to_vec();
                b.splice(at..at, span);
            }
            4 => b.truncate(at),
            _ => b[at] = rng.next() as u8,
        }
    }
    b
}

fn check(path: &str, body: &[u8], status: u16, reply: &[u8], failures: &mut Vec<String>) {
    let shown = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
    if status >= 500 {
        failures.push(format!(
            "{path} {shown:?} -> {status}: {}",
            String::from_utf8_lossy(reply)
        ));
    } else if status >= 400 {
        let v: Value = serde_json::from_slice(reply).unwrap_or(Value::Null);
        if !v["error"]["message"].is_string() || !v["error"]["type"].is_string() {
            failures.push(format!(
                "{path} {shown:?} -> {status} without the OpenAI error shape: {}",
                String::from_utf8_lossy(reply)
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nasty_bodies_get_4xx_never_5xx() {
    let s = state();
    let mut failures = Vec::new();
    for (path, valid) in ENDPOINTS {
        let (status, reply) = post(&s, path, valid.as_bytes().to_vec()).await;
        assert_eq!(
            status,
            200,
            "{path}: the valid body works: {}",
            String::from_utf8_lossy(&reply)
        );
        for body in nasty() {
            let (status, reply) = post(&s, path, body.clone()).await;
            check(path, &body, status, &reply, &mut failures);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_bodies_get_4xx_never_5xx() {
    let s = state();
    let mut rng = Rng(0x5eed_b215_c0de_0001);
    let mut failures = Vec::new();
    let mut answered = std::collections::BTreeMap::<u16, usize>::new();
    for (path, valid) in ENDPOINTS {
        for _ in 0..300 {
            let body = mutate(&mut rng, valid.as_bytes());
            let (status, reply) = post(&s, path, body.clone()).await;
            *answered.entry(status).or_default() += 1;
            check(path, &body, status, &reply, &mut failures);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        answered.keys().any(|s| *s == 400),
        "mutations reach validation: {answered:?}"
    );
}
