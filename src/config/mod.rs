//! Configuration: TOML with every key defaulted in code.
//!
//! `config/cascade.toml` documents every key with its default; a test
//! keeps it equal to [`Config::default`]. Unknown keys are errors that name
//! the key, so a typo never silently falls back to a default. Environment
//! variables `CASCADE_SECTION_KEY` override the file (see [`load`]).

pub mod auth_rules;
pub mod cidr;
pub mod edge;
pub mod load;
pub mod redact;
mod validate;

pub use edge::{EdgeApp, EdgeSection, OriginUrl, PushEntry};

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::protocol::amf::AmfLimits;
use crate::protocol::chunk::ChunkLimits;
use crate::protocol::session::ServerConfig;

/// The largest value of any `*_ms` key: 7 days. Timers add these values to
/// `Instant`s, and a huge one (`u64::MAX`) would overflow that arithmetic
/// and panic a worker; no timeout, grace, window or backoff of a relay
/// needs more than a week.
pub const MAX_DURATION_MS: u64 = 7 * 24 * 60 * 60 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("invalid value for `{key}`: {why}")]
    Invalid { key: &'static str, why: String },
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerSection,
    pub limits: LimitsSection,
    pub stream: StreamSection,
    pub player: PlayerSection,
    pub http: HttpSection,
    pub hls: HlsSection,
    pub log: LogSection,
    pub metrics: MetricsSection,
    pub edge: EdgeSection,
    pub auth: AuthSection,
    pub tls: TlsSection,
    /// Static push targets (`[[push]]`), in file order.
    pub push: Vec<PushEntry>,
}

/// RTMPS: a TLS listener beside the plain one, serving the same publish
/// and play. Off while `listen` is empty.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// RTMPS listen address, e.g. 0.0.0.0:443; empty: no TLS listener.
    pub listen: String,
    /// PEM certificate chain (leaf first); re-read on SIGHUP.
    pub cert: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1); re-read on SIGHUP.
    pub key: String,
    /// HTTPS listen address for the HTTP service (media, metrics, probes,
    /// API) on the same certificate; empty: no HTTPS listener.
    pub http_listen: String,
}

/// Publish and play authorization (see `crate::auth`). Open by default.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// "open", "key" (a `key=` in the query from `publish_keys`) or
    /// "token" (an HMAC token signed with `secret`).
    pub publish: String,
    pub play: String,
    pub publish_keys: Vec<String>,
    pub play_keys: Vec<String>,
    /// HMAC-SHA256 secret for tokens (`cascade sign`).
    pub secret: String,
    /// CIDR lists; deny wins, an empty allow list allows every address.
    pub publish_allow: Vec<String>,
    pub publish_deny: Vec<String>,
    pub play_allow: Vec<String>,
    pub play_deny: Vec<String>,
    /// Mode "hook": POST JSON here; 2xx allows.
    pub hook_url: String,
    pub hook_timeout_ms: u64,
    /// "deny" or "allow" when the hook gives no usable answer.
    pub hook_on_error: String,
    /// Blocking request threads shared by every worker.
    pub hook_threads: usize,
    /// Requests waiting for a thread; past it a request is refused
    /// (`hook_busy`), whatever `hook_on_error` says.
    pub hook_max_pending: usize,
    /// Per-app overrides (`[[auth.app]]`).
    pub app: Vec<AppAuth>,
}

/// One app's own auth rules; an unset key falls back to `[auth]`'s.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AppAuth {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub play: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_keys: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub play_keys: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_allow: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_deny: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub play_allow: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub play_deny: Option<Vec<String>>,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            publish: "open".into(),
            play: "open".into(),
            publish_keys: Vec::new(),
            play_keys: Vec::new(),
            secret: String::new(),
            publish_allow: Vec::new(),
            publish_deny: Vec::new(),
            play_allow: Vec::new(),
            play_deny: Vec::new(),
            hook_url: String::new(),
            hook_timeout_ms: 2_000,
            hook_on_error: "deny".into(),
            hook_threads: 4,
            hook_max_pending: 1024,
            app: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Export per-stream series (players, bytes, uptime); off by default
    /// because series per stream grow with the number of streams.
    pub per_stream: bool,
    /// At most this many streams get per-stream series.
    pub per_stream_max: usize,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            per_stream: false,
            per_stream_max: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// HTTP listener on every worker: media (`/APP/NAME.flv`, WebSocket-FLV),
    /// `/metrics`, `/healthz`, `/readyz` and the API; empty to disable.
    /// `--http` overrides.
    pub listen: String,
    /// If set, the API (`/api/v1/...`) is served only here (e.g. loopback)
    /// and `listen` serves media, metrics and probes only.
    pub api_listen: String,
    /// Bearer token the API asks for (`Authorization: Bearer …`); empty
    /// leaves the API open (bind it to loopback then).
    pub api_token: String,
    /// `/metrics` asks for the API token too.
    pub metrics_token: bool,
    /// `Access-Control-Allow-Origin` on media responses; empty sends none.
    pub allow_origin: String,
    /// A request head larger than this is refused with 431.
    pub max_header_bytes: usize,
    /// A request with more header lines than this is refused with 431.
    pub max_headers: usize,
    /// A request head must arrive within this long (slow clients are closed).
    pub header_timeout_ms: u64,
    /// A kept-alive connection with no request for this long is closed.
    pub idle_timeout_ms: u64,
    /// Largest request body accepted (the API's requests have none).
    pub max_body_bytes: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: String::new(),
            api_listen: String::new(),
            api_token: String::new(),
            metrics_token: false,
            allow_origin: "*".into(),
            max_header_bytes: 8 * 1024,
            max_headers: 64,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// Low-Latency HLS and DASH: every stream packaged once per node as CMAF
