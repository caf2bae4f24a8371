//! What reloads publish: each attempt's result, and the channel that carries it (and the
//! requests for one).

use std::time::{Duration, SystemTime};

use tokio::sync::{watch, Notify};

use crate::model::config::ConfigError;

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Startup,
    Watch,
    Signal,
    Timer,
    /// Kubernetes discovery published new ClickHouseInstallations.
    Discovery,
}

ch_edge_wire::keywords!(Trigger {
    Startup => "startup",
    Watch => "watch",
    Signal => "signal",
    Timer => "timer",
    Discovery => "discovery",
});

/// The result of one reload attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadResult {
    /// A new generation is live.
    Ok,
    /// The files hash as the live configuration (after a refusal: they are good again, see
    /// [`Status::successful`]), or fail exactly as the last attempt did (already reported).
    Unchanged,
    /// Refused; the running state stays.
    Error(ConfigError),
}

impl ReloadResult {
    /// Every [`ReloadResult::label`].
    pub const LABELS: [&'static str; 3] = ["ok", "unchanged", "error"];

    /// The `result` label of logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ReloadResult::Ok => "ok",
            ReloadResult::Unchanged => "unchanged",
            ReloadResult::Error(_) => "error",
        }
    }
}

/// The latest reload, as published on the [`Channel`].
#[derive(Debug, Clone)]
pub struct Status {
    /// Generation live after this attempt.
    pub generation: u64,
    pub result: ReloadResult,
    pub trigger: Trigger,
    pub at: SystemTime,
    /// How long the attempt took: from its start (after the watch debounce) until the result,
    /// the new table live included.
    pub took: Duration,
    /// Content hash of the live configuration.
    pub config_hash: u64,
    /// True while the files last read are the running configuration (loaded, or found equal
    /// to it again after a refusal); false while they are refused (a repeated `unchanged`
    /// failure included). The gauge `ch_edge_proxy_config_last_reload_successful`.
    pub successful: bool,
    pub last_success: SystemTime,
    /// The most recent refusal, kept after later successes for `/routes`.
    pub last_error: Option<(ConfigError, SystemTime)>,
}

impl Status {
    pub fn startup(config_hash: u64) -> Status {
        let now = SystemTime::now();
        Status {
            generation: 1,
            result: ReloadResult::Ok,
            trigger: Trigger::Startup,
            at: now,
            took: Duration::ZERO,
            config_hash,
            successful: true,
            last_success: now,
            last_error: None,
        }
    }
}

/// Requests for a reload go in (SIGHUP), results come out.
#[derive(Debug)]
pub struct Channel {
    status: watch::Sender<Status>,
    requested: Notify,
}

impl Channel {
    pub fn new(config_hash: u64) -> Channel {
        Channel {
            status: watch::Sender::new(Status::startup(config_hash)),
            requested: Notify::new(),
        }
    }

    /// Asks for a reload now; the result is published like any other.
    pub fn request(&self) {
        self.requested.notify_one();
    }

    /// Resolves when a reload was requested (cancel-safe).
    pub(crate) async fn requested(&self) {
        self.requested.notified().await;
    }

    /// Every result from now on, starting with the latest.
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// The latest result.
    pub fn latest(&self) -> Status {
        self.status.borrow().clone()
    }

    pub(crate) fn publish(&self, update: impl FnOnce(&mut Status)) {
        self.status.send_modify(update);
    }
}
