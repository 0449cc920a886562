use std::path::PathBuf;
use std::time::{Duration, Instant};

use brisk_server::cli::bench::{self, ColdstartOptions};
use brisk_server::{env, observe, ServeOptions};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "brisk",
    version,
    about = "A fast-starting multi-model inference server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve models over HTTP (OpenAI-compatible and Open Inference Protocol).
    Serve {
        /// TOML config; without it the embedded default serves every model
        /// found under the models folder.
        #[arg(long, env = env::CONFIG)]
        config: Option<PathBuf>,
        #[arg(long, env = env::HOST)]
        host: Option<String>,
        #[arg(long, env = env::PORT)]
        port: Option<u16>,
        #[arg(long, env = env::MODELS_DIR)]
        models_dir: Option<PathBuf>,
        /// Folder for the jobs database and the disk cache (default
        /// $XDG_STATE_HOME/brisk, else ~/.local/state/brisk).
        #[arg(long, env = env::STATE_DIR)]
        state_dir: Option<PathBuf>,
    },
    /// List the models the config (or the models folder) would serve: task,
    /// backend, size on disk and problems, without starting a server.
    Models {
        #[arg(long, env = env::CONFIG)]
        config: Option<PathBuf>,
        #[arg(long, env = env::MODELS_DIR)]
        models_dir: Option<PathBuf>,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Start brisk repeatedly; measure exec → live, → ready, → first response.
    Coldstart {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, env = env::MODELS_DIR)]
        models_dir: Option<PathBuf>,
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Model to send a first request to (repeatable): one embedding, one
        /// generated token, or a transcription of --audio.
        #[arg(long = "model")]
        models: Vec<String>,
        /// Audio file for transcription models' first request.
        #[arg(long)]
        audio: Option<PathBuf>,
        /// Exit non-zero when the median exec → live is above this.
        #[arg(long)]
        live_target_ms: Option<f64>,
        /// Exit non-zero when the median exec → ready is above this.
        #[arg(long)]
        ready_target_ms: Option<f64>,
        /// Exit non-zero when a model's median exec → first response is above this.
        #[arg(long)]
        first_response_target_ms: Option<f64>,
        /// Compare load policies (comma-separated: lazy,preload,background):
        /// the config (or embedded default) is run once per policy with every
        /// model's policy rewritten, and one table row is printed per policy.
        #[arg(long, value_delimiter = ',')]
        policies: Vec<String>,
        #[arg(long, default_value_t = 120)]
        timeout_s: u64,
    },
    /// Concurrent clients against a running server: throughput, latency
    /// percentiles, status counts (bounded by --requests and --max-seconds).
    Load {
        /// Server address, host:port (loopback).
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
        #[arg(long, default_value = "/v1/embeddings")]
        path: String,
        /// Model for generated embedding bodies.
        #[arg(long)]
        model: Option<String>,
        /// Input text (repeatable); bodies are {"model", "input"}.
        #[arg(long = "input")]
        inputs: Vec<String>,
        /// Raw JSON bodies (repeatable), sent round-robin; overrides --input.
        #[arg(long = "body")]
        bodies: Vec<String>,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 1000)]
        requests: usize,
        #[arg(long, default_value_t = 60)]
        max_seconds: u64,
        /// Server pid, to report its peak RSS.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// A pipeline's latency against its steps run one after another, in
    /// process on the configured models (first, cold run reported apart).
    Pipeline {
        #[arg(long, env = env::CONFIG)]
        config: Option<PathBuf>,
        #[arg(long, env = env::MODELS_DIR)]
        models_dir: Option<PathBuf>,
        #[arg(long, default_value = "voice-note")]
        pipeline: String,
        /// Request text field NAME=VALUE (repeatable).
        #[arg(long = "field", value_parser = key_value)]
        fields: Vec<(String, String)>,
        /// Uploaded file NAME=PATH (repeatable), e.g. file=models/testdata/beckett.wav.
        #[arg(long = "file", value_parser = key_value)]
        files: Vec<(String, String)>,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected NAME=VALUE, got '{s}'"))
}

fn main() -> anyhow::Result<()> {
    // Taken first: everything in /v1/startup is relative to this instant.
    let started = Instant::now();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            host,
            port,
            models_dir,
            state_dir,
        } => {
            observe::init_logging();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(brisk_server::serve(
                ServeOptions {
                    config,
                    host,
                    port,
                    models_dir,
                    state_dir,
                },
                started,
            ))
        }
        Command::Models {
            config,
            models_dir,
            json,
        } => {
            let rows = brisk_server::cli::models::list(&ServeOptions {
                config,
                models_dir,
                ..Default::default()
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", brisk_server::cli::models::table(&rows));
            }
            Ok(())
        }
        Command::Bench {
            bench:
                Bench::Coldstart {
                    config,
                    models_dir,
                    runs,
                    models,
                    audio,
                    live_target_ms,
                    ready_target_ms,
                    first_response_target_ms,
                    policies,
                    timeout_s,
                },
        } => {
            let audio = audio.map(std::fs::read).transpose()?;
            let opts = ColdstartOptions {
                config,
                models_dir,
                runs,
                models,
                audio,
                live_target_ms,
                ready_target_ms,
                first_response_target_ms,
                timeout: Duration::from_secs(timeout_s),
            };
            if policies.is_empty() {
                let summary = bench::coldstart(&opts)?;
                bench::report(&summary, &opts)
            } else {
                let results = bench::compare_policies(&opts, &policies)?;
                bench::report_policies(&results, &opts)
            }
        }
        Command::Bench {
            bench:
                Bench::Load {
                    addr,
                    path,
                    model,
                    inputs,
                    mut bodies,
                    concurrency,
                    requests,
                    max_seconds,
                    pid,
                },
        } => {
            if bodies.is_empty() {
                let model =
                    model.ok_or_else(|| anyhow::anyhow!("--model or --body is required"))?;
                let inputs = if inputs.is_empty() {
                    bench::default_sentences()
                } else {
                    inputs
                };
                bodies = inputs
                    .iter()
                    .map(|t| serde_json::json!({ "model": model, "input": t }).to_string())
                    .collect();
            }
            let summary = bench::load(&bench::LoadOptions {
                addr,
                path,
                bodies,
                concurrency,
                requests,
                max_duration: Duration::from_secs(max_seconds),
                pid,
            })?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
        Command::Bench {
            bench:
                Bench::Pipeline {
                    config,
                    models_dir,
                    pipeline,
                    fields,
                    files,
                    runs,
                },
        } => {
            let summary = brisk_server::cli::bench_pipeline::run(
                &brisk_server::cli::bench_pipeline::PipelineBenchOptions {
                    config,
                    models_dir,
                    pipeline,
                    fields,
                    files: files
                        .into_iter()
                        .map(|(k, p)| (k, PathBuf::from(p)))
                        .collect(),
                    runs,
                },
            )?;
            brisk_server::cli::bench_pipeline::report(&summary)
        }
    }
}
