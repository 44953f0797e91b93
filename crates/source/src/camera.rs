//! The source abstraction: a [`Connector`] opens a [`MediaSession`]; a
//! [`ReconnectingSource`] keeps one alive (backoff, stall watchdog, continuous timestamps)
//! and reports reconnects as [`SourceEvent`]s instead of ending, so the prebuffer keeps
//! serving what it has.
//!
//! ```text
//!  Connector::connect ──► MediaSession::next_unit ──► ReconnectingSource::next_event
//!    (RTSP, V4L2,           (units, None at end)        Connected / Unit / Reconnecting
//!     bytes, demo, sim)                                  watchdog, backoff, rebasing
//! ```

use std::future::Future;
use std::time::Duration;

use recorder::MediaUnit;
use recorder::ParameterSets;
use recorder::aac::AudioSpecificConfig;
use tokio::time::Instant;
use tracing::debug;

use crate::Error;

/// What a session learned about its stream when it connected.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamParams {
    /// Out-of-band H.264 parameter sets (SDP `sprop-parameter-sets`, `avcC`), if known before
    /// the first frame; in-band ones are read by the fragmenter.
    pub parameter_sets: Option<ParameterSets>,
    /// The AAC AudioSpecificConfig when the stream has AAC audio that will be delivered.
    pub audio: Option<AudioSpecificConfig>,
    /// Audio present but not delivered (not AAC), e.g. `"PCMA 8000 Hz"`.
    pub ignored_audio: Option<String>,
    /// How the stream is carried, for the check report: `"RTSP, RTP over TCP"`.
    pub transport: String,
}

/// One step of a live source.
#[derive(Debug, Clone)]
pub enum SourceEvent {
    /// A session started (first connect or a reconnect). Units follow.
    Connected {
        /// The new session's stream parameters.
        params: StreamParams,
        /// Connection attempts so far, counting this one (1 for the first connect).
        attempt: u32,
    },
    /// A timestamped media unit. Timestamps are continuous across reconnects.
    Unit(MediaUnit),
    /// The session failed or ended; the next connect is tried after `delay`.
    Reconnecting {
        /// Why.
        error: Error,
        /// Consecutive failed attempts (1 after the first failure).
        failures: u32,
        /// Backoff before the next attempt.
        delay: Duration,
    },
}

/// Opens sessions to one camera. Implemented by each source kind, and by
/// [`crate::testing::SimConnector`] for tests.
pub trait Connector: Send {
    /// The session type.
    type Session: MediaSession;

    /// Connects and describes the stream.
    ///
    /// # Errors
    /// [`Error::Connect`], [`Error::Auth`], [`Error::UnsupportedCodec`], … Fatal ones
    /// ([`Error::is_fatal`]) stop the [`ReconnectingSource`].
    fn connect(&mut self) -> impl Future<Output = Result<Self::Session, Error>> + Send;

    /// The camera's name for messages (credentials redacted).
    fn camera(&self) -> String;
}

/// One connection's stream of units.
pub trait MediaSession: Send {
    /// The stream's parameters.
    fn params(&self) -> &StreamParams;

    /// The next unit; `Ok(None)` when the stream ended cleanly.
    ///
    /// # Errors
    /// The session failed; it is dropped and the source reconnects.
    fn next_unit(&mut self) -> impl Future<Output = Result<Option<MediaUnit>, Error>> + Send;
}

/// A camera source: a stream of [`SourceEvent`]s.
pub trait CameraSource: Send {
    /// The next event.
    ///
    /// # Errors
    /// Only fatal errors ([`Error::is_fatal`]) or when the attempt limit was reached; the
    /// source is finished after an error.
    ///
    /// # Cancel safety
    /// Cancel safe between units: dropping the future loses at most a unit being read or a
    /// backoff in progress (the next call starts the attempt again).
    fn next_event(&mut self) -> impl Future<Output = Result<SourceEvent, Error>> + Send;
}

/// Reconnect and watchdog settings. [`Default`]: backoff 1 s doubling to 30 s, stall 10 s,
/// retry forever.
#[derive(Debug, Clone)]
pub struct ReconnectPolicy {
    /// First backoff after a failure.
    pub initial_backoff: Duration,
    /// Backoff cap (exponential growth stops here).
    pub max_backoff: Duration,
    /// A session that delivered units for this long resets the backoff.
    pub stable_after: Duration,
    /// No unit (or no connect answer) for this long → the session is dropped and reconnected.
    /// Cameras send several frames a second, so 10 s means something is wrong.
    pub stall_timeout: Duration,
    /// Give up after this many consecutive failures (`None`: never). `check` uses 1.
    pub max_consecutive_failures: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(10),
            max_consecutive_failures: None,
        }
    }
}

