//! Result-cache benchmark over HTTP against a real brisk process serving the
//! real MiniLM: latency of misses vs hits (p50/p99, one client), then
//! throughput with 8 clients at a 90% hit ratio vs the same load with the
//! cache off.
//!
//! ```text
//! cargo build --release -p brisk-server
//! cargo run --release -p brisk-server --example cache_bench -- \
//!     target/release/brisk models/all-minilm-l6-v2
//! ```

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use brisk_server::cli::bench::{http, load, LoadOptions};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn sentence(i: usize) -> String {
    format!(
        "Request number {i} asks the server to embed a sentence of about twenty words, \
         like a typical search query or support ticket line {}.",
        i * 7919 % 10007
    )
}

fn body(model: &str, i: usize) -> String {
    serde_json::json!({ "model": model, "input": sentence(i) }).to_string()
}

/// Sequential requests; latencies in ms (only 200s count).
fn sequential(addr: SocketAddr, bodies: &[String]) -> Vec<f64> {
    let mut lat: Vec<f64> = bodies
        .iter()
        .filter_map(|b| {
            let t = Instant::now();
            let (status, _) = http(addr, "POST", "/v1/embeddings", Some(b)).ok()?;
            (status == 200).then(|| t.elapsed().as_secs_f64() * 1000.0)
        })
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    lat
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bin, model_dir] = args.as_slice() else {
        anyhow::bail!("usage: cache_bench BRISK_BINARY MINILM_DIR");
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let config = std::env::temp_dir().join(format!("brisk-cache-bench-{port}.toml"));
    let model_dir = std::fs::canonicalize(model_dir)?;
    std::fs::write(
        &config,
        format!(
            "[server]\ndiscover = false\nport = {port}\n\
             [models.cached]\nsource = \"{d}\"\npolicy = \"preload\"\n\
             [models.uncached]\nsource = \"{d}\"\npolicy = \"preload\"\ncache = false\n",
            d = model_dir.display()
        ),
    )?;
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let ready = Instant::now();
    while http(addr, "GET", "/v2/health/ready", None)
        .ok()
        .map(|r| r.0)
        != Some(200)
    {
        anyhow::ensure!(ready.elapsed() < Duration::from_secs(60), "brisk not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Warm both model threads.
    sequential(
        addr,
        &[body("uncached", 1_000_000), body("cached", 1_000_001)],
    );

    let n = 300;
    let bodies: Vec<String> = (0..n).map(|i| body("cached", i)).collect();
    let miss = sequential(addr, &bodies);
    let hit = sequential(addr, &bodies);
    println!("one client, {n} requests each (ms):");
    println!(
        "  miss: p50 {:.2}  p99 {:.2}",
        percentile(&miss, 0.5),
        percentile(&miss, 0.99)
    );
    println!(
        "  hit:  p50 {:.2}  p99 {:.2}",
        percentile(&hit, 0.5),
        percentile(&hit, 0.99)
    );

    // 90% hits: nine of every ten bodies come from the warm set above, the
    // tenth is a sentence never seen before.
    let requests = 2000;
    let mixed: Vec<String> = (0..requests)
        .map(|i| {
            if i % 10 == 9 {
                body("cached", 10_000 + i)
            } else {
                body("cached", i % n)
            }
        })
        .collect();
    let plain: Vec<String> = (0..requests)
        .map(|i| body("uncached", 20_000 + i))
        .collect();
    for (name, bodies) in [("cache, 90% hits", mixed), ("no cache", plain)] {
        let s = load(&LoadOptions {
            addr,
            path: "/v1/embeddings".into(),
            bodies,
            concurrency: 8,
            requests,
            max_duration: Duration::from_secs(120),
            pid: Some(child.id()),
        })?;
        println!(
            "8 clients, {name}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, ok {}/{}",
            s.requests_per_s, s.p50_ms, s.p99_ms, s.ok, s.requests
        );
    }
    let (_, stats) = http(addr, "GET", "/v1/cache/stats", None)?;
    println!("cache stats: {stats}");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&config);
    Ok(())
}
