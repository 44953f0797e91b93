//! Test support: ffmpeg-made media, the GStreamer RTSP server peer, event helpers.
//! Missing peers FAIL (with "run scripts/test"), never skip.
#![allow(
    dead_code,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    missing_docs,
    unreachable_pub
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use recorder::MediaUnit;
use recorder::{Fragment, Fragmenter, FragmenterConfig, FragmenterEvent, InitSegment};
use source::{CameraSource, SourceEvent};

/// Fails (never skips) when ffmpeg/ffprobe are missing.
pub fn require_ffmpeg() {
    for tool in ["ffmpeg", "ffprobe"] {
        let ok = Command::new(tool)
            .arg("-version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            ok,
            "{tool} is not installed: run scripts/test (it installs ffmpeg) or `apt-get install ffmpeg`"
        );
    }
}

/// Runs ffmpeg; panics with its stderr on failure.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-y", "-loglevel", "error"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Encodes `seconds` of test pattern (and a sine as AAC when `audio`) with a GOP of
/// `gop_frames` at `fps`, into `out` (format from the extension or `extra` args).
pub fn encode(
    out: &Path,
    size: &str,
    fps: u32,
    gop_frames: u32,
    seconds: u32,
    audio: bool,
    extra: &[&str],
) {
    require_ffmpeg();
    let src = format!("testsrc2=size={size}:rate={fps}");
    let (g, t) = (gop_frames.to_string(), seconds.to_string());
    let mut args = vec!["-f", "lavfi", "-i", &src];
    if audio {
        args.extend(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000"]);
    }
    args.extend([
        "-t",
        &t,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-pix_fmt",
        "yuv420p",
        "-profile:v",
        "main",
    ]);
    args.extend([
        "-g",
        &g,
        "-keyint_min",
        &g,
        "-sc_threshold",
        "0",
        "-bf",
        "0",
    ]);
    if audio {
        args.extend(["-c:a", "aac", "-b:a", "32k", "-ac", "1"]);
    }
    args.extend_from_slice(extra);
    let out = out.to_str().unwrap();
    args.push(out);
    ffmpeg(&args);
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The Python that has GStreamer's RTSP server bindings (Debian's python3-gi lives in the
/// system Python, not a venv).
fn gst_python() -> String {
    std::env::var("HKSV_TEST_GST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

/// GStreamer's RTSP server, killed on drop.
pub struct RtspServer {
    child: Child,
    pub url: String,
}

impl RtspServer {
    pub fn start(port: u16, file: &Path, creds: Option<(&str, &str)>) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/rtsp_server.py");
        let mut cmd = Command::new(gst_python());
        cmd.arg(&script).arg(port.to_string()).arg(file);
        if let Some((u, p)) = creds {
            cmd.args([u, p]);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| {
            panic!("cannot run {} for the GStreamer RTSP server ({e}): run scripts/test (Debian python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good/-bad)", gst_python())
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if !line.starts_with("READY") {
            let _ = child.kill();
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
            panic!(
                "the GStreamer RTSP server did not start: {err}\nrun scripts/test (it installs Debian python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good/-bad)"
            );
        }
        let url = line.trim().trim_start_matches("READY ").to_owned();
        Self { child, url }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fragmenter fed from source events, collecting recordings.
pub struct Recorder {
    pub fragmenter: Option<Fragmenter>,
    pub fragment_duration: Duration,
    pub inits: Vec<InitSegment>,
    pub fragments: Vec<Fragment>,
    pub connects: u32,
    pub reconnect_errors: Vec<source::Error>,
    pub audio_frames: u64,
    pub video_units: u64,
    pub last_params: Option<source::StreamParams>,
}

impl Recorder {
    pub fn new(fragment_duration: Duration) -> Self {
        Self {
            fragmenter: None,
            fragment_duration,
            inits: vec![],
            fragments: vec![],
            connects: 0,
            reconnect_errors: vec![],
            audio_frames: 0,
            video_units: 0,
            last_params: None,
        }
    }

    pub fn on_event(&mut self, ev: SourceEvent) {
        match ev {
            SourceEvent::Connected { params, .. } => {
                self.connects += 1;
                if self.fragmenter.is_none() {
                    let cfg = FragmenterConfig {
                        audio_config: params.audio.clone(),
                        fragment_duration: self.fragment_duration,
                        ..Default::default()
                    };
                    self.fragmenter = Some(Fragmenter::new(cfg).unwrap());
                }
                if let Some(ps) = &params.parameter_sets {
                    self.fragmenter
                        .as_mut()
                        .unwrap()
                        .set_parameter_sets(ps.clone());
                }
                self.last_params = Some(params);
            }
            SourceEvent::Reconnecting { error, .. } => self.reconnect_errors.push(error),
            SourceEvent::Unit(u) => {
                let f = self.fragmenter.as_mut().unwrap();
                match &u {
                    MediaUnit::Video(_) => self.video_units += 1,
                    MediaUnit::Audio(_) => self.audio_frames += 1,
                    MediaUnit::ParameterSets(_) => {}
                }
                let _ = f.push(u);
                while let Some(e) = f.poll_event() {
                    match e {
                        FragmenterEvent::Init(i) => self.inits.push(i),
                        FragmenterEvent::Fragment(fr) => self.fragments.push(fr),
                    }
                }
            }
        }
    }

    /// Pumps `source` until `done(self)` or `limit` passes (then panics with `what`).
    pub async fn pump_until(
        &mut self,
        source: &mut impl CameraSource,
        limit: Duration,
        what: &str,
        done: impl Fn(&Self) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + limit;
        while !done(self) {
            let ev = tokio::time::timeout_at(deadline, source.next_event())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "timed out waiting for {what}: {} fragments, {} connects, errors {:?}",
                        self.fragments.len(),
                        self.connects,
                        self.reconnect_errors
                    )
                })
                .unwrap_or_else(|e| panic!("source failed waiting for {what}: {e}"));
            self.on_event(ev);
        }
    }

    /// The tfdt of each fragment continues the previous one exactly.
    pub fn assert_continuous(&self) {
        for w in self.fragments.windows(2) {
            assert_eq!(
                w[1].video.base_decode_time,
                w[0].video.base_decode_time + w[0].video.duration(),
                "video tfdt continuous"
            );
        }
    }

    /// Writes init + fragments and has ffmpeg decode them; panics on any decode error.
    pub fn assert_decodes(&self, dir: &Path) -> PathBuf {
        let mut clip = self.inits[0].bytes.to_vec();
        for (i, f) in self.fragments.iter().enumerate() {
            let timing = recorder::fmp4::FragmentTiming {
                sequence_number: i as u32 + 1,
                video_decode_time: f.video.base_decode_time,
                audio_decode_time: f.audio.as_ref().map_or(0, |a| a.base_decode_time),
            };
            clip.extend_from_slice(&f.to_bytes(&timing));
        }
        let path = dir.join("recorded.mp4");
        std::fs::write(&path, clip).unwrap();
        let out = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
            .arg(&path)
            .args([
                "-fps_mode",
                "passthrough",
                "-enc_time_base",
                "-1",
                "-f",
                "null",
                "-",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "decoding {} failed: {stderr}",
            path.display()
        );
        path
    }
}

/// A fast policy for tests.
pub fn test_policy(stall: Duration) -> source::ReconnectPolicy {
    source::ReconnectPolicy {
        initial_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(1),
        stable_after: Duration::from_secs(2),
        stall_timeout: stall,
        max_consecutive_failures: None,
    }
}
