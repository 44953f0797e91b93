//! What the built-in motion detector would cost on a stream, measured rather than guessed:
//! `check` hands the units it reads to a [`DetectorProbe`], which runs the real detector on
//! its own thread, and the report gains a "detector" verdict with the figure.

use std::sync::mpsc::{self, SyncSender};
use std::thread::JoinHandle;

use motion::{AccessUnit, Detector, DetectorConfig, DetectorStats, OwnedAccessUnit};
use recorder::MediaUnit;
use recorder::input::ParameterSets;
use source::{Level, Verdict};

/// Access units queued for the probe's thread: a check of a 30 fps stream never fills this
/// unless the machine decodes slower than real time (then it says so).
const QUEUE: usize = 256;

/// Below this share of one core the detector is cheap wherever it runs.
const CHEAP_PERCENT: f64 = 5.0;
/// Above this share a sub-stream is the fix, not a tuning knob.
const COSTLY_PERCENT: f64 = 25.0;

/// Runs a detector over a stream's video while `check` reads it.
#[derive(Debug)]
pub struct DetectorProbe {
    tx: Option<SyncSender<OwnedAccessUnit>>,
    thread: Option<JoinHandle<Probed>>,
    parameter_sets: Option<ParameterSets>,
    dropped: u64,
}

#[derive(Debug, Default)]
struct Probed {
    stats: DetectorStats,
    /// Stream time of the units it decoded (first to last), 90 kHz ticks.
    span_90k: i64,
    error: Option<String>,
}

/// What the probe measured.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorCost {
    /// Detector busy time over stream time, % of one core.
    pub cpu_percent: f64,
    /// Analysed picture size, pixels.
    pub width: u32,
    /// See `width`.
    pub height: u32,
    /// Frames compared.
    pub analysed: u64,
    /// Units dropped because the detector fell behind real time.
    pub dropped: u64,
    /// Stream time covered, ms.
    pub stream_ms: u64,
}

impl DetectorProbe {
    /// Starts the probe's thread with the camera's detector settings.
    pub fn start(config: &DetectorConfig) -> Self {
        let (tx, rx) = mpsc::sync_channel::<OwnedAccessUnit>(QUEUE);
        let config = config.clone();
        let thread = std::thread::Builder::new()
            .name("check-detector".into())
            .spawn(move || {
                let mut detector = match Detector::new(&config) {
                    Ok(d) => d,
                    Err(e) => {
                        return Probed {
                            error: Some(e.to_string()),
                            ..Probed::default()
                        };
                    }
                };
                let mut first: Option<i64> = None;
                let mut last = 0;
                while let Ok(au) = rx.recv() {
                    detector.push(AccessUnit {
                        data: &au.data,
                        is_idr: au.is_idr,
                        timestamp_90k: au.timestamp_90k,
                    });
                    first.get_or_insert(au.timestamp_90k);
                    last = au.timestamp_90k;
                }
                Probed {
                    stats: detector.stats(),
                    span_90k: first.map_or(0, |f| last.saturating_sub(f)),
                    error: None,
                }
            })
            .ok();
        Self {
            tx: thread.is_some().then_some(tx),
            thread,
            parameter_sets: None,
            dropped: 0,
        }
    }

    /// One unit as `check` read it.
    pub fn observe(&mut self, unit: &MediaUnit) {
        match unit {
            MediaUnit::ParameterSets(ps) => self.parameter_sets = Some(ps.clone()),
            MediaUnit::Video(v) => {
                let Some(tx) = &self.tx else { return };
                let Some(au) = OwnedAccessUnit::from_video(v, self.parameter_sets.as_ref()) else {
                    return;
                };
                if tx.try_send(au).is_err() {
                    self.dropped += 1;
                }
            }
            MediaUnit::Audio(_) => {}
        }
    }

    /// Stops the thread and returns what it measured.
    ///
    /// # Errors
    /// The detector could not start, or analysed nothing (no decodable video).
    pub fn finish(mut self) -> Result<DetectorCost, String> {
        self.tx = None;
        let probed = self
            .thread
            .take()
            .ok_or("could not start a thread")?
            .join()
            .map_err(|_| "the detector failed".to_owned())?;
        if let Some(e) = probed.error {
            return Err(e);
        }
        let st = probed.stats;
        if st.analysed == 0 || probed.span_90k <= 0 {
            return Err(format!(
                "it analysed no frame ({} access units, {} rejected by the decoder)",
                st.access_units, st.rejected
            ));
        }
        let stream_us = probed.span_90k as f64 * 1e6 / 90_000.0;
        Ok(DetectorCost {
            cpu_percent: st.busy_us as f64 * 100.0 / stream_us,
            width: st.width,
            height: st.height,
            analysed: st.analysed,
            dropped: self.dropped,
            stream_ms: u64::try_from(probed.span_90k / 90).unwrap_or(0),
        })
    }
}

