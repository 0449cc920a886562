#![cfg(feature = "onnx")]
//! `POST /v1/rerank` on the tiny random-weight cross-encoder of
//! tests/fixtures/tiny-cross-encoder (scripts/gen_rerank_reference.py; its
//! scores come from sentence-transformers' CrossEncoder). Needs
//! scripts/fetch-models onnxruntime.

use crate::common;

use std::path::PathBuf;

use axum::http::StatusCode;
use brisk_server::config::ModelConfig;
use brisk_server::AppState;
use serde_json::{json, Value};

fn state() -> AppState {
    state_with(|_| {})
}

fn state_with(tweak: impl FnOnce(&mut brisk_server::config::Config)) -> AppState {
    let models = common::models_dir(&["onnxruntime"]);
    let lib = std::fs::read_dir(models.join("onnxruntime"))
        .expect("onnxruntime folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("libonnxruntime.so"))
        .expect("libonnxruntime.so fetched");
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-cross-encoder");
    common::default_state(models, |c| {
        c.server.discover = false;
        c.limits.max_inputs = 8;
        c.models.insert(
            "reranker".into(),
            ModelConfig {
                source: fixture.display().to_string(),
                backend: Some("onnx-bert".into()),
                options: [(
                    "onnxruntime".to_string(),
                    toml::Value::String(lib.display().to_string()),
                )]
                .into_iter()
                .collect(),
                ..Default::default()
            },
        );
        tweak(c);
    })
}

fn reference() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/rerank_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_sorted_cut_to_top_n_and_match_cross_encoder() {
    let s = state();
    let item = &reference()["items"][0];
    let want: Vec<f64> = serde_json::from_value(item["scores"].clone()).expect("scores");
    let body = json!({
        "model": "reranker",
        "query": item["query"],
        "documents": item["documents"],
        "top_n": 3,
        "return_documents": true,
    });
    let (st, text) = common::post_json(&s, "/v1/rerank", &body).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    let mut order: Vec<usize> = (0..want.len()).collect();
    order.sort_by(|&a, &b| want[b].total_cmp(&want[a]));
    for (r, &i) in results.iter().zip(&order) {
        assert_eq!(r["index"].as_u64(), Some(i as u64), "{text}");
        let score = r["relevance_score"].as_f64().expect("score");
        assert!((score - want[i]).abs() < 1e-4, "{text}");
        assert_eq!(r["document"]["text"], item["documents"][i]);
    }
    assert!(v["usage"]["prompt_tokens"].as_u64().expect("usage") > 10);
    // Without return_documents there is no document; the same request
    // again is answered from the cache.
    let body = json!({"model": "reranker", "query": item["query"], "documents": item["documents"]});
    let (_, first) = common::post_json(&s, "/v1/rerank", &body).await;
    let (st, headers, again) = common::send(
        &s,
        "POST",
        "/v1/rerank",
        "application/json",
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(first, again);
    assert_eq!(
        headers.get("x-brisk-cache").and_then(|h| h.to_str().ok()),
        Some("hit")
    );
    let v: Value = serde_json::from_str(&again).expect("JSON");
    assert_eq!(v["results"].as_array().map(Vec::len), Some(want.len()));
    assert!(v["results"][0].get("document").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rerank_requests_are_400s() {
    let s = state();
    let cases = [
        (
            json!({"model": "reranker", "query": "q", "documents": []}),
            "documents",
        ),
        (json!({"model": "reranker", "query": "q"}), "documents"),
        (json!({"model": "reranker", "documents": ["a"]}), "query"),
        (
            json!({"model": "reranker", "query": "q", "documents": [1]}),
            "documents",
        ),
        (
            json!({"model": "reranker", "query": "q", "documents": ["a"], "top_n": 0}),
            "top_n",
        ),
        (
            json!({"model": "reranker", "query": "q", "documents": vec!["a"; 9]}),
            "max_inputs",
        ),
        (
            json!({"model": "reranker", "query": "paris", "documents": ["paris ".repeat(100)]}),
            "at most 64",
        ),
    ];
    for (body, needle) in cases {
        let (st, text) = common::post_json(&s, "/v1/rerank", &body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {text}");
        assert!(text.contains(needle), "{body}: {text}");
    }
    // With truncate the over-long document is cut and scored.
    let body = json!({"model": "reranker", "query": "paris", "documents": ["paris ".repeat(100)], "truncate": true});
    let (st, text) = common::post_json(&s, "/v1/rerank", &body).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    // An embeddings model is not a reranker, and a reranker does not embed.
    let (st, text) = common::post_json(
        &s,
        "/v1/embeddings",
        &json!({"model": "reranker", "input": "hi"}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
}

/// A rerank step in a pipeline: the query from the request, the documents
/// from a request list, and a later step reading the best document by
/// `ranked.results.0.document` (here an embedding of it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerank_is_a_pipeline_step_whose_results_later_steps_read() {
    let s = state_with(|c| {
        let pipeline: brisk_engine::pipeline::PipelineConfig = toml::from_str(
            r#"
[[steps]]
name = "ranked"
model = "reranker"
input = "request.query"
options = { documents = "request.documents", top_n = 2 }

[[steps]]
name = "best"
model = "reranker"
prompt = "{{ request.query }}"
options = { documents = "ranked.results.0.document" }
"#,
        )
        .expect("pipeline TOML");
        c.pipelines.insert("search".into(), pipeline);
    });
    let item = &reference()["items"][0];
    let want: Vec<f64> = serde_json::from_value(item["scores"].clone()).expect("scores");
    let best = (0..want.len())
        .max_by(|&a, &b| want[a].total_cmp(&want[b]))
        .expect("documents");
    let body = json!({"query": item["query"], "documents": item["documents"]});
    let (st, text) = common::post_json(&s, "/v1/pipelines/search", &body).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    let results = v["outputs"]["ranked"]["results"]
        .as_array()
        .expect("results");
    assert_eq!(results.len(), 2, "{text}");
    assert_eq!(results[0]["index"].as_u64(), Some(best as u64), "{text}");
    assert_eq!(results[0]["document"], item["documents"][best], "{text}");
    let score = results[0]["relevance_score"].as_f64().expect("score");
    assert!((score - want[best]).abs() < 1e-4, "{text}");
    // The second step scored the one document the first ranked best: the
    // same pair, so the same score.
    let again = &v["outputs"]["best"]["results"][0];
    assert_eq!(again["index"].as_u64(), Some(0), "{text}");
    assert!((again["relevance_score"].as_f64().expect("score") - score).abs() < 1e-4);

    // A documents selection that is not a list of strings is a 400 naming
    // the step.
    let (st, text) = common::post_json(
        &s,
        "/v1/pipelines/search",
        &json!({"query": "q", "documents": [1, 2]}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("ranked"), "{text}");
}
