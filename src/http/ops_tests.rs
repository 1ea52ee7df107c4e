//! The control plane against real workers' control handling: each core is
//! a thread with its own monoio runtime, a `Worker` and the control task
//! that answers the mesh, as in production; a core can be made to stall
//! (its thread blocked, as by a long burst of work) to see what a request
//! does without it. Requests run as tasks on a core, as the HTTP server
//! runs them, or on the test thread for the blocking calls.

use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Ops, Scope, REPLY_TIMEOUT};
use crate::config::Config;
use crate::context::{live_settings, ControlMsg, KickTarget, Snapshot, Worker};
use crate::egress::{Outbox, QueueLimits};
use crate::hub::{Directory, StreamMsg};
use crate::metrics::{ConnRole, Label, Protocol};
use crate::xcore;

type Cmd = Box<dyn FnOnce(&Rc<Worker>) + Send>;

/// Workers on their own threads, answering the control mesh of `ops`.
pub(crate) struct Cores {
    pub ops: Arc<Ops>,
    cmds: Vec<crossbeam_channel::Sender<Cmd>>,
    /// Per core: how long its next control batch blocks its thread.
    stall_ms: Arc<Vec<AtomicU64>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Cores {
    pub fn start(n: usize, config: Config) -> Cores {
        let config = Arc::new(config);
        let ops = Arc::new(Ops::new(config.clone(), n));
        let (control, control_boxes) = xcore::build::<ControlMsg>(n);
        ops.set_mesh(control);
        let (mesh, stream_boxes) = xcore::build::<StreamMsg>(n);
        let directory = Arc::new(Directory::new(16));
        let stall_ms: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let mut cmds = Vec::new();
        let mut threads = Vec::new();
        for (id, (control, streams)) in control_boxes.into_iter().zip(stream_boxes).enumerate() {
            let (tx, rx) = crossbeam_channel::unbounded::<Cmd>();
            cmds.push(tx);
            let (config, directory, mesh) = (config.clone(), directory.clone(), mesh.clone());
            let (stall_ms, stop) = (stall_ms.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                    .enable_timer()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let _streams = streams;
                    let live = live_settings(&config);
                    let worker = Rc::new(Worker::new(id, config, live, directory, mesh));
                    let w = worker.clone();
                    monoio::spawn(async move {
                        let mut batch = Vec::new();
                        loop {
                            control.recv_batch(&mut batch).await;
                            let ms = stall_ms[id].swap(0, Ordering::AcqRel);
                            if ms > 0 {
                                std::thread::sleep(Duration::from_millis(ms));
                            }
                            for msg in batch.drain(..) {
                                w.handle_control(msg);
                            }
                        }
                    });
                    while !stop.load(Ordering::Acquire) {
                        while let Ok(cmd) = rx.try_recv() {
                            cmd(&worker);
                        }
                        monoio::time::sleep(Duration::from_millis(1)).await;
                    }
                });
            }));
        }
        Cores {
            ops,
            cmds,
            stall_ms,
            stop,
            threads,
        }
    }

    /// Runs `f` on core `core`'s thread and returns its result.
    pub fn on<R: Send + 'static>(
        &self,
        core: usize,
        f: impl FnOnce(&Rc<Worker>) -> R + Send + 'static,
    ) -> R {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let cmd: Cmd = Box::new(move |w| {
            let _ = tx.send(f(w));
        });
        self.cmds[core].send(cmd).expect("core alive");
        rx.recv_timeout(Duration::from_secs(10))
            .expect("core answered")
    }

    /// Runs the future `f` makes as a task on core `core` (as the HTTP
    /// server runs a request) and waits for its output.
    pub fn run<R, F>(&self, core: usize, f: impl FnOnce(Rc<Worker>) -> F + Send + 'static) -> R
    where
        R: Send + 'static,
        F: Future<Output = R> + 'static,
    {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let cmd: Cmd = Box::new(move |w| {
            let fut = f(w.clone());
            monoio::spawn(async move {
                let _ = tx.send(fut.await);
            });
        });
        self.cmds[core].send(cmd).expect("core alive");
        rx.recv_timeout(Duration::from_secs(10))
            .expect("task finished")
    }

    /// Core `core`'s next control batch blocks its thread for `d`.
    pub fn stall(&self, core: usize, d: Duration) {
        self.stall_ms[core].store(d.as_millis() as u64, Ordering::Release);
    }

    /// A client on `core` playing in `protocol`; its id.
    pub fn add_player(&self, core: usize, protocol: Protocol, stream: &str) -> u64 {
        let stream = stream.to_string();
        self.on(core, move |w| {
            let id = w.next_conn_id();
            let peer: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
            w.add_client(id, peer, Rc::new(Outbox::new(QueueLimits::default())));
            w.set_client_protocol(id, protocol);
            w.set_client_role(id, ConnRole::Player, Some(&stream));
            id
        })
    }
}

