//! `POST /v1/topics` over HTTP with simulated embeddings: the answer's
//! shape, every bad input as a 4xx in the OpenAI error shape, and a run as a
//! job whose progress moves through fractions.

use crate::common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use brisk_engine::Timeline;
use brisk_server::config::Config;
use brisk_server::{build_state, jobs, AppState};
use serde_json::{json, Value};

fn state(extra: &str) -> AppState {
    // One database per test: the tests run concurrently in one process.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let db = std::env::temp_dir().join(format!(
        "brisk-topics-jobs-{}-{n}.sqlite",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&db);
    let toml = format!(
        r#"
[server]
discover = false
[jobs]
db_path = "{}"
{extra}
[models.emb]
backend = "sim"
source = "emb"
options = {{ dim = 16 }}
[models.slowemb]
backend = "sim"
source = "slowemb"
max_batch_requests = 1
options = {{ dim = 16, infer_ms = 40 }}
[models.gen]
backend = "sim"
source = "gen"
options = {{ task = "generation" }}
[pipelines.themes]
[[pipelines.themes.steps]]
name = "topics"
model = "emb"
task = "topics"
input = "request.documents"
options = {{ min_topic_size = 5, top_n_words = 3 }}
[[pipelines.themes.steps]]
name = "summary"
model = "gen"
prompt = "{{{{ topics.topics | length }}}} topics"
options = {{ max_tokens = 4 }}
"#,
        db.display()
    );
    let config = Config::from_toml(&toml).expect("config");
    let mut s = build_state(config, Timeline::new(Instant::now())).expect("state");
    s.registry.start();
    jobs::open(&mut s).expect("jobs");
    jobs::spawn_workers(&s, brisk_server::router(s.clone()));
    s
}

fn docs(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("document {i} about topic {}", i % 4))
        .collect()
}

#[tokio::test]
async fn answers_topics_keywords_and_an_assignment_per_document() {
    let s = state("");
    let body = json!({"model": "emb", "documents": docs(80), "min_topic_size": 5, "seed": 3,
                      "top_n_words": 4, "stop_words": ["about"], "nr_topics": null});
    let (st, text) = common::post_json(&s, "/v1/topics", &body).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    let topics = v["topics"].as_array().expect("topics");
    assert!(!topics.is_empty());
    let sizes: u64 = topics
        .iter()
        .map(|t| t["size"].as_u64().expect("size"))
        .sum();
    assert_eq!(sizes, 80);
    for t in topics {
        let kw = t["keywords"].as_array().expect("keywords");
        assert!(kw.len() <= 4 && !kw.is_empty(), "{t}");
        assert!(kw
            .iter()
            .all(|k| k["word"] != "about" && k["weight"].as_f64().is_some()));
        assert!(t["representative_docs"]
            .as_array()
            .is_some_and(|d| !d.is_empty()));
    }
    let assignments = v["documents"].as_array().expect("documents");
    assert_eq!(assignments.len(), 80);
    assert!(assignments
        .iter()
        .all(|a| a["topic"].as_i64().is_some() && a["probability"].as_f64().is_some()));
    // Same seed, same answer.
    let (_, again) = common::post_json(&s, "/v1/topics", &body).await;
    assert_eq!(text, again);
}

#[tokio::test]
async fn bad_input_is_a_4xx_naming_the_problem() {
    let s = state("[limits]\nmax_topic_documents = 50");
    let cases = [
        (
            json!({"model": "emb", "documents": []}),
            400,
            "documents",
            "must not be empty",
        ),
        (
            json!({"model": "emb", "documents": docs(5)}),
            400,
            "documents",
            "min_topic_size × 2 = 20",
        ),
        (
            json!({"model": "emb", "documents": ["a b", "c d"], "min_topic_size": 1}),
            400,
            "min_topic_size",
            "at least 2",
        ),
        (
            json!({"model": "emb", "documents": ["a b", "  ", "c d", "e f"], "min_topic_size": 2}),
            400,
            "documents",
            "documents[1]` is empty",
        ),
        (
            json!({"model": "emb", "documents": docs(60)}),
            400,
            "documents",
            "at most 50",
        ),
        (
            json!({"model": "emb", "documents": docs(30), "nr_topics": "many"}),
            400,
            "nr_topics",
            "auto",
        ),
        (
            json!({"model": "emb", "documents": docs(30), "stop_words": "french"}),
            400,
            "stop_words",
            "english",
        ),
        (
            json!({"model": "emb", "documents": docs(30), "top_n_words": 0}),
            400,
            "top_n_words",
            "between 1 and 100",
        ),
        (
            json!({"model": "emb", "documents": [1, 2]}),
            400,
            "documents",
            "documents[0] must be a string",
        ),
        (
            json!({"documents": docs(30)}),
            400,
            "model",
            "'model' is required",
        ),
        (
            json!({"model": "emb", "documents": docs(30), "n_gram_range": [1, 2]}),
            400,
            "",
            "n_gram_range",
        ),
        (
            json!({"model": "nope", "documents": docs(30)}),
            404,
            "",
            "does not exist",
        ),
        (
            json!({"model": "gen", "documents": docs(30)}),
            400,
            "",
            "serves generation, not embeddings",
        ),
    ];
    for (body, status, param, message) in cases {
        let (st, text) = common::post_json(&s, "/v1/topics", &body).await;
        assert_eq!(st.as_u16(), status, "{body} → {text}");
        let v: Value = serde_json::from_str(&text).expect("json");
        let err = &v["error"];
        assert!(
            err["message"].as_str().is_some_and(|m| m.contains(message)),
            "{body} → {text}"
        );
        if !param.is_empty() {
            assert_eq!(err["param"], param, "{body} → {text}");
        }
    }
}

