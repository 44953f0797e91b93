//! [`MotionHub`]: the per-camera registry that HTTP, MQTT and the detector feed.
//!
//! Each camera has a [`MotionState`] behind a mutex and a small tokio task that sleeps until
//! the state's [`poll_timeout`](MotionState::poll_timeout) and turns motion off. Changes are
//! published on a [`tokio::sync::watch`] channel per camera.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;

use crate::debounce::{DebounceConfig, MotionSource, MotionState, Transition};
use crate::error::MotionError;

/// The published motion state of one camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MotionStatus {
    /// Whether motion is on.
    pub detected: bool,
    /// The source whose trigger turned motion on (kept after it turns off); `None` before the
    /// first motion.
    pub source: Option<MotionSource>,
    /// When `detected` last changed (tokio's clock, so paused-time tests see virtual time).
    pub changed_at: Instant,
    /// How many times `detected` has changed since the hub started.
    pub changes: u64,
}

struct CameraSlot {
    name: String,
    state: Mutex<MotionState>,
    tx: watch::Sender<MotionStatus>,
    wake: Notify,
}

impl CameraSlot {
    fn lock(&self) -> MutexGuard<'_, MotionState> {
        // A panic while holding this lock cannot leave the state half-updated in a way that
        // matters (it is a few timestamps), so a poisoned lock is used as is.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn publish(&self, transition: Transition, source: Option<MotionSource>, now: Instant) {
        let detected = transition == Transition::On;
        self.tx.send_modify(|status| {
            status.detected = detected;
            if detected {
                status.source = source;
            }
            status.changed_at = now;
            status.changes += 1;
        });
        tracing::info!(camera = %self.name, detected, source = ?source, "motion state changed");
    }
}

struct Inner {
    cameras: BTreeMap<String, Arc<CameraSlot>>,
    timers: Vec<AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for timer in &self.timers {
            timer.abort();
        }
    }
}

/// Registry of per-camera debounced motion states. Cheap to clone; the timer tasks stop when
/// the last clone is dropped.
#[derive(Clone)]
pub struct MotionHub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MotionHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MotionHub")
            .field("cameras", &self.inner.cameras.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl MotionHub {
    /// Creates the hub with one debounced state per camera and spawns one timer task each.
    ///
    /// # Errors
    /// [`MotionError::DuplicateCamera`] if a name appears twice.
    ///
    /// # Panics
    /// When called outside a tokio runtime (it spawns tasks).
    pub fn new<I, S>(cameras: I) -> Result<Self, MotionError>
    where
        I: IntoIterator<Item = (S, DebounceConfig)>,
        S: Into<String>,
    {
        let start = now();
        let mut map = BTreeMap::new();
        for (name, config) in cameras {
            let name = name.into();
            let (tx, _) = watch::channel(MotionStatus {
                detected: false,
                source: None,
                changed_at: start,
                changes: 0,
            });
            let slot = Arc::new(CameraSlot {
                name: name.clone(),
                state: Mutex::new(MotionState::new(&config)),
                tx,
                wake: Notify::new(),
            });
            if map.insert(name.clone(), slot).is_some() {
                return Err(MotionError::DuplicateCamera { camera: name });
            }
        }
        let timers = map
            .values()
            .map(|slot| tokio::spawn(run_timer(Arc::clone(slot))).abort_handle())
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                cameras: map,
                timers,
            }),
        })
    }

    fn slot(&self, camera: &str) -> Result<&Arc<CameraSlot>, MotionError> {
        self.inner
            .cameras
            .get(camera)
            .ok_or_else(|| MotionError::UnknownCamera {
                camera: camera.to_owned(),
            })
    }

    /// Feeds one trigger (see [`MotionState::trigger`] for what `detected` means per source) and
    /// returns the camera's status afterwards. Safe to call from any thread, no `.await`.
    ///
    /// # Errors
    /// [`MotionError::UnknownCamera`] if `camera` is not registered (HTTP answers 404).
    pub fn trigger(
        &self,
        camera: &str,
        detected: bool,
        source: MotionSource,
    ) -> Result<MotionStatus, MotionError> {
        let slot = self.slot(camera)?;
        let now = now();
        {
            let mut state = slot.lock();
            if let Some(transition) = state.trigger(now, source, detected) {
                slot.publish(transition, Some(source), now);
            }
        }
        // The timer task recomputes its deadline (a trigger may have extended or ended it).
        slot.wake.notify_one();
        tracing::debug!(camera, detected, %source, "motion trigger");
        Ok(*slot.tx.borrow())
    }

    /// The camera's current status.
    ///
    /// # Errors
    /// [`MotionError::UnknownCamera`] if `camera` is not registered.
    pub fn status(&self, camera: &str) -> Result<MotionStatus, MotionError> {
        Ok(*self.slot(camera)?.tx.borrow())
    }

    /// A receiver that sees every change of the camera's status.
    ///
    /// # Errors
    /// [`MotionError::UnknownCamera`] if `camera` is not registered.
    pub fn subscribe(&self, camera: &str) -> Result<watch::Receiver<MotionStatus>, MotionError> {
        Ok(self.slot(camera)?.tx.subscribe())
    }

    /// Whether `camera` is registered.
    pub fn contains(&self, camera: &str) -> bool {
        self.inner.cameras.contains_key(camera)
    }

    /// The registered camera names, sorted.
    pub fn cameras(&self) -> impl Iterator<Item = &str> {
        self.inner.cameras.keys().map(String::as_str)
    }
}

