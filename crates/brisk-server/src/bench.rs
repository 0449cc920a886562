//! `brisk bench coldstart`: spawn the server, measure exec → live, exec →
//! ready and exec → first response of each model, over several runs.
//!
//! Polling uses a minimal blocking HTTP/1.1 client over loopback so the
//! measurement adds no runtime start-up of its own to the child's numbers.

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
    /// Fail when the median exec → live exceeds this.
    pub live_target_ms: Option<f64>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub live_ms: f64,
    pub ready_ms: f64,
    pub first_response_ms: Vec<(String, f64)>,
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
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
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
    let _child = KillOnDrop(cmd.spawn().context("spawning brisk serve")?);
    let live_ms = wait_for(addr, "/v2/health/live", t0, opts.timeout)?;
    let ready_ms = wait_for(addr, "/v2/health/ready", t0, opts.timeout)?;
    let mut first_response_ms = Vec::new();
    for m in &opts.models {
        let body = json!({ "model": m, "input": "cold start probe" }).to_string();
        let (status, text) = http(addr, "POST", "/v1/embeddings", Some(&body))?;
        if status != 200 {
            bail!("first request to {m} answered {status}: {text}");
        }
        first_response_ms.push((m.clone(), t0.elapsed().as_secs_f64() * 1000.0));
    }
    Ok(Run {
        live_ms,
        ready_ms,
        first_response_ms,
    })
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
    println!("{}", serde_json::to_string(summary)?);
    if let Some(target) = opts.live_target_ms {
        if summary.live_ms_median > target {
            bail!(
                "exec -> live median {:.2} ms is over the {target} ms target",
                summary.live_ms_median
            );
        }
    }
    Ok(())
}