impl Drop for Cores {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn bytes_out(snap: &Snapshot, p: Protocol) -> u64 {
    snap.stats.bytes_out[p.index()]
}

#[test]
fn a_request_on_a_worker_hears_every_core_including_its_own() {
    let cores = Cores::start(3, Config::default());
    cores.add_player(2, Protocol::WsFlv, "live/a");
    let ops = cores.ops.clone();
    let snaps = cores.run(0, move |_| async move { ops.collect_async().await });
    let by_core: Vec<usize> = snaps.iter().map(|s| s.core).collect();
    assert_eq!(by_core, vec![0, 1, 2]);
    assert_eq!(snaps[2].clients.len(), 1);
    assert_eq!(snaps[2].clients[0].protocol, Protocol::WsFlv);
    assert_eq!(snaps[2].stats.players[Protocol::WsFlv.index()], 1);
}

#[test]
fn a_core_that_misses_the_deadline_shows_its_last_snapshot() {
    let cores = Cores::start(2, Config::default());
    cores.on(1, |w| w.stats.add_out(Protocol::HttpFlv, 100));
    let ops = cores.ops.clone();
    let first = cores.run(0, move |_| async move { ops.collect_async().await });
    assert_eq!(bytes_out(&first[1], Protocol::HttpFlv), 100);

    // Core 1 moves on, then stalls past the deadline.
    cores.on(1, |w| w.stats.add_out(Protocol::HttpFlv, 50));
    cores.on(0, |w| w.stats.add_out(Protocol::Rtmp, 7));
    cores.stall(1, REPLY_TIMEOUT + Duration::from_millis(500));
    let ops = cores.ops.clone();
    let (second, took) = cores.run(0, move |_| async move {
        let t = Instant::now();
        (ops.collect_async().await, t.elapsed())
    });
    assert!(
        took >= REPLY_TIMEOUT,
        "answered before the deadline: {took:?}"
    );
    assert!(
        took < REPLY_TIMEOUT + Duration::from_millis(400),
        "{took:?}"
    );
    assert_eq!(second.len(), 2, "the stalled core is still shown");
    assert_eq!(second[1].seq, first[1].seq, "its last copy stands in");
    assert_eq!(bytes_out(&second[1], Protocol::HttpFlv), 100);
    assert_eq!(bytes_out(&second[0], Protocol::Rtmp), 7, "core 0 is fresh");

    // Back from its stall, it answers with what it counted meanwhile.
    let ops = cores.ops.clone();
    let third = cores.run(1, move |_| async move { ops.collect_async().await });
    assert!(third[1].seq > second[1].seq);
    assert_eq!(bytes_out(&third[1], Protocol::HttpFlv), 150);
}

#[test]
fn a_scrape_never_lowers_a_counter() {
    let cores = Cores::start(2, Config::default());
    let page = |cores: &Cores| {
        let ops = cores.ops.clone();
        cores.run(
            0,
            move |_| async move { super::super::metrics_text(&ops).await },
        )
    };
    let series = "cascade_bytes_out_total{worker=\"1\",protocol=\"http-flv\"}";
    cores.on(1, |w| w.stats.add_out(Protocol::HttpFlv, 1000));
    let before = value(&page(&cores), series);
    assert_eq!(before, Some(1000.0));
    cores.stall(1, REPLY_TIMEOUT + Duration::from_millis(300));
    let during = value(&page(&cores), series);
    assert_eq!(during, before, "a stalled core keeps its last figures");
}

/// The value of `series` on a Prometheus page.
pub(crate) fn value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn a_kick_counts_what_the_cores_that_answered_closed() {
    let cores = Cores::start(2, Config::default());
    cores.add_player(0, Protocol::Rtmp, "live/k");
    cores.add_player(1, Protocol::HttpFlv, "live/k");
    cores.stall(1, REPLY_TIMEOUT + Duration::from_millis(300));
    let ops = cores.ops.clone();
    let target = KickTarget::Stream("live/k".into());
    let n = cores.run(0, move |_| async move { ops.kick_async(target).await });
    assert_eq!(n, 1, "the stalled core's kick is not counted");
    // It still happens there: the message was queued.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(cores.ops.kick(KickTarget::Stream("live/k".into())), 0);
}

#[test]
fn the_blocking_calls_share_the_cache() {
    let cores = Cores::start(2, Config::default());
    cores.add_player(0, Protocol::Rtmp, "live/b");
    cores.add_player(1, Protocol::Rtmp, "live/b");
    assert_eq!(cores.ops.connections(), 2);
    cores.stall(0, REPLY_TIMEOUT + Duration::from_millis(300));
    let snaps = cores.ops.collect();
    assert_eq!(snaps.len(), 2);
    assert_eq!(cores.ops.connections(), 2);
}

#[test]
fn a_player_changing_protocol_moves_in_the_gauge() {
    let cores = Cores::start(1, Config::default());
    let id = cores.add_player(0, Protocol::Rtmp, "live/p");
    cores.on(0, move |w| w.set_client_protocol(id, Protocol::HttpFlv));
    let players = cores.ops.collect()[0].stats.players.clone();
    assert_eq!(players, vec![0, 1, 0, 0, 0]);
    cores.on(0, move |w| w.set_client_role(id, ConnRole::Idle, None));
    assert_eq!(cores.ops.collect()[0].stats.players, vec![0, 0, 0, 0, 0]);
    let id = cores.add_player(0, Protocol::WsFlv, "live/p");
    cores.on(0, move |w| w.remove_client(id));
    assert_eq!(cores.ops.collect()[0].stats.players, vec![0, 0, 0, 0, 0]);
}

fn ops_with(token: &str, metrics_token: bool) -> Ops {
    let mut config = Config::default();
    config.http.api_token = token.into();
    config.http.metrics_token = metrics_token;
    Ops::new(Arc::new(config), 1)
}

#[test]
fn without_a_token_everything_is_open() {
    let ops = ops_with("", true);
    assert!(ops.authorized(Scope::Api, None));
    assert!(ops.authorized(Scope::Metrics, Some("Bearer anything")));
}

#[test]
fn the_api_asks_for_the_bearer_token() {
    let ops = ops_with("s3cret", false);
    assert!(ops.authorized(Scope::Api, Some("Bearer s3cret")));
    assert!(ops.authorized(Scope::Api, Some("bearer s3cret")));
    assert!(ops.authorized(Scope::Api, Some("  Bearer   s3cret ")));
    for bad in [
        None,
        Some(""),
        Some("Bearer"),
        Some("Bearer "),
        Some("Bearer s3cre"),
        Some("Bearer s3cret2"),
        Some("Bearer S3CRET"),
        Some("Basic s3cret"),
        Some("s3cret"),
    ] {
        assert!(!ops.authorized(Scope::Api, bad), "{bad:?}");
    }
    // /metrics stays open unless http.metrics_token says otherwise.
    assert!(ops.authorized(Scope::Metrics, None));
}

#[test]
fn metrics_token_puts_metrics_behind_the_same_token() {
    let ops = ops_with("s3cret", true);
    assert!(!ops.authorized(Scope::Metrics, None));
    assert!(!ops.authorized(Scope::Metrics, Some("Bearer nope")));
    assert!(ops.authorized(Scope::Metrics, Some("Bearer s3cret")));
}

#[test]
fn a_reload_changes_the_token() {
    let ops = ops_with("old", false);
    let mut config = (*ops.config()).clone();
    config.http.api_token = "new".into();
    ops.reload(Arc::new(config));
    assert!(!ops.authorized(Scope::Api, Some("Bearer old")));
    assert!(ops.authorized(Scope::Api, Some("Bearer new")));
    let mut open = (*ops.config()).clone();
    open.http.api_token = String::new();
    ops.reload(Arc::new(open));
    assert!(ops.authorized(Scope::Api, None));
}
