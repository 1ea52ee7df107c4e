//! Workers: one pinned thread per core, each with its own monoio runtime
//! and SO_REUSEPORT listener. A connection lives its whole life on the
//! worker that accepted it.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::http::Ops;
use crate::hub::{
    ClientInfo, CloseReason, CoreMsg, Directory, Hub, KickTarget, LiveSettings, Outbox,
    QueueLimits, Snapshot,
};
use crate::metrics::{ConnRole, CoreStats, KickReason, Label};
use crate::protocol::session::ServerConfig;
use crate::transport::TlsServer;
use crate::xcore::{self, Mailbox, Mesh};

mod accept;
use accept::Accept;

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

/// Everything a connection task on this core needs; shared by `Rc`, never
/// across threads.
pub struct Worker {
    pub id: usize,
    pub config: Arc<Config>,
    pub session_config: ServerConfig,
    pub queue_limits: QueueLimits,
    pub hub: RefCell<Hub>,
    pub stats: Rc<CoreStats>,
    /// Outbound publishes (forwards, pushes) running on this core, by
    /// kind, stream and targets: a publisher that comes back within the
    /// grace does not start them twice.
    pub outbound: RefCell<HashSet<String>>,
    next_conn: Cell<u64>,
    /// What a reload may change; read by new connections.
    live: RefCell<LiveSettings>,
    /// This core's connections, for the clients API, kicks and drains.
    clients: RefCell<HashMap<u64, Client>>,
    /// Set once by a drain: publishers are asked to reconnect elsewhere.
    draining: Cell<bool>,
    drain_waker: Cell<Option<Waker>>,
}

/// A connection as the worker tracks it (the connection task owns the rest).
pub struct Client {
    pub peer: SocketAddr,
    pub outbox: Rc<Outbox>,
    pub role: ConnRole,
    pub stream: Option<String>,
    pub since: Instant,
}

impl Worker {
    pub fn new(
        id: usize,
        config: Arc<Config>,
        live: LiveSettings,
        directory: Arc<Directory>,
        mesh: Mesh<CoreMsg>,
    ) -> Worker {
        let stats = Rc::new(CoreStats::default());
        Worker {
            id,
            live: RefCell::new(live),
            clients: RefCell::new(HashMap::new()),
            draining: Cell::new(false),
            drain_waker: Cell::new(None),
            session_config: config.session_config(),
            queue_limits: config.queue_limits(),
            hub: RefCell::new(Hub::new(
                id,
                config.hub_config(),
                directory,
                mesh,
                stats.clone(),
            )),
            stats,
            config,
            next_conn: Cell::new(0),
            outbound: RefCell::new(HashSet::new()),
        }
    }

    /// Connection ids unique across workers: worker id in the high bits.
    pub fn next_conn_id(&self) -> u64 {
        let n = self.next_conn.get() + 1;
        self.next_conn.set(n);
        ((self.id as u64) << 48) | n
    }

    /// Session settings for a new connection (changes on reload).
    pub fn live_session_config(&self) -> ServerConfig {
        self.live.borrow().session.clone()
    }

    /// The `[auth]` policy for the next decision (changes on reload).
    pub fn auth(&self) -> Arc<crate::auth::Policy> {
        self.live.borrow().auth.clone()
    }

    /// Queue limits for a new connection (changes on reload).
    pub fn live_queue_limits(&self) -> QueueLimits {
        self.live.borrow().queue.clone()
    }

    /// A publisher (connection or edge pull) left `key`: players wait for a
    /// new one, and the stream ends if none comes within the grace.
    pub fn unpublish(worker: &Rc<Worker>, key: &str, publisher: u64, now: std::time::Instant) {
        worker.hub.borrow_mut().unpublish(key, publisher, now);
        let grace = worker.hub.borrow().config().publisher_grace;
        if !grace.is_zero() {
            let worker = worker.clone();
            monoio::spawn(async move {
                monoio::time::sleep(grace).await;
                worker.hub.borrow_mut().expire(std::time::Instant::now());
            });
        }
    }

