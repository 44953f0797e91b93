//! Byte-stream sources against real peers: ffmpeg's own HTTP server (`-listen 1`) streaming
//! fMP4 and Annex B in real time, ffmpeg writing Annex B to a child's stdout, files made by
//! ffmpeg; and the bad inputs (H.265, MJPEG, mid-GOP start, a child that exits at once, a
//! server that sends nothing). Missing ffmpeg fails (run scripts/test).
#![allow(clippy::indexing_slicing, clippy::unwrap_used, missing_docs)]

mod common;
use common::*;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use source::{CameraSource, Error, SourceEvent, SourceSpec};

/// ffmpeg as an HTTP server streaming `file` in real time as `format` (its own peer code).
struct FfmpegHttp(std::process::Child);

impl FfmpegHttp {
    fn start(file: &std::path::Path, port: u16, format_args: &[&str]) -> Self {
        require_ffmpeg();
        let child = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-loglevel",
                "error",
                "-re",
                "-i",
            ])
            .arg(file)
            .args(["-c", "copy"])
            .args(format_args)
            .args(["-listen", "1", &format!("http://127.0.0.1:{port}/live")])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Self(child)
    }
}

impl Drop for FfmpegHttp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_fmp4_stream_from_ffmpeg() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.mp4");
    encode(&file, "320x240", 15, 15, 20, true, &[]);
    let port = free_port();
    let _server = FfmpegHttp::start(
        &file,
        port,
        &[
            "-f",
            "mp4",
            "-movflags",
            "frag_keyframe+empty_moov+default_base_moof",
        ],
    );
    let spec: SourceSpec = format!("http://127.0.0.1:{port}/live").parse().unwrap();
    let mut src = source::open(&spec, test_policy(Duration::from_secs(3))).unwrap();
    let mut rec = Recorder::new(Duration::from_secs(1));
    rec.pump_until(
        &mut src,
        Duration::from_secs(15),
        "3 fragments from HTTP fMP4",
        |r| r.fragments.len() >= 3,
    )
    .await;
    let params = rec.last_params.clone().unwrap();
    assert_eq!(params.transport, "fMP4 over HTTP");
    assert_eq!(
        params.audio.as_ref().map(|a| a.sample_rate_hz),
        Some(16000),
        "the moov's AAC config"
    );
    assert!(rec.audio_frames > 0);
    for f in &rec.fragments {
        assert_eq!(f.video.samples.len(), 15, "1 s of 15 fps per fragment");
        assert!(f.video.samples[0].is_sync);
    }
    rec.assert_continuous();
    rec.assert_decodes(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_annexb_stream_from_ffmpeg_uses_the_vui_frame_rate() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.mp4");
    encode(&file, "320x240", 15, 15, 20, false, &[]);
    let port = free_port();
    let _server = FfmpegHttp::start(&file, port, &["-f", "h264"]);
    let spec: SourceSpec = format!("http://127.0.0.1:{port}/live").parse().unwrap();
    let mut src = source::open(&spec, test_policy(Duration::from_secs(3))).unwrap();
    let mut rec = Recorder::new(Duration::from_secs(1));
    rec.pump_until(
        &mut src,
        Duration::from_secs(15),
        "3 fragments from HTTP Annex B",
        |r| r.fragments.len() >= 3,
    )
    .await;
    assert_eq!(
        rec.last_params.as_ref().unwrap().transport,
        "Annex B H.264 over HTTP"
    );
    // No timestamps in Annex B: 15 frames of 6000 ticks (90000 / 15 from the SPS VUI).
    for f in &rec.fragments {
        assert_eq!(
            f.video
                .samples
                .iter()
                .map(|s| s.duration)
                .collect::<Vec<_>>(),
            vec![6000; 15]
        );
    }
    rec.assert_decodes(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_ffmpeg_annexb_on_stdout_with_fps_option() {
    require_ffmpeg();
    let spec: SourceSpec = "exec:ffmpeg -hide_banner -nostdin -loglevel error -re -f lavfi -i testsrc2=size=160x120:rate=10 \
        -c:v libx264 -preset ultrafast -tune zerolatency -g 10 -bf 0 -f h264 - #fps=10"
        .parse()
        .unwrap();
    let mut src = source::open(&spec, test_policy(Duration::from_secs(3))).unwrap();
    let mut rec = Recorder::new(Duration::from_secs(1));
    rec.pump_until(
        &mut src,
        Duration::from_secs(15),
        "2 fragments from exec:",
        |r| r.fragments.len() >= 2,
    )
    .await;
    assert_eq!(
        rec.last_params.as_ref().unwrap().transport,
        "Annex B H.264 over child stdout"
    );
    assert_eq!(
        rec.fragments[0].video.samples[0].duration, 9000,
        "fps=10 → 9000 ticks per frame"
    );
    assert!(
        rec.reconnect_errors.is_empty(),
        "{:?}",
        rec.reconnect_errors
    );
}

#[tokio::test]
async fn child_that_exits_at_once_backs_off_instead_of_looping() {
    let spec: SourceSpec = "exec:echo camera not found >&2; exit 3".parse().unwrap();
    let policy = source::ReconnectPolicy {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(800),
        ..test_policy(Duration::from_secs(2))
    };
    let mut src = source::open(&spec, policy).unwrap();
    let window = Duration::from_secs(3);
    let t0 = Instant::now();
    let mut errors = Vec::new();
    while t0.elapsed() < window {
        match tokio::time::timeout(window.saturating_sub(t0.elapsed()), src.next_event()).await {
            Err(_) => break,
            Ok(Ok(SourceEvent::Reconnecting { error, .. })) => errors.push(error),
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    // Backoff 0.1 + 0.2 + 0.4 + 0.8 + 0.8 + … s: about 6 starts in 3 s; a hot loop would be thousands.
    let starts = src.attempts();
    assert!((4..=8).contains(&starts), "{starts} starts in {window:?}");
    let msg = errors[0].to_string();
    assert!(
        msg.contains("exit status: 3") && msg.contains("camera not found"),
        "{msg}"
    );
}

#[tokio::test]
async fn h265_and_mjpeg_are_rejected_naming_h264() {
    let dir = tempfile::tempdir().unwrap();
    require_ffmpeg();
    let h265 = dir.path().join("cam.h265");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x120:rate=10",
        "-t",
        "1",
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "log-level=error",
        "-f",
        "hevc",
        h265.to_str().unwrap(),
    ]);
    let mjpeg = dir.path().join("cam.mjpeg");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x120:rate=10",
        "-t",
        "1",
        "-c:v",
        "mjpeg",
        "-f",
        "mjpeg",
        mjpeg.to_str().unwrap(),
    ]);
    let hevc_mp4 = dir.path().join("cam-hevc.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x120:rate=10",
        "-t",
        "1",
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "log-level=error",
        "-movflags",
        "frag_keyframe+empty_moov",
        hevc_mp4.to_str().unwrap(),
    ]);
    for (file, found) in [(&h265, "H.265"), (&mjpeg, "MJPEG"), (&hevc_mp4, "H.265")] {
        let spec: SourceSpec = file.to_str().unwrap().parse().unwrap();
        let err = source::check(&spec, Duration::from_secs(3), None, |_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::UnsupportedCodec { found: f, .. } if f == found),
            "{}: {err:?}",
            file.display()
        );
        assert!(
            err.to_string().contains("HomeKit Secure Video needs H.264"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn garbage_is_a_clear_stream_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("noise.bin");
    std::fs::write(&file, b"hello, this is not video at all").unwrap();
    let spec: SourceSpec = file.to_str().unwrap().parse().unwrap();
    let err = source::check(&spec, Duration::from_secs(3), None, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Stream { .. }) && err.to_string().contains("neither Annex B"),
        "{err}"
    );
}

