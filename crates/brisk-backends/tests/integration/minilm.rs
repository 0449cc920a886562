//! The real all-MiniLM-L6-v2 (fetched by scripts/fetch-models) against
//! reference vectors computed once with sentence-transformers
//! (tests/fixtures/minilm_reference.json, made by scripts/gen_minilm_reference.py).
#![cfg(feature = "candle")]

use crate::common;

use std::path::PathBuf;

use brisk_backends::bert::BertEmbedder;
use brisk_core::{cosine, Backend, BackendError, Request, Response};
use serde_json::Value;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_dir() -> PathBuf {
    common::fetched("all-minilm-l6-v2/model.safetensors");
    common::fetched("all-minilm-l6-v2")
}

fn reference() -> Vec<(String, Vec<f32>)> {
    let text = std::fs::read_to_string(workspace().join("tests/fixtures/minilm_reference.json"))
        .expect("reference fixture");
    let v: Value = serde_json::from_str(&text).expect("fixture is JSON");
    v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["text"].as_str().expect("text").to_string(),
                serde_json::from_value(i["embedding"].clone()).expect("floats"),
            )
        })
        .collect()
}

#[test]
fn embeddings_match_sentence_transformers() {
    let model = BertEmbedder::load(&model_dir()).expect("model loads");
    let items = reference();
    assert!(items.len() >= 10);
    let texts: Vec<&str> = items.iter().map(|(t, _)| t.as_str()).collect();
    // All at once (padded batch) and one by one must both match.
    // Like sentence-transformers, cut inputs over 256 tokens (two are).
    let (batch, tokens) = model.embed(&texts, true).expect("batch embeds");
    assert_eq!(tokens.len(), texts.len());
    for ((text, want), got) in items.iter().zip(&batch) {
        assert_eq!(got.len(), 384);
        let c = cosine(got, want);
        assert!(c >= 0.999, "batched {text:?}: cosine {c}");
        let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "normalised");
        let (single, _) = model.embed(&[text], true).expect("single embeds");
        let c = cosine(&single[0], want);
        assert!(c >= 0.999, "single {text:?}: cosine {c}");
    }
}

#[test]
fn similar_sentences_are_closer_than_unrelated_ones() {
    let model = BertEmbedder::load(&model_dir()).expect("model loads");
    let r = reference();
    assert_eq!(r[0].0, "I like to eat food");
    assert_eq!(r[1].0, "I like to eat bread");
    let want = cosine(&r[0].1, &r[1].1);
    let (v, _) = model
        .embed(
            &[
                "I like to eat food",
                "I like to eat bread",
                "The stock market crashed today",
            ],
            false,
        )
        .expect("embeds");
    let close = cosine(&v[0], &v[1]);
    let far = cosine(&v[0], &v[2]);
    assert!(
        (close - want).abs() < 0.002,
        "cos(food, bread) = {close}, reference {want}"
    );
    assert!(close > far + 0.3, "close {close} vs far {far}");
}

#[test]
fn backend_splits_a_batch_per_request_and_rejects_over_long_input() {
    let mut model = BertEmbedder::load(&model_dir()).expect("model loads");
    let counter = model.token_counter().expect("has a tokenizer");
    assert_eq!(counter.max_input_tokens(), 256);
    let long = "word ".repeat(400);
    assert!(counter.count(&long).expect("counts") > 256);

    let out = model.infer(vec![
        Request::Embed {
            texts: vec!["a cat".into(), "a dog".into()],
            truncate: false,
        },
        Request::Embed {
            texts: vec![long.clone()],
            truncate: false,
        },
        Request::Embed {
            texts: vec!["a bird".into()],
            truncate: false,
        },
    ]);
    assert_eq!(out.len(), 3);
    match &out[0] {
        Ok(Response::Embed {
            vectors,
            prompt_tokens,
        }) => {
            assert_eq!(vectors.len(), 2);
            // [CLS] a cat [SEP] + [CLS] a dog [SEP]
            assert_eq!(*prompt_tokens, 8);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(&out[1], Err(BackendError::InvalidInput(m)) if m.contains("at most 256")));
    assert!(matches!(&out[2], Ok(Response::Embed { vectors, .. }) if vectors.len() == 1));
    // With truncate the same text is cut to 256 tokens and embedded.
    let out = model.infer(vec![Request::Embed {
        texts: vec![long],
        truncate: true,
    }]);
    assert!(
        matches!(
            &out[0],
            Ok(Response::Embed {
                prompt_tokens: 256,
                ..
            })
        ),
        "{out:?}"
    );
}

#[test]
fn missing_or_corrupt_model_files_are_load_errors() {
    let err = BertEmbedder::load(std::path::Path::new("/nonexistent/model"))
        .err()
        .expect("missing dir fails");
    assert!(matches!(err, BackendError::NotFound(_)), "{err:?}");

    let dir = std::env::temp_dir().join(format!("brisk-corrupt-bert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let src = model_dir();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.join(f)).expect("copy");
    }
    std::fs::write(dir.join("model.safetensors"), b"definitely not safetensors").expect("write");
    let err = BertEmbedder::load(&dir)
        .err()
        .expect("corrupt weights fail");
    assert!(matches!(err, BackendError::InvalidModel(_)), "{err:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