impl ReconnectPolicy {
    /// The backoff after `failures` consecutive failures (1-based): initial × 2^(n-1), capped.
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1).min(20))
            .unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Keeps timestamps continuous across sessions: each session's first unit is placed at the
/// previous session's last time plus the wall-clock gap, so the fragmenter never sees a
/// jump back (a new RTSP session starts at a random RTP timestamp, a restarted child at 0).
#[derive(Debug, Default)]
struct Rebaser {
    /// Offset added to this session's video times, 90 kHz.
    offset_90k: Option<i64>,
    /// Last unit time delivered, 90 kHz, and when.
    last: Option<(i64, Instant)>,
    audio_rate_hz: u32,
}

impl Rebaser {
    fn new_session(&mut self, audio_rate_hz: u32) {
        self.offset_90k = None;
        self.audio_rate_hz = audio_rate_hz.max(1);
    }

    fn apply(&mut self, mut unit: MediaUnit, now: Instant) -> MediaUnit {
        let t = unit.time_90k(self.audio_rate_hz);
        if matches!(unit, MediaUnit::ParameterSets(_)) {
            return unit;
        }
        let offset = *self.offset_90k.get_or_insert_with(|| match self.last {
            None => 0,
            Some((last, at)) => {
                let gap_90k =
                    i64::try_from(now.saturating_duration_since(at).as_micros() * 9 / 100)
                        .unwrap_or(i64::MAX);
                last.saturating_add(gap_90k.max(1)).saturating_sub(t)
            }
        });
        match &mut unit {
            MediaUnit::Video(v) => {
                v.pts_90k = v.pts_90k.saturating_add(offset);
                v.dts_90k = v.dts_90k.map(|d| d.saturating_add(offset));
            }
            MediaUnit::Audio(a) => {
                let off = (i128::from(offset) * i128::from(self.audio_rate_hz) / 90_000) as i64;
                a.pts_samples = a.pts_samples.saturating_add(off);
            }
            MediaUnit::ParameterSets(_) => {}
        }
        let out = t.saturating_add(offset);
        if self.last.is_none_or(|(l, _)| out > l) {
            self.last = Some((out, now));
        }
        unit
    }
}

enum State<S> {
    Idle,
    Waiting {
        until: Instant,
    },
    /// `last`: when the last unit (or the connect) happened; the stall watchdog counts from
    /// it, so a cancelled and repeated `next_event` does not restart it. The watchdog is one
    /// timer per connection that, when it fires, re-arms at `last + stall` unless that has
    /// passed: one timer update per stall period instead of one per access unit.
    Live {
        session: S,
        since: Instant,
        units: u64,
        last: Instant,
        watchdog: std::pin::Pin<Box<tokio::time::Sleep>>,
    },
    Done,
}

/// A [`CameraSource`] that keeps a [`Connector`]'s sessions alive. See the module docs.
pub struct ReconnectingSource<C: Connector> {
    connector: C,
    policy: ReconnectPolicy,
    state: State<C::Session>,
    attempts: u32,
    failures: u32,
    rebaser: Rebaser,
    /// Deadline of the connect in progress (kept across cancelled `next_event` calls).
    connect_deadline: Option<Instant>,
}

