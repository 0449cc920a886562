//! The real `brisk` binary on 127.0.0.1: start-up with the embedded default,
//! env overrides, and graceful shutdown on SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use brisk_server::cli::bench::http;
use serde_json::Value;

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("brisk-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmpdir");
    d
}

fn start(config: Option<&str>, models_dir: &std::path::Path, name: &str) -> Server {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_brisk"));
    cmd.arg("serve")
        .env("BRISK_PORT", port.to_string())
        .env("BRISK_MODELS_DIR", models_dir)
        .env_remove("BRISK_CONFIG")
        // Each server its own jobs database (state dir), as separate hosts.
        .env("BRISK_STATE_DIR", tmpdir(&format!("{name}-state")))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(toml) = config {
        let path = tmpdir(name).join("brisk.toml");
        std::fs::write(&path, toml).expect("write config");
        cmd.arg("--config").arg(path);
    }
    let child = cmd.spawn().expect("spawn brisk");
    let addr = ([127, 0, 0, 1], port).into();
    let t0 = Instant::now();
    while !matches!(http(addr, "GET", "/v2/health/live", None), Ok((200, _))) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "brisk did not come up"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    Server { child, addr }
}

#[test]
fn starts_on_the_embedded_default_with_no_models() {
    let dir = tmpdir("empty").join("missing-models");
    let s = start(None, &dir, "empty");
    let (st, body) = http(s.addr, "GET", "/v2/health/ready", None).expect("ready");
    assert_eq!(st, 200, "{body}");
    let (st, body) = http(s.addr, "GET", "/v1/models", None).expect("models");
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["data"].as_array().map(Vec::len), Some(0));
}

#[cfg(unix)]
#[test]
fn sigterm_drains_in_flight_requests_then_exits_cleanly() {
    let dir = tmpdir("drain");
    let config = r#"
[server]
discover = false
[models.slow]
backend = "sim"
source = "slow"
policy = "preload"
options = { infer_ms = 600 }
"#;
    let mut s = start(Some(config), &dir, "drain");
    let addr = s.addr;
    let inflight = std::thread::spawn(move || {
        http(
            addr,
            "POST",
            "/v1/embeddings",
            Some(r#"{"model":"slow","input":"hello"}"#),
        )
    });
    std::thread::sleep(Duration::from_millis(200));
    let pid = s.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let (st, body) = inflight.join().expect("thread").expect("response");
    assert_eq!(st, 200, "in-flight request finished: {body}");
    let t0 = Instant::now();
    loop {
        if let Some(code) = s.child.try_wait().expect("wait") {
            assert!(code.success(), "exit status {code:?}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // No longer accepting.
    assert!(http(addr, "GET", "/v2/health/live", None).is_err());
}

#[test]
fn state_goes_to_the_state_dir_never_the_working_directory() {
    let cwd = tmpdir("cwd");
    let state = tmpdir("statedir").join("nested");
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_brisk"))
        .args(["serve", "--port", &port.to_string(), "--state-dir"])
        .arg(&state)
        .env("BRISK_MODELS_DIR", cwd.join("no-models"))
        .env_remove("BRISK_CONFIG")
        .env_remove("BRISK_STATE_DIR")
        .current_dir(&cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn brisk");
    let s = Server {
        child,
        addr: ([127, 0, 0, 1], port).into(),
    };
    let t0 = Instant::now();
    while !state.join("jobs.sqlite").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no jobs db in {state:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (st, _) = http(s.addr, "GET", "/v2/health/live", None).expect("live");
    assert_eq!(st, 200);
    let left: Vec<_> = std::fs::read_dir(&cwd)
        .expect("cwd")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "brisk wrote into its working directory: {left:?}"
    );
}

#[test]
fn version_and_models_answer_without_a_server() {
    let out = Command::new(env!("CARGO_BIN_EXE_brisk"))
        .arg("--version")
        .output()
        .expect("brisk --version");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("brisk ") && text.contains('.'), "{text}");

    // A models dir with one valid folder (a copy of a Silero VAD file, if
    // fetched, else a stand-in) and a configured model whose folder is gone.
    let dir = tmpdir("models-cli");
    std::fs::create_dir_all(dir.join("vad")).expect("mkdir");
    std::fs::write(dir.join("vad/silero_vad.onnx"), vec![0u8; 3000]).expect("write");
    let config = dir.join("brisk.toml");
    std::fs::write(
        &config,
        "[models.gone]\nbackend = \"onnx-silero-vad\"\nsource = \"gone\"\n",
    )
    .expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_brisk"))
        .args(["models", "--json", "--config"])
        .arg(&config)
        .arg("--models-dir")
        .arg(&dir)
        .output()
        .expect("brisk models");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = rows.as_array().expect("array");
    let by = |n: &str| rows.iter().find(|r| r["name"] == n).cloned();
    let vad = by("vad").expect("the discovered folder is listed");
    assert_eq!(vad["task"], "vad", "{vad}");
    assert_eq!(vad["bytes"], 3000, "{vad}");
    let gone = by("gone").expect("the configured model is listed");
    assert!(
        gone["problems"][0]
            .as_str()
            .is_some_and(|p| p.contains("does not exist")),
        "{gone}"
    );
}
