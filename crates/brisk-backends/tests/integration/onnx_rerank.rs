//! Cross-encoder reranking on ONNX Runtime (backend `onnx-bert`, a
//! BertForSequenceClassification folder) against sentence-transformers'
//! CrossEncoder, on the tiny random-weight model of
//! tests/fixtures/tiny-cross-encoder (scripts/gen_rerank_reference.py; no
//! real cross-encoder is shipped in a PyPI package). Needs
//! scripts/fetch-models onnxruntime.
#![cfg(feature = "onnx")]

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use brisk_backends::onnx::bert::{Kind, OnnxBert};
use brisk_core::{Backend, BackendError, Request, Response, Task};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn load() -> OnnxBert {
    let lib = std::fs::read_dir(common::fetched("onnxruntime"))
        .expect("onnxruntime folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("libonnxruntime.so"))
        .expect("libonnxruntime.so fetched");
    let mut options = BTreeMap::new();
    options.insert("onnxruntime".to_string(), lib.display().to_string());
    OnnxBert::load(&fixtures().join("tiny-cross-encoder"), &options).expect("cross-encoder loads")
}

/// Spearman's rank correlation (no ties in these scores).
fn spearman(a: &[f32], b: &[f32]) -> f64 {
    let rank = |v: &[f32]| {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0f64; v.len()];
        for (pos, &i) in idx.iter().enumerate() {
            r[i] = pos as f64;
        }
        r
    };
    let (ra, rb) = (rank(a), rank(b));
    let n = a.len() as f64;
    let d2: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - y) * (x - y)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

fn top3(v: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&i, &j| v[j].total_cmp(&v[i]));
    idx.truncate(3);
    idx
}

#[test]
fn scores_match_sentence_transformers_cross_encoder() {
    let mut model = load();
    assert_eq!(model.kind(), Kind::CrossEncoder);
    assert_eq!(model.task(), Task::Rerank);
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("rerank_reference.json")).expect("fixture"),
    )
    .expect("JSON");
    for item in reference["items"].as_array().expect("items") {
        let query = item["query"].as_str().expect("query");
        let docs: Vec<&str> = item["documents"]
            .as_array()
            .expect("documents")
            .iter()
            .map(|d| d.as_str().expect("text"))
            .collect();
        let want: Vec<f32> = serde_json::from_value(item["scores"].clone()).expect("scores");
        let (got, tokens) = model.rerank(query, &docs, false).expect("reranks");
        assert!(tokens > docs.len() * 3);
        let rho = spearman(&got, &want);
        assert!(rho >= 0.99, "{query}: Spearman {rho}: {got:?} vs {want:?}");
        assert_eq!(top3(&got), top3(&want), "{query}");
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "{query}: {got:?} vs {want:?}");
        }
        // One document at a time gives the same scores as the batch.
        let (alone, _) = model.rerank(query, &docs[..1], false).expect("one");
        assert!((alone[0] - got[0]).abs() < 1e-5);
    }
}

#[test]
fn over_long_pairs_are_refused_or_truncated() {
    let mut model = load();
    let long = "paris ".repeat(100);
    let out = model.infer(vec![
        Request::Rerank {
            query: "capital of france".into(),
            documents: vec![long.clone()],
            truncate: false,
        },
        Request::Rerank {
            query: "capital of france".into(),
            documents: vec![long, "berlin".into()],
            truncate: true,
        },
    ]);
    assert!(
        matches!(&out[0], Err(BackendError::InvalidInput(m)) if m.contains("documents[0]") && m.contains("at most 64")),
        "{:?}",
        out[0]
    );
    match &out[1] {
        Ok(Response::Rerank {
            scores,
            prompt_tokens,
        }) => {
            assert_eq!(scores.len(), 2);
            // Cut to the model's 64 tokens; "[CLS] capital of france [SEP] berlin [SEP]" is 7.
            assert_eq!(*prompt_tokens, 64 + 7);
        }
        other => panic!("unexpected {other:?}"),
    }
}
