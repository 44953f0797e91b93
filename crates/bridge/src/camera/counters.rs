//! Per-camera counters for `/metrics`: plain atomics bumped where things happen (feeder, motion
//! task, recording events, snapshot handler), read at scrape time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds (ms) of the motion → `dataSend/open` histogram's buckets (`+Inf` implied).
pub const OPEN_LATENCY_BUCKETS_MS: [u64; 8] = [50, 100, 250, 500, 1000, 2500, 5000, 10_000];

/// Motion triggers in the order of [`Counters::motion_events`].
pub const TRIGGERS: [&str; 4] = ["detector", "http", "mqtt", "frigate"];

/// A camera's counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Video access units from the source.
    pub video_frames: AtomicU64,
    /// Bytes of those access units.
    pub video_bytes: AtomicU64,
    /// AAC frames from the source.
    pub audio_frames: AtomicU64,
    /// Motion events (off → on), by [`TRIGGERS`] index.
    pub motion_events: [AtomicU64; 4],
    /// Recording streams a hub opened.
    pub recordings_opened: AtomicU64,
    /// Streams that ended normally.
    pub recordings_completed: AtomicU64,
    /// Streams that ended abnormally.
    pub recordings_failed: AtomicU64,
    /// `dataSend/open`s we refused.
    pub recordings_refused: AtomicU64,
    /// Bytes sent over HDS (init segments and fragments, before encryption), as streams end.
    pub hds_bytes: AtomicU64,
    /// Snapshot requests (HAP `/resource` and the API).
    pub snapshot_requests: AtomicU64,
    /// Time spent making them (decode when needed, scale, JPEG encode), µs.
    pub snapshot_micros: AtomicU64,
    /// Motion → open latency: counts per bucket of [`OPEN_LATENCY_BUCKETS_MS`] plus `+Inf`.
    open_latency_buckets: [AtomicU64; 9],
    open_latency_sum_ms: AtomicU64,
}

/// The counters' values at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// See [`Counters::video_frames`].
    pub video_frames: u64,
    /// See [`Counters::video_bytes`].
    pub video_bytes: u64,
    /// See [`Counters::audio_frames`].
    pub audio_frames: u64,
    /// See [`Counters::motion_events`].
    pub motion_events: [u64; 4],
    /// See [`Counters::recordings_opened`].
    pub recordings_opened: u64,
    /// See [`Counters::recordings_completed`].
    pub recordings_completed: u64,
    /// See [`Counters::recordings_failed`].
    pub recordings_failed: u64,
    /// See [`Counters::recordings_refused`].
    pub recordings_refused: u64,
    /// See [`Counters::hds_bytes`].
    pub hds_bytes: u64,
    /// See [`Counters::snapshot_requests`].
    pub snapshot_requests: u64,
    /// See [`Counters::snapshot_micros`].
    pub snapshot_micros: u64,
    /// Non-cumulative counts per bucket (last: above the largest bound).
    pub open_latency_buckets: [u64; 9],
    /// Sum of the observed latencies, ms.
    pub open_latency_sum_ms: u64,
}

impl Counters {
    /// Adds one to `c`.
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    /// A motion event from `trigger` (`detector`, `http`, …; others are not counted).
    pub fn motion(&self, trigger: &str) {
        if let Some(i) = TRIGGERS.iter().position(|t| *t == trigger)
            && let Some(c) = self.motion_events.get(i)
        {
            Self::bump(c);
        }
    }

    /// One snapshot request that took `took`.
    pub fn snapshot(&self, took: std::time::Duration) {
        Self::bump(&self.snapshot_requests);
        self.snapshot_micros
            .fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// One motion → open latency.
    pub fn observe_open_latency(&self, ms: u64) {
        let i = OPEN_LATENCY_BUCKETS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(OPEN_LATENCY_BUCKETS_MS.len());
        if let Some(c) = self.open_latency_buckets.get(i) {
            Self::bump(c);
        }
        self.open_latency_sum_ms.fetch_add(ms, Relaxed);
    }

    /// The values now.
    pub fn values(&self) -> CountersSnapshot {
        let get = |c: &AtomicU64| c.load(Relaxed);
        CountersSnapshot {
            video_frames: get(&self.video_frames),
            video_bytes: get(&self.video_bytes),
            audio_frames: get(&self.audio_frames),
            motion_events: self.motion_events.each_ref().map(get),
            recordings_opened: get(&self.recordings_opened),
            recordings_completed: get(&self.recordings_completed),
            recordings_failed: get(&self.recordings_failed),
            recordings_refused: get(&self.recordings_refused),
            hds_bytes: get(&self.hds_bytes),
            snapshot_requests: get(&self.snapshot_requests),
            snapshot_micros: get(&self.snapshot_micros),
            open_latency_buckets: self.open_latency_buckets.each_ref().map(get),
            open_latency_sum_ms: get(&self.open_latency_sum_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_in_their_buckets() {
        let c = Counters::default();
        for ms in [10, 50, 51, 20_000] {
            c.observe_open_latency(ms);
        }
        c.motion("http");
        c.motion("nonsense");
        let s = c.values();
        assert_eq!(s.open_latency_buckets, [2, 1, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(s.open_latency_sum_ms, 20_111);
        assert_eq!(s.motion_events, [0, 1, 0, 0]);
    }
}
