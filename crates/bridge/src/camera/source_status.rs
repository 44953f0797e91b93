//! What a camera's source is doing, for `GET /api/cameras` (`state`, `last_error`, `since`),
//! `pair-info`, and the log: one line per change of state, not one per retry.

use std::sync::Mutex;
use std::time::SystemTime;

use tracing::{debug, info, warn};

use super::lock;

/// The source's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// Not connected yet.
    Starting,
    /// Connected; media flows.
    Streaming,
    /// Down (never reached, or lost); reconnecting with backoff.
    Retrying,
    /// Gave up (bad spec or a fatal error such as a codec HKSV cannot record).
    Failed,
}

impl SourceState {
    /// The word the API and `pair-info` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Streaming => "streaming",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
        }
    }
}

/// A snapshot of a source's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStatus {
    /// Current state.
    pub state: SourceState,
    /// The last error (credentials redacted), kept after recovery until the next one.
    pub last_error: Option<String>,
    /// When `state` was entered.
    pub since: SystemTime,
    /// Consecutive failed connection attempts (0 while streaming).
    pub failures: u32,
    /// Failed sessions and connection attempts since start.
    pub reconnects: u64,
}

/// A source's status and the transitions that are logged. `role` is `source` or
/// `live_source`.
#[derive(Debug)]
pub(crate) struct SourceTracker {
    camera: String,
    role: &'static str,
    status: Mutex<SourceStatus>,
}

impl SourceTracker {
    pub(crate) fn new(camera: String, role: &'static str, state: SourceState) -> Self {
        Self {
            camera,
            role,
            status: Mutex::new(SourceStatus {
                state,
                last_error: None,
                since: SystemTime::now(),
                failures: 0,
                reconnects: 0,
            }),
        }
    }

    pub(crate) fn get(&self) -> SourceStatus {
        lock(&self.status).clone()
    }

    fn enter(s: &mut SourceStatus, state: SourceState) {
        if s.state != state {
            s.state = state;
            s.since = SystemTime::now();
        }
    }

    /// A session started; `source` is the spec as displayed (credentials redacted).
    pub(crate) fn connected(&self, source: &str, transport: &str, attempt: u32) {
        let (camera, role) = (&self.camera, self.role);
        let mut s = lock(&self.status);
        match s.state {
            SourceState::Retrying => info!(
                camera,
                role,
                source,
                transport,
                failed_attempts = s.failures,
                "source back"
            ),
            _ => info!(camera, role, source, transport, attempt, "source connected"),
        }
        s.failures = 0;
        Self::enter(&mut s, SourceState::Streaming);
    }

    /// A session failed or could not be opened; the next attempt is in `delay_ms`.
    pub(crate) fn retrying(&self, error: &str, failures: u32, delay_ms: u64) {
        let (camera, role) = (&self.camera, self.role);
        let mut s = lock(&self.status);
        match s.state {
            SourceState::Streaming => warn!(
                camera,
                role,
                error,
                retry_in_ms = delay_ms,
                "source lost; reconnecting (the prebuffer keeps what it has)"
            ),
            SourceState::Starting => warn!(
                camera,
                role,
                error,
                retry_in_ms = delay_ms,
                "source unreachable; retrying with backoff"
            ),
            // Still down: a new reason is worth a line, the same one is not.
            SourceState::Retrying | SourceState::Failed
                if s.last_error.as_deref() != Some(error) =>
            {
                warn!(
                    camera,
                    role,
                    error,
                    failures,
                    retry_in_ms = delay_ms,
                    "source still down"
                );
            }
            SourceState::Retrying | SourceState::Failed => {
                debug!(
                    camera,
                    role,
                    error,
                    failures,
                    retry_in_ms = delay_ms,
                    "source still down"
                );
            }
        }
        s.failures = failures;
        s.reconnects += 1;
        s.last_error = Some(error.to_owned());
        Self::enter(&mut s, SourceState::Retrying);
    }

    /// The source will not be tried again.
    pub(crate) fn failed(&self, error: &str) {
        let (camera, role) = (&self.camera, self.role);
        warn!(
            camera,
            role, error, "source failed; not retrying (fix it and restart)"
        );
        let mut s = lock(&self.status);
        s.last_error = Some(error.to_owned());
        Self::enter(&mut s, SourceState::Failed);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_the_source_and_keep_the_last_error() {
        let t = SourceTracker::new("cam".into(), "source", SourceState::Starting);
        assert_eq!(t.get().state, SourceState::Starting);
        t.retrying("refused", 1, 1000);
        let down = t.get();
        assert_eq!(
            (down.state, down.last_error.as_deref(), down.failures),
            (SourceState::Retrying, Some("refused"), 1)
        );
        t.retrying("refused", 2, 2000);
        // Still the same state: `since` is when it went down, not the latest retry.
        assert_eq!(t.get().since, down.since);
        assert_eq!((t.get().failures, t.get().reconnects), (2, 2));
        t.connected("rtsp://cam/s", "tcp", 3);
        let up = t.get();
        assert_eq!((up.state, up.failures), (SourceState::Streaming, 0));
        assert_eq!(up.last_error.as_deref(), Some("refused"));
        t.failed("H.265");
        assert_eq!(t.get().state, SourceState::Failed);
        assert_eq!(SourceState::Retrying.as_str(), "retrying");
    }
}
