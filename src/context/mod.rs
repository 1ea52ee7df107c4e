//! The per-core context: what every connection, edge pull and outbound
//! publish on one worker shares by `Rc` (the hub, the statistics, the live
//! settings, the client registry). It sits above the hub and egress, which
//! it holds, and below the code that uses it (`conn`, `upstream`, `http`);
//! `shard` builds one per worker thread.

pub mod admission;
pub mod control;
pub mod link;
pub mod live;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::egress::{CloseReason, Fanout, Outbox, QueueLimits};
use crate::hub::{Directory, Hub, HubConfig, StreamMsg};
use crate::metrics::{ConnRole, CoreStats, KickReason, Label, Protocol};
use crate::protocol::session::ServerConfig;
use crate::xcore::Mesh;
pub use control::{ClientInfo, ControlMsg, KickTarget, Snapshot};
pub use live::{live_settings, LiveSettings};

/// Everything a connection task on this core needs; shared by `Rc`, never
/// across threads.
pub struct Worker {
    pub id: usize,
    pub config: Arc<Config>,
    pub hub: RefCell<Hub>,
    /// How this core's subscribers' bytes leave: batched sends and
    /// coalescing windows.
    pub egress: Rc<Fanout>,
    pub stats: Rc<CoreStats>,
    /// Outbound publishes (forwards, pushes) running on this core, by
    /// kind, stream and targets: a publisher that comes back within the
    /// grace does not start them twice.
    pub outbound: RefCell<HashSet<String>>,
    next_conn: Cell<u64>,
    /// What a reload may change; read by new connections.
    pub(crate) live: RefCell<LiveSettings>,
    /// This core's connections, for the clients API, kicks and drains.
    clients: RefCell<HashMap<u64, Client>>,
    /// Set once by a drain: publishers are asked to reconnect elsewhere.
    draining: Cell<bool>,
    /// Tasks waiting in [`Worker::drained`] (the accept loop, idle
    /// kept-alive HTTP connections), by a key each wait takes; a wait that
    /// ends another way removes its entry, so this holds only live waits.
    drain_wakers: RefCell<HashMap<u64, Waker>>,
    next_drain_key: Cell<u64>,
    /// Snapshots taken so far (numbers each [`Snapshot`]).
    snapshots: Cell<u64>,
}

/// A connection as the worker tracks it (the connection task owns the rest).
pub struct Client {
    pub peer: SocketAddr,
    pub outbox: Rc<Outbox>,
    pub role: ConnRole,
    /// RTMP until the connection says otherwise (an HTTP player).
    pub protocol: Protocol,
    pub stream: Option<String>,
    pub since: Instant,
}

impl Client {
    /// The protocol it plays in, if it is a player.
    fn playing(&self) -> Option<Protocol> {
        (self.role == ConnRole::Player).then_some(self.protocol)
    }
}

impl Worker {
    pub fn new(
        id: usize,
        config: Arc<Config>,
        live: LiveSettings,
        directory: Arc<Directory>,
        mesh: Mesh<StreamMsg>,
    ) -> Worker {
        let stats = Rc::new(CoreStats::default());
        let egress = Fanout::new(stats.clone());
        let mut hub = Hub::new(
            id,
            HubConfig::from_config(&config),
            directory,
            mesh,
            stats.clone(),
        );
        hub.set_delivery(egress.clone());
        Worker {
            id,
            live: RefCell::new(live),
            clients: RefCell::new(HashMap::new()),
            draining: Cell::new(false),
            drain_wakers: RefCell::new(HashMap::new()),
            next_drain_key: Cell::new(0),
            snapshots: Cell::new(0),
            hub: RefCell::new(hub),
            egress,
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
                protocol: Protocol::Rtmp,
                stream: None,
                since: Instant::now(),
            },
        );
    }

    /// A connection started or stopped publishing or playing.
    pub fn set_client_role(&self, id: u64, role: ConnRole, stream: Option<&str>) {
        if let Some(c) = self.clients.borrow_mut().get_mut(&id) {
            self.stats.set_role(Some(c.role), Some(role));
            self.stats.set_player(
                c.playing(),
                (role == ConnRole::Player).then_some(c.protocol),
            );
            c.role = role;
            c.stream = stream.map(str::to_string);
        }
    }

    /// How a connection plays (an HTTP player says so once it knows).
    pub fn set_client_protocol(&self, id: u64, protocol: Protocol) {
        if let Some(c) = self.clients.borrow_mut().get_mut(&id) {
            if let Some(from) = c.playing() {
                self.stats.set_player(Some(from), Some(protocol));
            }
            c.protocol = protocol;
        }
    }

    pub fn remove_client(&self, id: u64) {
        if let Some(c) = self.clients.borrow_mut().remove(&id) {
            self.stats.set_role(Some(c.role), None);
            self.stats.set_player(c.playing(), None);
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
                protocol: c.protocol,
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
}
