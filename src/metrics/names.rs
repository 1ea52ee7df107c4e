//! Every metric cascade exports, declared once: name, help, label names,
//! kind and buckets. Dashboards and alerts have one file to read, and a
//! rename is one edit.
//!
//! Per-core metrics are lines of the `per_core!` table at the bottom:
//! each line is a field of `CoreStats` (what a worker records), and the
//! macro derives the snapshot copy, the merge across cores and the export
//! from it. To add one, add one line there (the golden test in
//! `golden_tests.rs` then shows the new family; bless it). Node-level
//! metrics, whose values come from the scrape rather than from a core's
//! cells, are the constants just below, rendered in `export.rs`.

use std::cell::Cell;

use super::declare::{counter, gauge, histogram, per_core, Desc};
use super::{
    AuthRejection, ConnRole, Counters, DropReason, HandshakeFailure, Hist, Hists, HlsRequest,
    KickReason, LimitKind, OutboundFailure, OutboundKind, Protocol, ProtocolErrorKind, PullFailure,
    RejectReason, TlsHandshake,
};

/// Prefix of every series.
pub const PREFIX: &str = "cascade_";

pub const BUILD_INFO: Desc = gauge(
    "cascade_build_info",
    "Build of this process; the value is always 1.",
)
.by(&["version", "name"]);
pub const WORKER_IO_DRIVER: Desc = gauge(
    "cascade_worker_io_driver",
    "IO driver each worker runs (1 for the driver in use).",
)
.by(&["worker", "driver"]);
pub const READY: Desc = gauge(
    "cascade_ready",
    "1 when every worker listens and the node is not draining.",
);
pub const DRAINING: Desc = gauge("cascade_draining", "1 while the node drains after SIGTERM.");
pub const STREAMS: Desc = gauge("cascade_streams", "Live streams on this node.");

/// Per-stream series, only with `metrics.per_stream`.
pub const STREAM_PLAYERS: Desc =
    gauge("cascade_stream_players", "Players of one stream.").by(&["stream"]);
pub const STREAM_BYTES_IN: Desc = counter(
    "cascade_stream_bytes_in_total",
    "Bytes of media received for one stream.",
)
.by(&["stream"]);
pub const STREAM_UPTIME: Desc = gauge(
    "cascade_stream_uptime_seconds",
    "Seconds since one stream's publisher started.",
)
.by(&["stream"]);
pub const HLS_SESSIONS: Desc = gauge(
    "cascade_hls_sessions",
    "HLS and DASH players with a request within hls.session_timeout_ms (by the session id in their URLs), by protocol.",
)
.by(&["protocol"]);

pub const STREAM_SERIES_OMITTED: Desc = gauge(
    "cascade_stream_series_omitted",
    "Streams without per-stream series because of metrics.per_stream_max.",
);

