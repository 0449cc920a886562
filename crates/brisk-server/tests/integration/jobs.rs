//! Async jobs over HTTP with simulated models: many concurrent submissions
//! each run exactly once, cancellation of queued and running jobs, result
//! expiry, failures, uploads, start-up recovery, and the real binary killed
//! with SIGKILL mid-job finishing the job after a restart.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use brisk_engine::Timeline;
use brisk_server::cli::bench::http;
use brisk_server::config::Config;
use brisk_server::{build_state, jobs, AppState};
use serde_json::{json, Value};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("brisk-jobs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmpdir");
    d
}

fn sim_config(db: &Path, extra: &str) -> String {
    format!(
        r#"
[server]
discover = false
[cache]
enabled = false
[jobs]
db_path = "{}"
{extra}
[models.emb]
backend = "sim"
source = "emb"
options = {{ infer_ms = 5, dim = 8 }}
[models.slow]
backend = "sim"
source = "slow"
max_batch_requests = 1
options = {{ infer_ms = 600, dim = 8 }}
[models.stt]
backend = "sim"
source = "stt"
options = {{ task = "transcription", text = "ever tried ever failed" }}
"#,
        db.display()
    )
}

/// State with jobs started (workers run on the test's runtime).
fn state(toml: &str) -> AppState {
    let config = Config::from_toml(toml).expect("config");
    let mut s = build_state(config, Timeline::new(Instant::now())).expect("state");
    s.registry.start();
    jobs::open(&mut s).expect("jobs");
    jobs::spawn_workers(&s, brisk_server::router(s.clone()));
    s
}

