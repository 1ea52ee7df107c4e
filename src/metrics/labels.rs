//! The closed label sets of cascade's counter families. Each is an enum so
//! the hot path indexes an array instead of hashing a string, and each
//! variant's exported text sits beside it.

/// A label set of a counter family, as a closed enum so the hot path
/// indexes an array instead of hashing strings.
pub trait Label: Copy {
    const COUNT: usize;
    const NAMES: &'static [&'static str];
    fn index(self) -> usize;
    /// The label value as exported.
    fn name(self) -> &'static str {
        Self::NAMES.get(self.index()).copied().unwrap_or("unknown")
    }
}

macro_rules! label_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($variant),+ }
        impl Label for $name {
            const COUNT: usize = [$($text),+].len();
            const NAMES: &'static [&'static str] = &[$($text),+];
            fn index(self) -> usize { self as usize }
        }
    };
}

label_enum!(
    /// What a live connection is doing (the `role` label of `cascade_connections`).
    ConnRole {
        Handshake => "handshake",
        Idle => "idle",
        Publisher => "publisher",
        Player => "player",
    }
);

label_enum!(
    /// How a player receives its stream (the `protocol` label of the
    /// player and byte series).
    Protocol {
        Rtmp => "rtmp",
        HttpFlv => "http-flv",
        WsFlv => "ws-flv",
        Hls => "hls",
        Dash => "dash",
    }
);

label_enum!(
    /// An HLS or DASH request answered, as `protocol/kind` (two labels).
    HlsRequest {
        HlsPlaylist => "hls/playlist",
        HlsMultivariant => "hls/multivariant",
        HlsInit => "hls/init",
        HlsPart => "hls/part",
        HlsSegment => "hls/segment",
        DashManifest => "dash/manifest",
        DashInit => "dash/init",
        DashSegment => "dash/segment",
    }
);

label_enum!(
    /// Why a connection was refused or closed before its handshake.
    RejectReason {
        AcceptError => "accept_error",
        Draining => "draining",
        MaxConnections => "max_connections",
        MaxConnectionsPerIp => "max_connections_per_ip",
        HttpHeaderBytes => "http_max_header_bytes",
        HttpHeaderTimeout => "http_header_timeout_ms",
    }
);

label_enum!(
    /// A refused publish or play, as `action/reason` (exported as two labels).
    AuthRejection {
        PublishAddress => "publish/address",
        PublishMissing => "publish/missing",
        PublishBadKey => "publish/bad_key",
        PublishBadToken => "publish/bad_token",
        PublishExpired => "publish/expired",
        PublishHook => "publish/hook",
        PublishHookError => "publish/hook_error",
        PublishHookBusy => "publish/hook_busy",
        PlayAddress => "play/address",
        PlayMissing => "play/missing",
        PlayBadKey => "play/bad_key",
        PlayBadToken => "play/bad_token",
        PlayExpired => "play/expired",
        PlayHook => "play/hook",
        PlayHookError => "play/hook_error",
        PlayHookBusy => "play/hook_busy",
    }
);

label_enum!(
    /// Why a handshake failed.
    HandshakeFailure {
        Timeout => "timeout",
        Version => "unsupported_version",
        Eof => "eof",
        Io => "io",
        Invalid => "invalid",
    }
);

label_enum!(
    /// How a TLS handshake on the RTMPS listener ended.
    TlsHandshake {
        Ok => "ok",
        Failed => "failed",
        Timeout => "timeout",
    }
);

label_enum!(
    /// Which layer rejected a peer's bytes after the handshake.
    ProtocolErrorKind {
        Chunk => "chunk",
        Message => "message",
        NotConnected => "command_before_connect",
        TooManyStreams => "too_many_streams",
        NotAdmitted => "refused_at_header",
        SecondConnect => "second_connect",
        EmptyMedia => "empty_media",
        HttpRequest => "http_request",
        WebSocket => "websocket",
    }
);