per_core! {
    recorded {
        /// Live connections (gauge; in the JSON stats, not on /metrics).
        connections_active: Cell<u64>;
        /// Live connections by what they do (gauge).
        by_role: Counters<ConnRole> => gauge(
            "cascade_connections",
            "Live connections by worker and role.",
        ).by(&["role"]).per_worker();
        /// Players by how they receive the stream (gauge), kept by the
        /// client registry as connections change role or protocol.
        players: Counters<Protocol> => gauge(
            "cascade_players",
            "Players by worker and protocol.",
        ).by(&["protocol"]).per_worker();
        /// Connections accepted by this worker's listener.
        connections: Cell<u64> => counter(
            "cascade_connections_accepted_total",
            "Connections accepted by the RTMP and HTTP listeners, by worker.",
        ).per_worker();
        rejected: Counters<RejectReason> => counter(
            "cascade_connections_rejected_total",
            "Connections refused or failed at accept, by reason.",
        ).by(&["reason"]);
        /// Publishes and plays refused by `[auth]`.
        auth_rejected: Counters<AuthRejection> => counter(
            "cascade_auth_rejections_total",
            "Publishes and plays refused by [auth], by action and reason.",
        ).by(&["action", "reason"]);
        handshake_failures: Counters<HandshakeFailure> => counter(
            "cascade_handshake_failures_total",
            "RTMP handshakes that failed, by reason.",
        ).by(&["reason"]);
        /// TLS handshakes on the RTMPS listener, by result.
        tls_handshakes: Counters<TlsHandshake> => counter(
            "cascade_tls_handshakes_total",
            "TLS handshakes on the RTMPS listener, by result.",
        ).by(&["result"]);
        protocol_errors: Counters<ProtocolErrorKind> => counter(
            "cascade_protocol_errors_total",
            "Connections closed for a protocol error after the handshake, by kind.",
        ).by(&["kind"]);
        /// Connections closed or refused by a `[limits]` key.
        limit_hits: Counters<LimitKind> => counter(
            "cascade_limit_hits_total",
            "Connections closed, refused or publishes refused by a [limits] key, by key.",
        ).by(&["limit"]);
        bytes_in: Cell<u64> => counter(
            "cascade_bytes_in_total",
            "Bytes read from RTMP peers, by worker.",
        ).per_worker();
        /// Bytes and media messages accepted for players (serialized once,
        /// counted per player in its own framing's length).
        bytes_out: Counters<Protocol> => counter(
            "cascade_bytes_out_total",
            "Media bytes queued to players (one message counted once per player, in its framing), by worker and protocol.",
        ).by(&["protocol"]).per_worker();
        messages_in: Cell<u64> => counter(
            "cascade_messages_in_total",
            "Media messages received from publishers.",
        );
        messages_out: Counters<Protocol> => counter(
            "cascade_messages_out_total",
            "Media messages queued to players, by protocol.",
        ).by(&["protocol"]);
        dropped: Counters<DropReason> => counter(
            "cascade_frames_dropped_total",
            "Frames not delivered, by reason (queue_full: a slow player's queue; await_keyframe: held until a keyframe after a publisher change).",
        ).by(&["reason"]);
        slow_disconnects: Cell<u64> => counter(
            "cascade_slow_player_disconnects_total",
            "Players disconnected for staying behind past player.slow_disconnect_ms.",
        );
        publisher_reconnects: Cell<u64> => counter(
            "cascade_publisher_reconnects_total",
            "Publishers that took over a stream whose previous publisher had left within the grace.",
        );
        kicks: Counters<KickReason> => counter(
            "cascade_kicks_total",
            "Connections closed by the operator (api) or by a drain.",
        ).by(&["reason"]);
        /// Edge pulls running on this core (gauge).
        pulls_active: Cell<u64> => gauge(
            "cascade_edge_pulls",
            "Edge pulls from an origin running on this node.",
        );
        /// Edge pulls started (one per stream per node, not per attempt).
        pull_starts: Cell<u64> => counter(
            "cascade_edge_pull_starts_total",
            "Edge pulls started (one per stream per node, however many players).",
        );
        /// Failed attempts to pull from an origin, by reason.
        pull_failures: Counters<PullFailure> => counter(
            "cascade_edge_pull_failures_total",
            "Failed attempts to pull a stream from an origin, by reason.",
        ).by(&["reason"]);
        /// A pull moved to another origin than the one it last used.
        failovers: Cell<u64> => counter(
            "cascade_edge_failovers_total",
            "Edge pulls that moved to another origin.",
        );
        /// Outbound publishes (forwards, pushes) running on this core (gauge).
        outbound_active: Counters<OutboundKind> => gauge(
            "cascade_outbound_publishes",
            "Outbound publishes running: forward (a local publish sent on to an origin) or push (a [[push]] target).",
        ).by(&["kind"]);
        /// Outbound publishes started (one per stream per target).
        outbound_starts: Counters<OutboundKind> => counter(
            "cascade_outbound_publish_starts_total",
            "Outbound publishes started (one per stream per target), by kind.",
        ).by(&["kind"]);
        outbound_failures: Counters<OutboundFailure> => counter(
            "cascade_outbound_publish_failures_total",
            "Failed outbound publish attempts, by kind and reason.",
        ).by(&["kind", "reason"]);
        /// Attempts after the first of an outbound publish.
        outbound_reconnects: Counters<OutboundKind> => counter(
            "cascade_outbound_publish_reconnects_total",
            "Outbound publish attempts after the first, by kind.",
        ).by(&["kind"]);
        /// Bytes written to origins and push targets.
        outbound_bytes: Counters<OutboundKind> => counter(
            "cascade_forwarded_bytes_total",
            "Bytes written to origins (forward) and push targets (push).",
        ).by(&["kind"]);
        /// From the publisher's last byte read to a player's write done.
        ingest_to_egress: Hists<Protocol> => histogram(
            "cascade_ingest_to_egress_seconds",
            "Delay from a publisher's last byte read to a player's write done, by protocol.",
            // Relay delay is sub-millisecond when idle and tens of ms under load.
            &[
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ],
        ).by(&["protocol"]);
        /// From a play command to its first keyframe written.
        first_frame: Hists<Protocol> => histogram(
            "cascade_time_to_first_frame_seconds",
            "Delay from a play request to its first keyframe written, by protocol.",
            // A play starts on a cached keyframe (fast) or waits for the next GOP (seconds).
            &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0],
        ).by(&["protocol"]);
        /// HLS and DASH requests answered.
        hls_requests: Counters<HlsRequest> => counter(
            "cascade_hls_requests_total",
            "HLS and DASH requests answered, by protocol and kind.",
        ).by(&["protocol", "kind"]);
        /// Playlist requests that waited for a part (`_HLS_msn`).
        hls_blocked_reloads: Cell<u64> => counter(
            "cascade_hls_blocked_reloads_total",
            "LL-HLS playlist requests held until the part they asked for existed.",
        );
        /// From the oldest frame of a part ingested to the part available.
        hls_part_latency: Hist => histogram(
            "cascade_hls_part_latency_seconds",
            "Delay from a part's oldest frame read from its publisher to the part available to players.",
            // About one part duration (200 ms by default) plus packaging.
            &[0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0],
        );
        handshake: Hist => histogram(
            "cascade_handshake_duration_seconds",
            "Duration of the RTMP handshake.",
            // Two round trips: loopback micro-seconds, WAN hundreds of ms.
            &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
        );
        /// Time to decide a publish or play (local: µs, web hook: ms to s).
        auth_decision: Hist => histogram(
            "cascade_auth_decision_seconds",
            "Time to decide a publish or play authorization.",
            &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
        );
        /// Edge pulls: dial to the origin's NetStream.Play.Start (TCP,
        /// handshake and connect).
        origin_connect: Hist => histogram(
            "cascade_origin_connect_seconds",
            "Time to connect to an origin for an edge pull.",
            &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
        );
        /// "io_uring" or "epoll", set when the worker's runtime starts;
        /// exported per worker as [`WORKER_IO_DRIVER`].
        io_driver: Cell<&'static str>;
    }

    derived {
        /// Frames a player's full queue refused: the figure the JSON stats
        /// showed before drops had reasons.
        frames_dropped: u64 = |c: &CoreStats| c.dropped.get(DropReason::QueueFull);
    }
}
