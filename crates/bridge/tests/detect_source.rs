//! `detect_source`: the built-in detector decodes the sub-stream it is given, not the main
//! stream, and reports motion from it. The sub-stream is H.264 made by ffmpeg (libx264).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use bridge::camera::{Camera, CameraOptions, DetectorSetting, MediaInput};
use bytes::Bytes;
use motion::{DetectorConfig, MotionHub, MotionSource};
use recorder::DemoSource;
use recorder::input::VideoAccessUnit;
use recorder::{H264Framing, MediaUnit};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// 640x360 at 10 fps, 1 s GOP, `seconds` long: a noisy gray scene; with `moving_box`, a white
/// box crosses it from 2 s on. Annex B access units with 90 kHz timestamps.
fn sub_stream(seconds: u32, moving_box: bool) -> Vec<VideoAccessUnit> {
    let mut filter = format!("color=c=0x707070:s=640x360:r=10:d={seconds}");
    if moving_box {
        filter = format!(
            "{filter}[bg];color=c=white:s=48x48:r=10:d={seconds}[box];\
             [bg][box]overlay=x='20+120*(t-2)':y=120:enable='gte(t,2)'"
        );
    }
    filter.push_str(",noise=alls=12:allf=t,format=yuv420p");
    let out = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(&filter)
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-bf",
            "0",
            "-g",
            "10",
            "-keyint_min",
            "10",
            "-sc_threshold",
            "0",
            "-f",
            "h264",
            "-",
        ])
        .stderr(Stdio::piped())
        .output()
        .expect("ffmpeg (run scripts/test, it installs the test peers)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut splitter = recorder::h264::AnnexBSplitter::new(16 << 20);
    splitter.push(&out.stdout).unwrap();
    splitter.finish();
    std::iter::from_fn(|| splitter.pull())
        .enumerate()
        .map(|(i, au)| VideoAccessUnit {
            pts_90k: i as i64 * 9_000,
            dts_90k: None,
            data: Bytes::copy_from_slice(&au),
            framing: H264Framing::AnnexB,
        })
        .collect()
}

async fn start(dir: &std::path::Path) -> (Camera, MotionHub, watch::Sender<bool>, JoinSet<()>) {
    let hub = MotionHub::new([("Cam", motion::DebounceConfig::default())]).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let camera = Camera::start(
        CameraOptions {
            detector: DetectorSetting::On(DetectorConfig::default()),
            detect_source: Some(MediaInput::External),
            ..common::options(dir, None)
        },
        hub.clone(),
        &mut tasks,
        stop_rx,
    )
    .await
    .unwrap();
    (camera, hub, stop, tasks)
}

/// Feeds the main stream (the demo clip, 1080p) and the sub-stream side by side in stream
/// time; returns the detector's detail once it has seen every sub-stream unit.
async fn feed(camera: &Camera, sub: &[VideoAccessUnit]) -> bridge::camera::detail::DetectorDetail {
    let mut main = camera.feeder();
    let mut demo = DemoSource::bundled().unwrap();
    let mut detect = camera
        .detect_feeder()
        .expect("detector with a detect_source");
    let mut main_90k = 0i64;
    let mut pushed = 0u64;
    for au in sub {
        while main_90k <= au.pts_90k {
            let unit = demo.next_unit().1;
            if let MediaUnit::Video(v) = &unit {
                main_90k = v.pts_90k;
            }
            main.push(unit);
        }
        detect.push(MediaUnit::Video(au.clone()));
        pushed += 1;
        // Faster than real time, but never so far ahead that the detector's queue drops.
        while pushed - camera.detail().detector.unwrap().access_units > 16 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    for _ in 0..200 {
        let d = camera.detail().detector.unwrap();
        if d.access_units == sub.len() as u64 {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "the detector did not take every sub-stream unit: {:?}",
        camera.detail().detector
    );
}

#[tokio::test]
async fn the_detector_decodes_the_detect_source_and_reports_its_motion() {
    let dir = tempfile::tempdir().unwrap();
    let (camera, hub, stop, mut tasks) = start(dir.path()).await;
    let sub = sub_stream(6, true);
    let d = feed(&camera, &sub).await;
    // Only the sub-stream reached the detector: its size, its unit count.
    assert_eq!(d.input, "detect_source");
    assert_eq!(d.resolution.as_deref(), Some("640x360"), "{d:?}");
    assert_eq!((d.rejected, d.queue_drops), (0, 0), "{d:?}");
    assert_eq!(d.input_state, Some("streaming"));
    assert!(d.motion_frames >= 1, "{d:?}");
    let status = hub.status("Cam").unwrap();
    assert!(status.detected, "{status:?}");
    assert_eq!(status.source, Some(MotionSource::Detector));
    // The main stream still records: the ring fills from it.
    assert!(camera.prebuffer_ms() > 0);
    stop.send(true).unwrap();
    while tasks.join_next().await.is_some() {}
}

#[tokio::test]
async fn a_static_detect_source_reports_no_motion_while_the_main_stream_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (camera, hub, stop, mut tasks) = start(dir.path()).await;
    // 14 s: past the demo clip's loop cut at ~12 s, which the detector would see as motion
    // were it decoding the main stream.
    let d = feed(&camera, &sub_stream(14, false)).await;
    assert!(d.analysed >= 50, "{d:?}");
    assert_eq!(d.motion_frames, 0, "{d:?}");
    assert!(!hub.status("Cam").unwrap().detected);
    let detail = camera.detail();
    assert!(detail.detector_off.is_none());
    stop.send(true).unwrap();
    while tasks.join_next().await.is_some() {}
}

#[tokio::test]
async fn a_camera_whose_detector_is_off_says_why_and_has_no_detect_feeder() {
    let dir = tempfile::tempdir().unwrap();
    let hub = MotionHub::new([("Cam", motion::DebounceConfig::default())]).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let camera = Camera::start(
        CameraOptions {
            detector: DetectorSetting::Off("motion comes from Frigate".into()),
            detect_source: Some(MediaInput::External),
            ..common::options(dir.path(), None)
        },
        hub,
        &mut tasks,
        stop_rx,
    )
    .await
    .unwrap();
    let detail = camera.detail();
    assert!(detail.detector.is_none());
    assert_eq!(
        detail.detector_off.as_deref(),
        Some("motion comes from Frigate")
    );
    assert!(camera.detect_feeder().is_none());
    stop.send(true).unwrap();
    while tasks.join_next().await.is_some() {}
}
