//! Every metric name cascade exports, in one place, so dashboards and
//! alerts have one file to read and a rename is one edit.

/// Prefix of every series.
pub const PREFIX: &str = "cascade_";

pub const BUILD_INFO: &str = "cascade_build_info";
pub const WORKER_IO_DRIVER: &str = "cascade_worker_io_driver";
pub const READY: &str = "cascade_ready";
pub const DRAINING: &str = "cascade_draining";

pub const CONNECTIONS: &str = "cascade_connections";
pub const CONNECTIONS_ACCEPTED: &str = "cascade_connections_accepted_total";
pub const CONNECTIONS_REJECTED: &str = "cascade_connections_rejected_total";
pub const HANDSHAKE_FAILURES: &str = "cascade_handshake_failures_total";
pub const TLS_HANDSHAKES: &str = "cascade_tls_handshakes_total";
pub const PROTOCOL_ERRORS: &str = "cascade_protocol_errors_total";
pub const LIMIT_HITS: &str = "cascade_limit_hits_total";

pub const BYTES_IN: &str = "cascade_bytes_in_total";
pub const BYTES_OUT: &str = "cascade_bytes_out_total";
pub const MESSAGES_IN: &str = "cascade_messages_in_total";
pub const MESSAGES_OUT: &str = "cascade_messages_out_total";

pub const STREAMS: &str = "cascade_streams";
pub const PLAYERS: &str = "cascade_players";
pub const FRAMES_DROPPED: &str = "cascade_frames_dropped_total";
pub const SLOW_PLAYER_DISCONNECTS: &str = "cascade_slow_player_disconnects_total";
pub const PUBLISHER_RECONNECTS: &str = "cascade_publisher_reconnects_total";
pub const KICKS: &str = "cascade_kicks_total";

pub const INGEST_TO_EGRESS: &str = "cascade_ingest_to_egress_seconds";
pub const FIRST_FRAME: &str = "cascade_time_to_first_frame_seconds";
pub const HANDSHAKE_DURATION: &str = "cascade_handshake_duration_seconds";
pub const AUTH_REJECTIONS: &str = "cascade_auth_rejections_total";
pub const AUTH_DECISION: &str = "cascade_auth_decision_seconds";
pub const ORIGIN_CONNECT: &str = "cascade_origin_connect_seconds";

pub const EDGE_PULLS: &str = "cascade_edge_pulls";
pub const EDGE_PULL_STARTS: &str = "cascade_edge_pull_starts_total";
pub const EDGE_PULL_FAILURES: &str = "cascade_edge_pull_failures_total";
pub const EDGE_FAILOVERS: &str = "cascade_edge_failovers_total";

pub const OUTBOUND: &str = "cascade_outbound_publishes";
pub const OUTBOUND_STARTS: &str = "cascade_outbound_publish_starts_total";
pub const OUTBOUND_FAILURES: &str = "cascade_outbound_publish_failures_total";
pub const OUTBOUND_RECONNECTS: &str = "cascade_outbound_publish_reconnects_total";
pub const FORWARDED_BYTES: &str = "cascade_forwarded_bytes_total";

pub const STREAM_PLAYERS: &str = "cascade_stream_players";
pub const STREAM_BYTES_IN: &str = "cascade_stream_bytes_in_total";
pub const STREAM_UPTIME: &str = "cascade_stream_uptime_seconds";
pub const STREAM_SERIES_OMITTED: &str = "cascade_stream_series_omitted";

/// Histogram buckets (upper bounds in seconds), chosen per quantity.
pub mod buckets {
    /// Relay delay is sub-millisecond when idle and tens of ms under load.
    pub const INGEST_TO_EGRESS: &[f64] = &[
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ];
    /// A play starts on a cached keyframe (fast) or waits for the next GOP (seconds).
    pub const FIRST_FRAME: &[f64] = &[
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0,
    ];
    /// The handshake is two round trips: loopback micro-seconds, WAN hundreds of ms.
    pub const HANDSHAKE: &[f64] = &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    /// Auth is local (µs) or a web hook (ms to seconds).
    pub const AUTH: &[f64] = &[
        0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ];
    /// Dialling an origin: TCP plus handshake plus connect.
    pub const ORIGIN_CONNECT: &[f64] = &[
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
}
