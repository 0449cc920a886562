//! `POST /v1/audio/analysis` over HTTP: features, the result cache, the
//! feature list, the upload limit (413), bad input (400 in OpenAI's shape),
//! short audio (`tempo: null`) and running as a job.

use crate::common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use brisk_engine::Timeline;
use brisk_server::config::Config;
use brisk_server::{build_state, jobs, AppState};
use serde_json::Value;

fn song() -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../brisk-audio/tests/fixtures/analysis/song.flac");
    std::fs::read(p).expect("song.flac")
}

fn state(extra: &str) -> AppState {
    // One jobs database per test server: the tests of this binary run
    // concurrently in one process, and a shared file would let one test's
    // workers claim (and run through their own router) another's jobs.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let db = std::env::temp_dir().join(format!(
        "brisk-analysis-jobs-{}-{n}.sqlite",
        std::process::id()
    ));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let toml = format!(
        "[server]\ndiscover = false\n{extra}\n[jobs]\ndb_path = \"{}\"\n",
        db.display()
    );
    let config = Config::from_toml(&toml).expect("config");
    let mut s = build_state(config, Timeline::new(Instant::now())).expect("state");
    s.registry.start();
    jobs::open(&mut s).expect("jobs");
    jobs::spawn_workers(&s, brisk_server::router(s.clone()));
    s
}

