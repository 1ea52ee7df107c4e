//! The HTTP auth hook: a publish or play is described in a JSON POST to an
//! operator's service, and a 2xx answer allows it.
//!
//! The request runs on a small pool of blocking threads shared by every
//! worker (started on first use), so a slow hook never stalls a core: the
//! connection awaits the answer while the core goes on. The queue in front
//! of the pool is bounded. A timeout, an unreachable hook or a 5xx answer is
//! a hook *failure*, resolved by `auth.hook_on_error`; a full queue is not:
//! it is [`Outcome::Busy`] and always refuses, since otherwise anyone could
//! flood the queue with plays and, under `hook_on_error = "allow"`, be let in.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::Serialize;

/// What the hook is told about one publish or play.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HookRequest {
    /// "publish" or "play".
    pub action: &'static str,
    pub app: String,
    /// The stream name without its query.
    pub stream: String,
    /// The routing key (`app/name`): one value however the client split
    /// it between app and name, so a hook should decide on this.
    pub key: String,
    /// The query the client sent (stream name's, else tcUrl's), unparsed.
    pub query: String,
    /// The client's address and port.
    pub client_ip: String,
    pub client_port: u16,
    /// The tcUrl of the client's `connect`.
    pub tc_url: String,
}

/// How the hook answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx status.
    Allow,
    /// A 3xx or 4xx status: the hook refused.
    Deny(u16),
    /// No usable answer (timeout, connection error, 5xx).
    Failed(String),
    /// Not asked: `auth.hook_max_pending` requests were already waiting.
    Busy,
}

#[derive(Debug, Clone)]
pub struct HookConfig {
    pub url: String,
    pub timeout: Duration,
    pub threads: usize,
    pub max_pending: usize,
}

struct Job {
    body: String,
    reply: futures_channel::oneshot::Sender<Outcome>,
}

/// A hook endpoint with its (lazily started) request pool.
pub struct Hook {
    config: HookConfig,
    queue: OnceLock<Sender<Job>>,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("url", &super::redact::url(&self.config.url).to_string())
            .finish()
    }
}

impl Hook {
    pub fn new(config: HookConfig) -> Arc<Hook> {
        Arc::new(Hook {
            config,
            queue: OnceLock::new(),
        })
    }

    fn queue(&self) -> &Sender<Job> {
        self.queue.get_or_init(|| {
            let (tx, rx) = crossbeam_channel::bounded(self.config.max_pending.max(1));
            let agent = ureq::AgentBuilder::new()
                .timeout(self.config.timeout)
                .redirects(0)
                .build();
            for i in 0..self.config.threads.max(1) {
                let rx: Receiver<Job> = rx.clone();
                let agent = agent.clone();
                let url = self.config.url.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("auth-hook-{i}"))
                    .spawn(move || serve(rx, agent, url));
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "auth hook: cannot start a request thread");
                }
            }
            tx
        })
    }

    /// Queues one request body without waiting; the receiver gets the
    /// answer. A full queue is [`Outcome::Busy`].
    fn submit(&self, body: String) -> Result<futures_channel::oneshot::Receiver<Outcome>, Outcome> {
        let (reply, answer) = futures_channel::oneshot::channel();
        match self.queue().try_send(Job { body, reply }) {
            Ok(()) => Ok(answer),
            Err(TrySendError::Full(_)) => Err(Outcome::Busy),
            Err(TrySendError::Disconnected(_)) => {
                Err(Outcome::Failed("no hook request thread".into()))
            }
        }
    }

    /// Asks the hook about one request; never waits longer than the
    /// configured timeout (plus a little for the thread hand-off).
    pub async fn ask(&self, request: &HookRequest) -> Outcome {
        let body = match serde_json::to_string(request) {
            Ok(b) => b,
            Err(e) => return Outcome::Failed(format!("encode: {e}")),
        };
        let answer = match self.submit(body) {
            Ok(answer) => answer,
            Err(outcome) => return outcome,
        };
        let limit = self.config.timeout + Duration::from_millis(250);
        match monoio::time::timeout(limit, answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Outcome::Failed("hook request thread gone".into()),
            Err(_) => Outcome::Failed("timed out".into()),
        }
    }
}

