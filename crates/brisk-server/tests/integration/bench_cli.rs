//! `brisk bench coldstart --policies`: the real binary benchmarks itself on
//! a sim model whose load takes a known time, so each policy's trade-off
//! (ready late vs first response late) must show in the numbers.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// Long enough that a loaded CI machine's exec -> ready time for a debug
/// binary (218 ms seen) stays far below it: the tests compare policies, not
/// the machine's speed.
const LOAD_MS: f64 = 1500.0;

/// A temp dir removed when the test ends, pass or fail.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config with one sim model, `slow`, whose load takes `LOAD_MS`.
fn sim_config(name: &str) -> (TempDir, PathBuf) {
    let dir = std::env::temp_dir().join(format!("brisk-bench-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmpdir");
    let path = dir.join("sim.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nmodels_dir = {dir:?}\ndiscover = false\n\
             [models.slow]\nbackend = \"sim\"\nsource = \"slow\"\noptions = {{ load_ms = {LOAD_MS} }}\n"
        ),
    )
    .expect("write config");
    (TempDir(dir), path)
}

fn bench(config: &PathBuf, extra: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_brisk"))
        .args(["bench", "coldstart", "--runs", "1", "--model", "slow"])
        .arg("--config")
        .arg(config)
        .args(extra)
        .env_remove("BRISK_CONFIG")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run brisk bench");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn median(v: &Value, policy: &str, field: &str) -> f64 {
    let row = v["policies"]
        .as_array()
        .expect("policies array")
        .iter()
        .find(|r| r["policy"] == policy)
        .unwrap_or_else(|| panic!("no {policy} row in {v}"));
    match field {
        "first" => row["summary"]["first_response_ms_median"][0][1].as_f64(),
        f => row["summary"][f].as_f64(),
    }
    .unwrap_or_else(|| panic!("{policy}.{field} missing in {row}"))
}

#[test]
fn policy_comparison_shows_each_policys_trade_off_in_table_and_json() {
    let (_dir, config) = sim_config("cmp");
    let (ok, stdout, stderr) = bench(&config, &["--policies", "lazy,preload,background"]);
    assert!(ok, "bench failed: {stderr}\n{stdout}");
    for p in ["lazy", "preload", "background"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(p)),
            "no table row for {p}:\n{stdout}"
        );
    }
    let json: Value = serde_json::from_str(stdout.lines().last().expect("json line"))
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}):\n{stdout}"));
    // preload: not ready until the model is loaded.
    assert!(median(&json, "preload", "ready_ms_median") >= LOAD_MS);
    // lazy and background: ready at once, long before the load finishes.
    assert!(median(&json, "lazy", "ready_ms_median") < LOAD_MS);
    assert!(median(&json, "background", "ready_ms_median") < LOAD_MS);
    // Every policy pays the load before its first response.
    for p in ["lazy", "preload", "background"] {
        assert!(median(&json, p, "first") >= LOAD_MS, "{p}: {json}");
        assert!(median(&json, p, "live_ms_median") < LOAD_MS, "{p}: {json}");
    }
}

#[test]
fn a_missed_target_exits_non_zero_naming_the_policy() {
    let (_dir, config) = sim_config("target");
    let (ok, stdout, stderr) = bench(
        &config,
        &["--policies", "lazy,preload", "--ready-target-ms", "750"],
    );
    // The target is half the load: preload cannot meet it, and lazy, which
    // does not wait for the load, meets it with a wide margin.
    assert!(!ok, "preload cannot be ready in 750 ms:\n{stdout}");
    assert!(stderr.contains("preload: exec -> ready"), "{stderr}");
    assert!(!stderr.contains("lazy:"), "lazy met the target: {stderr}");
    // The table and JSON are still printed before the failure.
    assert!(stdout.contains("\"policies\""), "{stdout}");
}

#[test]
fn an_unknown_policy_is_rejected_before_anything_starts() {
    let (_dir, config) = sim_config("unknown");
    let (ok, _, stderr) = bench(&config, &["--policies", "eager"]);
    assert!(!ok);
    assert!(stderr.contains("unknown policy \"eager\""), "{stderr}");
}

/// Kills the spawned server when the test ends, pass or fail.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn bench_load_reports_throughput_percentiles_and_status_counts() {
    let (_dir, config) = sim_config("load");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_brisk"))
            .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--config")
            .arg(&config)
            .env_remove("BRISK_CONFIG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn brisk serve"),
    );
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let t0 = std::time::Instant::now();
    while !matches!(
        brisk_server::cli::bench::http(addr, "GET", "/v2/health/live", None),
        Ok((200, _))
    ) {
        assert!(t0.elapsed().as_secs() < 10, "brisk did not come up");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_brisk"))
        .args([
            "bench",
            "load",
            "--addr",
            &addr.to_string(),
            "--model",
            "slow",
        ])
        .args(["--concurrency", "4", "--requests", "60"])
        .args(["--pid", &server.0.id().to_string()])
        .output()
        .expect("run brisk bench load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Value = serde_json::from_str(&stdout).expect("JSON summary");
    assert_eq!(s["requests"], 60, "{s}");
    assert_eq!(s["ok"], 60, "{s}");
    assert_eq!(s["errors"], 0, "{s}");
    assert_eq!(s["status_counts"], serde_json::json!([[200, 60]]), "{s}");
    let p = |k: &str| {
        s[k].as_f64()
            .unwrap_or_else(|| panic!("{k} missing in {s}"))
    };
    // The first request waits for the lazy sim load, so the tail is long.
    assert!(p("max_ms") >= LOAD_MS, "{s}");
    assert!(
        p("p50_ms") <= p("p90_ms") && p("p90_ms") <= p("p99_ms"),
        "{s}"
    );
    assert!(p("p99_ms") <= p("max_ms"), "{s}");
    assert!(p("requests_per_s") > 0.0, "{s}");
    assert!(
        s["server_peak_rss_bytes"].as_u64().is_some_and(|b| b > 0),
        "{s}"
    );
}
