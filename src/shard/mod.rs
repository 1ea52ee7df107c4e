//! Workers: one pinned thread per core, each with its own monoio runtime
//! and SO_REUSEPORT listener. A connection lives its whole life on the
//! worker that accepted it.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::context::{live_settings, ControlMsg, LiveSettings, Worker};
use crate::http::{Ops, Serves};
use crate::hub::{Directory, StreamMsg};
use crate::transport::TlsServer;
use crate::xcore::{self, Mailbox, Mesh};

mod accept;
use accept::{Accept, Service};

/// Which IO driver to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoDriver {
    Auto,
    Uring,
    Epoll,
}

impl IoDriver {
    pub fn parse(s: &str) -> Option<IoDriver> {
        match s {
            "auto" => Some(IoDriver::Auto),
            "uring" => Some(IoDriver::Uring),
            "epoll" => Some(IoDriver::Epoll),
            _ => None,
        }
    }
}

/// A listening socket with SO_REUSEPORT so every worker can bind the same address.
pub fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Starts `workers` pinned threads and blocks until they end.
/// With `tls`, every worker also listens on `tls.listen` for RTMPS.
pub fn run(
    config: Arc<Config>,
    workers: usize,
    driver: IoDriver,
    ops: Arc<Ops>,
    tls: Option<Arc<TlsServer>>,
) -> std::io::Result<()> {
    let addr = listen_addr("server.listen", &config.server.listen)?;
    let tls_addr = match &tls {
        Some(_) => Some(listen_addr("tls.listen", &config.tls.listen)?),
        None => None,
    };
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let directory = Arc::new(Directory::new(config.limits.max_streams));
    let hls = Arc::new(crate::hub::HlsStore::new());
    ops.set_hls(hls.clone());
    let limiter = crate::auth::ConnLimiter::new();
    // Two meshes: the hubs' stream messages, and the control plane's.
    let (mesh, mailboxes) = xcore::build::<StreamMsg>(workers);
    let (control, control_boxes) = xcore::build::<ControlMsg>(workers);
    ops.set_mesh(control);
    let http_addrs = http_listens(&config)?;
    let mut handles = Vec::new();
    // Built once and cloned: the auth hook's request threads and queue are
    // the node's, shared by every worker, as after a reload.
    let live = live_settings(&config);
    for (id, (mailbox, control)) in mailboxes.into_iter().zip(control_boxes).enumerate() {
        let shared = Shared {
            directory: directory.clone(),
            hls: hls.clone(),
            mesh: mesh.clone(),
            mailbox,
            control,
            ops: ops.clone(),
            limiter: limiter.clone(),
            live: live.clone(),
        };
        // Bind on the main thread so address errors surface at start-up.
        let listeners = Listeners {
            plain: reuseport_listener(addr)?,
            tls: match (&tls, tls_addr) {
                (Some(server), Some(a)) => Some((reuseport_listener(a)?, server.clone())),
                _ => None,
            },
            http: http_addrs
                .iter()
                .map(|&(addr, serves, https)| {
                    let server = if https { tls.clone() } else { None };
                    Ok((reuseport_listener(addr)?, serves, server))
                })
                .collect::<std::io::Result<_>>()?,
        };
        let core = cores.get(id % cores.len().max(1)).copied();
        let config = config.clone();
        let handle = std::thread::Builder::new()
            .name(format!("cascade-w{id}"))
            .spawn(move || {
                if let Some(core) = core {
                    if !core_affinity::set_for_current(core) {
                        warn!(worker = id, "could not pin to core {}", core.id);
                    }
                }
                run_worker(id, config, listeners, driver, shared);
            })?;
        handles.push(handle);
    }
    match tls_addr {
        Some(tls_addr) => info!(%addr, %tls_addr, workers, "listening (rtmp, rtmps)"),
        None => info!(%addr, workers, "listening"),
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

/// Parses a listen address and checks nobody holds it. SO_REUSEPORT would
/// let a second cascade silently share the port (and half the
/// connections) with a running one; a plain bind fails if anyone holds it.
fn listen_addr(key: &str, text: &str) -> std::io::Result<SocketAddr> {
    let addr: SocketAddr = text.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{key}: {e}"))
    })?;
    std::net::TcpListener::bind(addr)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    Ok(addr)
}