/// One request thread: posts each job and sends back the outcome. Ends
/// when the hook is dropped (a reload replaced it).
fn serve(rx: Receiver<Job>, agent: ureq::Agent, url: String) {
    for job in rx {
        let outcome = match agent
            .post(&url)
            .set("Content-Type", "application/json")
            .send_string(&job.body)
        {
            Ok(resp) if (200..300).contains(&resp.status()) => Outcome::Allow,
            Ok(resp) => Outcome::Deny(resp.status()),
            Err(ureq::Error::Status(code, _)) if code >= 500 => {
                Outcome::Failed(format!("status {code}"))
            }
            Err(ureq::Error::Status(code, _)) => Outcome::Deny(code),
            Err(ureq::Error::Transport(t)) => Outcome::Failed(transport_error(&t)),
        };
        // The connection may have given up (timeout or closed): fine.
        let _ = job.reply.send(outcome);
    }
}

/// A transport error for the log, without the URL ureq puts in its own
/// message (the hook URL may hold a credential).
fn transport_error(t: &ureq::Transport) -> String {
    let mut out = t.kind().to_string();
    if let Some(m) = t.message() {
        out.push_str(": ");
        out.push_str(m);
    }
    if let Some(source) = std::error::Error::source(t) {
        out.push_str(": ");
        out.push_str(&source.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::auth_rules::check_url;

    #[test]
    fn urls() {
        assert!(check_url("http://127.0.0.1:9000/auth").is_ok());
        assert!(check_url("https://auth.example.com/rtmp").is_ok());
        assert!(check_url("ftp://x/").is_err());
        assert!(check_url("http:///path").is_err());
        assert!(check_url("127.0.0.1:9000").is_err());
    }

    #[test]
    fn request_json_names_every_field() {
        let r = HookRequest {
            action: "publish",
            key: "live/cam".into(),
            app: "live".into(),
            stream: "cam".into(),
            query: "key=1".into(),
            client_ip: "10.0.0.1".into(),
            client_port: 5000,
            tc_url: "rtmp://h/live".into(),
        };
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["action"], "publish");
        assert_eq!(v["stream"], "cam");
        assert_eq!(v["query"], "key=1");
        assert_eq!(v["client_ip"], "10.0.0.1");
        assert_eq!(v["client_port"], 5000);
    }

    #[test]
    fn a_full_queue_is_busy_not_a_failure() {
        // A listener that accepts (in its backlog) and never answers: the
        // one request thread stays blocked on the first request.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let hook = Hook::new(HookConfig {
            url: format!("http://127.0.0.1:{port}/auth"),
            timeout: Duration::from_secs(5),
            threads: 1,
            max_pending: 1,
        });
        // One request in the thread at most, one in the queue: the third
        // finds the queue full whatever the thread has picked up by then.
        let outcomes: Vec<_> = (0..3).map(|_| hook.submit("{}".into()).err()).collect();
        assert_eq!(outcomes[2], Some(Outcome::Busy), "{outcomes:?}");
    }

    #[test]
    fn an_unreachable_hook_is_a_failure_not_a_hang() {
        // A port nothing listens on: connection refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let hook = Hook::new(HookConfig {
            url: format!("http://127.0.0.1:{port}/auth?token=SECRET"),
            timeout: Duration::from_millis(500),
            threads: 1,
            max_pending: 4,
        });
        let req = HookRequest {
            action: "play",
            key: "live/cam".into(),
            app: "live".into(),
            stream: "s".into(),
            query: String::new(),
            client_ip: "127.0.0.1".into(),
            client_port: 1,
            tc_url: String::new(),
        };
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        let out = rt.block_on(async { hook.ask(&req).await });
        let Outcome::Failed(why) = out else {
            panic!("{out:?}")
        };
        // The reason is logged: it must not carry the hook URL's credential.
        assert!(!why.contains("SECRET"), "{why}");
        assert!(!format!("{hook:?}").contains("SECRET"));
    }
}
