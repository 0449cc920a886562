//! A transformers-format Whisper (tiny.en written back from the fetched
//! CTranslate2 folder, as no transformers Whisper can be fetched here) with
//! the PEFT LoRA fixture beside it, discovered and served over HTTP by
//! ct2-whisper (converted and merged at load), next to a model whose
//! adapter is broken: that one fails its own load, naming the module, and
//! everything else still starts and serves.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::common;

use axum::http::StatusCode;
use brisk_engine::Timeline;
use brisk_server::config::Config;
use brisk_server::{build_state, AppState};
use serde_json::Value;

const BECKETT: &str = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.";

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel)
}

fn copy_adapter(to: &Path, r: Option<u64>) {
    std::fs::create_dir_all(to).expect("adapter dir");
    let mut cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("whisper_lora/adapter_config.json")).expect("cfg"),
    )
    .expect("json");
    if let Some(r) = r {
        // The factors are rank 2: another r makes every shape wrong.
        cfg["r"] = r.into();
    }
    std::fs::write(to.join("adapter_config.json"), cfg.to_string()).expect("write cfg");
    std::fs::copy(
        fixture("whisper_lora/adapter_model.safetensors"),
        to.join("adapter_model.safetensors"),
    )
    .expect("copy adapter");
}

/// models/whisper-hf (transformers tiny.en) with adapter_lora/ beside it,
/// and broken-lora/ (rank 3 declared, rank 2 stored) outside it.
fn models() -> PathBuf {
    let fetched = common::models_dir(&["whisper-tiny-en", "testdata/beckett.wav"]);
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("whisper-hf-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let model = root.join("whisper-hf");
    std::fs::create_dir_all(&model).expect("model dir");
    brisk_ct2::hf::export_transformers(&fetched.join("whisper-tiny-en"), &model)
        .expect("export tiny.en");
    copy_adapter(&model.join("adapter_lora"), None);
    copy_adapter(&root.join("broken-lora"), Some(3));
    std::fs::create_dir_all(root.join("testdata")).expect("testdata");
    std::fs::copy(
        fetched.join("testdata/beckett.wav"),
        root.join("testdata/beckett.wav"),
    )
    .expect("beckett");
    root
}

fn state(models: &Path) -> AppState {
    let toml = format!(
        r#"
        [server]
        models_dir = "{}"
        [defaults]
        policy = "preload"
        [models.broken]
        source = "whisper-hf"
        adapter = "broken-lora"
        "#,
        models.display()
    );
    let config = Config::from_toml(&toml).expect("config");
    let s = build_state(config, Timeline::new(Instant::now())).expect("state");
    s.registry.start();
    s
}

async fn get(s: &AppState, uri: &str) -> (StatusCode, Value) {
    let (st, _, text) = common::send(s, "GET", uri, "application/json", Vec::new()).await;
    (st, serde_json::from_str(&text).expect("json"))
}

async fn transcribe(s: &AppState, model: &str, wav: &[u8]) -> (StatusCode, String) {
    let (ct, body) = common::multipart(&[("model", model)], &[("file", wav)]);
    let (st, _, text) = common::send(s, "POST", "/v1/audio/transcriptions", &ct, body).await;
    (st, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transformers_whisper_with_lora_is_discovered_preloaded_and_transcribes() {
    let root = models();
    let s = state(&root);
    s.registry.wait_ready().await;

    // Ready although one preload failed: it falls back to lazy loading.
    let (st, v) = get(&s, "/v2/health/ready").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, v) = get(&s, "/v1/models").await;
    let models = v["data"].as_array().expect("models");
    let by_id = |id: &str| {
        models
            .iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed: {v}"))
    };
    for id in ["whisper-hf", "whisper-hf-lora"] {
        assert_eq!(by_id(id)["brisk"]["state"], "ready", "{v}");
        assert_eq!(by_id(id)["brisk"]["backend"], "ct2-whisper", "{v}");
    }
    let broken = &by_id("broken")["brisk"];
    assert_eq!(broken["state"], "failed", "{v}");
    let reason = broken["last_error"].as_str().expect("reason");
    assert!(
        reason.contains("lora_A has shape") && reason.contains(".layers."),
        "{reason}"
    );

    let wav = std::fs::read(root.join("testdata/beckett.wav")).expect("beckett.wav");
    let mut texts = Vec::new();
    for model in ["whisper-hf-lora", "whisper-hf"] {
        let (st, body) = transcribe(&s, model, &wav).await;
        assert_eq!(st, StatusCode::OK, "{model}: {body}");
        let v: Value = serde_json::from_str(&body).expect("json");
        let text = v["text"].as_str().expect("text").to_string();
        assert!(common::wer(BECKETT, &text) <= 0.2, "{model}: {text}");
        texts.push(text);
    }
    // The broken model answers with its load error, naming the module.
    let (st, body) = transcribe(&s, "broken", &wav).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("lora_A has shape"), "{body}");

    // Converted once per adapter, cached beside the model.
    let cached = std::fs::read_dir(root.join("whisper-hf/.brisk-ct2"))
        .expect("cache dir")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("model.bin").is_file())
        .count();
    assert_eq!(cached, 2, "one conversion per model with its adapter");
    s.registry.unload_all();
    std::fs::remove_dir_all(&root).ok();
}
