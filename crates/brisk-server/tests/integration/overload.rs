//! 1000 concurrent clients (threads of this test process) against the real
//! `brisk` binary serving a simulated model with a small queue: every
//! answer is 200 or 429 (with Retry-After), no connection fails, and the
//! server's memory stays bounded. Bounded in requests and in time.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use brisk_server::cli::bench::{http, load, LoadOptions};

#[test]
fn a_thousand_clients_get_200_or_429_and_memory_stays_bounded() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let dir = std::env::temp_dir().join(format!("brisk-overload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmpdir");
    let config = dir.join("brisk.toml");
    // 10 ms per batch of up to 8, at most 32 admitted: the other ~970
    // clients must be turned away at once, not queued.
    std::fs::write(
        &config,
        "[server]\ndiscover = false\n\
         [models.m]\nbackend = \"sim\"\nsource = \"m\"\npolicy = \"preload\"\n\
         max_queue = 32\nmax_batch_requests = 8\ncache = false\n\
         options = { infer_ms = 10, dim = 16 }\n",
    )
    .expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_brisk"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("BRISK_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn brisk");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let t0 = Instant::now();
    while !matches!(http(addr, "GET", "/v2/health/ready", None), Ok((200, _))) {
        assert!(t0.elapsed() < Duration::from_secs(10), "brisk not ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    let bodies: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"model": "m", "input": "request {i}"}}"#))
        .collect();
    let summary = load(&LoadOptions {
        addr,
        path: "/v1/embeddings".into(),
        bodies,
        concurrency: 1000,
        requests: 4000,
        max_duration: Duration::from_secs(60),
        pid: Some(child.id()),
    })
    .expect("load runs");
    // The server is still healthy afterwards.
    let after = http(addr, "GET", "/v2/health/ready", None).map(|r| r.0);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{summary:?}");
    assert_eq!(summary.errors, 0, "no connection failed: {summary:?}");
    for (status, n) in &summary.status_counts {
        assert!(
            *status == 200 || *status == 429,
            "{n} answers with status {status}: {summary:?}"
        );
    }
    let count = |s: u16| {
        summary
            .status_counts
            .iter()
            .find(|(c, _)| *c == s)
            .map_or(0, |(_, n)| *n)
    };
    assert!(count(200) > 0, "some requests were served: {summary:?}");
    assert!(
        count(429) > 0,
        "overload was refused, not queued: {summary:?}"
    );
    let rss = summary.server_peak_rss_bytes.expect("peak RSS read");
    assert!(rss < 256 << 20, "server peak RSS {} MiB", rss >> 20);
    assert_eq!(after.ok(), Some(200));
}