#[tokio::test]
async fn as_a_job_progress_moves_through_fractions() {
    let s = state("");
    // 1,600 documents in 25 embedding chunks of 40 ms each.
    let body = json!({"endpoint": "/v1/topics",
                      "body": {"model": "slowemb", "documents": docs(1600), "min_topic_size": 10}});
    let (st, text) = common::post_json(&s, "/v1/jobs", &body).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{text}");
    let id = serde_json::from_str::<Value>(&text).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut fractions = Vec::new();
    let done = loop {
        let (_, _, text) = common::send(&s, "GET", &format!("/v1/jobs/{id}"), "", vec![]).await;
        let v: Value = serde_json::from_str(&text).expect("json");
        if v["status"] == "succeeded" || v["status"] == "failed" {
            break v;
        }
        if let Some(f) = v["progress"].as_f64() {
            fractions.push(f);
        }
        assert!(Instant::now() < deadline, "job did not finish: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["progress"], 1.0);
    assert_eq!(
        done["result"]["documents"].as_array().map(Vec::len),
        Some(1600)
    );
    let between: Vec<f64> = fractions
        .iter()
        .copied()
        .filter(|f| *f > 0.0 && *f < 1.0)
        .collect();
    let distinct = {
        let mut d = between.clone();
        d.dedup();
        d.len()
    };
    assert!(distinct >= 3, "progress seen: {fractions:?}");
    assert!(fractions.windows(2).all(|w| w[0] <= w[1]), "{fractions:?}");
}

#[tokio::test]
async fn a_pipeline_step_runs_topics_and_later_steps_read_them() {
    let s = state("");
    let (st, text) =
        common::post_json(&s, "/v1/pipelines/themes", &json!({"documents": docs(60)})).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    let topics = v["outputs"]["topics"]["topics"].as_array().expect("topics");
    assert!(topics
        .iter()
        .all(|t| t["keywords"].as_array().is_some_and(|k| k.len() <= 3)));
    assert_eq!(
        v["outputs"]["topics"]["documents"].as_array().map(Vec::len),
        Some(60)
    );
    // The generation step saw the count (the sim model echoes its prompt).
    let n = topics.len().to_string();
    assert!(
        v["outputs"]["summary"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with(&n)),
        "{text}"
    );
    // Too few documents: the step's 400.
    let (st, text) =
        common::post_json(&s, "/v1/pipelines/themes", &json!({"documents": docs(6)})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("min_topic_size"), "{text}");
}

#[test]
fn a_topics_step_needs_an_embeddings_model_and_a_list() {
    for (step, expected) in [
        ("model = \"gen\"\ntask = \"topics\"\ninput = \"request.documents\"", "needs an embeddings model"),
        ("model = \"emb\"\ntask = \"clusters\"\ninput = \"request.documents\"", "task 'clusters' is unknown"),
        ("model = \"emb\"\ntask = \"topics\"\nprompt = \"{{ request.x }}\"", "reads a list of documents"),
        ("model = \"emb\"\ntask = \"topics\"\ninput = \"request.documents\"\noptions = { nr_topics = \"many\" }", "nr_topics"),
    ] {
        let toml = format!(
            "[server]\ndiscover = false\n[jobs]\nenabled = false\n[models.emb]\nbackend = \"sim\"\nsource = \"emb\"\n\
             [models.gen]\nbackend = \"sim\"\nsource = \"gen\"\noptions = {{ task = \"generation\" }}\n\
             [pipelines.p]\n[[pipelines.p.steps]]\nname = \"t\"\n{step}\n"
        );
        let err = match build_state(Config::from_toml(&toml).expect("config"), Timeline::new(Instant::now())) {
            Ok(_) => panic!("{step}: accepted"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(expected), "{step}: {err}");
    }
}
