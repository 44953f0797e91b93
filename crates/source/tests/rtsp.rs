//! RTSP against a real server we did not write: GStreamer's gst-rtsp-server, started by the
//! test on loopback, serving an H.264 + AAC file made by ffmpeg. Missing peers fail.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, missing_docs)]

mod common;
use common::*;

use std::time::{Duration, Instant};

use source::{CameraSource, Error, SourceEvent, SourceSpec};

/// 1 s GOPs and 1 s fragments keep the test short; the source code path is the same as 4 s.
fn media(dir: &std::path::Path) -> std::path::PathBuf {
    let file = dir.join("cam.mp4");
    encode(&file, "320x240", 15, 15, 40, true, &[]);
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_aac_fragments_then_server_restart_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let file = media(dir.path());
    let port = free_port();
    let mut server = RtspServer::start(port, &file, None);
    let spec: SourceSpec = server.url.parse().unwrap();
    let mut src = source::open(&spec, test_policy(Duration::from_secs(3))).unwrap();
    let mut rec = Recorder::new(Duration::from_secs(1));
    rec.pump_until(&mut src, Duration::from_secs(20), "3 fragments", |r| {
        r.fragments.len() >= 3
    })
    .await;
    let params = rec.last_params.clone().unwrap();
    assert_eq!(params.transport, "RTSP, RTP over TCP");
    let asc = params.audio.expect("the SDP's AAC track is set up");
    assert_eq!((asc.sample_rate_hz, asc.channels), (16000, 1));
    assert!(
        rec.audio_frames > 10,
        "AAC frames arrive: {}",
        rec.audio_frames
    );
    assert!(
        rec.inits[0].config.audio.is_some(),
        "the init segment has the audio track"
    );

    // The camera goes away: the source reports it and keeps trying.
    server.stop();
    let before = rec.fragments.len();
    rec.pump_until(
        &mut src,
        Duration::from_secs(10),
        "a reconnect event",
        |r| !r.reconnect_errors.is_empty(),
    )
    .await;
    // Restart on the same port; the source reconnects and fragments resume.
    let _server = RtspServer::start(port, &file, None);
    rec.pump_until(
        &mut src,
        Duration::from_secs(25),
        "fragments after the restart",
        |r| r.connects >= 2 && r.fragments.len() >= before + 3,
    )
    .await;
    assert_eq!(
        rec.inits.len(),
        1,
        "same parameters: one recording continues across the reconnect"
    );
    rec.assert_continuous();
    rec.assert_decodes(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_name_the_camera_and_never_print_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let file = media(dir.path());
    let port = free_port();
    let server = RtspServer::start(port, &file, Some(("admin", "right-pass")));
    let wrong: SourceSpec = server
        .url
        .replace("rtsp://", "rtsp://admin:wrong-pass@")
        .parse()
        .unwrap();
    let err = source::check(&wrong, Duration::from_secs(5), None, |_| {})
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Auth { status: 401, .. }), "{err:?}");
    assert!(
        msg.contains(&format!("rtsp://admin:***@127.0.0.1:{port}/cam"))
            && !msg.contains("wrong-pass"),
        "{msg}"
    );
    // The right password plays.
    let right: SourceSpec = server
        .url
        .replace("rtsp://", "rtsp://admin:right-pass@")
        .parse()
        .unwrap();
    let mut src = source::open(&right, test_policy(Duration::from_secs(3))).unwrap();
    let mut rec = Recorder::new(Duration::from_secs(1));
    rec.pump_until(
        &mut src,
        Duration::from_secs(15),
        "video with the right password",
        |r| r.video_units > 10,
    )
    .await;
}

#[tokio::test]
async fn server_that_accepts_and_sends_nothing_trips_the_watchdog() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s); // never answers
        }
    });
    let spec: SourceSpec = format!("rtsp://127.0.0.1:{port}/cam").parse().unwrap();
    let mut src = source::open(&spec, test_policy(Duration::from_millis(800))).unwrap();
    let t0 = Instant::now();
    let ev = tokio::time::timeout(Duration::from_secs(5), src.next_event())
        .await
        .unwrap()
        .unwrap();
    let SourceEvent::Reconnecting {
        error: Error::Stalled { waited_ms, .. },
        ..
    } = ev
    else {
        panic!("{ev:?}")
    };
    assert_eq!(waited_ms, 800);
    assert!(
        t0.elapsed() >= Duration::from_millis(750),
        "the watchdog waited"
    );
    // check gives up with the stall as its error.
    let err = source::check(&spec, Duration::from_secs(20), None, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Stalled { .. }), "{err:?}");
    hold.abort();
}

#[tokio::test]
async fn unreachable_camera_is_a_connect_error() {
    let port = free_port(); // nothing listens there
    let spec: SourceSpec = format!("rtsp://user:pw@127.0.0.1:{port}/cam")
        .parse()
        .unwrap();
    let mut src = source::open(&spec, test_policy(Duration::from_secs(2))).unwrap();
    let ev = src.next_event().await.unwrap();
    let SourceEvent::Reconnecting {
        error,
        failures: 1,
        delay,
    } = ev
    else {
        panic!("{ev:?}")
    };
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    assert_eq!(delay, Duration::from_millis(200));
    let msg = source::check(&spec, Duration::from_secs(5), None, |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("cannot connect") && msg.contains("user:***@"),
        "{msg}"
    );
}

#[tokio::test]
async fn rtsps_is_rejected_clearly() {
    let spec: SourceSpec = "rtsps://cam.invalid/stream".parse().unwrap();
    let err = source::check(&spec, Duration::from_secs(2), None, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Unsupported { .. }) && err.to_string().contains("rtsps"),
        "{err}"
    );
}
