//! Edge mode: a play for a stream this node does not have pulls it from an
//! origin, once per node however many players and cores ask, and the pull
//! becomes the stream's publisher on one core.
//!
//! The play path (conn) calls [`await_stream`]; the directory decides which
//! caller starts the pull ([`pull::run`]), the others wait for the stream to
//! appear. Nothing here runs unless `edge.origins` is set.
//!
//! The other direction: a publish accepted here may be sent on to an
//! origin and to static push targets ([`forward`], one [`outbound`]
//! connection per target).

pub mod dial;
pub mod forward;
pub mod outbound;
pub mod pull;
pub mod select;

use std::rc::Rc;
use std::time::{Duration, Instant};

use tracing::debug;

use crate::config::Config;
use crate::context::Worker;
use crate::hub::PullRegistration;
use crate::protocol::command::StreamPath;

/// How often a waiting player looks for its stream (play start only).
const WAIT_POLL: Duration = Duration::from_millis(20);
/// Waiters outlast the pull's own start deadline by this much, so they see
/// its verdict rather than race it.
const WAIT_SLACK: Duration = Duration::from_millis(500);

/// Whether this node pulls the unknown stream `key` (`app/name`) from origins.
pub fn enabled(config: &Config, key: &str) -> bool {
    let edge = &config.edge;
    if edge.app.is_empty() {
        return !edge.origins.is_empty();
    }
    !edge.for_key(key).origins.is_empty()
}

/// At play start, for a key the directory does not have: makes sure one
/// pull runs for it on this node (starting it on this core if none does)
/// and waits until the stream exists, the pull gave up, or the start
/// timeout passed. Returns whether the stream can be played now.
pub async fn await_stream(worker: &Rc<Worker>, path: &StreamPath) -> bool {
    let key = path.key();
    let edge = worker.config.edge.for_key(&key);
    let directory = worker.hub.borrow().directory().clone();
    let id = worker.next_conn_id();
    if directory.register_pull(&key, worker.id, id) == PullRegistration::Started {
        debug!(stream = %key, "edge: starting a pull");
        let target = pull::Target::new(path, edge.pass_query);
        monoio::spawn(pull::run(worker.clone(), target, id));
    }
    let deadline = Instant::now() + Duration::from_millis(edge.start_timeout_ms) + WAIT_SLACK;
    loop {
        if worker.hub.borrow().contains(&key) {
            return true;
        }
        if directory.pull(&key).is_none() || Instant::now() >= deadline {
            // The pull gave up (or ended) without the stream, or took too long.
            return worker.hub.borrow().contains(&key);
        }
        monoio::time::sleep(WAIT_POLL).await;
    }
}