impl<C: Connector> std::fmt::Debug for ReconnectingSource<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectingSource")
            .field("camera", &self.connector.camera())
            .field("attempts", &self.attempts)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl<C: Connector> ReconnectingSource<C> {
    /// A source that connects on the first [`CameraSource::next_event`].
    pub fn new(connector: C, policy: ReconnectPolicy) -> Self {
        Self {
            connector,
            policy,
            state: State::Idle,
            attempts: 0,
            failures: 0,
            rebaser: Rebaser::default(),
            connect_deadline: None,
        }
    }

    /// Connection attempts so far (successful or not).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The connector (e.g. to read a simulated device's counters in tests).
    pub fn connector(&self) -> &C {
        &self.connector
    }

    /// Records a failure: returns the event to report, or the error when giving up.
    fn fail(
        &mut self,
        error: Error,
        session_ran: Option<(Instant, u64)>,
    ) -> Result<SourceEvent, Error> {
        let now = Instant::now();
        if let Some((since, units)) = session_ran
            && units > 0
            && now.saturating_duration_since(since) >= self.policy.stable_after
        {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        if error.is_fatal()
            || self
                .policy
                .max_consecutive_failures
                .is_some_and(|m| self.failures >= m)
        {
            self.state = State::Done;
            return Err(error);
        }
        let delay = self.policy.backoff(self.failures);
        debug!(camera = %self.connector.camera(), %error, failures = self.failures, delay_ms = delay.as_millis() as u64, "camera source failed; reconnecting");
        self.state = State::Waiting { until: now + delay };
        Ok(SourceEvent::Reconnecting {
            error,
            failures: self.failures,
            delay,
        })
    }
}

impl<C: Connector> CameraSource for ReconnectingSource<C> {
    async fn next_event(&mut self) -> Result<SourceEvent, Error> {
        loop {
            match &mut self.state {
                State::Done => {
                    return Err(Error::Ended {
                        camera: self.connector.camera(),
                        detail: "the source gave up".into(),
                    });
                }
                State::Waiting { until } => {
                    tokio::time::sleep_until(*until).await;
                    self.state = State::Idle;
                }
                State::Idle => {
                    let stall = self.policy.stall_timeout;
                    let deadline = match self.connect_deadline {
                        Some(d) => d,
                        None => {
                            self.attempts = self.attempts.saturating_add(1);
                            debug!(camera = %self.connector.camera(), attempt = self.attempts, "connecting");
                            *self.connect_deadline.insert(Instant::now() + stall)
                        }
                    };
                    let res =
                        match tokio::time::timeout_at(deadline, self.connector.connect()).await {
                            Ok(r) => r,
                            Err(_) => Err(Error::Stalled {
                                camera: self.connector.camera(),
                                waited_ms: stall.as_millis() as u64,
                            }),
                        };
                    self.connect_deadline = None;
                    match res {
                        Ok(session) => {
                            let params = session.params().clone();
                            debug!(camera = %self.connector.camera(), transport = %params.transport, "camera connected");
                            self.rebaser
                                .new_session(params.audio.as_ref().map_or(1, |a| a.sample_rate_hz));
                            let now = Instant::now();
                            self.state = State::Live {
                                session,
                                since: now,
                                units: 0,
                                last: now,
                                watchdog: Box::pin(tokio::time::sleep_until(
                                    now + self.policy.stall_timeout,
                                )),
                            };
                            return Ok(SourceEvent::Connected {
                                params,
                                attempt: self.attempts,
                            });
                        }
                        Err(e) => return self.fail(e, None),
                    }
                }
                State::Live {
                    session,
                    since,
                    units,
                    last,
                    watchdog,
                } => {
                    let stall = self.policy.stall_timeout;
                    let (since, n) = (*since, *units);
                    let res = {
                        // One `next_unit` future for the whole wait: re-arming the watchdog
                        // must not cancel a read in progress.
                        let next = session.next_unit();
                        tokio::pin!(next);
                        loop {
                            tokio::select! {
                                biased;
                                r = &mut next => break r,
                                () = watchdog.as_mut() => {
                                    let due = *last + stall;
                                    if Instant::now() >= due {
                                        break Err(Error::Stalled {
                                            camera: self.connector.camera(),
                                            waited_ms: stall.as_millis() as u64,
                                        });
                                    }
                                    watchdog.as_mut().reset(due);
                                }
                            }
                        }
                    };
                    match res {
                        Ok(Some(unit)) => {
                            *units = units.saturating_add(1);
                            let now = Instant::now();
                            *last = now;
                            return Ok(SourceEvent::Unit(self.rebaser.apply(unit, now)));
                        }
                        Ok(None) => {
                            let e = Error::Ended {
                                camera: self.connector.camera(),
                                detail: "end of stream".into(),
                            };
                            self.state = State::Idle;
                            return self.fail(e, Some((since, n)));
                        }
                        Err(e) => {
                            self.state = State::Idle;
                            return self.fail(e, Some((since, n)));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = ReconnectPolicy {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(4),
            ..Default::default()
        };
        let got: Vec<u64> = (1..=6).map(|n| p.backoff(n).as_millis() as u64).collect();
        assert_eq!(got, [500, 1000, 2000, 4000, 4000, 4000]);
        assert_eq!(p.backoff(1000), Duration::from_secs(4));
    }
}