/// Sleeps until the state's deadline (or a trigger), then lets time pass in the state machine.
async fn run_timer(slot: Arc<CameraSlot>) {
    loop {
        let deadline = slot.lock().poll_timeout();
        match deadline {
            Some(deadline) => {
                tokio::select! {
                    () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {}
                    () = slot.wake.notified() => {}
                }
            }
            None => slot.wake.notified().await,
        }
        let now = now();
        let mut state = slot.lock();
        if let Some(transition) = state.poll(now) {
            slot.publish(transition, None, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn hub() -> MotionHub {
        let config = DebounceConfig {
            min_on_ms: 10_000,
            hold_ms: 2_000,
            level_max_ms: 60_000,
        };
        MotionHub::new([("front", config.clone()), ("back", config)]).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_camera_is_a_clear_error() {
        let hub = hub();
        let err = hub.trigger("garage", true, MotionSource::Http).unwrap_err();
        assert!(matches!(&err, MotionError::UnknownCamera { camera } if camera == "garage"));
        assert_eq!(err.to_string(), "unknown camera \"garage\"");
        assert!(hub.subscribe("garage").is_err());
        assert!(hub.status("garage").is_err());
        assert_eq!(hub.cameras().collect::<Vec<_>>(), ["back", "front"]);
    }

    #[tokio::test(start_paused = true)]
    async fn duplicate_camera_is_rejected() {
        let err = MotionHub::new([
            ("a", DebounceConfig::default()),
            ("a", DebounceConfig::default()),
        ])
        .unwrap_err();
        assert!(matches!(err, MotionError::DuplicateCamera { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn timer_turns_motion_off_after_min_on_in_virtual_time() {
        let hub = hub();
        let mut rx = hub.subscribe("front").unwrap();
        let t0 = tokio::time::Instant::now();
        let status = hub.trigger("front", true, MotionSource::Http).unwrap();
        assert!(status.detected);
        assert_eq!(status.source, Some(MotionSource::Http));
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        // The other camera is untouched.
        assert!(!hub.status("back").unwrap().detected);

        rx.changed().await.unwrap();
        let off = *rx.borrow_and_update();
        assert!(!off.detected);
        assert_eq!(off.changes, 2);
        assert_eq!(
            tokio::time::Instant::from_std(off.changed_at) - t0,
            Duration::from_secs(10)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn triggers_during_motion_push_the_off_time_back() {
        let hub = hub();
        let mut rx = hub.subscribe("back").unwrap();
        let t0 = tokio::time::Instant::now();
        hub.trigger("back", true, MotionSource::Detector).unwrap();
        rx.borrow_and_update();
        tokio::time::sleep(Duration::from_secs(9)).await;
        hub.trigger("back", true, MotionSource::Detector).unwrap();
        rx.changed().await.unwrap();
        let off = *rx.borrow();
        assert!(!off.detected);
        assert_eq!(
            tokio::time::Instant::from_std(off.changed_at) - t0,
            Duration::from_secs(11)
        );
    }
}