label_enum!(
    /// Which `[limits]` key closed a connection (or refused it, or refused a
    /// publish): the `limit` label of `cascade_limit_hits_total`.
    LimitKind {
        HandshakeTimeout => "handshake_timeout_ms",
        PublisherTimeout => "publisher_timeout_ms",
        IdleTimeout => "idle_timeout_ms",
        PauseTimeout => "pause_timeout_ms",
        MaxPendingOutputBytes => "max_pending_output_bytes",
        MaxRefusals => "max_refusals_per_connection",
        MaxMessageSize => "max_message_size",
        MaxChunkStreams => "max_chunk_streams",
        MaxChunkSize => "max_chunk_size",
        MaxReassemblyBytes => "max_reassembly_bytes",
        MaxStreamsPerConnection => "max_streams_per_connection",
        AmfMaxDepth => "amf_max_depth",
        AmfMaxItems => "amf_max_items",
        MaxStreams => "max_streams",
        MaxConnections => "max_connections",
        MaxConnectionsPerIp => "max_connections_per_ip",
        HttpHeaderBytes => "http_max_header_bytes",
        HttpHeaderTimeout => "http_header_timeout_ms",
    }
);

label_enum!(
    /// Why a frame did not reach a player.
    DropReason {
        QueueFull => "queue_full",
        AwaitKeyframe => "await_keyframe",
    }
);

label_enum!(
    /// Why a connection was closed by the operator or the server.
    KickReason {
        Api => "api",
        Drain => "drain",
    }
);

label_enum!(
    /// Why an attempt to pull a stream from an origin failed.
    PullFailure {
        Connect => "connect",
        Handshake => "handshake",
        Tls => "tls",
        Rejected => "rejected",
        NotFound => "not_found",
        Timeout => "timeout",
        Lost => "lost",
        Protocol => "protocol",
    }
);

label_enum!(
    /// An outbound publish: `forward` (a local publish sent on to an edge
    /// origin) or `push` (a static `[[push]]` target).
    OutboundKind {
        Forward => "forward",
        Push => "push",
    }
);

label_enum!(
    /// A failed outbound publish attempt, as `kind/reason` (exported as
    /// two labels).
    OutboundFailure {
        ForwardConnect => "forward/connect",
        ForwardHandshake => "forward/handshake",
        ForwardRejected => "forward/rejected",
        ForwardRefused => "forward/refused",
        ForwardTimeout => "forward/timeout",
        ForwardLost => "forward/lost",
        ForwardSlow => "forward/slow",
        ForwardProtocol => "forward/protocol",
        PushConnect => "push/connect",
        PushHandshake => "push/handshake",
        PushRejected => "push/rejected",
        PushRefused => "push/refused",
        PushTimeout => "push/timeout",
        PushLost => "push/lost",
        PushSlow => "push/slow",
        PushProtocol => "push/protocol",
    }
);

/// Why an outbound publish attempt failed (the reason half of
/// [`OutboundFailure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundReason {
    /// TCP connect failed or timed out.
    Connect,
    Handshake,
    /// `connect` refused.
    Rejected,
    /// `publish` refused (BadName: the name is in use there, Denied, …).
    Refused,
    /// No Publish.Start within the start timeout.
    Timeout,
    /// The connection broke or the peer ended our publish once live.
    Lost,
    /// The peer read too slowly; its queue overflowed past the slow limit.
    Slow,
    /// The peer sent bytes that break the protocol.
    Protocol,
}

impl OutboundFailure {
    pub fn of(kind: OutboundKind, reason: OutboundReason) -> OutboundFailure {
        use OutboundFailure as F;
        use OutboundReason as R;
        match (kind, reason) {
            (OutboundKind::Forward, R::Connect) => F::ForwardConnect,
            (OutboundKind::Forward, R::Handshake) => F::ForwardHandshake,
            (OutboundKind::Forward, R::Rejected) => F::ForwardRejected,
            (OutboundKind::Forward, R::Refused) => F::ForwardRefused,
            (OutboundKind::Forward, R::Timeout) => F::ForwardTimeout,
            (OutboundKind::Forward, R::Lost) => F::ForwardLost,
            (OutboundKind::Forward, R::Slow) => F::ForwardSlow,
            (OutboundKind::Forward, R::Protocol) => F::ForwardProtocol,
            (OutboundKind::Push, R::Connect) => F::PushConnect,
            (OutboundKind::Push, R::Handshake) => F::PushHandshake,
            (OutboundKind::Push, R::Rejected) => F::PushRejected,
            (OutboundKind::Push, R::Refused) => F::PushRefused,
            (OutboundKind::Push, R::Timeout) => F::PushTimeout,
            (OutboundKind::Push, R::Lost) => F::PushLost,
            (OutboundKind::Push, R::Slow) => F::PushSlow,
            (OutboundKind::Push, R::Protocol) => F::PushProtocol,
        }
    }
}
