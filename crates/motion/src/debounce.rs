//! The pure, per-camera debounce state machine: triggers and `now` in, transitions out.
//!
//! Rules (chosen so HomeKit Secure Video clips do not flap; see [`DebounceConfig`]):
//! - The state turns **on** at the first `detected = true` from any source.
//! - A *pulse* source ([`MotionSource::Http`], [`MotionSource::Detector`]) stays active for
//!   `hold_ms` after its latest `true`. A *level* source ([`MotionSource::Mqtt`],
//!   [`MotionSource::Frigate`]) stays active until it sends `false`, but at most `level_max_ms`
//!   after its latest `true` (a lost "OFF"/"end" message must not keep a camera recording).
//! - `detected = false` ends that source's activity at once.
//! - The state turns **off** when no source is active any more, but never earlier than
//!   `min_on_ms` after it turned on.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Where a motion trigger came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MotionSource {
    /// The bridge's HTTP trigger endpoint (pulse).
    Http,
    /// A plain MQTT topic (`ON`/`OFF`, level).
    Mqtt,
    /// Frigate's `frigate/events` topic (level, per tracked object).
    Frigate,
    /// The built-in frame-difference detector (pulse, one per analysed frame with motion).
    Detector,
}

impl MotionSource {
    /// Every source, in a fixed order.
    pub const ALL: [Self; 4] = [Self::Http, Self::Mqtt, Self::Frigate, Self::Detector];

    /// Whether `true` lasts until an explicit `false` (level) rather than `hold_ms` (pulse).
    pub const fn is_level(self) -> bool {
        matches!(self, Self::Mqtt | Self::Frigate)
    }

    const fn index(self) -> usize {
        match self {
            Self::Http => 0,
            Self::Mqtt => 1,
            Self::Frigate => 2,
            Self::Detector => 3,
        }
    }
}

impl std::fmt::Display for MotionSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Http => "http",
            Self::Mqtt => "mqtt",
            Self::Frigate => "frigate",
            Self::Detector => "detector",
        })
    }
}

/// Debounce timing for one camera (embedded in the bridge's TOML).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebounceConfig {
    /// Shortest time motion stays on once on. Default 10 000 ms: the home hub asks for a 4 s
    /// prebuffer and a clip shorter than a few seconds is rarely worth keeping.
    #[serde(default = "default_min_on_ms")]
    pub min_on_ms: u64,
    /// How long a pulse source (HTTP, detector) stays active after its latest trigger.
    /// Default 5 000 ms: bridges the pauses of someone standing still between detector hits.
    #[serde(default = "default_hold_ms")]
    pub hold_ms: u64,
    /// Longest a level source (MQTT, Frigate) stays active without a refresh or its "off".
    /// Default 300 000 ms (5 min).
    #[serde(default = "default_level_max_ms")]
    pub level_max_ms: u64,
}

fn default_min_on_ms() -> u64 {
    10_000
}
fn default_hold_ms() -> u64 {
    5_000
}
fn default_level_max_ms() -> u64 {
    300_000
}

impl Default for DebounceConfig {
    fn default() -> Self {
        Self {
            min_on_ms: default_min_on_ms(),
            hold_ms: default_hold_ms(),
            level_max_ms: default_level_max_ms(),
        }
    }
}

/// A change of the debounced motion state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Motion started.
    On,
    /// Motion ended.
    Off,
}

/// Debounced motion state of one camera. Pure: every call takes `now`.
#[derive(Debug, Clone)]
pub struct MotionState {
    min_on: Duration,
    hold: Duration,
    level_max: Duration,
    /// When the state turned on; `None` while off.
    on_since: Option<Instant>,
    /// Per source (indexed by [`MotionSource::index`]): until when it counts as active.
    active_until: [Option<Instant>; 4],
}

impl MotionState {
    /// A new state, off.
    pub fn new(config: &DebounceConfig) -> Self {
        Self {
            min_on: Duration::from_millis(config.min_on_ms),
            hold: Duration::from_millis(config.hold_ms),
            level_max: Duration::from_millis(config.level_max_ms),
            on_since: None,
            active_until: [None; 4],
        }
    }

    /// Whether motion is currently on (as of the last call).
    pub fn is_on(&self) -> bool {
        self.on_since.is_some()
    }

    /// Whether `source` currently counts as active (as of `now`).
    pub fn is_source_active(&self, source: MotionSource, now: Instant) -> bool {
        self.active_until
            .get(source.index())
            .copied()
            .flatten()
            .is_some_and(|until| until > now)
    }

