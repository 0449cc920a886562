//! Start-up and graceful shutdown of the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use brisk_backends::BriskLoader;
use brisk_engine::{Registry, Timeline};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::{observe, AppState};

/// What the CLI resolved from flags, env and the config file.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub config: Option<PathBuf>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub models_dir: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
}

/// Reads the config (or the embedded default) and applies CLI/env overrides.
pub fn load_config(opts: &ServeOptions) -> anyhow::Result<Config> {
    let mut config = match &opts.config {
        Some(path) => Config::from_file(path)?,
        None => Config::from_toml(crate::config::EMBEDDED_DEFAULT)?,
    };
    if let Some(h) = &opts.host {
        config.server.host = h.clone();
    }
    if let Some(p) = opts.port {
        config.server.port = p;
    }
    if let Some(d) = &opts.models_dir {
        config.server.models_dir = d.clone();
    }
    if let Some(d) = &opts.state_dir {
        config.server.state_dir = Some(d.clone());
    }
    // State goes under the state dir, never into the working directory.
    let state_dir = config
        .server
        .state_dir
        .clone()
        .unwrap_or_else(crate::config::default_state_dir);
    if config.jobs.db_path.is_relative() {
        config.jobs.db_path = state_dir.join(&config.jobs.db_path);
    }
    if let Some(p) = config.cache.disk_path.as_mut().filter(|p| p.is_relative()) {
        *p = state_dir.join(&*p);
    }
    Ok(config)
}

/// Builds the registry and state without touching the network or loading
/// any model (loads start with [`Registry::start`]).
pub fn build_state(config: Config, timeline: Timeline) -> anyhow::Result<AppState> {
    let specs = config.model_specs()?;
    let registry = Registry::new(
        specs,
        Arc::new(BriskLoader::new()),
        config.engine.settings(),
        timeline,
    )
    .context("building the model registry")?;
    if let Some(settings) = config.cache.settings() {
        let cache = brisk_engine::ResultCache::new(settings).context("opening the result cache")?;
        registry.set_cache(Arc::new(cache));
    }
    let pipelines = brisk_engine::pipeline::Pipelines::build(&config.pipelines, &registry)?;
    let keys = crate::auth::Keys::from_config(&config.auth)
        .map_err(|e| anyhow::anyhow!("invalid [auth] config: {e}"))?;
    if config
        .server
        .cors_origins
        .iter()
        .any(|o| o == "*" || o.is_empty())
    {
        anyhow::bail!("server.cors_origins must list explicit origins; '*' is not accepted");
    }
    Ok(AppState {
        keys: Arc::new(keys),
        pipelines: Arc::new(pipelines),
        registry,
        metrics: observe::prometheus(),
        config: Arc::new(config),
        jobs: None,
    })
}

/// Runs the server until SIGTERM or Ctrl-C, then drains.
pub async fn serve(opts: ServeOptions, started: Instant) -> anyhow::Result<()> {
    let timeline = Timeline::new(started);
    let config = load_config(&opts)?;
    if config.server.inference_threads > 0 {
        // Read by candle's kernels on first use, which is after this point.
        std::env::set_var(
            crate::env::RAYON_NUM_THREADS,
            config.server.inference_threads.to_string(),
        );
    }
    let addr: SocketAddr = format!("{}:{}", config.server.host, config.server.port)
        .parse()
        .with_context(|| {
            format!(
                "invalid address {}:{}",
                config.server.host, config.server.port
            )
        })?;
    let shutdown_timeout = Duration::from_secs(config.server.shutdown_timeout_s);
    let reap_every = Duration::from_millis(config.engine.reap_interval_ms.max(10));
    let mut state = build_state(config, timeline.clone())?;
    // Bind before any model work so liveness answers at once.
    let listener = listen(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    timeline.record("server", "listening");
    tracing::info!(addr = %local, models = ?state.registry.model_names(),
        startup_ms = started.elapsed().as_secs_f64() * 1000.0, "brisk listening");

    let registry = state.registry.clone();
    registry.start();
    registry.spawn_reaper(reap_every);
    spawn_ready_marker(registry.clone(), timeline.clone());

    let prewarm = state.config.cache.prewarm.clone();
    let models_dir = state.config.server.models_dir.clone();
    // The server must start even where the jobs database cannot live (a
    // read-only working directory with the embedded default): everything
    // else still serves, and /v1/jobs says jobs are disabled.
    if let Err(e) = crate::jobs::open(&mut state) {
        tracing::error!(error = %e, "async jobs disabled: cannot open the jobs database");
    }
    let app = crate::router(state.clone());
    crate::jobs::spawn_workers(&state, app.clone());
    crate::api::cache::spawn_prewarm(app.clone(), registry.clone(), prewarm, models_dir);
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    // Graceful shutdown stops accepting at once and waits for in-flight
    // requests; the timeout bounds how long a stuck request can hold us.
    tokio::select! {
        r = server => r.context("server error")?,
        _ = async {
            let _ = stop_rx.wait_for(|s| *s).await;
            tokio::time::sleep(shutdown_timeout).await;
        } => tracing::warn!("shutdown timeout reached; dropping remaining requests"),
    }
    registry.unload_all();
    tracing::info!("brisk stopped");
    Ok(())
}

/// Binds with a deep accept backlog: under a burst of new connections
/// (a thousand clients at once) the default of 1024 overflows and the
/// kernel drops SYNs, which clients see as second-long connect stalls
/// instead of a quick 429. The kernel caps it at `net.core.somaxconn`.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(8192)
}

/// Records the moment readiness is first reached, for `/v1/startup`.
fn spawn_ready_marker(registry: Registry, timeline: Timeline) {
    tokio::spawn(async move {
        registry.wait_ready().await;
        timeline.record_once("server", "ready");
        tracing::info!(
            ready_ms = timeline.start().elapsed().as_secs_f64() * 1000.0,
            "brisk ready"
        );
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}