/// (fragmented MP4) parts in memory, served by the HTTP service under
/// `/APP/NAME/`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HlsSection {
    /// Package streams for HLS and DASH players.
    pub enabled: bool,
    /// Package every stream from its start, watched or not (instant start
    /// for the first HLS player). Off: a stream is packaged from the first
    /// HLS/DASH request (that request waits for a segment) until no player
    /// asked for `session_timeout_ms`, so unwatched streams cost nothing.
    pub always: bool,
    /// Target duration of a part (one fMP4 fragment), the unit a
    /// low-latency player fetches.
    pub part_ms: u32,
    /// A segment ends at the first keyframe at least this long after its
    /// start (so with a 2 s GOP, one GOP per segment).
    pub segment_ms: u32,
    /// Complete segments kept per stream (the playlist's window).
    pub window_segments: usize,
    /// Bytes of media kept per stream; the oldest segments go first past it.
    pub max_window_bytes: usize,
    /// A segment longer than this is cut at the next frame even without a
    /// keyframe (an encoder with a huge GOP must not grow one segment
    /// without bound); the cut segment's successor is not independent.
    pub max_segment_ms: u32,
    /// How long an HLS or DASH session (a player's requests, named by the
    /// `sid` in its URLs) counts as active after its last request.
    pub session_timeout_ms: u64,
}

