//! `GET /metrics`: OpenMetrics text (`prometheus-client`'s encoder; Prometheus scrapes it) of
//! every camera's counters and gauges and the process's CPU and memory, collected at scrape
//! time from [`CameraMetrics`] snapshots. Every camera series has a `camera` label.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `hksv_source_up` | gauge (1 streaming) | camera |
//! | `hksv_source_reconnects_total` | counter | camera |
//! | `hksv_video_frames_total`, `hksv_video_bytes_total`, `hksv_audio_frames_total` | counter | camera |
//! | `hksv_prebuffer_milliseconds` | gauge | camera |
//! | `hksv_paired`, `hksv_motion_detected`, `hksv_recording` | gauge (0/1) | camera |
//! | `hksv_motion_events_total` | counter | camera, trigger |
//! | `hksv_recordings_opened_total`, `hksv_recordings_refused_total` | counter | camera |
//! | `hksv_recordings_ended_total` | counter | camera, outcome (`completed`/`failed`) |
//! | `hksv_recording_open_latency_seconds` | histogram (motion → `dataSend/open`, when the init segment and prebuffer are queued: the first chunk) | camera |
//! | `hksv_hds_bytes_total` | counter | camera |
//! | `hksv_live_viewers` | gauge | camera |
//! | `hksv_snapshot_requests_total`, `hksv_snapshot_seconds_total` (time making them) | counter | camera |
//! | `process_cpu_seconds_total`, `process_resident_memory_bytes` | counter, gauge | |

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::camera::counters::{CountersSnapshot, OPEN_LATENCY_BUCKETS_MS, TRIGGERS};

/// The OpenMetrics content type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One camera's figures at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CameraMetrics {
    /// Camera name (the `camera` label).
    pub name: String,
    /// The source is streaming.
    pub source_up: bool,
    /// Failed source sessions and attempts since start.
    pub reconnects: u64,
    /// Media in the prebuffer ring, ms.
    pub prebuffer_ms: u64,
    /// Paired with at least one controller.
    pub paired: bool,
    /// MotionDetected.
    pub motion: bool,
    /// A recording stream is open.
    pub recording: bool,
    /// Live-view streams running.
    pub live_viewers: u64,
    /// The event counters.
    pub counters: CountersSnapshot,
}

/// The process's CPU time and resident memory, from `/proc/self` (Linux).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessMetrics {
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
}

impl ProcessMetrics {
    /// Reads `/proc/self/stat` (utime, stime in USER_HZ = 100 ticks/s, the /proc ABI) and
    /// `VmRSS` of `/proc/self/status`; `None` where they cannot be read.
    pub fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // rest[0] is field 3 (state); utime is field 14, stime field 15.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let rss_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(Self {
            cpu_seconds: (utime + stime) as f64 / 100.0,
            rss_bytes: rss_kib * 1024,
        })
    }
}

#[derive(Debug)]
struct Scrape {
    cameras: Vec<CameraMetrics>,
    process: Option<ProcessMetrics>,
}

type Field = fn(&CameraMetrics) -> u64;

