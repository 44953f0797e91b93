//! Test peers for the motion crate: H.264 made by ffmpeg, a mosquitto broker on loopback.
//! A missing peer fails the test with a message saying to run scripts/test.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::indexing_slicing)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use recorder::H264Framing;
use recorder::h264::{self, AnnexBSplitter};

const MISSING: &str =
    "run scripts/test (it installs the test peers: ffmpeg, mosquitto, mosquitto-clients)";

/// Runs ffmpeg with `args` and returns its stdout (an Annex B H.264 stream).
pub fn ffmpeg_h264(args: &[&str]) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("ffmpeg not runnable ({e}): {MISSING}"));
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.is_empty(), "ffmpeg produced no output");
    out.stdout
}

/// The white box of [`synthetic_clip`]: enters at `from_s` at x = `x0`, y = 1/3 of the height,
/// and moves right at `speed_px_s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MovingBox {
    pub from_s: u32,
    pub size: u32,
    pub x0: u32,
    pub speed_px_s: u32,
}

impl MovingBox {
    /// [`synthetic_clip`]'s box: 64×64 from x = 40 at 80 px/s, whatever the frame size.
    pub fn fixed(from_s: u32) -> Self {
        Self {
            from_s,
            size: 64,
            x0: 40,
            speed_px_s: 80,
        }
    }

    /// The box as it is in a 640×360 frame, scaled to `width`×`height`: 18 % of the height
    /// (a person a few metres from the camera; 192 px at 1080p), crossing 1/8 of the width per
    /// second.
    pub fn scaled(from_s: u32, width: u32, height: u32) -> Self {
        Self {
            from_s,
            size: 64 * height / 360,
            x0: 40 * width / 640,
            speed_px_s: 80 * width / 640,
        }
    }
}

/// lavfi graph of a gray background with temporal sensor noise and an optional moving box
/// (noise applied over it too).
pub fn noisy_scene(
    width: u32,
    height: u32,
    fps: u32,
    seconds: u32,
    moving: Option<MovingBox>,
) -> String {
    let mut filter = format!("color=c=0x707070:s={width}x{height}:r={fps}:d={seconds}");
    if let Some(MovingBox {
        from_s: t,
        size,
        x0,
        speed_px_s,
    }) = moving
    {
        // overlay (not drawbox) because ffmpeg 5.1's drawbox does not evaluate `t` per frame.
        filter = format!(
            "{filter}[bg];color=c=white:s={size}x{size}:r={fps}:d={seconds}[box];\
             [bg][box]overlay=x='{x0}+{speed_px_s}*(t-{t})':y={}:enable='gte(t,{t})'",
            height / 3
        );
    }
    filter.push_str(",noise=alls=20:allf=t,format=yuv420p");
    filter
}

/// Encodes a lavfi graph with libx264 (Main, no B-frames, an IDR every `gop` frames, no
/// scene-cut keyframes) to Annex B; `extra` are further encoder options (preset, rate control).
pub fn x264(filter: &str, gop: u32, extra: &[&str]) -> Vec<u8> {
    let gop = gop.to_string();
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        filter,
        "-c:v",
        "libx264",
        "-profile:v",
        "main",
        "-bf",
        "0",
        "-g",
        &gop,
        "-keyint_min",
        &gop,
        "-sc_threshold",
        "0",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-f", "h264", "-"]);
    ffmpeg_h264(&args)
}

/// A synthetic clip: [`noisy_scene`] with, from `box_from_s` on, a white 64×64 box moving
/// right at 80 px/s ([`MovingBox::fixed`]). Annex B, no B-frames, `gop` frames per GOP.
pub fn synthetic_clip(
    width: u32,
    height: u32,
    fps: u32,
    seconds: u32,
    box_from_s: Option<u32>,
    gop: u32,
) -> Vec<u8> {
    let scene = noisy_scene(
        width,
        height,
        fps,
        seconds,
        box_from_s.map(MovingBox::fixed),
    );
    x264(&scene, gop, &["-preset", "ultrafast"])
}

/// The bundled real-camera recording as access units with their own timestamps (ffprobe's
/// packet `pts_time`; the clip has a variable frame rate).
pub fn fixture_access_units() -> Vec<(Vec<u8>, bool, i64)> {
    let mp4 = fixture_dir().join("fully-assembled.mp4");
    assert!(mp4.exists(), "fixture missing: {}", mp4.display());
    let mp4 = mp4.to_str().expect("utf-8 path").to_owned();
    let stream = ffmpeg_h264(&[
        "-i",
        &mp4,
        "-an",
        "-c:v",
        "copy",
        "-bsf:v",
        "h264_mp4toannexb",
        "-f",
        "h264",
        "-",
    ]);
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
            &mp4,
        ])
        .output()
        .unwrap_or_else(|e| panic!("ffprobe not runnable ({e}): {MISSING}"));
    assert!(probe.status.success());
    let times: Vec<i64> = String::from_utf8_lossy(&probe.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok())
        .map(|s| (s * 90_000.0).round() as i64)
        .collect();
    let aus = split_access_units(&stream);
    assert_eq!(aus.len(), times.len(), "one access unit per packet");
    aus.into_iter()
        .zip(times)
        .map(|(au, ts)| {
            let idr = h264::contains_idr(&au, H264Framing::AnnexB);
            (au, idr, ts)
        })
        .collect()
}

/// Splits an Annex B elementary stream (as `ffmpeg -f h264` writes it) into access units.
pub fn split_access_units(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut splitter = AnnexBSplitter::new(64 << 20);
    splitter.push(stream).expect("test streams fit the bound");
    splitter.finish();
    std::iter::from_fn(|| splitter.pull())
        .map(|au| au.to_vec())
        .collect()
}

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/hksv-example")
}

/// Access units with their IDR flag and a 90 kHz timestamp at a constant frame rate.
pub fn access_units(stream: &[u8], fps: u32) -> Vec<(Vec<u8>, bool, i64)> {
    split_access_units(stream)
        .into_iter()
        .enumerate()
        .map(|(i, au)| {
            let idr = h264::contains_idr(&au, H264Framing::AnnexB);
            (au, idr, i as i64 * 90_000 / i64::from(fps))
        })
        .collect()
}

/// A mosquitto broker on a loopback port, killed on drop.
pub struct Broker {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

fn mosquitto_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MOSQUITTO_BIN") {
        return p.into();
    }
    // Debian installs the broker in sbin, which is not on every user's PATH.
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin"])
    {
        let candidate = Path::new(dir).join("mosquitto");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("mosquitto not found: {MISSING}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut broker = Self {
            port: free_port(),
            child: None,
            dir,
        };
        broker.restart();
        broker
    }

    /// Kills the broker (if running) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts the broker on the same port and waits until it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\n",
                self.port
            ),
        )
        .unwrap();
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start mosquitto ({e}): {MISSING}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on port {}",
                self.port
            );
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("mosquitto exited early: {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Publishes one message with mosquitto_pub (QoS 1) and waits for it to finish.
    pub fn publish(&self, topic: &str, payload: &str) {
        let status = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-q",
                "1",
                "-t",
                topic,
                "-m",
                payload,
            ])
            .status()
            .unwrap_or_else(|e| panic!("mosquitto_pub not runnable ({e}): {MISSING}"));
        assert!(status.success(), "mosquitto_pub failed: {status}");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}
