//! The built-in motion detector on the path users run (issue #17): the RELEASE `hksv-bridge`
//! reading GStreamer's RTSP server (a 1080p30 2 Mbit/s H.264 + AAC main stream and the same
//! picture as a 640x360 30 fps sub-stream, 4 s GOP, constant motion: ffmpeg's `testsrc2`).
//! Prints, per configuration, the bridge's CPU (% of one core, `/proc/<pid>/stat` over the
//! window) and RSS, and the detector's own share from the API:
//! - 1 camera: detector off; on, decoding the 1080p main stream; on, with `detect_source` = the
//!   sub-stream at 30 fps and at 15 fps (a common sub-stream rate); and, when `HKSV_BRIDGE_BIN_BEFORE` names an older binary, that binary on the
//!   main stream (the "before" of the detector work);
//! - 8 cameras with `detect_source`: total CPU and RSS;
//! - the detector path's latency: a `tcp://` detect_source written by this bench in real time
//!   (640x360 10 fps, a box enters at a known frame), from writing the box's first frame to the
//!   paired controller's MotionDetected event; median of 20.
//!
//! `HKSV_BENCH_ONLY=main,latency` runs only the rows whose label contains one of the words.
//! Asserts nothing about speed. `cargo bench -p e2e-tests --bench motion` builds the release
//! binary unless `HKSV_BRIDGE_BIN_RELEASE` names one; `HKSV_BENCH_WINDOW_S` sets the CPU
//! window (default 30 s). Linux only.
#![allow(clippy::indexing_slicing)] // bench: a panic is a failed run

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{clock_ticks_per_s, kib_to_mib, release_binary, sample_usage};
use controller::hksv::HksvIds;
use e2e_tests::{RtspServer, free_port};

const WARM_UP: Duration = Duration::from_secs(8);
const LATENCY_SAMPLES: usize = 20;

fn window() -> Duration {
    Duration::from_secs(
        std::env::var("HKSV_BENCH_WINDOW_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30),
    )
}

/// `input` (ffmpeg input arguments) re-encoded as a 640x360 sub-stream into `main`'s
/// directory as `name`: H.264 Main, 500 kbit/s, `gop` frames per GOP, no B-frames, `vf` after
/// the scaling, audio copied. Made once.
fn sub_stream(main: &Path, name: &str, input: &[&std::ffi::OsStr], vf: &str, gop: u32) -> PathBuf {
    let path = main.with_file_name(name);
    if path.exists() {
        return path;
    }
    let tmp = main.with_file_name(format!("{name}.tmp.mp4"));
    let gop = gop.to_string();
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(input)
        .args(["-vf", &format!("scale=640:360{vf}"), "-c:v", "libx264"])
        .args(["-preset", "superfast", "-profile:v", "main"])
        .args(["-b:v", "500k", "-maxrate", "500k", "-bufsize", "500k"])
        .args([
            "-g",
            &gop,
            "-keyint_min",
            &gop,
            "-sc_threshold",
            "0",
            "-bf",
            "0",
        ])
        .args(["-c:a", "copy"])
        .arg(&tmp)
        .status()
        .expect("ffmpeg");
    assert!(status.success(), "encoding {name} failed");
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// The 640x360 sub-stream of the live bench's 1080p clip at `fps` (same picture, 4 s GOP).
fn sub_stream_media(main: &Path, fps: u32) -> PathBuf {
    let input = ["-i".as_ref(), main.as_os_str()];
    sub_stream(
        main,
        &format!("live-360p{fps}.mp4"),
        &input,
        &format!(",fps={fps}"),
        4 * fps,
    )
}

/// A real camera's scene as a sub-stream: the HKSV fixture recording (an indoor camera, 1080p,
/// ~16 fps) looped to 4 minutes and scaled to 640x360 at its own rate, 4 s GOP.
fn real_sub_stream_media(main: &Path) -> PathBuf {
    let fixture =
        e2e_tests::workspace_root().join("../shared/fixtures/hksv-example/fully-assembled.mp4");
    let input = [
        "-stream_loop".as_ref(),
        "19".as_ref(),
        "-i".as_ref(),
        fixture.as_os_str(),
    ];
    sub_stream(main, "real-360p.mp4", &input, "", 64)
}

/// Whether a configuration's label passes `HKSV_BENCH_ONLY` (comma-separated substrings).
fn wanted(label: &str) -> bool {
    std::env::var("HKSV_BENCH_ONLY").map_or(true, |only| {
        only.split(',').any(|w| label.contains(w.trim()))
    })
}

struct Row {
    label: String,
    cameras: usize,
    cpu_percent: f64,
    rss_mib: f64,
    /// Mean of the cameras' detector `cpu_percent` from the API.
    detector_percent: Option<f64>,
}

/// `cameras` cameras on `main`, each with the detector as `detector` says (`None`: off;
/// `Some(None)`: on the main stream; `Some(Some(url))`: on that detect_source).
async fn run_cpu(
    bin: &Path,
    label: &str,
    cameras: usize,
    main: &str,
    detector: Option<Option<&str>>,
) -> Row {
    let per_camera = |_: usize| {
        let sub = match detector {
            Some(Some(sub)) => format!("detect_source = \"{sub}\"\n"),
            _ => String::new(),
        };
        format!(
            "{sub}[cameras.motion.detector]\nenabled = {}",
            detector.is_some()
        )
    };
    let (bridge, api_port, _dir) = common::start_cameras(bin, cameras, main, &per_camera).await;
    tokio::time::sleep(WARM_UP).await;
    let clk = clock_ticks_per_s();
    let pid = bridge.pid;
    let usage = tokio::task::spawn_blocking(move || sample_usage(pid, clk, window()))
        .await
        .unwrap();
    let mut shares = Vec::new();
    for i in 0..cameras {
        let detail = common::api_get(api_port, &format!("/api/cameras/cam{i}")).await;
        if let Some(p) = detail["detector"]["cpu_percent"].as_f64() {
            shares.push(p);
        }
    }
    Row {
        label: label.to_owned(),
        cameras,
        cpu_percent: usage.cpu_percent,
        rss_mib: kib_to_mib(usage.rss_end_kib),
        detector_percent: (!shares.is_empty())
            .then(|| shares.iter().sum::<f64>() / shares.len() as f64),
    }
}

/// One motion cycle for the latency run, 640x360 10 fps Annex B, 1 s GOP: 4 s static noisy
/// gray, then a box moving for 2 s, then 2 s static. Returns the access units and the index
/// of the first one showing the box.
fn latency_clip() -> (Vec<Vec<u8>>, usize) {
    const BOX_FROM_S: u32 = 4;
    let filter = format!(
        "color=c=0x707070:s=640x360:r=10:d=8[bg];color=c=white:s=64x64:r=10:d=8[box];\
         [bg][box]overlay=x='40+150*(t-{BOX_FROM_S})':y=140:enable='between(t,{BOX_FROM_S},{})',\
         noise=alls=12:allf=t,format=yuv420p",
        BOX_FROM_S + 2
    );
    let out = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            &filter,
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-bf",
            "0",
            "-g",
            "10",
        ])
        .args(["-keyint_min", "10", "-sc_threshold", "0", "-f", "h264", "-"])
        .output()
        .expect("ffmpeg");
    assert!(out.status.success());
    let mut splitter = recorder::h264::AnnexBSplitter::new(16 << 20);
    splitter.push(&out.stdout).unwrap();
    splitter.finish();
    let aus: Vec<Vec<u8>> = std::iter::from_fn(|| splitter.pull())
        .map(|a| a.to_vec())
        .collect();
    (aus, BOX_FROM_S as usize * 10)
}

