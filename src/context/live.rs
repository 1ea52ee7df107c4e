//! Settings a reload can change without dropping a connection, built from
//! the configuration in one place.

use std::sync::Arc;
use std::time::Duration;

use tracing::error;

use crate::config::Config;
use crate::egress::QueueLimits;
use crate::hub::HubConfig;
use crate::protocol::session::ServerConfig;

/// Settings a reload can change without dropping a connection. Chunk size,
/// listen address and worker count are not among them.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    pub hub: HubConfig,
    pub queue: QueueLimits,
    pub session: ServerConfig,
    pub handshake_timeout: Duration,
    /// A publisher that sends nothing this long is closed.
    pub publisher_timeout: Duration,
    /// A connection that neither publishes nor plays this long is closed.
    pub idle_timeout: Duration,
    /// A paused player is closed after this long.
    pub pause_timeout: Duration,
    /// Refused publishes or plays before a connection is closed.
    pub max_refusals: u32,
    /// The `[auth]` policy (one per configuration, shared by the workers).
    pub auth: Arc<crate::auth::Policy>,
}

/// The part of the configuration a reload may change.
pub fn live_settings(config: &Config) -> LiveSettings {
    LiveSettings {
        hub: HubConfig::from_config(config),
        queue: QueueLimits::from_config(config),
        session: config.session_config(),
        handshake_timeout: Duration::from_millis(config.limits.handshake_timeout_ms),
        publisher_timeout: Duration::from_millis(config.limits.publisher_timeout_ms),
        idle_timeout: Duration::from_millis(config.limits.idle_timeout_ms),
        pause_timeout: Duration::from_millis(config.limits.pause_timeout_ms),
        max_refusals: config.limits.max_refusals_per_connection,
        auth: Arc::new(
            crate::auth::Policy::from_config(&config.auth).unwrap_or_else(|e| {
                // Validation refuses such a file first; never fall back to open.
                error!(error = %e, "bad [auth]; denying every publish and play");
                crate::auth::Policy::deny_all()
            }),
        ),
    }
}