#[tokio::test]
async fn http_server_that_sends_nothing_trips_the_watchdog() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    for spec in [
        format!("http://127.0.0.1:{port}/stream"),
        format!("tcp://127.0.0.1:{port}"),
    ] {
        let spec: SourceSpec = spec.parse().unwrap();
        let mut src = source::open(&spec, test_policy(Duration::from_millis(700))).unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(5), src.next_event())
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(
                ev,
                SourceEvent::Reconnecting {
                    error: Error::Stalled { waited_ms: 700, .. },
                    ..
                }
            ),
            "{spec}: {ev:?}"
        );
    }
    hold.abort();
}

#[tokio::test]
async fn http_401_is_an_auth_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0; 4096];
        let n = s.read(&mut buf).await.unwrap();
        let req = String::from_utf8_lossy(&buf[..n]).to_string();
        s.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        req
    });
    let spec: SourceSpec = format!("http://viewer:hunter2@127.0.0.1:{port}/video.h264")
        .parse()
        .unwrap();
    let err = source::check(&spec, Duration::from_secs(3), None, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Auth { status: 401, .. }), "{err:?}");
    assert!(!err.to_string().contains("hunter2"));
    let req = server.await.unwrap();
    // Basic auth from the URL's credentials: base64("viewer:hunter2").
    assert!(
        req.contains("authorization: Basic dmlld2VyOmh1bnRlcjI=")
            || req.contains("Authorization: Basic dmlld2VyOmh1bnRlcjI="),
        "{req}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_annexb_from_ffmpeg_listening() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.mp4");
    encode(&file, "320x240", 15, 15, 20, false, &[]);
    let port = free_port();
    // ffmpeg as the TCP server (a camera's raw H.264 port).
    let mut server = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-re",
            "-i",
        ])
        .arg(&file)
        .args([
            "-c",
            "copy",
            "-f",
            "h264",
            &format!("tcp://127.0.0.1:{port}?listen=1"),
        ])
        .spawn()
        .unwrap();
    let spec: SourceSpec = format!("tcp://127.0.0.1:{port}").parse().unwrap();
    let mut src = source::open(&spec, test_policy(Duration::from_secs(3))).unwrap();
    let mut rec = Recorder::new(Duration::from_secs(1));
    // The first connects may be refused until ffmpeg listens: the source retries.
    rec.pump_until(
        &mut src,
        Duration::from_secs(15),
        "2 fragments over TCP",
        |r| r.fragments.len() >= 2,
    )
    .await;
    assert_eq!(
        rec.last_params.as_ref().unwrap().transport,
        "Annex B H.264 over TCP"
    );
    let _ = server.kill();
    let _ = server.wait();
}