    pub fn handshake_timeout(&self) -> Duration {
        self.live.borrow().handshake_timeout
    }

    /// (publisher no-media timeout, idle connection timeout, pause timeout)
    pub fn read_timeouts(&self) -> (Duration, Duration, Duration) {
        let live = self.live.borrow();
        (
            live.publisher_timeout,
            live.idle_timeout,
            live.pause_timeout,
        )
    }

    /// Refused publishes or plays a connection may make before it is closed.
    pub fn max_refusals(&self) -> u32 {
        self.live.borrow().max_refusals
    }

    /// True once a drain started: publishers should be asked to move.
    pub fn draining(&self) -> bool {
        self.draining.get()
    }

    /// Registers a new connection (in the handshake).
    pub fn add_client(&self, id: u64, peer: SocketAddr, outbox: Rc<Outbox>) {
        self.stats.set_role(None, Some(ConnRole::Handshake));
        self.clients.borrow_mut().insert(
            id,
            Client {
                peer,
                outbox,
                role: ConnRole::Handshake,
                stream: None,
                since: Instant::now(),
            },
        );
    }

    /// A connection started or stopped publishing or playing.
    pub fn set_client_role(&self, id: u64, role: ConnRole, stream: Option<&str>) {
        if let Some(c) = self.clients.borrow_mut().get_mut(&id) {
            self.stats.set_role(Some(c.role), Some(role));
            c.role = role;
            c.stream = stream.map(str::to_string);
        }
    }

    pub fn remove_client(&self, id: u64) {
        if let Some(c) = self.clients.borrow_mut().remove(&id) {
            self.stats.set_role(Some(c.role), None);
        }
    }

    pub fn client_infos(&self) -> Vec<ClientInfo> {
        self.clients
            .borrow()
            .iter()
            .map(|(id, c)| ClientInfo {
                id: *id,
                peer: c.peer.to_string(),
                role: ConnRole::NAMES.get(c.role.index()).copied().unwrap_or("?"),
                stream: c.stream.clone(),
                connected_ms: c.since.elapsed().as_millis() as u64,
            })
            .collect()
    }

    /// Closes matching connections: their writer stops and shuts the socket,
    /// so the reader ends and leaves its stream as on any disconnect.
    pub fn kick(&self, target: &KickTarget, reason: KickReason) -> usize {
        let clients = self.clients.borrow();
        let mut n = 0;
        for (id, c) in clients.iter() {
            let hit = match target {
                KickTarget::All => true,
                KickTarget::Client(want) => want == id,
                KickTarget::Stream(key) => c.stream.as_deref() == Some(key.as_str()),
            };
            if hit && c.outbox.closed().is_none() {
                c.outbox.close(CloseReason::Broken);
                self.stats.kicks.inc(reason);
                n += 1;
            }
        }
        n
    }

    fn start_drain(&self) {
        if !self.draining.replace(true) {
            info!(worker = self.id, "draining: listener closed");
            if let Some(w) = self.drain_waker.take() {
                w.wake();
            }
        }
    }

