use std::path::PathBuf;
use std::time::{Duration, Instant};

use brisk_server::bench::{self, ColdstartOptions};
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
        /// Embedding model to send a first request to (repeatable).
        #[arg(long = "model")]
        models: Vec<String>,
        /// Exit non-zero when the median exec → live is above this.
        #[arg(long)]
        live_target_ms: Option<f64>,
        #[arg(long, default_value_t = 120)]
        timeout_s: u64,
    },
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
                },
                started,
            ))
        }
        Command::Bench {
            bench:
                Bench::Coldstart {
                    config,
                    models_dir,
                    runs,
                    models,
                    live_target_ms,
                    timeout_s,
                },
        } => {
            let opts = ColdstartOptions {
                config,
                models_dir,
                runs,
                models,
                live_target_ms,
                timeout: Duration::from_secs(timeout_s),
            };
            let summary = bench::coldstart(&opts)?;
            bench::report(&summary, &opts)
        }
    }
}