/// A worker's listening sockets: plain RTMP, RTMPS when configured, and
/// the HTTP service's (plain or HTTPS, and what each serves).
struct Listeners {
    plain: std::net::TcpListener,
    tls: Option<(std::net::TcpListener, Arc<TlsServer>)>,
    http: Vec<(std::net::TcpListener, Serves, Option<Arc<TlsServer>>)>,
}

/// The HTTP service's listen addresses, what each serves, and whether it
/// is HTTPS: `http.listen` (and `tls.http_listen` beside it), and
/// `http.api_listen` when the API lives elsewhere.
fn http_listens(config: &Config) -> std::io::Result<Vec<(SocketAddr, Serves, bool)>> {
    let api = config.http.api_listen.trim();
    let main = if api.is_empty() {
        Serves::All
    } else {
        Serves::Probes
    };
    let mut out = Vec::new();
    if !config.http.listen.trim().is_empty() {
        out.push((
            listen_addr("http.listen", config.http.listen.trim())?,
            main,
            false,
        ));
    }
    if !config.tls.http_listen.trim().is_empty() {
        let addr = listen_addr("tls.http_listen", config.tls.http_listen.trim())?;
        out.push((addr, main, true));
    }
    if !api.is_empty() {
        out.push((listen_addr("http.api_listen", api)?, Serves::Api, false));
    }
    Ok(out)
}

/// What a worker gets from start-up: the directory, the channels to every
/// core, and its own inbox.
struct Shared {
    directory: Arc<Directory>,
    /// The node's HLS/DASH windows.
    hls: Arc<crate::hub::HlsStore>,
    mesh: Mesh<StreamMsg>,
    mailbox: Mailbox<StreamMsg>,
    control: Mailbox<ControlMsg>,
    ops: Arc<Ops>,
    /// Connection counts of the whole node, touched at accept and close.
    limiter: crate::auth::ConnLimiter,
    /// The live settings at start-up (one auth policy for the node).
    live: LiveSettings,
}

fn run_worker(
    id: usize,
    config: Arc<Config>,
    listener: Listeners,
    driver: IoDriver,
    shared: Shared,
) {
    if driver != IoDriver::Epoll {
        match uring_runtime() {
            Ok(mut rt) => {
                info!(worker = id, driver = "io_uring", "worker started");
                rt.block_on(worker_main(id, config, listener, shared, "io_uring"));
                return;
            }
            Err(e) if driver == IoDriver::Auto => {
                warn!(worker = id, error = %e, "io_uring refused (seccomp or kernel.io_uring_disabled?); falling back to epoll");
            }
            Err(e) => {
                error!(worker = id, error = %e, "io_uring unavailable and --io-driver uring was forced");
                std::process::exit(1);
            }
        }
    }
    match RuntimeBuilder::<LegacyDriver>::new().enable_timer().build() {
        Ok(mut rt) => {
            info!(worker = id, driver = "epoll", "worker started");
            rt.block_on(worker_main(id, config, listener, shared, "epoll"));
        }
        Err(e) => {
            error!(worker = id, error = %e, "cannot build epoll runtime");
            std::process::exit(1);
        }
    }
}

