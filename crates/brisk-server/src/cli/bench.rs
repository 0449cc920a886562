//! `brisk bench coldstart`: spawn the server, measure exec → live, exec →
//! ready and exec → first response of each model, over several runs.
//!
//! Polling uses a minimal blocking HTTP/1.1 client over loopback so the
//! measurement adds no runtime start-up of its own to the child's numbers.
//!
//! With `--policies`, the same config is run once per load policy (every
//! model's `policy` rewritten) and the medians are compared side by side:
//! the trade-off between exec → ready and exec → first response is what
//! an operator picks a policy on.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::json;

#[derive(Debug, Clone)]
pub struct ColdstartOptions {
    pub config: Option<PathBuf>,
    pub models_dir: Option<PathBuf>,
    pub runs: usize,
    /// Models to send a first request to (embedding models get one input).
    pub models: Vec<String>,
    /// Audio for transcription models' first request.
    pub audio: Option<Vec<u8>>,
    /// Fail when the median exec → live exceeds this.
    pub live_target_ms: Option<f64>,
    /// Fail when the median exec → ready exceeds this.
    pub ready_target_ms: Option<f64>,
    /// Fail when any model's median exec → first response exceeds this.
    pub first_response_target_ms: Option<f64>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub live_ms: f64,
    pub ready_ms: f64,
    pub first_response_ms: Vec<(String, f64)>,
    /// Peak RSS of the server once the first responses are in.
    pub peak_rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub runs: Vec<Run>,
    pub live_ms_median: f64,
    pub ready_ms_median: f64,
    pub first_response_ms_median: Vec<(String, f64)>,
}

/// One HTTP request; returns the status code and body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    http_raw(
        addr,
        method,
        path,
        "application/json",
        body.unwrap_or("").as_bytes(),
    )
}

