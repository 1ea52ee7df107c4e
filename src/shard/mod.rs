//! Workers: one pinned thread per core, each with its own monoio runtime
//! and SO_REUSEPORT listener. A connection lives its whole life on the
//! worker that accepted it.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::hub::{CoreMsg, Directory, Hub, QueueLimits};
use crate::metrics::CoreStats;
use crate::protocol::session::ServerConfig;
use crate::xcore::{self, Mailbox, Mesh};

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
    next_conn: Cell<u64>,
}

impl Worker {
    pub fn new(
        id: usize,
        config: Arc<Config>,
        directory: Arc<Directory>,
        mesh: Mesh<CoreMsg>,
    ) -> Worker {
        let stats = Rc::new(CoreStats::default());
        Worker {
            id,
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
        }
    }

    /// Connection ids unique across workers: worker id in the high bits.
    pub fn next_conn_id(&self) -> u64 {
        let n = self.next_conn.get() + 1;
        self.next_conn.set(n);
        ((self.id as u64) << 48) | n
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
pub fn run(config: Arc<Config>, workers: usize, driver: IoDriver) -> std::io::Result<()> {
    let addr: SocketAddr = config.server.listen.parse().map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("server.listen: {e}"),
        )
    })?;
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let directory = Arc::new(Directory::new(config.limits.max_streams));
    let (mesh, mailboxes) = xcore::build::<CoreMsg>(workers);
    if !config.http.listen.is_empty() {
        crate::http::spawn(config.http.listen.clone(), mesh.clone())?;
    }
    let mut handles = Vec::new();
    for (id, mailbox) in mailboxes.into_iter().enumerate() {
        let shared = Shared {
            directory: directory.clone(),
            mesh: mesh.clone(),
            mailbox,
        };
        // Bind on the main thread so address errors surface at start-up.
        let listener = reuseport_listener(addr)?;
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
                run_worker(id, config, listener, driver, shared);
            })?;
        handles.push(handle);
    }
    info!(%addr, workers, "listening");
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

/// What a worker gets from start-up: the directory, the channels to every
/// core, and its own inbox.
struct Shared {
    directory: Arc<Directory>,
    mesh: Mesh<CoreMsg>,
    mailbox: Mailbox<CoreMsg>,
}

fn run_worker(
    id: usize,
    config: Arc<Config>,
    listener: std::net::TcpListener,
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
                rt.block_on(worker_main(id, config, listener, shared));
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
            rt.block_on(worker_main(id, config, listener, shared));
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
    listener: std::net::TcpListener,
    shared: Shared,
) {
    let listener = match monoio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            error!(worker = id, error = %e, "cannot register listener");
            return;
        }
    };
    let worker = Rc::new(Worker::new(id, config, shared.directory, shared.mesh));
    monoio::spawn(inbox_loop(worker.clone(), shared.mailbox));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                worker
                    .stats
                    .connections
                    .set(worker.stats.connections.get() + 1);
                monoio::spawn(crate::conn::serve(worker.clone(), stream, peer));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(worker = id, error = %e, "accept failed");
                monoio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Applies what other cores send, a whole batch per wake-up.
async fn inbox_loop(worker: Rc<Worker>, mailbox: Mailbox<CoreMsg>) {
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