/// The worker's io_uring runtime. Completions are run cooperatively
/// (`IORING_SETUP_COOP_TASKRUN`): the kernel does not interrupt the worker
/// with an inter-processor interrupt for each completion that another core
/// (a peer's softirq) produced; the worker runs them at its next entry into
/// the kernel, which a busy worker makes many times a millisecond and an
/// idle one makes by waiting. Kernels before 5.19 refuse the flag and get a
/// plain ring.
fn uring_runtime() -> std::io::Result<monoio::Runtime<monoio::time::TimeDriver<IoUringDriver>>> {
    let mut urb = monoio_uring::IoUring::builder();
    urb.setup_coop_taskrun();
    match RuntimeBuilder::<IoUringDriver>::new()
        .uring_builder(urb)
        .enable_timer()
        .build()
    {
        Ok(rt) => Ok(rt),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => RuntimeBuilder::<IoUringDriver>::new()
            .enable_timer()
            .build(),
        Err(e) => Err(e),
    }
}

async fn worker_main(
    id: usize,
    config: Arc<Config>,
    listeners: Listeners,
    shared: Shared,
    driver: &'static str,
) {
    let register = |l: std::net::TcpListener| {
        monoio::net::TcpListener::from_std(l)
            .map_err(|e| error!(worker = id, error = %e, "cannot register listener"))
    };
    let Ok(plain) = register(listeners.plain) else {
        return;
    };
    let tls = match listeners.tls {
        Some((l, server)) => match register(l) {
            Ok(l) => Some((l, server)),
            Err(()) => return,
        },
        None => None,
    };
    let worker = Rc::new(Worker::new(
        id,
        config,
        shared.live,
        shared.directory,
        shared.mesh,
    ));
    if worker.config.hls.enabled {
        let cfg = crate::hub::PackagerConfig::from_config(&worker.config.hls);
        worker.hub.borrow_mut().set_hls(shared.hls, cfg);
    }
    worker.stats.io_driver.set(driver);
    monoio::spawn(inbox_loop(worker.clone(), shared.mailbox));
    monoio::spawn(control_loop(worker.clone(), shared.control));
    monoio::spawn(worker.egress.clone().run_windows());
    if driver == "io_uring"
        && worker.config.server.direct_writes
        && worker.config.server.batch_sends
    {
        match crate::egress::UringBatch::new() {
            Ok(b) => {
                worker.egress.set_sender(Some(Box::new(b)));
                tracing::debug!(worker = id, "fan-out sends batched on io_uring");
            }
            Err(e) => {
                warn!(worker = id, error = %e, "batched sends unavailable; sending one by one")
            }
        }
    }
    let accept = Accept {
        worker: worker.clone(),
        ops: shared.ops.clone(),
        limiter: shared.limiter,
    };
    if let Some((listener, server)) = tls {
        let accept = accept.clone();
        monoio::spawn(async move { accept.run(listener, Some(server), Service::Rtmp).await });
    }
    for (listener, serves, server) in listeners.http {
        let Ok(listener) = register(listener) else {
            return;
        };
        let accept = accept.clone();
        monoio::spawn(async move { accept.run(listener, server, Service::Http(serves)).await });
    }
    shared.ops.worker_ready();
    accept.run(plain, None, Service::Rtmp).await;
    // Draining: new connections go to other nodes; the ones here run on
    // until the control plane closes them and the process exits.
    std::future::pending::<()>().await;
}

/// Applies what other cores' hubs send, a whole batch per wake-up.
async fn inbox_loop(worker: Rc<Worker>, mailbox: Mailbox<StreamMsg>) {
    let mut batch = Vec::with_capacity(256);
    loop {
        mailbox.recv_batch(&mut batch).await;
        let now = std::time::Instant::now();
        let mut hub = worker.hub.borrow_mut();
        for msg in batch.drain(..) {
            hub.handle(msg, now);
        }
        hub.flush_wakes();
    }
}

/// Applies what the control plane asks of this worker.
async fn control_loop(worker: Rc<Worker>, mailbox: Mailbox<ControlMsg>) {
    let mut batch = Vec::new();
    loop {
        mailbox.recv_batch(&mut batch).await;
        for msg in batch.drain(..) {
            worker.handle_control(msg);
        }
    }
}