impl Scrape {
    fn per_camera(
        &self,
        enc: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        kind: MetricType,
        value: Field,
    ) -> Result<(), std::fmt::Error> {
        let mut m = enc.encode_descriptor(name, help, None, kind)?;
        for c in &self.cameras {
            let labels = [("camera", c.name.as_str())];
            let f = m.encode_family(&labels)?;
            match kind {
                MetricType::Counter => ConstCounter::new(value(c)).encode(f)?,
                _ => ConstGauge::new(i64::try_from(value(c)).unwrap_or(i64::MAX)).encode(f)?,
            }
        }
        Ok(())
    }
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let simple: [(&str, &str, MetricType, Field); 14] = [
            (
                "hksv_source_up",
                "1 while the camera's source is streaming",
                Gauge,
                |c| u64::from(c.source_up),
            ),
            (
                "hksv_source_reconnects",
                "failed source sessions and connection attempts",
                Counter,
                |c| c.reconnects,
            ),
            (
                "hksv_video_frames",
                "video access units from the source",
                Counter,
                |c| c.counters.video_frames,
            ),
            (
                "hksv_video_bytes",
                "bytes of video access units from the source",
                Counter,
                |c| c.counters.video_bytes,
            ),
            (
                "hksv_audio_frames",
                "AAC frames from the source",
                Counter,
                |c| c.counters.audio_frames,
            ),
            (
                "hksv_paired",
                "1 while paired with a controller",
                Gauge,
                |c| u64::from(c.paired),
            ),
            (
                "hksv_motion_detected",
                "1 while MotionDetected is on",
                Gauge,
                |c| u64::from(c.motion),
            ),
            (
                "hksv_recording",
                "1 while a hub's recording stream is open",
                Gauge,
                |c| u64::from(c.recording),
            ),
            (
                "hksv_recordings_opened",
                "recording streams a hub opened",
                Counter,
                |c| c.counters.recordings_opened,
            ),
            (
                "hksv_recordings_refused",
                "dataSend/open requests the bridge refused",
                Counter,
                |c| c.counters.recordings_refused,
            ),
            (
                "hksv_hds_bytes",
                "bytes sent over HomeKit Data Stream, counted as streams end",
                Counter,
                |c| c.counters.hds_bytes,
            ),
            (
                "hksv_live_viewers",
                "live-view streams running",
                Gauge,
                |c| c.live_viewers,
            ),
            (
                "hksv_snapshot_requests",
                "snapshot requests",
                Counter,
                |c| c.counters.snapshot_requests,
            ),
            (
                "hksv_prebuffer_milliseconds",
                "media in the prebuffer ring, ms",
                Gauge,
                |c| c.prebuffer_ms,
            ),
        ];
        for (name, help, kind, value) in simple {
            self.per_camera(&mut enc, name, help, kind, value)?;
        }
        {
            let mut m = enc.encode_descriptor(
                "hksv_motion_events",
                "motion events (off to on), by what triggered them",
                None,
                Counter,
            )?;
            for c in &self.cameras {
                for (i, trigger) in TRIGGERS.iter().enumerate() {
                    let labels = [("camera", c.name.as_str()), ("trigger", trigger)];
                    let v = c.counters.motion_events.get(i).copied().unwrap_or(0);
                    ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "hksv_recordings_ended",
                "recording streams that ended, by outcome",
                None,
                Counter,
            )?;
            for c in &self.cameras {
                for (outcome, v) in [
                    ("completed", c.counters.recordings_completed),
                    ("failed", c.counters.recordings_failed),
                ] {
                    let labels = [("camera", c.name.as_str()), ("outcome", outcome)];
                    ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "hksv_recording_open_latency_seconds",
                "motion on to the hub's dataSend/open",
                None,
                MetricType::Histogram,
            )?;
            for c in &self.cameras {
                let labels = [("camera", c.name.as_str())];
                let counts = &c.counters.open_latency_buckets;
                let buckets: Vec<(f64, u64)> = OPEN_LATENCY_BUCKETS_MS
                    .iter()
                    .map(|&ms| ms as f64 / 1000.0)
                    .chain([f64::INFINITY])
                    .zip(counts.iter().copied())
                    .collect();
                let count = counts.iter().sum();
                let sum = c.counters.open_latency_sum_ms as f64 / 1000.0;
                m.encode_family(&labels)?
                    .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                        sum, count, &buckets, None,
                    )?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "hksv_snapshot_seconds",
                "time spent making snapshots (decode when needed, scale, JPEG encode)",
                None,
                Counter,
            )?;
            for c in &self.cameras {
                let labels = [("camera", c.name.as_str())];
                let secs = c.counters.snapshot_micros as f64 / 1e6;
                ConstCounter::new(secs).encode(m.encode_family(&labels)?)?;
            }
        }
        if let Some(p) = self.process {
            let m = enc.encode_descriptor(
                "process_cpu_seconds",
                "user and system CPU time",
                None,
                Counter,
            )?;
            ConstCounter::new(p.cpu_seconds).encode(m)?;
            let m = enc.encode_descriptor(
                "process_resident_memory_bytes",
                "resident set size",
                None,
                Gauge,
            )?;
            ConstGauge::new(i64::try_from(p.rss_bytes).unwrap_or(i64::MAX)).encode(m)?;
        }
        Ok(())
    }
}

/// The OpenMetrics text for `cameras` and `process`.
///
/// # Errors
/// Only if the encoder fails (it writes to a `String`).
pub fn encode(
    cameras: Vec<CameraMetrics>,
    process: Option<ProcessMetrics>,
) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape { cameras, process }));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn families_and_labels_are_written() {
        let mut c = CameraMetrics {
            name: "Porch".into(),
            source_up: true,
            reconnects: 2,
            ..CameraMetrics::default()
        };
        c.counters.motion_events = [0, 3, 0, 0];
        c.counters.open_latency_buckets = [1, 0, 0, 0, 0, 0, 0, 0, 1];
        c.counters.open_latency_sum_ms = 20_040;
        let text = encode(vec![c], ProcessMetrics::read()).unwrap();
        for line in [
            "hksv_source_up{camera=\"Porch\"} 1",
            "hksv_source_reconnects_total{camera=\"Porch\"} 2",
            "hksv_motion_events_total{camera=\"Porch\",trigger=\"http\"} 3",
            "hksv_recording_open_latency_seconds_bucket{le=\"0.05\",camera=\"Porch\"} 1",
            "hksv_recording_open_latency_seconds_bucket{le=\"+Inf\",camera=\"Porch\"} 2",
            "hksv_recording_open_latency_seconds_count{camera=\"Porch\"} 2",
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