impl Default for HlsSection {
    fn default() -> Self {
        HlsSection {
            enabled: true,
            always: false,
            part_ms: 200,
            segment_ms: 2_000,
            window_segments: 8,
            max_window_bytes: 32 << 20,
            max_segment_ms: 10_000,
            session_timeout_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// RTMP listen address.
    pub listen: String,
    /// Worker threads: a number, or "auto" for one per core in the affinity mask.
    pub workers: Workers,
    /// "auto", "uring" or "epoll".
    pub io_driver: String,
    /// Outgoing chunk size announced to every peer.
    pub chunk_size: u32,
    /// Window acknowledgement size we announce (and peer bandwidth).
    pub window_ack_size: u32,
    /// Disable Nagle on accepted sockets.
    pub tcp_nodelay: bool,
    /// TCP_NOTSENT_LOWAT on accepted sockets: unsent bytes the kernel may
    /// hold per socket (0: kernel default). Keeps stalled players visible
    /// to the slow-player policy instead of buried in a huge send buffer.
    pub tcp_notsent_lowat: u32,
    /// Write live frames straight to an idle player's socket from the
    /// fan-out loop (one send per player per message, no task wake-up);
    /// the writer task takes over when a socket pushes back.
    pub direct_writes: bool,
    /// With io_uring: the direct sends of one fan-out pass go to the kernel
    /// in one submission instead of one system call per player.
    pub batch_sends: bool,
    /// On SIGTERM, how long streams may run on before connections are closed.
    pub drain_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Workers {
    Count(usize),
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    pub handshake_timeout_ms: u64,
    /// A publisher that sends nothing for this long is closed (a stuck
    /// encoder must not hold its stream key forever).
    pub publisher_timeout_ms: u64,
    /// A connection that neither publishes nor plays for this long after
    /// its handshake (or after its stream ended) is closed, however many
    /// bytes it trickles meanwhile.
    pub idle_timeout_ms: u64,
    /// A paused player is closed after this long.
    pub pause_timeout_ms: u64,
    /// Replies one connection may leave unread (acks, pings, results);
    /// past it the connection is cut off.
    pub max_pending_output_bytes: usize,
    /// Refused publishes or plays one connection may make before it is closed.
    pub max_refusals_per_connection: u32,
    /// TCP keepalive: idle time before the first probe (0: off). A peer
    /// that vanished is found after this plus three probes 10 s apart.
    pub tcp_keepalive_ms: u64,
    /// TCP_USER_TIMEOUT: sent data left unacknowledged this long closes
    /// the connection (0: the kernel's default, about 15 minutes).
    pub tcp_user_timeout_ms: u64,
    pub max_message_size: u32,
    pub max_chunk_streams: usize,
    /// Largest Set Chunk Size a peer may announce (1..=2147483647).
    pub max_chunk_size: u32,
    /// Bytes one connection may hold for messages it has not fully
    /// received, over all its chunk streams (at least `max_message_size`).
    pub max_reassembly_bytes: usize,
    pub max_streams_per_connection: usize,
    pub amf_max_depth: usize,
    /// Values one AMF command or metadata message may decode to (references
    /// counted as copies).
    pub amf_max_items: usize,
    pub max_streams: usize,
    /// Connections per node; past it new ones are closed at accept.
    pub max_connections: usize,
    /// Connections per peer address per node.
    pub max_connections_per_ip: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSection {
    pub gop_cache_max_ms: u32,
    pub gop_cache_max_bytes: usize,
    pub publisher_grace_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlayerSection {
    pub queue_max_bytes: usize,
    pub queue_max_ms: u32,
    pub slow_disconnect_ms: u64,
    /// Write-coalescing window: live frames wait up to this long and go to
    /// the socket together. 0 sends every frame as it arrives.
    pub write_coalesce_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// A tracing filter such as "info" or "cascade=debug".
    pub level: String,
    /// "human" or "json".
    pub format: String,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: "0.0.0.0:1935".into(),
            workers: Workers::Named("auto".into()),
            io_driver: "auto".into(),
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            tcp_nodelay: true,
            tcp_notsent_lowat: 131072,
            direct_writes: true,
            batch_sends: true,
            drain_timeout_ms: 30_000,
        }
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            handshake_timeout_ms: 10_000,
            publisher_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            pause_timeout_ms: 120_000,
            max_pending_output_bytes: 1 << 20,
            max_refusals_per_connection: 3,
            tcp_keepalive_ms: 30_000,
            tcp_user_timeout_ms: 30_000,
            max_message_size: 4 << 20,
            max_chunk_streams: 64,
            max_chunk_size: 0x7FFF_FFFF,
            max_reassembly_bytes: 8 << 20,
            max_streams_per_connection: 8,
            amf_max_depth: 32,
            amf_max_items: 65_536,
            max_streams: 10_000,
            max_connections: 100_000,
            max_connections_per_ip: 1_000,
        }
    }
}

impl Default for StreamSection {
    fn default() -> Self {
        StreamSection {
            gop_cache_max_ms: 10_000,
            gop_cache_max_bytes: 32 << 20,
            publisher_grace_ms: 5_000,
        }
    }
}

impl Default for PlayerSection {
    fn default() -> Self {
        PlayerSection {
            queue_max_bytes: 8 << 20,
            queue_max_ms: 2_000,
            slow_disconnect_ms: 5_000,
            write_coalesce_ms: 0,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".into(),
            format: "human".into(),
        }
    }
}

#[allow(clippy::derivable_impls)]
impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerSection::default(),
            limits: LimitsSection::default(),
            stream: StreamSection::default(),
            player: PlayerSection::default(),
            http: HttpSection::default(),
            hls: HlsSection::default(),
            log: LogSection::default(),
            metrics: MetricsSection::default(),
            edge: EdgeSection::default(),
            auth: AuthSection::default(),
            tls: TlsSection::default(),
            push: Vec::new(),
        }
    }
}

impl Config {
    /// Parses a file's text (no environment overrides); the first error.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        load::from_text(text, &[]).map_err(|mut errs| errs.remove(0))
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_toml(&text)
    }

    /// Checks values that parse but make no sense; names the key of the
    /// first problem.
    /// Resolves `server.workers` to a count.
    pub fn worker_count(&self) -> Result<usize, String> {
        match &self.server.workers {
            Workers::Count(0) => Err("must be at least 1".into()),
            Workers::Count(n) => Ok(*n),
            Workers::Named(s) if s == "auto" => Ok(core_affinity::get_core_ids()
                .map(|c| c.len())
                .unwrap_or(1)
                .max(1)),
            Workers::Named(s) => s
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("expected a number or \"auto\", got {s:?}")),
        }
    }

    pub fn session_config(&self) -> ServerConfig {
        ServerConfig {
            chunk_size: self.server.chunk_size,
            window_ack_size: self.server.window_ack_size,
            peer_bandwidth: self.server.window_ack_size,
            max_streams: self.limits.max_streams_per_connection,
            chunk_limits: ChunkLimits {
                max_message_size: self.limits.max_message_size,
                max_chunk_streams: self.limits.max_chunk_streams,
                max_chunk_size: self.limits.max_chunk_size,
                max_reassembly_bytes: self.limits.max_reassembly_bytes,
            },
            amf_limits: AmfLimits {
                max_depth: self.limits.amf_max_depth,
                max_items: self.limits.amf_max_items,
            },
        }
    }
}

#[cfg(test)]
mod tests;
