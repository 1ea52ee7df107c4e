//! Checks of a parsed configuration: every value that parses but makes no
//! sense is reported with its key, all at once.

use std::net::SocketAddr;

use super::{edge, Config, ConfigError, MAX_DURATION_MS};

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.problems().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every value that parses but makes no sense, each naming its key.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let mut bad = |key, why: &str| {
            errs.push(ConfigError::Invalid {
                key,
                why: why.into(),
            })
        };
        if self.server.listen.parse::<SocketAddr>().is_err() {
            bad("server.listen", "expected an address like 0.0.0.0:1935");
        }
        if !(1..=0x7FFF_FFFF).contains(&self.server.chunk_size) {
            bad("server.chunk_size", "must be 1..=2147483647");
        }
        if !["auto", "uring", "epoll"].contains(&self.server.io_driver.as_str()) {
            bad("server.io_driver", "expected auto, uring or epoll");
        }
        if let Err(why) = self.worker_count() {
            bad("server.workers", &why);
        }
        if self.server.window_ack_size == 0 {
            bad("server.window_ack_size", "must be > 0");
        }
        if self.limits.max_message_size < 1024 {
            bad("limits.max_message_size", "must be at least 1024");
        }
        if self.limits.max_chunk_streams == 0 {
            bad("limits.max_chunk_streams", "must be > 0");
        }
        if !(128..=0x7FFF_FFFF).contains(&self.limits.max_chunk_size) {
            bad("limits.max_chunk_size", "must be 128..=2147483647");
        }
        if self.limits.max_reassembly_bytes < self.limits.max_message_size as usize {
            bad(
                "limits.max_reassembly_bytes",
                "must be at least limits.max_message_size",
            );
        }
        if self.limits.max_pending_output_bytes < 64 * 1024 {
            bad("limits.max_pending_output_bytes", "must be at least 65536");
        }
        if self.limits.max_refusals_per_connection == 0 {
            bad("limits.max_refusals_per_connection", "must be > 0");
        }
        if self.limits.amf_max_items == 0 {
            bad("limits.amf_max_items", "must be > 0");
        }
        if self.limits.max_streams_per_connection == 0 {
            bad("limits.max_streams_per_connection", "must be > 0");
        }
        if self.limits.amf_max_depth == 0 {
            bad("limits.amf_max_depth", "must be > 0");
        }
        if self.player.queue_max_bytes < 64 * 1024 {
            bad("player.queue_max_bytes", "must be at least 65536");
        }
        if self.player.write_coalesce_ms >= u64::from(self.player.queue_max_ms) / 2 {
            bad(
                "player.write_coalesce_ms",
                "must be below half of player.queue_max_ms (a full window must not look like a slow player)",
            );
        }
        if !self.http.listen.is_empty() && self.http.listen.parse::<SocketAddr>().is_err() {
            bad(
                "http.listen",
                "expected an address like 127.0.0.1:8080, or empty",
            );
        }
        if !["human", "json"].contains(&self.log.format.as_str()) {
            bad("log.format", "expected human or json");
        }
        if !self.http.api_listen.is_empty() && self.http.api_listen.parse::<SocketAddr>().is_err() {
            bad(
                "http.api_listen",
                "expected an address like 127.0.0.1:8081, or empty",
            );
        }
        if self.limits.publisher_timeout_ms == 0 {
            bad("limits.publisher_timeout_ms", "must be > 0");
        }
        if self.limits.idle_timeout_ms == 0 {
            bad("limits.idle_timeout_ms", "must be > 0");
        }
        if self.limits.handshake_timeout_ms == 0 {
            bad("limits.handshake_timeout_ms", "must be > 0");
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            bad("log.level", "not a valid tracing filter");
        }
        for (key, why) in self.edge.problems() {
            bad(key, &why);
        }
        for (key, why) in edge::push_problems(&self.push) {
            bad(key, &why);
        }
        if self.limits.max_connections == 0 {
            bad("limits.max_connections", "must be > 0");
        }
        if self.limits.max_connections_per_ip == 0 {
            bad("limits.max_connections_per_ip", "must be > 0");
        }
        if !self.tls.listen.is_empty() {
            match self.tls.listen.parse::<SocketAddr>() {
                Err(_) => bad(
                    "tls.listen",
                    "expected an address like 0.0.0.0:443, or empty",
                ),
                Ok(a) if Some(a) == self.server.listen.parse().ok() => {
                    bad("tls.listen", "must differ from server.listen")
                }
                Ok(_) => {}
            }
            if self.tls.cert.is_empty() {
                bad(
                    "tls.cert",
                    "a PEM certificate file is needed when tls.listen is set",
                );
            }
            if self.tls.key.is_empty() {
                bad("tls.key", "a PEM key file is needed when tls.listen is set");
            }
        }
        if !self.tls.http_listen.is_empty() {
            if self.tls.http_listen.parse::<SocketAddr>().is_err() {
                bad(
                    "tls.http_listen",
                    "expected an address like 0.0.0.0:8443, or empty",
                );
            }
            if self.tls.cert.is_empty() || self.tls.key.is_empty() {
                bad(
                    "tls.http_listen",
                    "tls.cert and tls.key are needed when tls.http_listen is set",
                );
            }
        }
        for (key, addr) in [
            ("http.listen", &self.http.listen),
            ("http.api_listen", &self.http.api_listen),
        ] {
            if !addr.trim().is_empty() && addr.trim().parse::<SocketAddr>().is_err() {
                bad(key, "expected an address like 0.0.0.0:8080, or empty");
            }
        }
        if self.http.max_header_bytes < 256 {
            bad("http.max_header_bytes", "must be >= 256");
        }
        if self.http.max_headers == 0 {
            bad("http.max_headers", "must be > 0");
        }
        if self.http.header_timeout_ms == 0 {
            bad("http.header_timeout_ms", "must be > 0");
        }
        if self.http.idle_timeout_ms == 0 {
            bad("http.idle_timeout_ms", "must be > 0");
        }
        let hls = &self.hls;
        if !(50..=5_000).contains(&hls.part_ms) {
            bad("hls.part_ms", "must be between 50 and 5000");
        }
        if hls.segment_ms < hls.part_ms {
            bad("hls.segment_ms", "must be at least hls.part_ms");
        }
        if hls.max_segment_ms < hls.segment_ms {
            bad("hls.max_segment_ms", "must be at least hls.segment_ms");
        }
        if !(2..=100).contains(&hls.window_segments) {
            bad("hls.window_segments", "must be between 2 and 100");
        }
        if hls.max_window_bytes < 1 << 20 {
            bad("hls.max_window_bytes", "must be at least 1 MiB");
        }
        for (key, why) in super::auth_rules::problems(&self.auth) {
            bad(key, &why);
        }
        for (key, ms) in self.durations_ms() {
            if ms > MAX_DURATION_MS {
                bad(
                    key,
                    &format!("{ms} ms is too long: at most {MAX_DURATION_MS} (7 days)"),
                );
            }
        }
        errs
    }

    /// Every `*_ms` value with its key, `[[edge.app]]` ones where set (a
    /// test checks that no `*_ms` key is missing here).
    pub fn durations_ms(&self) -> Vec<(&'static str, u64)> {
        let mut out = vec![
            ("server.drain_timeout_ms", self.server.drain_timeout_ms),
            ("http.header_timeout_ms", self.http.header_timeout_ms),
            ("http.idle_timeout_ms", self.http.idle_timeout_ms),
            ("hls.part_ms", self.hls.part_ms.into()),
            ("hls.segment_ms", self.hls.segment_ms.into()),
            ("hls.max_segment_ms", self.hls.max_segment_ms.into()),
            ("hls.session_timeout_ms", self.hls.session_timeout_ms),
            (
                "limits.handshake_timeout_ms",
                self.limits.handshake_timeout_ms,
            ),
            (
                "limits.publisher_timeout_ms",
                self.limits.publisher_timeout_ms,
            ),
            ("limits.idle_timeout_ms", self.limits.idle_timeout_ms),
            ("limits.pause_timeout_ms", self.limits.pause_timeout_ms),
            ("limits.tcp_keepalive_ms", self.limits.tcp_keepalive_ms),
            (
                "limits.tcp_user_timeout_ms",
                self.limits.tcp_user_timeout_ms,
            ),
            (
                "stream.gop_cache_max_ms",
                self.stream.gop_cache_max_ms.into(),
            ),
            ("stream.publisher_grace_ms", self.stream.publisher_grace_ms),
            ("player.queue_max_ms", self.player.queue_max_ms.into()),
            ("player.slow_disconnect_ms", self.player.slow_disconnect_ms),
            ("player.write_coalesce_ms", self.player.write_coalesce_ms),
            ("edge.connect_timeout_ms", self.edge.connect_timeout_ms),
            ("edge.start_timeout_ms", self.edge.start_timeout_ms),
            ("edge.retry_backoff_ms", self.edge.retry_backoff_ms),
            ("edge.retry_backoff_max_ms", self.edge.retry_backoff_max_ms),
            ("edge.linger_ms", self.edge.linger_ms),
            ("auth.hook_timeout_ms", self.auth.hook_timeout_ms),
        ];
        for a in &self.edge.app {
            out.extend(a.start_timeout_ms.map(|v| ("edge.app.start_timeout_ms", v)));
            out.extend(a.linger_ms.map(|v| ("edge.app.linger_ms", v)));
        }
        out
    }
}