    /// Resolves once a drain started.
    async fn drained(&self) {
        poll_fn(|cx| {
            if self.draining.get() {
                Poll::Ready(())
            } else {
                self.drain_waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    /// Messages for the worker rather than the hub; returns the others.
    fn handle_control(&self, msg: CoreMsg) -> Option<CoreMsg> {
        match msg {
            CoreMsg::Reload(live) => {
                self.hub.borrow_mut().set_config(live.hub.clone());
                *self.live.borrow_mut() = *live;
                None
            }
            CoreMsg::Drain => {
                self.start_drain();
                None
            }
            CoreMsg::Kick { target, reply } => {
                let reason = if matches!(target, KickTarget::All) {
                    KickReason::Drain
                } else {
                    KickReason::Api
                };
                let _ = reply.send(self.kick(&target, reason));
                None
            }
            CoreMsg::Snapshot { reply } => {
                let hub = self.hub.borrow();
                let _ = reply.send(Snapshot {
                    core: self.id,
                    streams: hub.stream_infos(),
                    stats: self.stats.snapshot(),
                    clients: self.client_infos(),
                });
                None
            }
            other => Some(other),
        }
    }
}

/// The part of the configuration a reload may change.
pub fn live_settings(config: &Config) -> LiveSettings {
    LiveSettings {
        hub: config.hub_config(),
        queue: config.queue_limits(),
        session: config.session_config(),
        handshake_timeout: Duration::from_millis(config.limits.handshake_timeout_ms),
        publisher_timeout: Duration::from_millis(config.limits.publisher_timeout_ms),
        idle_timeout: Duration::from_millis(config.limits.idle_timeout_ms),
        pause_timeout: Duration::from_millis(config.limits.pause_timeout_ms),
        max_refusals: config.limits.max_refusals_per_connection,
        auth: Arc::new(
            crate::auth::Policy::from_config(&config.auth).unwrap_or_else(|e| {
                // Validation refuses such a file first; never fall back to open.
                error!(error = %e, "bad [auth]; denying every publish and play");
                crate::auth::Policy::deny_all()
            }),
        ),
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
    let limiter = crate::auth::ConnLimiter::new();
    let (mesh, mailboxes) = xcore::build::<CoreMsg>(workers);
    ops.set_mesh(mesh.clone());
    crate::http::start(&config, ops.clone())?;
    let mut handles = Vec::new();
    // Built once and cloned: the auth hook's request threads and queue are
    // the node's, shared by every worker, as after a reload.
    let live = live_settings(&config);
    for (id, mailbox) in mailboxes.into_iter().enumerate() {
        let shared = Shared {
            directory: directory.clone(),
            mesh: mesh.clone(),
            mailbox,
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

/// A worker's listening sockets: plain RTMP, and RTMPS when configured.
struct Listeners {
    plain: std::net::TcpListener,
    tls: Option<(std::net::TcpListener, Arc<TlsServer>)>,
}

/// What a worker gets from start-up: the directory, the channels to every
/// core, and its own inbox.
struct Shared {
    directory: Arc<Directory>,
    mesh: Mesh<CoreMsg>,
    mailbox: Mailbox<CoreMsg>,
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
        match RuntimeBuilder::<IoUringDriver>::new()
            .enable_timer()
            .build()
        {
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
    worker.stats.io_driver.set(driver);
    monoio::spawn(inbox_loop(worker.clone(), shared.mailbox));
    let coalescer = worker.hub.borrow().coalescer();
    monoio::spawn(coalescer.run());
    if driver == "io_uring"
        && worker.config.server.direct_writes
        && worker.config.server.batch_sends
    {
        match crate::transport::UringBatch::new() {
            Ok(b) => {
                let stats = Some(worker.stats.clone());
                worker
                    .hub
                    .borrow()
                    .fanout()
                    .set_sender(Some(Box::new(b)), stats);
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
        monoio::spawn(async move { accept.run(listener, Some(server)).await });
    }
    shared.ops.worker_ready();
    accept.run(plain, None).await;
    // Draining: new connections go to other nodes; the ones here run on
    // until the control plane closes them and the process exits.
    std::future::pending::<()>().await;
}

/// Applies what other cores send, a whole batch per wake-up.
async fn inbox_loop(worker: Rc<Worker>, mailbox: Mailbox<CoreMsg>) {
    let mut batch = Vec::with_capacity(256);
    loop {
        mailbox.recv_batch(&mut batch).await;
        let now = std::time::Instant::now();
        let mut hub = worker.hub.borrow_mut();
        for msg in batch.drain(..) {
            if matches!(
                msg,
                CoreMsg::Reload(_)
                    | CoreMsg::Drain
                    | CoreMsg::Kick { .. }
                    | CoreMsg::Snapshot { .. }
            ) {
                // The worker's own messages need the hub unborrowed.
                drop(hub);
                let _ = worker.handle_control(msg);
                hub = worker.hub.borrow_mut();
                continue;
            }
            hub.handle(msg, now);
        }
        hub.flush_wakes();
    }
}