async fn submit(s: &AppState, endpoint: &str, body: Value) -> Value {
    let (st, text) = common::post_json(
        s,
        "/v1/jobs",
        &json!({ "endpoint": endpoint, "body": body }),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{text}");
    serde_json::from_str(&text).expect("json")
}

async fn get(s: &AppState, id: &str) -> (StatusCode, Value) {
    let (st, _, text) = common::send(s, "GET", &format!("/v1/jobs/{id}"), "", vec![]).await;
    (st, serde_json::from_str(&text).expect("json"))
}

/// Polls until the job reaches a final status.
async fn wait_done(s: &AppState, id: &str, within: Duration) -> Value {
    let t0 = Instant::now();
    loop {
        let (st, job) = get(s, id).await;
        assert_eq!(st, StatusCode::OK, "{job}");
        if ["succeeded", "failed", "cancelled"].contains(&job["status"].as_str().unwrap_or("")) {
            return job;
        }
        assert!(t0.elapsed() < within, "job still {job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_status(s: &AppState, id: &str, status: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let (_, job) = get(s, id).await;
        if job["status"] == status {
            return job;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "never {status}: {job}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_jobs_all_complete_exactly_once() {
    let dir = tmpdir("hundred");
    let s = state(&sim_config(&dir.join("jobs.sqlite"), "workers = 4"));
    let submits = (0..100).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            submit(
                &s,
                "/v1/embeddings",
                json!({ "model": "emb", "input": format!("text {i}") }),
            )
            .await
        })
    });
    let mut ids = Vec::new();
    for h in submits {
        let job = h.await.expect("submit task");
        assert!(["queued", "running", "succeeded"].contains(&job["status"].as_str().unwrap_or("")));
        ids.push(job["id"].as_str().expect("id").to_string());
    }
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 100, "job ids are unique");
    for id in &ids {
        let job = wait_done(&s, id, Duration::from_secs(30)).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["runs"], 1, "{job}");
        assert_eq!(job["result_status"], 200);
        assert_eq!(
            job["result"]["data"][0]["embedding"]
                .as_array()
                .map(Vec::len),
            Some(8),
            "{job}"
        );
    }
    let store = s.jobs.as_ref().expect("jobs on");
    let runs = store.runs().await.expect("runs");
    assert_eq!(runs.len(), 100);
    assert!(runs.iter().all(|(_, n)| *n == 1), "{runs:?}");
    // Each job hit the model once: the request counter agrees.
    let counts = store.counts().await.expect("counts");
    assert_eq!(counts.get("succeeded"), Some(&100), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_queued_and_running_jobs() {
    let dir = tmpdir("cancel");
    let s = state(&sim_config(&dir.join("jobs.sqlite"), "workers = 1"));
    let a = submit(
        &s,
        "/v1/embeddings",
        json!({ "model": "slow", "input": "a" }),
    )
    .await;
    let b = submit(
        &s,
        "/v1/embeddings",
        json!({ "model": "slow", "input": "b" }),
    )
    .await;
    let (a, b) = (a["id"].as_str().expect("id"), b["id"].as_str().expect("id"));
    wait_status(&s, a, "running").await;
    // b waits behind a (one worker): cancelling it means it never runs.
    let (st, _, text) = common::send(&s, "DELETE", &format!("/v1/jobs/{b}"), "", vec![]).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let (st, _, text) = common::send(&s, "DELETE", &format!("/v1/jobs/{a}"), "", vec![]).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let job: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(job["status"], "cancelled");
    // The worker is free again at once and a later job runs; the cancelled
    // ones stay cancelled (the aborted run does not overwrite them).
    let c = submit(
        &s,
        "/v1/embeddings",
        json!({ "model": "emb", "input": "c" }),
    )
    .await;
    let c = wait_done(&s, c["id"].as_str().expect("id"), Duration::from_secs(5)).await;
    assert_eq!(c["status"], "succeeded", "{c}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, a) = get(&s, a).await;
    let (_, b) = get(&s, b).await;
    assert_eq!(a["status"], "cancelled", "{a}");
    assert_eq!(a["runs"], 1, "{a}");
    assert_eq!(b["status"], "cancelled", "{b}");
    assert_eq!(b["runs"], 0, "{b}");
    assert_eq!(b["error"]["message"], "cancelled by the client");
    // Unknown ids are 404s in the OpenAI error shape.
    let (st, _, text) = common::send(&s, "DELETE", "/v1/jobs/job_nope", "", vec![]).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_expire_after_the_ttl() {
    let dir = tmpdir("ttl");
    let s = state(&sim_config(&dir.join("jobs.sqlite"), "result_ttl_s = 1"));
    let job = submit(
        &s,
        "/v1/embeddings",
        json!({ "model": "emb", "input": "x" }),
    )
    .await;
    let id = job["id"].as_str().expect("id");
    let done = wait_done(&s, id, Duration::from_secs(5)).await;
    assert_eq!(done["status"], "succeeded");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (st, body) = get(&s, id).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
    // The periodic purge (every second here) removed the row itself.
    let runs = s.jobs.as_ref().expect("jobs").runs().await.expect("runs");
    assert!(runs.is_empty(), "{runs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_uploads_and_bad_submissions() {
    let dir = tmpdir("fail");
    let s = state(&sim_config(&dir.join("jobs.sqlite"), ""));
    // A request the endpoint rejects fails the job with the endpoint's error.
    let job = submit(
        &s,
        "/v1/embeddings",
        json!({ "model": "nope", "input": "x" }),
    )
    .await;
    let job = wait_done(&s, job["id"].as_str().expect("id"), Duration::from_secs(5)).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["result_status"], 404);
    assert_eq!(job["error"]["code"], "model_not_found", "{job}");
    assert_eq!(job["runs"], 1, "a client error is not retried: {job}");

    // An audio upload: the endpoint's own multipart form, endpoint in the query.
    let wav = common::tone_wav(1.0);
    let (ct, body) = common::multipart(&[("model", "stt")], &[("file", &wav)]);
    let (st, _, text) = common::send(
        &s,
        "POST",
        "/v1/jobs?endpoint=/v1/audio/transcriptions",
        &ct,
        body.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{text}");
    let job: Value = serde_json::from_str(&text).expect("json");
    let job = wait_done(&s, job["id"].as_str().expect("id"), Duration::from_secs(5)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["text"], "ever tried ever failed");

    // Rejected at submission: no endpoint for an upload, jobs of jobs, bad JSON.
    let (st, _, text) = common::send(&s, "POST", "/v1/jobs", &ct, body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    let (st, text) =
        common::post_json(&s, "/v1/jobs", &json!({"endpoint": "/v1/jobs", "body": {}})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("\"param\":\"endpoint\""), "{text}");
    let (st, text) = common::post_json(&s, "/v1/jobs", &json!({"body": {}})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_retried_with_backoff_then_succeeds() {
    let dir = tmpdir("retry");
    // The model's first load fails (503 while it cools down); the job is
    // requeued with backoff and its second attempt loads and succeeds.
    let toml = sim_config(&dir.join("jobs.sqlite"), "max_attempts = 3").replace(
        "[jobs]",
        "[engine]\nload_retries = 0\nfailure_cooldown_s = 1\n[jobs]",
    )
        + "[models.flaky]\nbackend = \"sim\"\nsource = \"flaky\"\noptions = { fail_loads = 1 }\n";
    let s = state(&toml);
    let t0 = Instant::now();
    let job = submit(
        &s,
        "/v1/embeddings",
        json!({ "model": "flaky", "input": "x" }),
    )
    .await;
    let job = wait_done(&s, job["id"].as_str().expect("id"), Duration::from_secs(10)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    assert_eq!(job["runs"], 2, "{job}");
    // The retry waited for its backoff (1 s after the first attempt).
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_requeues_interrupted_jobs_and_fails_exhausted_ones() {
    let dir = tmpdir("recover");
    let db = dir.join("jobs.sqlite");
    // A first "process" stores two jobs; then the rows are made to look
    // like a crash mid-run: one on its first attempt, one on its last.
    {
        let cfg = brisk_server::config::JobsConfig {
            db_path: db.clone(),
            ..Default::default()
        };
        let store = brisk_server::jobs::Jobs::open(&cfg).expect("open");
        for input in ["fresh", "exhausted"] {
            store
                .submit(
                    "/v1/embeddings".into(),
                    "application/json".into(),
                    json!({"model": "emb", "input": input})
                        .to_string()
                        .into_bytes(),
                )
                .await
                .expect("submit");
        }
    }
    let conn = rusqlite::Connection::open(&db).expect("db");
    conn.execute(
        "UPDATE jobs SET status = 'running', attempts = 1, runs = 1 WHERE body LIKE '%fresh%'",
        [],
    )
    .expect("update");
    conn.execute(
        "UPDATE jobs SET status = 'running', attempts = 3, runs = 3 WHERE body LIKE '%exhausted%'",
        [],
    )
    .expect("update");
    drop(conn);

    let s = state(&sim_config(&db, "max_attempts = 3"));
    let ids: Vec<String> = s
        .jobs
        .as_ref()
        .expect("jobs")
        .runs()
        .await
        .expect("runs")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let fresh = wait_done(&s, &ids[0], Duration::from_secs(5)).await;
    assert_eq!(fresh["status"], "succeeded", "{fresh}");
    assert_eq!(fresh["attempts"], 2, "{fresh}");
    let exhausted = wait_done(&s, &ids[1], Duration::from_secs(5)).await;
    assert_eq!(exhausted["status"], "failed", "{exhausted}");
    assert_eq!(exhausted["runs"], 3, "not run again: {exhausted}");
    assert!(
        exhausted["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("restart"),
        "{exhausted}"
    );
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_binary(config: &Path) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_brisk"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("BRISK_PORT", port.to_string())
        .env_remove("BRISK_CONFIG")
        .env_remove("BRISK_MODELS_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn brisk");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let t0 = Instant::now();
    while !matches!(http(addr, "GET", "/v2/health/live", None), Ok((200, _))) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "brisk did not come up"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Server { child, addr }
}

fn job_status(addr: SocketAddr, id: &str) -> Value {
    let (st, body) = http(addr, "GET", &format!("/v1/jobs/{id}"), None).expect("get job");
    assert_eq!(st, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

#[test]
fn a_job_survives_kill_9_and_completes_after_restart() {
    let dir = tmpdir("kill9");
    let config = dir.join("brisk.toml");
    std::fs::write(
        &config,
        sim_config(&dir.join("jobs.sqlite"), "workers = 1")
            .replace("infer_ms = 600", "infer_ms = 1500"),
    )
    .expect("config");

    let mut first = start_binary(&config);
    let body = json!({"endpoint": "/v1/embeddings", "body": {"model": "slow", "input": "survive"}});
    let (st, text) = http(first.addr, "POST", "/v1/jobs", Some(&body.to_string())).expect("submit");
    assert_eq!(st, 202, "{text}");
    let id = serde_json::from_str::<Value>(&text).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    // A second job still queued behind it must not be lost either.
    let body2 = json!({"endpoint": "/v1/embeddings", "body": {"model": "emb", "input": "queued"}});
    let (st, text) =
        http(first.addr, "POST", "/v1/jobs", Some(&body2.to_string())).expect("submit");
    assert_eq!(st, 202, "{text}");
    let id2 = serde_json::from_str::<Value>(&text).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let t0 = Instant::now();
    while job_status(first.addr, &id)["status"] != "running" {
        assert!(t0.elapsed() < Duration::from_secs(10), "job never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SIGKILL: no shutdown code runs.
    first.child.kill().expect("kill -9");
    first.child.wait().expect("reap");
    drop(first);

    let second = start_binary(&config);
    let t0 = Instant::now();
    let job = loop {
        let job = job_status(second.addr, &id);
        if job["status"] == "succeeded" || job["status"] == "failed" {
            break job;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "job never finished: {job}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        job["attempts"], 2,
        "interrupted once, then completed: {job}"
    );
    assert_eq!(
        job["result"]["data"][0]["embedding"]
            .as_array()
            .map(Vec::len),
        Some(8)
    );
    let t0 = Instant::now();
    while job_status(second.addr, &id2)["status"] != "succeeded" {
        assert!(t0.elapsed() < Duration::from_secs(10), "queued job lost");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(job_status(second.addr, &id2)["runs"], 1);
}
