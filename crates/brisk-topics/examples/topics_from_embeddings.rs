//! Runs the topic pipeline on precomputed embeddings, for the comparison
//! with BERTopic (scripts/bench_topics.py feeds both the same vectors).
//!
//! `topics_from_embeddings IN.json [--cluster-only]`, IN = {"documents":
//! [...], "embeddings": [[...]], "min_topic_size": 10, "seed": 42}.
//! Prints {"topics", "documents", "timings_ms"} as JSON. With
//! `--cluster-only` the embeddings are taken as already reduced and only
//! HDBSCAN runs (to compare it with Python's hdbscan on the same points).

use std::time::Instant;

use brisk_topics::{analyze, cluster, TopicParams};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .expect("usage: topics_from_embeddings IN.json [--cluster-only]");
    let input: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("read input")).expect("json");
    let documents: Vec<String> =
        serde_json::from_value(input["documents"].clone()).expect("documents");
    let embeddings: Vec<Vec<f32>> =
        serde_json::from_value(input["embeddings"].clone()).expect("embeddings");
    let mut params = TopicParams::default();
    if let Some(m) = input["min_topic_size"].as_u64() {
        params.min_topic_size = m as usize;
    }
    if let Some(s) = input["seed"].as_u64() {
        params.seed = s;
    }
    if let Some(e) = input["n_epochs"].as_u64() {
        params.umap.n_epochs = Some(e as usize);
    }
    let start = Instant::now();
    let out = if args.iter().any(|a| a == "--cluster-only") {
        let (labels, probabilities) = cluster(&embeddings, params.min_topic_size).expect("cluster");
        serde_json::json!({"labels": labels, "probabilities": probabilities})
    } else {
        // Seconds at which each step ended (k-NN 0.15, UMAP 0.85, HDBSCAN
        // 0.93 of the progress bar).
        let mut marks = Vec::new();
        let model = analyze(&documents, &embeddings, &params, &mut |f| {
            for (name, end) in [
                ("knn", 0.15),
                ("umap", 0.85),
                ("hdbscan", 0.93),
                ("keywords", 1.0),
            ] {
                if f >= end && !marks.iter().any(|(n, _)| *n == name) {
                    marks.push((name, start.elapsed().as_secs_f64()));
                }
            }
            true
        })
        .expect("analyze");
        let mut v = serde_json::to_value(model).expect("serialize");
        v["steps_s"] = serde_json::json!(marks
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>());
        v
    };
    let mut out = out;
    out["timings_ms"] = serde_json::json!(start.elapsed().as_secs_f64() * 1e3);
    println!("{out}");
}