/// Detector-path latency: the bench is the detect_source's TCP server and knows when it wrote
/// the box's first frame; the paired controller times the MotionDetected event.
async fn run_latency(bin: &Path) -> Vec<Duration> {
    let (aus, box_at) = latency_clip();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = listener.local_addr().unwrap().port();
    let (box_tx, box_rx) = std::sync::mpsc::channel::<Instant>();
    let writer = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let _ = sock.set_nodelay(true);
        let start = Instant::now();
        let mut n = 0u32;
        // Cycles until the bench stops reading (the bridge is killed: the write fails).
        for cycle in 0.. {
            for (i, au) in aus.iter().enumerate() {
                let due = start + Duration::from_millis(100) * n;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                if sock.write_all(au).is_err() {
                    return;
                }
                if i == box_at && cycle > 0 {
                    let _ = box_tx.send(Instant::now());
                }
                n += 1;
            }
        }
    });
    let in_camera = format!(
        "detect_source = \"tcp://127.0.0.1:{tcp_port}?fps=10&realtime=false\"\n\
         [cameras.motion.debounce]\nmin_on_ms = 1000\nhold_ms = 1000"
    );
    let mut paired = common::start_paired(bin, "latency", "demo:", true, "", &in_camera).await;
    let db = paired.hap.accessories().await.expect("/accessories");
    let ids = HksvIds::find(&db).expect("HKSV ids");
    paired
        .hap
        .subscribe(&[ids.motion_detected], true)
        .await
        .expect("subscribe");
    let (aid, iid) = ids.motion_detected;
    // Events are timed as they arrive (this loop always waits in next_event); box times come
    // from the writer. Each box is paired with the first "on" event after it.
    let (mut boxes, mut ons) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(30 + 9 * LATENCY_SAMPLES as u64);
    while boxes.len() <= LATENCY_SAMPLES && Instant::now() < deadline {
        if let Some(evs) = paired.hap.next_event(Duration::from_millis(200)).await {
            let at = Instant::now();
            if evs.iter().any(|e| {
                e.aid == aid
                    && e.iid == iid
                    && (e.value == serde_json::json!(true) || e.value == serde_json::json!(1))
            }) {
                ons.push(at);
            }
        }
        boxes.extend(box_rx.try_iter());
    }
    println!(
        "  {} boxes written, {} MotionDetected on-events",
        boxes.len(),
        ons.len()
    );
    let mut latencies = Vec::new();
    for (i, b) in boxes.iter().enumerate() {
        let next_box = boxes.get(i + 1).copied();
        match ons
            .iter()
            .find(|t| *t > b && next_box.is_none_or(|n| **t < n))
        {
            Some(t) => latencies.push(*t - *b),
            None if next_box.is_some() => {
                println!("  cycle {i}: no MotionDetected event before the next box")
            }
            None => {}
        }
    }
    drop(paired);
    let _ = writer.join();
    latencies
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bin = release_binary();
    println!("hksv-bridge release binary: {}", bin.display());
    let main_media = common::live_bench_media();
    let sub_media = sub_stream_media(&main_media, 30);
    let sub15_media = sub_stream_media(&main_media, 15);
    let main_server = RtspServer::start(free_port(), &main_media);
    let sub_server = RtspServer::start(free_port(), &sub_media);
    let sub15_server = RtspServer::start(free_port(), &sub15_media);
    let real_media = real_sub_stream_media(&main_media);
    let real_server = RtspServer::start(free_port(), &real_media);
    println!(
        "main {} ({}), sub {} ({}); window {:?}",
        main_server.url,
        main_media.display(),
        sub_server.url,
        sub_media.display(),
        window()
    );
    // Each camera its own pipeline from the file's start: independent cameras.
    let (main, sub) = (
        format!("{}-own", main_server.url),
        format!("{}-own", sub_server.url),
    );
    let (main, sub) = (main.as_str(), sub.as_str());
    let sub15 = format!("{}-own", sub15_server.url);
    let real = format!("{}-own", real_server.url);
    let before = std::env::var_os("HKSV_BRIDGE_BIN_BEFORE").map(PathBuf::from);
    let configs: Vec<(&str, &Path, usize, Option<Option<&str>>)> = vec![
        ("detector off", &bin, 1, None),
        ("detector on 1080p main stream", &bin, 1, Some(None)),
        (
            "detector on 640x360 detect_source",
            &bin,
            1,
            Some(Some(sub)),
        ),
        (
            "detector on 640x360 15 fps detect_source",
            &bin,
            1,
            Some(Some(&sub15)),
        ),
        (
            "detector on real-scene 640x360 detect_source",
            &bin,
            1,
            Some(Some(&real)),
        ),
        ("8 cameras, detect_source", &bin, 8, Some(Some(sub))),
    ];
    let mut configs = configs;
    if let Some(before) = &before {
        configs.insert(
            2,
            (
                "BEFORE: detector on 1080p main stream",
                before,
                1,
                Some(None),
            ),
        );
    }
    let mut rows = Vec::new();
    for (label, binary, cameras, detector) in configs {
        if wanted(label) {
            rows.push(run_cpu(binary, label, cameras, main, detector).await);
        }
    }
    println!();
    for r in &rows {
        println!(
            "{:<40} cameras {:>2}: bridge {:>6.2} % of a core ({:.2} % per camera), RSS {:>6.1} MiB ({:.1} MiB per camera); detector's own share {}",
            r.label,
            r.cameras,
            r.cpu_percent,
            r.cpu_percent / r.cameras as f64,
            r.rss_mib,
            r.rss_mib / r.cameras as f64,
            r.detector_percent
                .map_or_else(|| "-".to_owned(), |p| format!("{p:.2} % per camera")),
        );
    }
    let find = |l: &str| rows.iter().find(|r| r.label == l).map(|r| r.cpu_percent);
    if let (Some(off), Some(on_main), Some(on_sub)) = (
        find("detector off"),
        find("detector on 1080p main stream"),
        find("detector on 640x360 detect_source"),
    ) {
        println!(
            "detector cost (bridge CPU on − off): main stream {:.2} %, sub-stream {:.2} %; ratio sub/main {:.3}",
            on_main - off,
            on_sub - off,
            (on_sub - off) / (on_main - off)
        );
        if let Some(before) = find("BEFORE: detector on 1080p main stream") {
            println!(
                "main stream after/before (detector cost): {:.3}",
                (on_main - off) / (before - off)
            );
        }
    }
    drop((main_server, sub_server, sub15_server, real_server));

    if !wanted("latency") {
        return;
    }
    let mut latencies = run_latency(&bin).await;
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "motion → MotionDetected (detector path, 640x360 10 fps, confirm_frames 2): median {:.0} ms, min {:.0}, p90 {:.0}, max {:.0} (n = {})",
        ms(latencies[latencies.len() / 2]),
        ms(latencies[0]),
        ms(latencies[latencies.len() * 9 / 10]),
        ms(latencies[latencies.len() - 1]),
        latencies.len()
    );
}