/// The "detector" verdict for the measured cost on the stream it decodes (`input`:
/// `"source"` or `"detect_source"`); `sub_stream` is a guessed sub-stream URL for the advice.
pub fn verdict(cost: &DetectorCost, input: &str, sub_stream: Option<&str>) -> Verdict {
    let what = format!(
        "{}x{} {input}: {:.1} % of one core on this machine (measured over {:.0} s)",
        cost.width,
        cost.height,
        cost.cpu_percent,
        cost.stream_ms as f64 / 1000.0
    );
    let behind = if cost.dropped > 0 {
        format!(
            "; it fell behind real time ({} frames dropped), so it would see motion only about once per GOP",
            cost.dropped
        )
    } else {
        String::new()
    };
    let hint = match sub_stream {
        Some(url) => format!(" (this camera's is probably {url})"),
        None => String::new(),
    };
    let (level, advice) = if input == "detect_source" || cost.cpu_percent <= CHEAP_PERCENT {
        (
            if cost.dropped > 0 {
                Level::Warn
            } else {
                Level::Ok
            },
            String::new(),
        )
    } else if cost.cpu_percent <= COSTLY_PERCENT && cost.dropped == 0 {
        (
            Level::Info,
            format!("; a low-resolution sub-stream as detect_source would cost far less{hint}"),
        )
    } else {
        (
            Level::Warn,
            format!(
                "; set detect_source to the camera's low-resolution sub-stream{hint}, or take motion from MQTT/Frigate"
            ),
        )
    };
    Verdict {
        item: "detector",
        level,
        message: format!("{what}{behind}{advice}"),
    }
}

/// The usual sub-stream of a camera whose main-stream URL follows a known vendor pattern
/// (Reolink, Hikvision, Dahua/Amcrest, Tapo; see docs/config.md); `None` when it does not.
/// Paths match without regard to case (Hikvision's are written both ways).
pub fn guess_sub_stream(main: &str) -> Option<String> {
    // Reolink's sub-stream is H.264 even where the main one is H.265.
    const SWAPS: [(&str, &str); 7] = [
        ("h264preview_01_main", "h264Preview_01_sub"),
        ("h265preview_01_main", "h264Preview_01_sub"),
        ("/preview_01_main", "/Preview_01_sub"),
        ("/streaming/channels/101", "/Streaming/Channels/102"),
        ("/h264/ch1/main/av_stream", "/h264/ch1/sub/av_stream"),
        ("subtype=0", "subtype=1"),
        ("/stream1", "/stream2"),
    ];
    let lower = main.to_ascii_lowercase();
    SWAPS.iter().find_map(|(from, to)| {
        let at = lower.find(from)?;
        // ASCII lowercasing keeps byte offsets.
        Some(format!(
            "{}{to}{}",
            main.get(..at)?,
            main.get(at + from.len()..)?
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(cpu_percent: f64, dropped: u64) -> DetectorCost {
        DetectorCost {
            cpu_percent,
            width: 1920,
            height: 1080,
            analysed: 50,
            dropped,
            stream_ms: 10_000,
        }
    }

    #[test]
    fn verdict_levels_follow_the_cost() {
        assert_eq!(verdict(&cost(2.0, 0), "source", None).level, Level::Ok);
        let info = verdict(&cost(12.0, 0), "source", Some("rtsp://cam/stream2"));
        assert_eq!(info.level, Level::Info);
        assert!(
            info.message.contains("rtsp://cam/stream2"),
            "{}",
            info.message
        );
        let warn = verdict(&cost(40.0, 0), "source", None);
        assert_eq!(warn.level, Level::Warn);
        assert!(warn.message.contains("detect_source"), "{}", warn.message);
        assert!(warn.message.contains("40.0 %"), "{}", warn.message);
        // Falling behind is a warning wherever it runs.
        assert_eq!(verdict(&cost(3.0, 7), "source", None).level, Level::Warn);
        assert_eq!(
            verdict(&cost(30.0, 1), "detect_source", None).level,
            Level::Warn
        );
        assert_eq!(
            verdict(&cost(30.0, 0), "detect_source", None).level,
            Level::Ok
        );
    }

    #[test]
    fn sub_stream_guesses_for_known_vendors() {
        for (main, sub) in [
            (
                "rtsp://u:p@10.0.0.2:554/h264Preview_01_main",
                Some("rtsp://u:p@10.0.0.2:554/h264Preview_01_sub"),
            ),
            (
                "rtsp://u:p@hik/Streaming/Channels/101",
                Some("rtsp://u:p@hik/Streaming/Channels/102"),
            ),
            (
                "rtsp://u:p@dahua/cam/realmonitor?channel=1&subtype=0",
                Some("rtsp://u:p@dahua/cam/realmonitor?channel=1&subtype=1"),
            ),
            (
                "rtsp://u:p@tapo:554/stream1",
                Some("rtsp://u:p@tapo:554/stream2"),
            ),
            ("rtsp://go2rtc:8554/front", None),
        ] {
            assert_eq!(guess_sub_stream(main).as_deref(), sub, "{main}");
        }
    }

    #[test]
    fn a_probe_without_video_says_so() {
        let probe = DetectorProbe::start(&DetectorConfig::default());
        let e = probe.finish().unwrap_err();
        assert!(e.contains("no frame"), "{e}");
    }
}
