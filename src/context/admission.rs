//! Admission of a publish or play, for every protocol path (RTMP
//! connections, HTTP players): the `[auth]` decision from local checks,
//! then the HTTP hook where the app uses one; refusals logged (reason only,
//! never the key or token, within a per-second budget) and counted.

use std::net::SocketAddr;
use std::time::Instant;

use tracing::{debug, info, warn};

use super::Worker;
use crate::auth::{self, Action, Denial};
use crate::protocol::command::StreamPath;

/// The `[auth]` decision for one publish or play; a refusal is logged
/// (reason only, never the key or token) and counted.
pub fn authorize(
    worker: &Worker,
    peer: SocketAddr,
    action: Action,
    path: &StreamPath,
) -> Result<(), Denial> {
    let policy = worker.auth();
    if policy.is_open(action, &path.key()) {
        return Ok(());
    }
    let started = Instant::now();
    let result = policy.check(action, peer.ip(), path, auth::now_unix());
    worker.stats.auth_decision.record(started.elapsed());
    count_denial(worker, action, path, result)
}

/// [`authorize`], then the auth hook where the app uses one.
pub async fn authorize_with_hook(
    worker: &Worker,
    peer: SocketAddr,
    tc_url: &str,
    action: Action,
    path: &StreamPath,
) -> Result<(), Denial> {
    authorize(worker, peer, action, path)?;
    let policy = worker.auth();
    let Some(hook) = policy.hook_for(action, &path.key()) else {
        return Ok(());
    };
    let request = auth::HookRequest {
        key: path.key(),
        action: action.as_str(),
        app: path.app.clone(),
        stream: path.name.clone(),
        query: path.query.clone(),
        client_ip: peer.ip().to_string(),
        client_port: peer.port(),
        tc_url: tc_url.to_string(),
    };
    let started = Instant::now();
    let outcome = hook.ask(&request).await;
    worker.stats.auth_decision.record(started.elapsed());
    match &outcome {
        auth::Outcome::Allow => debug!(stream = %path.key(), "auth hook: allowed"),
        auth::Outcome::Deny(status) => {
            info!(stream = %path.key(), action = %action.as_str(), status, "auth hook: refused")
        }
        auth::Outcome::Failed(why) => warn!(
            stream = %path.key(),
            action = %action.as_str(),
            error = %why,
            "auth hook failed; applying auth.hook_on_error"
        ),
        // Refused below whatever auth.hook_on_error says; the denial
        // line is the one log line it gets.
        auth::Outcome::Busy => {}
    }
    count_denial(worker, action, path, policy.hook_verdict(&outcome))
}

fn count_denial(
    worker: &Worker,
    action: Action,
    path: &StreamPath,
    result: Result<(), Denial>,
) -> Result<(), Denial> {
    if let Err(d) = result {
        if log_budget() {
            warn!(stream = %path.key(), action = %action.as_str(), reason = %d.as_str(), "auth: denied");
        }
        worker
            .stats
            .auth_rejected
            .inc(auth::rejection_label(action, d));
    }
    result
}

/// Denial warnings one worker writes per second; past it they are only
/// counted (`cascade_auth_rejected_total`), so a flood of refused clients
/// cannot flood the log.
const DENIAL_LOGS_PER_SECOND: u32 = 20;

/// True while this second's denial-log budget lasts.
fn log_budget() -> bool {
    thread_local! {
        static WINDOW: std::cell::Cell<(Option<Instant>, u32)> =
            const { std::cell::Cell::new((None, 0)) };
    }
    WINDOW.with(|w| {
        let now = Instant::now();
        let (start, n) = w.get();
        let fresh = !start.is_some_and(|s| now.duration_since(s).as_secs() < 1);
        let (start, n) = if fresh {
            (now, 0)
        } else {
            (start.unwrap_or(now), n)
        };
        w.set((Some(start), n + 1));
        n < DENIAL_LOGS_PER_SECOND
    })
}
