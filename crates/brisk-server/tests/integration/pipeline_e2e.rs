//! The default config's example pipeline with real models: beckett.wav
//! through Whisper tiny.en, then MiniLM embeddings and a SmolLM2 reply on
//! the transcript, the two branches at the same time.

use crate::common;

use axum::http::StatusCode;
use serde_json::{json, Value};

const MODELS: [&str; 3] = [
    "whisper-tiny-en",
    "all-minilm-l6-v2",
    "smollm2-135m-instruct",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_note_transcribes_then_embeds_and_replies_concurrently() {
    let dir = common::models_dir(&[MODELS[0], MODELS[1], MODELS[2], "testdata/beckett.wav"]);
    let wav = std::fs::read(dir.join("testdata/beckett.wav")).expect("beckett.wav");
    let s = common::default_state(dir, |c| {
        // Keep the reply short so the test is quick; the graph is as shipped.
        let reply = c
            .pipelines
            .get_mut("voice-note")
            .expect("example pipeline in the default config")
            .steps
            .iter_mut()
            .find(|st| st.name == "reply")
            .expect("reply step");
        reply
            .options
            .insert("max_tokens".into(), toml::Value::Integer(12));
    });
    assert!(
        s.pipelines.get("voice-note").is_some(),
        "models present: not skipped"
    );
    let (ct, body) = common::multipart(&[], &[("file", &wav)]);
    let (st, _, text) = common::send(&s, "POST", "/v1/pipelines/voice-note", &ct, body).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    let out = &v["outputs"];

    let transcript = out["transcript"]["text"].as_str().expect("transcript");
    let lower = transcript.to_lowercase();
    for word in ["tried", "failed", "matter", "better"] {
        assert!(lower.contains(word), "'{word}' missing from {transcript:?}");
    }
    assert_eq!(out["embedding"]["dimensions"], 384);
    let vector: Vec<f64> = out["embedding"]["embeddings"][0]
        .as_array()
        .expect("vector")
        .iter()
        .map(|x| x.as_f64().expect("float"))
        .collect();
    assert_eq!(vector.len(), 384);
    let reply = out["reply"]["text"].as_str().expect("reply");
    assert!(!reply.trim().is_empty(), "empty reply");
    assert!(
        out["reply"]["usage"]["completion_tokens"]
            .as_u64()
            .expect("n")
            <= 12
    );

    // The step is the same inference as a direct call on the transcript.
    let (st, direct) = common::post_json(
        &s,
        "/v1/embeddings",
        &json!({ "model": MODELS[1], "input": transcript }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{direct}");
    let direct: Value = serde_json::from_str(&direct).expect("json");
    let d: Vec<f64> = direct["data"][0]["embedding"]
        .as_array()
        .expect("embedding")
        .iter()
        .map(|x| x.as_f64().expect("float"))
        .collect();
    let cos: f64 = vector.iter().zip(&d).map(|(a, b)| a * b).sum();
    assert!(
        cos > 0.999,
        "pipeline and direct embeddings differ: cos {cos}"
    );

    let t = &v["timings"]["steps"];
    let span = |step: &str| {
        (
            t[step]["start_ms"].as_f64().expect("start"),
            t[step]["end_ms"].as_f64().expect("end"),
        )
    };
    let (stt, emb, llm) = (span("transcript"), span("embedding"), span("reply"));
    assert!(
        emb.0 >= stt.1 && llm.0 >= stt.1,
        "branches waited for the transcript"
    );
    assert!(
        emb.0 < llm.1 && llm.0 < emb.1,
        "embedding {emb:?} and reply {llm:?} did not overlap"
    );
}

/// Seed 002's tutor as shipped in the default config: Whisper, both
/// translation directions and the piper voice. The back-translation of the
/// student's attempt needs no transcript, so it runs during transcription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutor_translates_both_ways_and_speaks_feedback() {
    let needs = [
        "whisper-tiny-en",
        "firefox-en-pt",
        "firefox-pt-en",
        "piper-joe-medium",
        "testdata/beckett.wav",
    ];
    let dir = common::models_dir(&needs);
    let wav = std::fs::read(dir.join("testdata/beckett.wav")).expect("beckett.wav");
    let s = common::default_state(dir, |_| {});
    s.registry.start();
    assert!(
        s.pipelines.get("tutor").is_some(),
        "models present: not skipped"
    );
    let (ct, body) = common::multipart(&[("attempt", "Tente de novo.")], &[("file", &wav)]);
    let (st, _, text) = common::send(&s, "POST", "/v1/pipelines/tutor", &ct, body).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    let out = &v["outputs"];
    let transcript = out["transcript"]["text"].as_str().expect("transcript");
    assert!(transcript.to_lowercase().contains("tried"), "{transcript}");
    // The model answer is the same translation as a direct call.
    let (st, direct) = common::post_json(
        &s,
        "/translate",
        &json!({"q": transcript, "source": "en", "target": "pt"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{direct}");
    let direct: Value = serde_json::from_str(&direct).expect("json");
    assert_eq!(out["model_answer"]["text"], direct["translatedText"], "{v}");
    let meaning = out["attempt_meaning"]["text"].as_str().expect("meaning");
    assert!(meaning.to_lowercase().contains("again"), "{meaning}");
    for step in ["praise", "feedback"] {
        assert_eq!(out[step]["format"], "wav", "{step}");
        assert!(
            out[step]["duration"].as_f64().expect("duration") > 0.5,
            "{step}"
        );
    }
    // The attempt's translation ran while Whisper transcribed.
    let t = &v["timings"]["steps"];
    let ms = |step: &str, k: &str| t[step][k].as_f64().expect("timing");
    assert!(
        ms("attempt_meaning", "start_ms") < ms("transcript", "end_ms"),
        "{t}"
    );
}