    /// Feeds one trigger. `detected = true` means "motion seen now" (pulse) or "motion on"
    /// (level); `false` means this source's motion ended. Returns the transition, if any.
    pub fn trigger(
        &mut self,
        now: Instant,
        source: MotionSource,
        detected: bool,
    ) -> Option<Transition> {
        let keep = if source.is_level() {
            self.level_max
        } else {
            self.hold
        };
        if let Some(slot) = self.active_until.get_mut(source.index()) {
            *slot = detected.then(|| now + keep);
        }
        if detected && self.on_since.is_none() {
            self.on_since = Some(now);
            return Some(Transition::On);
        }
        self.poll(now)
    }

    /// Applies the passage of time: returns [`Transition::Off`] once every source is quiet
    /// and `min_on_ms` has passed.
    pub fn poll(&mut self, now: Instant) -> Option<Transition> {
        let off_at = self.poll_timeout()?;
        if now < off_at {
            return None;
        }
        self.on_since = None;
        self.active_until = [None; 4];
        Some(Transition::Off)
    }

    /// When [`poll`](Self::poll) will next have something to do: the instant motion turns off
    /// if nothing else arrives. `None` while off.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let on_since = self.on_since?;
        let latest_active = self.active_until.iter().flatten().max().copied();
        let min_on_end = on_since + self.min_on;
        Some(latest_active.map_or(min_on_end, |t| t.max(min_on_end)))
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn config() -> DebounceConfig {
        DebounceConfig {
            min_on_ms: 10_000,
            hold_ms: 3_000,
            level_max_ms: 60_000,
        }
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn pulse_turns_on_and_stays_on_for_min_on() {
        let t0 = Instant::now();
        let mut s = MotionState::new(&config());
        assert_eq!(
            s.trigger(t0, MotionSource::Detector, true),
            Some(Transition::On)
        );
        assert!(s.is_on());
        // Hold (3 s) ended long ago, but min_on (10 s) has not.
        assert_eq!(s.poll(ms(t0, 9_999)), None);
        assert_eq!(s.poll_timeout(), Some(ms(t0, 10_000)));
        assert_eq!(s.poll(ms(t0, 10_000)), Some(Transition::Off));
        assert!(!s.is_on());
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn repeated_pulses_extend_by_hold_after_last_trigger() {
        let t0 = Instant::now();
        let mut s = MotionState::new(&config());
        s.trigger(t0, MotionSource::Detector, true);
        for step in 1..=12u64 {
            // A hit every second for 12 s: no transition in between.
            assert_eq!(
                s.trigger(ms(t0, step * 1_000), MotionSource::Detector, true),
                None
            );
        }
        assert_eq!(s.poll_timeout(), Some(ms(t0, 15_000)));
        assert_eq!(s.poll(ms(t0, 14_999)), None);
        assert_eq!(s.poll(ms(t0, 15_000)), Some(Transition::Off));
    }

    #[test]
    fn a_second_on_while_on_is_no_transition() {
        let t0 = Instant::now();
        let mut s = MotionState::new(&config());
        assert_eq!(
            s.trigger(t0, MotionSource::Http, true),
            Some(Transition::On)
        );
        assert_eq!(s.trigger(ms(t0, 1), MotionSource::Mqtt, true), None);
    }

    #[test]
    fn level_source_holds_until_off_then_min_on_applies() {
        let t0 = Instant::now();
        let mut s = MotionState::new(&config());
        s.trigger(t0, MotionSource::Frigate, true);
        // Far past hold and min_on: a level source keeps it on.
        assert_eq!(s.poll(ms(t0, 30_000)), None);
        assert_eq!(
            s.trigger(ms(t0, 30_000), MotionSource::Frigate, false),
            Some(Transition::Off)
        );

        // Off before min_on: waits for min_on.
        s.trigger(ms(t0, 40_000), MotionSource::Frigate, true);
        assert_eq!(
            s.trigger(ms(t0, 41_000), MotionSource::Frigate, false),
            None
        );
        assert_eq!(s.poll_timeout(), Some(ms(t0, 50_000)));
        assert_eq!(s.poll(ms(t0, 50_000)), Some(Transition::Off));
    }

    #[test]
    fn level_source_without_off_expires_after_level_max() {
        let t0 = Instant::now();
        let mut s = MotionState::new(&config());
        s.trigger(t0, MotionSource::Mqtt, true);
        assert_eq!(s.poll(ms(t0, 59_999)), None);
        assert_eq!(s.poll(ms(t0, 60_000)), Some(Transition::Off));
    }

    #[test]
    fn off_from_one_source_keeps_state_while_another_is_active() {
        let t0 = Instant::now();
        let mut s = MotionState::new(&config());
        s.trigger(t0, MotionSource::Mqtt, true);
        s.trigger(ms(t0, 11_000), MotionSource::Detector, true);
        // MQTT says off; the detector's hold runs until 14 s.
        assert_eq!(s.trigger(ms(t0, 12_000), MotionSource::Mqtt, false), None);
        assert!(s.is_source_active(MotionSource::Detector, ms(t0, 12_000)));
        assert!(!s.is_source_active(MotionSource::Mqtt, ms(t0, 12_000)));
        assert_eq!(s.poll(ms(t0, 13_999)), None);
        assert_eq!(s.poll(ms(t0, 14_000)), Some(Transition::Off));
    }

    #[test]
    fn off_while_off_does_nothing() {
        let t0 = Instant::now();
        let mut s = MotionState::new(&config());
        assert_eq!(s.trigger(t0, MotionSource::Http, false), None);
        assert!(!s.is_on());
        assert_eq!(s.poll(ms(t0, 100_000)), None);
    }

    #[test]
    fn zero_timings_turn_off_immediately() {
        let t0 = Instant::now();
        let mut s = MotionState::new(&DebounceConfig {
            min_on_ms: 0,
            hold_ms: 0,
            level_max_ms: 0,
        });
        assert_eq!(
            s.trigger(t0, MotionSource::Detector, true),
            Some(Transition::On)
        );
        assert_eq!(s.poll(t0), Some(Transition::Off));
    }

    #[test]
    fn retrigger_after_off_turns_on_again_with_fresh_min_on() {
        let t0 = Instant::now();
        let mut s = MotionState::new(&config());
        s.trigger(t0, MotionSource::Http, true);
        assert_eq!(s.poll(ms(t0, 10_000)), Some(Transition::Off));
        assert_eq!(
            s.trigger(ms(t0, 10_001), MotionSource::Http, true),
            Some(Transition::On)
        );
        assert_eq!(s.poll_timeout(), Some(ms(t0, 20_001)));
    }

    proptest::proptest! {
        /// Random triggers and polls on virtual time: transitions alternate, motion never ends
        /// before min_on, and it always ends by the advertised poll_timeout.
        #[test]
        fn invariants_hold_for_random_inputs(
            steps in proptest::collection::vec((0u64..4_000, 0usize..4, proptest::prelude::any::<bool>(), proptest::prelude::any::<bool>()), 1..200)
        ) {
            let cfg = DebounceConfig { min_on_ms: 2_000, hold_ms: 700, level_max_ms: 5_000 };
            let t0 = Instant::now();
            let mut now = t0;
            let mut s = MotionState::new(&cfg);
            let mut on_since: Option<Instant> = None;
            for (advance_ms, source, detected, poll_only) in steps {
                now += Duration::from_millis(advance_ms);
                let deadline = s.poll_timeout();
                let transition = if poll_only {
                    s.poll(now)
                } else {
                    s.trigger(now, MotionSource::ALL[source], detected)
                };
                match transition {
                    Some(Transition::On) => {
                        proptest::prop_assert!(on_since.is_none());
                        on_since = Some(now);
                    }
                    Some(Transition::Off) => {
                        let since = on_since.take();
                        proptest::prop_assert!(since.is_some());
                        proptest::prop_assert!(now >= since.unwrap() + Duration::from_millis(cfg.min_on_ms));
                    }
                    None => {
                        // Past the advertised deadline, polling must have turned it off.
                        if poll_only && let Some(d) = deadline {
                            proptest::prop_assert!(now < d, "poll past poll_timeout did not turn off");
                        }
                    }
                }
                proptest::prop_assert_eq!(s.is_on(), on_since.is_some());
                proptest::prop_assert_eq!(s.poll_timeout().is_some(), s.is_on());
            }
        }
    }

    #[test]
    fn config_defaults_are_documented_values() {
        let c: DebounceConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, DebounceConfig::default());
        assert_eq!(
            (c.min_on_ms, c.hold_ms, c.level_max_ms),
            (10_000, 5_000, 300_000)
        );
        assert!(serde_json::from_str::<DebounceConfig>(r#"{"min_on":1}"#).is_err());
    }
}