async fn analyse(
    s: &AppState,
    fields: &[(&str, &str)],
    file: Option<&[u8]>,
) -> (StatusCode, String, Value) {
    let files: Vec<(&str, &[u8])> = file.map(|f| ("file", f)).into_iter().collect();
    let (ct, body) = common::multipart(fields, &files);
    let (st, headers, text) = common::send(s, "POST", "/v1/audio/analysis", &ct, body).await;
    let cache = headers
        .get("x-brisk-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (
        st,
        cache,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn assert_openai_error(v: &Value, param: &str) {
    assert!(v["error"]["message"].is_string(), "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert_eq!(v["error"]["param"], param, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn song_is_analysed_and_cached_by_content_and_features() {
    let s = state("");
    let song = song();
    let (st, cache, a) = analyse(&s, &[], Some(&song)).await;
    assert_eq!(st, StatusCode::OK, "{a}");
    assert_eq!(cache, "miss");
    assert_eq!(a["sample_rate"], 44_100);
    assert_eq!(a["channels"], 2);
    assert!(
        (a["duration"].as_f64().unwrap_or(0.0) - 12.0).abs() < 0.01,
        "{a}"
    );
    let bpm = a["tempo"]["bpm"].as_f64().unwrap_or(0.0);
    assert!((bpm - 128.0).abs() < 128.0 * 0.02, "{bpm}");
    assert_eq!(a["key"]["key"], "A");
    assert_eq!(a["key"]["scale"], "minor");
    assert_eq!(a["mfcc"]["mean"].as_array().map(Vec::len), Some(13));
    assert_eq!(a["chroma"].as_array().map(Vec::len), Some(12));
    for f in ["rms", "zero_crossing_rate", "danceability"] {
        assert!(a[f].is_number(), "{f}: {a}");
    }
    assert!(a["loudness"]["integrated_lufs"].is_number());
    assert!(a["spectral"]["centroid_hz"].is_number());

    let (st, cache, again) = analyse(&s, &[], Some(&song)).await;
    assert_eq!((st, cache.as_str()), (StatusCode::OK, "hit"));
    assert_eq!(again, a);

    // Another feature list is another result.
    let (st, cache, t) = analyse(&s, &[("features", "tempo,loudness")], Some(&song)).await;
    assert_eq!((st, cache.as_str()), (StatusCode::OK, "miss"), "{t}");
    assert!(t["tempo"]["bpm"].is_number() && t["loudness"].is_object());
    assert!(t.get("mfcc").is_none() && t.get("key").is_none(), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_400_in_openai_shape() {
    let s = state("");
    let (st, _, v) = analyse(&s, &[], Some(b"definitely not audio".as_slice())).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_openai_error(&v, "file");
    let (st, _, v) = analyse(&s, &[("features", "tempo")], None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_openai_error(&v, "file");
    let wav = common::tone_wav(2.0);
    let (st, _, v) = analyse(&s, &[("features", "tempo,genre")], Some(&wav)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_openai_error(&v, "features");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("genre"));
    let (st, _, v) = analyse(&s, &[("language", "en")], Some(&wav)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, _, v) = analyse(&s, &[], Some(b"".as_slice())).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_audio_has_null_tempo_and_the_upload_limit_is_a_413() {
    let s = state("max_analysis_bytes = 40000");
    let (st, _, a) = analyse(&s, &[], Some(&common::tone_wav(0.5))).await;
    assert_eq!(st, StatusCode::OK, "{a}");
    assert!(a["tempo"].is_null() && a.get("tempo").is_some(), "{a}");
    assert_eq!(a["key"]["key"], "A");
    let (st, _, v) = analyse(&s, &[], Some(&common::tone_wav(2.0))).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysis_runs_as_a_job() {
    let s = state("");
    let song = song();
    let (ct, body) = common::multipart(&[("features", "tempo,key")], &[("file", &song)]);
    let (st, _, text) = common::send(
        &s,
        "POST",
        "/v1/jobs?endpoint=/v1/audio/analysis",
        &ct,
        body,
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{text}");
    let job: Value = serde_json::from_str(&text).expect("json");
    let id = job["id"].as_str().expect("id").to_string();
    let t0 = Instant::now();
    let mut seen = Vec::new();
    let done = loop {
        let (_, _, text) = common::send(&s, "GET", &format!("/v1/jobs/{id}"), "", vec![]).await;
        let j: Value = serde_json::from_str(&text).expect("json");
        seen.push(j["progress"].as_f64().unwrap_or(-1.0));
        if j["status"] == "succeeded" || j["status"] == "failed" {
            break j;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{j}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["progress"], 1.0);
    assert!(seen.iter().all(|p| (0.0..=1.0).contains(p)), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert_eq!(done["result"]["key"]["key"], "A", "{done}");
    assert!(done["result"]["tempo"]["bpm"].is_number());
}

/// A long upload run as a job reports fractions while it runs, not just 0
/// then 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_analysis_job_reports_fractional_progress() {
    let s = state("");
    // 5 minutes of 16 kHz mono: 9.6 MB, analysed in a second or more.
    let wav = common::tone_wav(300.0);
    let (ct, body) = common::multipart(&[], &[("file", &wav)]);
    let (st, _, text) = common::send(
        &s,
        "POST",
        "/v1/jobs?endpoint=/v1/audio/analysis",
        &ct,
        body,
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{text}");
    let id = serde_json::from_str::<Value>(&text).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let t0 = Instant::now();
    let mut seen = Vec::new();
    let done = loop {
        let (_, _, text) = common::send(&s, "GET", &format!("/v1/jobs/{id}"), "", vec![]).await;
        let j: Value = serde_json::from_str(&text).expect("json");
        if j["status"] == "succeeded" || j["status"] == "failed" {
            break j;
        }
        seen.push(j["progress"].as_f64().unwrap_or(-1.0));
        assert!(t0.elapsed() < Duration::from_secs(180), "{j}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!((done["result"]["duration"].as_f64().unwrap_or(0.0) - 300.0).abs() < 0.01);
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    let between = seen.iter().filter(|p| **p > 0.0 && **p < 1.0).count();
    assert!(between >= 2, "no fractional progress seen: {seen:?}");
}

/// `task = "audio_analysis"` as a pipeline step: a later step reads its
/// output, and the step shares cache entries with the endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_step_analyses_audio_and_shares_the_cache() {
    let s = state(
        r#"
[models.gen]
backend = "sim"
source = "gen"
options = { task = "generation" }
[pipelines.music]
[[pipelines.music.steps]]
name = "features"
task = "audio_analysis"
input = "request.file"
options = { features = ["key", "tempo"] }
[[pipelines.music.steps]]
name = "blurb"
model = "gen"
prompt = "{{ features.key.key }} {{ features.key.scale }}"
options = { max_tokens = 8 }
"#,
    );
    let song = song();
    let (ct, body) = common::multipart(&[], &[("file", &song)]);
    let (st, _, text) = common::send(&s, "POST", "/v1/pipelines/music", &ct, body).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    let f = &v["outputs"]["features"];
    assert_eq!(f["key"]["key"], "A", "{v}");
    assert_eq!(f["key"]["scale"], "minor", "{v}");
    assert!(f["tempo"]["bpm"].is_number(), "{v}");
    assert!(f.get("mfcc").is_none(), "{v}");
    assert_eq!(f["cache"], "miss", "{v}");
    assert!(
        v["outputs"]["blurb"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("A minor")),
        "{v}"
    );
    // The endpoint with the same file and features (another order) hits
    // the entry the step stored.
    let (st, cache, a) = analyse(&s, &[("features", "tempo,key")], Some(&song)).await;
    assert_eq!((st, cache.as_str()), (StatusCode::OK, "hit"), "{a}");
    assert_eq!(a["key"], f["key"]);
    // Bad audio is the step's 400.
    let (ct, body) = common::multipart(&[], &[("file", b"not audio".as_slice())]);
    let (st, _, text) = common::send(&s, "POST", "/v1/pipelines/music", &ct, body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("features"), "{text}");
}

#[test]
fn an_audio_analysis_step_needs_request_audio_and_no_model() {
    for (step, expected) in [
        (
            "task = \"audio_analysis\"\nmodel = \"gen\"\ninput = \"request.file\"",
            "uses no model",
        ),
        (
            "task = \"audio_analysis\"\nprompt = \"{{ request.x }}\"",
            "reads audio from the request",
        ),
        (
            "task = \"audio_analysis\"\ninput = \"request.file\"\noptions = { feature = [\"key\"] }",
            "feature",
        ),
    ] {
        let toml = format!(
            "[server]\ndiscover = false\n[jobs]\nenabled = false\n\
             [models.gen]\nbackend = \"sim\"\nsource = \"gen\"\noptions = {{ task = \"generation\" }}\n\
             [pipelines.p]\n[[pipelines.p.steps]]\nname = \"a\"\n{step}\n"
        );
        let err = match build_state(
            Config::from_toml(&toml).expect("config"),
            Timeline::new(Instant::now()),
        ) {
            Ok(_) => panic!("{step}: accepted"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(expected), "{step}: {err}");
    }
}