/// One HTTP/1.1 request with any body; returns the status code and body.
pub fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    // Generous: under a connection burst a SYN can wait in the backlog.
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(addr: SocketAddr, path: &str, t0: Instant, timeout: Duration) -> anyhow::Result<f64> {
    loop {
        if let Ok((200, _)) = http(addr, "GET", path, None) {
            return Ok(t0.elapsed().as_secs_f64() * 1000.0);
        }
        if t0.elapsed() > timeout {
            bail!("{path} not 200 within {timeout:?}");
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn one_run(opts: &ColdstartOptions) -> anyhow::Result<Run> {
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("serve")
        .arg("--port")
        .arg(port.to_string())
        .arg("--host")
        .arg("127.0.0.1");
    if let Some(c) = &opts.config {
        cmd.arg("--config").arg(c);
    }
    if let Some(d) = &opts.models_dir {
        cmd.env(crate::env::MODELS_DIR, d);
    }
    cmd.env_remove(crate::env::CONFIG)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let t0 = Instant::now();
    let child = KillOnDrop(cmd.spawn().context("spawning brisk serve")?);
    let live_ms = wait_for(addr, "/v2/health/live", t0, opts.timeout)?;
    let ready_ms = wait_for(addr, "/v2/health/ready", t0, opts.timeout)?;
    let mut first_response_ms = Vec::new();
    for m in &opts.models {
        first_request(addr, m, opts.audio.as_deref())?;
        first_response_ms.push((m.clone(), t0.elapsed().as_secs_f64() * 1000.0));
    }
    Ok(Run {
        live_ms,
        ready_ms,
        first_response_ms,
        peak_rss_bytes: peak_rss_bytes(child.0.id()),
    })
}

/// Sends the smallest real request for the model's task: one embedding,
/// one generated token, or a transcription of `audio`.
fn first_request(addr: SocketAddr, model: &str, audio: Option<&[u8]>) -> anyhow::Result<()> {
    let (status, text) = http(addr, "GET", &format!("/v1/models/{model}"), None)?;
    if status != 200 {
        bail!("model {model}: {status} {text}");
    }
    let info: serde_json::Value = serde_json::from_str(&text)?;
    let (status, text) = match info["brisk"]["task"].as_str() {
        Some("embeddings") => {
            let body = json!({ "model": model, "input": "cold start probe" }).to_string();
            http(addr, "POST", "/v1/embeddings", Some(&body))?
        }
        Some("generation") => {
            let body = json!({
                "model": model, "max_tokens": 1, "temperature": 0,
                "messages": [{ "role": "user", "content": "Say hello." }],
            })
            .to_string();
            http(addr, "POST", "/v1/chat/completions", Some(&body))?
        }
        Some("transcription") => {
            let audio =
                audio.ok_or_else(|| anyhow::anyhow!("--audio FILE is needed for {model}"))?;
            let boundary = "brisk-bench-boundary";
            let mut body = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n"
            )
            .into_bytes();
            body.extend_from_slice(audio);
            body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            let ct = format!("multipart/form-data; boundary={boundary}");
            http_raw(addr, "POST", "/v1/audio/transcriptions", &ct, &body)?
        }
        other => bail!("model {model} has an unknown task {other:?}"),
    };
    if status != 200 {
        bail!("first request to {model} answered {status}: {text}");
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

pub fn coldstart(opts: &ColdstartOptions) -> anyhow::Result<Summary> {
    let mut runs = Vec::new();
    for _ in 0..opts.runs.max(1) {
        runs.push(one_run(opts)?);
    }
    let first_response_ms_median = opts
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            (
                m.clone(),
                median(runs.iter().map(|r| r.first_response_ms[i].1).collect()),
            )
        })
        .collect();
    Ok(Summary {
        live_ms_median: median(runs.iter().map(|r| r.live_ms).collect()),
        ready_ms_median: median(runs.iter().map(|r| r.ready_ms).collect()),
        first_response_ms_median,
        runs,
    })
}

/// Prints the table, then the JSON; errors when the live target is missed.
pub fn report(summary: &Summary, opts: &ColdstartOptions) -> anyhow::Result<()> {
    println!("runs: {}", summary.runs.len());
    println!("{:<32} {:>10}", "measure (median)", "ms");
    println!("{:<32} {:>10.2}", "exec -> live", summary.live_ms_median);
    println!("{:<32} {:>10.2}", "exec -> ready", summary.ready_ms_median);
    for (m, ms) in &summary.first_response_ms_median {
        println!("{:<32} {:>10.2}", format!("exec -> first response {m}"), ms);
    }
    if let Some(rss) = summary.runs.last().and_then(|r| r.peak_rss_bytes) {
        println!(
            "{:<32} {:>10.1}",
            "peak RSS (MiB, last run)",
            rss as f64 / 1048576.0
        );
    }
    println!("{}", serde_json::to_string(summary)?);
    let missed = missed_targets(summary, opts);
    if !missed.is_empty() {
        bail!("{}", missed.join("; "));
    }
    Ok(())
}

/// Every target the summary's medians are over, described.
pub fn missed_targets(summary: &Summary, opts: &ColdstartOptions) -> Vec<String> {
    let mut missed = Vec::new();
    let mut check = |what: &str, value: f64, target: Option<f64>| {
        if let Some(t) = target.filter(|t| value > *t) {
            missed.push(format!(
                "{what} median {value:.2} ms is over the {t} ms target"
            ));
        }
    };
    check("exec -> live", summary.live_ms_median, opts.live_target_ms);
    check(
        "exec -> ready",
        summary.ready_ms_median,
        opts.ready_target_ms,
    );
    for (m, ms) in &summary.first_response_ms_median {
        check(
            &format!("exec -> first response {m}"),
            *ms,
            opts.first_response_target_ms,
        );
    }
    missed
}

/// The load policies `--policies` accepts, in config spelling.
pub const POLICIES: [&str; 3] = ["lazy", "preload", "background"];

#[derive(Debug, Clone, Serialize)]
pub struct PolicyResult {
    pub policy: String,
    pub summary: Summary,
}

/// `base` (a config file's text) with `[defaults] policy` and every
/// `[models.*] policy` set to `policy`, so configured and discovered models
/// alike start under it. Validated as a brisk config before it is used.
pub fn config_with_policy(base: &str, policy: &str) -> anyhow::Result<String> {
    if !POLICIES.contains(&policy) {
        bail!(
            "unknown policy {policy:?}; expected one of {}",
            POLICIES.join(", ")
        );
    }
    let mut doc: toml::Table = toml::from_str(base).context("parsing the base config")?;
    let policy_value = toml::Value::String(policy.to_string());
    let defaults = doc
        .entry("defaults")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(t) = defaults.as_table_mut() {
        t.insert("policy".into(), policy_value.clone());
    }
    if let Some(models) = doc.get_mut("models").and_then(|m| m.as_table_mut()) {
        for (_, model) in models.iter_mut() {
            if let Some(t) = model.as_table_mut() {
                t.insert("policy".into(), policy_value.clone());
            }
        }
    }
    let text = toml::to_string(&doc)?;
    crate::config::Config::from_toml(&text).context("config with the policy applied")?;
    Ok(text)
}

/// Runs `coldstart` once per policy on a rewritten copy of the config (the
/// embedded default when `opts.config` is `None`).
pub fn compare_policies(
    opts: &ColdstartOptions,
    policies: &[String],
) -> anyhow::Result<Vec<PolicyResult>> {
    let base = match &opts.config {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => crate::config::EMBEDDED_DEFAULT.to_string(),
    };
    let mut out = Vec::new();
    for policy in policies {
        let text = config_with_policy(&base, policy)?;
        let path =
            std::env::temp_dir().join(format!("brisk-bench-{}-{policy}.toml", std::process::id()));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        let run_opts = ColdstartOptions {
            config: Some(path.clone()),
            ..opts.clone()
        };
        let summary = coldstart(&run_opts);
        let _ = std::fs::remove_file(&path);
        out.push(PolicyResult {
            policy: policy.clone(),
            summary: summary.with_context(|| format!("policy {policy}"))?,
        });
    }
    Ok(out)
}

/// Prints one row per policy, then the JSON on the last line; errors when
/// any policy misses a target (all misses are named).
pub fn report_policies(results: &[PolicyResult], opts: &ColdstartOptions) -> anyhow::Result<()> {
    let runs = results.first().map_or(0, |r| r.summary.runs.len());
    println!("runs per policy: {runs} (medians, ms)");
    let mut header = format!("{:<12} {:>10} {:>10}", "policy", "live", "ready");
    for m in &opts.models {
        header.push_str(&format!(" {:>24}", format!("first {m}")));
    }
    header.push_str(&format!(" {:>14}", "peak RSS MiB"));
    println!("{header}");
    for r in results {
        let s = &r.summary;
        let mut row = format!(
            "{:<12} {:>10.2} {:>10.2}",
            r.policy, s.live_ms_median, s.ready_ms_median
        );
        for (_, ms) in &s.first_response_ms_median {
            row.push_str(&format!(" {ms:>24.2}"));
        }
        let rss = s
            .runs
            .last()
            .and_then(|r| r.peak_rss_bytes)
            .map_or("n/a".to_string(), |b| {
                format!("{:.1}", b as f64 / 1048576.0)
            });
        row.push_str(&format!(" {rss:>14}"));
        println!("{row}");
    }
    println!(
        "{}",
        serde_json::to_string(&json!({ "policies": results }))?
    );
    let missed: Vec<String> = results
        .iter()
        .flat_map(|r| {
            missed_targets(&r.summary, opts)
                .into_iter()
                .map(move |m| format!("{}: {m}", r.policy))
        })
        .collect();
    if !missed.is_empty() {
        bail!("{}", missed.join("; "));
    }
    Ok(())
}

/// Peak resident memory (VmHWM) of a process, from /proc, in bytes.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub addr: SocketAddr,
    pub path: String,
    /// JSON bodies, sent round-robin.
    pub bodies: Vec<String>,
    pub concurrency: usize,
    pub requests: usize,
    /// Stop early after this long, whatever is left.
    pub max_duration: Duration,
    /// Server process to read peak RSS from.
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadSummary {
    pub concurrency: usize,
    pub requests: usize,
    pub ok: usize,
    pub status_counts: Vec<(u16, usize)>,
    pub errors: usize,
    pub seconds: f64,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub server_peak_rss_bytes: Option<u64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `concurrency` client threads share `requests` requests; each measures
/// its own latencies. Bounded by count and by `max_duration`.
pub fn load(opts: &LoadOptions) -> anyhow::Result<LoadSummary> {
    if opts.bodies.is_empty() {
        bail!("no request bodies");
    }
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..opts.concurrency.max(1))
        .map(|_| {
            let next = next.clone();
            let opts = opts.clone();
            std::thread::spawn(move || {
                let mut out: Vec<(f64, Option<u16>)> = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= opts.requests || started.elapsed() > opts.max_duration {
                        return out;
                    }
                    let body = &opts.bodies[i % opts.bodies.len()];
                    let t = Instant::now();
                    let status = http(opts.addr, "POST", &opts.path, Some(body))
                        .ok()
                        .map(|r| r.0);
                    out.push((t.elapsed().as_secs_f64() * 1000.0, status));
                }
            })
        })
        .collect();
    let mut results = Vec::new();
    for h in handles {
        results.extend(
            h.join()
                .map_err(|_| anyhow::anyhow!("client thread panicked"))?,
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut lat: Vec<f64> = results
        .iter()
        .filter(|r| r.1 == Some(200))
        .map(|r| r.0)
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let mut counts = std::collections::BTreeMap::new();
    for (_, s) in &results {
        if let Some(s) = s {
            *counts.entry(*s).or_insert(0) += 1;
        }
    }
    Ok(LoadSummary {
        concurrency: opts.concurrency,
        requests: results.len(),
        ok: lat.len(),
        status_counts: counts.into_iter().collect(),
        errors: results.iter().filter(|r| r.1.is_none()).count(),
        seconds,
        requests_per_s: results.len() as f64 / seconds,
        p50_ms: percentile(&lat, 0.5),
        p90_ms: percentile(&lat, 0.9),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(0.0),
        server_peak_rss_bytes: opts.pid.and_then(peak_rss_bytes),
    })
}

/// A fixed, varied set of 10–20 word sentences for load tests.
pub fn default_sentences() -> Vec<String> {
    let subjects = [
        "The server",
        "A small model",
        "Our team",
        "The new index",
        "This request",
    ];
    let verbs = ["handles", "embeds", "returns", "caches", "batches"];
    let objects = [
        "thousands of short sentences every second without breaking a sweat",
        "the user's question about resetting a forgotten password on the website",
        "a quarterly report on revenue, costs and growth in three regions",
        "recipes for bread, pasta and soup that anyone can cook at home",
    ];
    let mut out = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        for (j, v) in verbs.iter().enumerate() {
            out.push(format!(
                "{s} {v} {} (case {i}{j}).",
                objects[(i + j) % objects.len()]
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_rewrite_covers_defaults_and_every_model() {
        let base = "[server]\ndiscover = false\n[models.a]\nbackend = \"sim\"\nsource = \"a\"\npolicy = \"preload\"\n[models.b]\nbackend = \"sim\"\nsource = \"b\"\n";
        let text = config_with_policy(base, "background").expect("rewrite");
        let c = crate::config::Config::from_toml(&text).expect("valid config");
        assert_eq!(c.defaults.policy, crate::config::Policy::Background);
        for m in c.models.values() {
            assert_eq!(m.policy, Some(crate::config::Policy::Background));
        }
        assert!(!c.server.discover, "other settings are kept");
    }

    #[test]
    fn policy_rewrite_of_the_embedded_default_sets_the_discovery_default() {
        let text = config_with_policy(crate::config::EMBEDDED_DEFAULT, "preload").expect("rewrite");
        let c = crate::config::Config::from_toml(&text).expect("valid config");
        assert_eq!(c.defaults.policy, crate::config::Policy::Preload);
    }

    #[test]
    fn missed_targets_names_each_miss() {
        let s = Summary {
            runs: vec![],
            live_ms_median: 10.0,
            ready_ms_median: 500.0,
            first_response_ms_median: vec![("m".into(), 900.0)],
        };
        let opts = ColdstartOptions {
            config: None,
            models_dir: None,
            runs: 1,
            models: vec!["m".into()],
            audio: None,
            live_target_ms: Some(50.0),
            ready_target_ms: Some(100.0),
            first_response_target_ms: Some(1000.0),
            timeout: Duration::from_secs(1),
        };
        let missed = missed_targets(&s, &opts);
        assert_eq!(missed.len(), 1, "{missed:?}");
        assert!(missed[0].starts_with("exec -> ready"), "{missed:?}");
    }
}
