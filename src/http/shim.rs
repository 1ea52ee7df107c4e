//! Temporary: the blocking control-plane calls run off the worker on a
//! short-lived thread until the async ones land. Removed with them.

use std::sync::Arc;

use super::{api, Ops, Reply};
use crate::protocol::http::Method;

/// What a token protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Api,
    Metrics,
}

impl Ops {
    /// Whether `authorization` carries the API token `scope` needs.
    pub fn authorized(&self, scope: Scope, authorization: Option<&str>) -> bool {
        let config = self.config();
        let token = config.http.api_token.as_str();
        if token.is_empty() || (scope == Scope::Metrics && !config.http.metrics_token) {
            return true;
        }
        authorization.and_then(|a| a.strip_prefix("Bearer ")) == Some(token)
    }
}

async fn off_core<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = futures_channel::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.await.expect("control thread answered")
}

pub(super) async fn metrics_text(ops: &Arc<Ops>) -> String {
    let ops = ops.clone();
    off_core(move || api::metrics_text(&ops)).await
}

pub(super) async fn route(method: Method, path: &str, ops: &Arc<Ops>) -> Reply {
    let ops = ops.clone();
    let path = path.to_string();
    off_core(move || {
        let m = match method {
            Method::Get | Method::Head => tiny_http::Method::Get,
            Method::Delete => tiny_http::Method::Delete,
            _ => tiny_http::Method::Post,
        };
        api::route(&m, &path, &ops)
    })
    .await
}
