//! `cascade`: start-up, flags, logging and signals. Everything else is in
//! the library.
//!
//! Signals are taken by one dedicated thread with `sigwait` (blocked in
//! every other thread), so no handler runs in async-signal context:
//! SIGHUP reloads, SIGTERM drains, a second SIGTERM exits at once.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tracing::{error, info, warn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use cascade::config::{load, Config, Workers};
use cascade::context::KickTarget;
use cascade::http::Ops;
use cascade::shard::{self, IoDriver};
use cascade::transport::TlsServer;

/// Thread-per-core RTMP edge relay.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML configuration file (every key optional; see config/cascade.toml).
    /// `CASCADE_SECTION_KEY` environment variables override it.
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
    /// Control listener for /metrics, /healthz, /readyz and the API (overrides http.listen).
    #[arg(long)]
    http: Option<String>,
    /// Origin to pull unknown streams from, rtmp://host[:port][/app]
    /// (repeatable; replaces edge.origins). Makes this node an edge.
    #[arg(long = "origin")]
    origins: Vec<String>,
    /// RTMPS listen address, e.g. 0.0.0.0:443 (overrides tls.listen).
    #[arg(long = "tls-listen")]
    tls_listen: Option<String>,
    /// PEM certificate chain for RTMPS (overrides tls.cert).
    #[arg(long = "tls-cert")]
    tls_cert: Option<String>,
    /// PEM private key for RTMPS (overrides tls.key).
    #[arg(long = "tls-key")]
    tls_key: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Checks a configuration file (with the environment's overrides) and
    /// reports every error with its key; exits 2 if there is any.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Mints a publish or play token for `[auth]` mode "token" and prints
    /// it with a ready-to-use URL suffix.
    Sign {
        /// The HMAC secret (auth.secret).
        #[arg(long)]
        secret: String,
        /// publish or play.
        #[arg(long)]
        action: String,
        /// The stream as app/name.
        #[arg(long)]
        stream: String,
        /// Seconds from now until the token expires.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
}

type FilterHandle = reload::Handle<EnvFilter, Registry>;

fn filter_for(level: &str) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the subscriber; the handle lets SIGHUP change the level.
fn init_logging(config: &Config) -> FilterHandle {
    let (filter, handle) = reload::Layer::new(filter_for(&config.log.level));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if config.log.format == "json" {
        tracing_subscriber::registry()
            .with(filter)
            .with(fmt.json())
            .init();
    } else {
        tracing_subscriber::registry().with(filter).with(fmt).init();
    }
    handle
}

/// Defaults, then the file, then the environment, then the flags.
fn load(cli: &Cli, path: Option<&Path>) -> Result<Config, Vec<String>> {
    let strings = |errs: Vec<cascade::config::ConfigError>| {
        errs.iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    let mut config = load::load(path).map_err(strings)?;
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
    if !cli.origins.is_empty() {
        config.edge.origins = cli.origins.clone();
    }
    if let Some(l) = &cli.tls_listen {
        config.tls.listen = l.clone();
    }
    if let Some(c) = &cli.tls_cert {
        config.tls.cert = c.clone();
    }
    if let Some(k) = &cli.tls_key {
        config.tls.key = k.clone();
    }
    let problems = config.problems();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(strings(problems))
    }
}

fn check_config(file: &Path) -> ExitCode {
    match load::load(Some(file)) {
        Ok(_) => {
            println!("{}: ok", file.display());
            ExitCode::SUCCESS
        }
        Err(errs) => {
            for e in &errs {
                eprintln!("{}: {e}", file.display());
            }
            eprintln!("{}: {} error(s)", file.display(), errs.len());
            ExitCode::from(2)
        }
    }
}

/// `cascade sign`: prints the token, then `?token=…` to append to a URL.
fn sign(secret: &str, action: &str, stream: &str, ttl: u64) -> ExitCode {
    use cascade::auth::{self, Action};
    let Some(action) = Action::parse(action) else {
        eprintln!("cascade sign: --action must be publish or play");
        return ExitCode::from(2);
    };
    let stream = stream.trim_matches('/');
    if secret.is_empty() || !stream.contains('/') {
        eprintln!("cascade sign: need a non-empty --secret and --stream app/name");
        return ExitCode::from(2);
    }
    let expiry = auth::now_unix().saturating_add(ttl);
    let token = auth::sign(secret.as_bytes(), action, stream, expiry);
    println!("{token}");
    println!("?token={token}");
    ExitCode::SUCCESS
}

/// The panic policy: a panic on any thread aborts the whole process.
///
/// A worker that unwound alone would leave its streams marked as published
/// (their keys refused), its listener taking connections nobody serves and
/// `/readyz` still green: a half-dead node. Aborting instead lets systemd
/// (`Restart=`) or Kubernetes restart a whole, healthy process, and the
/// exit status (SIGABRT) says what happened.
fn abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        tracing::error!(thread = name, panic = %info, "thread panicked; aborting the process");
        default(info);
        std::process::abort();
    }));
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::CheckConfig { file }) => return check_config(file),
        Some(Command::Sign {
            secret,
            action,
            stream,
            ttl,
        }) => return sign(secret, action, stream, *ttl),
        None => {}
    }
    let config = match load(&cli, cli.config.as_deref()) {
        Ok(c) => c,
        Err(errs) => {
            for e in errs {
                eprintln!("cascade: configuration error: {e}");
            }
            return ExitCode::from(2);
        }
    };
    // Before any thread exists, so every thread inherits the mask.
    if let Err(e) = signals::block() {
        eprintln!("cascade: cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    let log = init_logging(&config);
    abort_on_panic();
    // A bad certificate stops the start; on reload it keeps the old one.
    let tls = if config.tls.listen.is_empty() {
        None
    } else {
        match TlsServer::load(&config.tls.cert, &config.tls.key) {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => {
                eprintln!("cascade: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let workers = config.worker_count().unwrap_or(1);
    let driver = IoDriver::parse(&config.server.io_driver).unwrap_or(IoDriver::Auto);
    let config = Arc::new(config);
    let ops = Arc::new(Ops::new(config.clone(), workers));
    let control = Control {
        cli,
        ops: ops.clone(),
        log,
        tls: tls.clone(),
    };
    if let Err(e) = std::thread::Builder::new()
        .name("cascade-signals".into())
        .spawn(move || control.run())
    {
        eprintln!("cascade: cannot start the signal thread: {e}");
        return ExitCode::FAILURE;
    }
    match shard::run(config, workers, driver, ops, tls) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cascade: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The signal thread's state.
struct Control {
    cli: Cli,
    ops: Arc<Ops>,
    log: FilterHandle,
    /// The RTMPS certificate, re-read on SIGHUP.
    tls: Option<Arc<TlsServer>>,
}

impl Control {
    fn run(self) {
        loop {
            match signals::wait() {
                Ok(signals::Signal::Hup) => self.reload(),
                Ok(signals::Signal::Term) => self.drain(),
                Err(e) => {
                    error!(error = %e, "sigwait failed; signals are ignored from now on");
                    return;
                }
            }
        }
    }

    /// SIGHUP: re-read the file and the environment (and the TLS certificate
    /// and key); apply what can change live, say what cannot. A bad file
    /// changes nothing; a bad certificate keeps the one in use.
    fn reload(&self) {
        let new = match load(&self.cli, self.cli.config.as_deref()) {
            Ok(c) => c,
            Err(errs) => {
                for e in errs {
                    error!(error = %e, "reload: configuration error; nothing changed");
                }
                return;
            }
        };
        let old = self.ops.config();
        let (live, restart) = load::diff(&old, &new);
        // Keep what needs a restart as it runs, so the next diff is honest.
        let mut applied = load::applicable(&old, &new);
        if let Some(tls) = &self.tls {
            // Re-read even if the paths are unchanged: renewed files.
            match tls.reload(&applied.tls.cert, &applied.tls.key) {
                Ok(()) => info!(cert = %applied.tls.cert, "reload: TLS certificate loaded"),
                Err(e) => {
                    error!(error = %e, "reload: TLS certificate not loaded; keeping the old one");
                    applied.tls.cert = old.tls.cert.clone();
                    applied.tls.key = old.tls.key.clone();
                }
            }
        }
        if let Err(e) = self.log.reload(filter_for(&applied.log.level)) {
            warn!(error = %e, "reload: log level unchanged");
        }
        self.ops.reload(Arc::new(applied));
        info!(changed = ?live, "configuration reloaded");
        if !restart.is_empty() {
            warn!(keys = ?restart, "reload: these keys cannot change live; restart to apply");
        }
    }

    /// SIGTERM: stop accepting, report not-ready, ask publishers to move,
    /// let streams run up to `server.drain_timeout_ms`, then close every
    /// connection and exit. A second SIGTERM exits at once.
    fn drain(&self) {
        if !self.ops.start_drain() {
            warn!("second SIGTERM: exiting now");
            std::process::exit(1);
        }
        let timeout = Duration::from_millis(self.ops.config().server.drain_timeout_ms);
        info!(timeout_ms = timeout.as_millis() as u64, "SIGTERM: draining");
        let ops = self.ops.clone();
        // The wait runs beside this thread so a second SIGTERM is still heard.
        let spawned = std::thread::Builder::new()
            .name("cascade-drain".into())
            .spawn(move || {
                let deadline = Instant::now() + timeout;
                loop {
                    let left = ops.connections();
                    if left == 0 {
                        info!("drain: no connections left");
                        break;
                    }
                    if Instant::now() >= deadline {
                        info!(connections = left, "drain timeout: closing connections");
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                let closed = ops.kick(KickTarget::All);
                // Give writers a moment to flush and the sockets to close.
                let grace = Instant::now() + Duration::from_secs(2);
                while closed > 0 && Instant::now() < grace && ops.connections() > 0 {
                    std::thread::sleep(Duration::from_millis(50));
                }
                info!("drained; exiting");
                std::process::exit(0);
            });
        if let Err(e) = spawned {
            error!(error = %e, "cannot start the drain thread; exiting");
            std::process::exit(1);
        }
    }
}

/// SIGTERM and SIGHUP through `sigwait` on one thread.
mod signals {
    pub enum Signal {
        Hup,
        Term,
    }

    fn set() -> libc::sigset_t {
        // SAFETY: sigemptyset/sigaddset only write the set we own here.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGHUP);
            set
        }
    }

    /// Blocks SIGTERM and SIGHUP in this thread and every thread it starts.
    pub fn block() -> std::io::Result<()> {
        let set = set();
        // SAFETY: pthread_sigmask reads a valid set; no old mask is wanted.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::from_raw_os_error(rc))
        }
    }

    /// Waits for the next SIGTERM or SIGHUP.
    pub fn wait() -> std::io::Result<Signal> {
        let set = set();
        loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: sigwait reads a valid set and writes one int we own.
            let rc = unsafe { libc::sigwait(&set, &mut sig) };
            if rc != 0 {
                return Err(std::io::Error::from_raw_os_error(rc));
            }
            match sig {
                libc::SIGHUP => return Ok(Signal::Hup),
                libc::SIGTERM => return Ok(Signal::Term),
                _ => continue,
            }
        }
    }
}
