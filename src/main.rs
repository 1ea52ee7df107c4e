//! `cascade`: start-up, flags and logging. Everything else is in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cascade::config::{Config, Workers};
use cascade::shard::{self, IoDriver};

/// Thread-per-core RTMP edge relay.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (every key optional; see config/cascade.toml).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// RTMP listen address, e.g. 0.0.0.0:1935 (overrides server.listen).
    #[arg(long)]
    listen: Option<String>,
    /// Worker threads: a number or "auto" (overrides server.workers).
    #[arg(long)]
    workers: Option<String>,
    /// IO driver: auto, uring or epoll (overrides server.io_driver).
    #[arg(long = "io-driver")]
    io_driver: Option<String>,
    /// Control listener address for /healthz and /api/v1/stats (overrides http.listen).
    #[arg(long)]
    http: Option<String>,
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn load(cli: &Cli) -> Result<Config, String> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if let Some(l) = &cli.listen {
        config.server.listen = l.clone();
    }
    if let Some(w) = &cli.workers {
        config.server.workers = Workers::Named(w.clone());
    }
    if let Some(h) = &cli.http {
        config.http.listen = h.clone();
    }
    if let Some(d) = &cli.io_driver {
        config.server.io_driver = d.clone();
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cascade: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let workers = config.worker_count().unwrap_or(1);
    let driver = IoDriver::parse(&config.server.io_driver).unwrap_or(IoDriver::Auto);
    match shard::run(Arc::new(config), workers, driver) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cascade: {e}");
            ExitCode::FAILURE
        }
    }
}
