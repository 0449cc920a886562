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
