//! Support for the end-to-end tests: find the real `hksv-bridge` binary and the test peers.
//!
//! `scripts/test` builds the binary and sets `HKSV_BRIDGE_BIN`, `HKSV_TEST_PYTHON` and
//! `HKSV_TEST_NODE_MODULES`. A missing peer fails the test (never a silent skip).

use std::path::PathBuf;

/// Path of the `hksv-bridge` binary under test.
///
/// # Panics
/// If the binary does not exist: run `scripts/test` (or `cargo build --bins`) first.
pub fn bridge_bin() -> PathBuf {
    let path = std::env::var_os("HKSV_BRIDGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/hksv-bridge"));
    assert!(
        path.exists(),
        "hksv-bridge binary not found at {}; run scripts/test (it builds it first)",
        path.display()
    );
    path
}

/// The workspace root (parent of this package).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The Python interpreter that has aiohomekit installed.
///
/// # Panics
/// If `HKSV_TEST_PYTHON` is unset or does not exist: run `scripts/test`.
pub fn python_with_aiohomekit() -> PathBuf {
    let path = std::env::var_os("HKSV_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
    assert!(
        path.exists(),
        "python with aiohomekit not found at {}; run scripts/test (it installs it)",
        path.display()
    );
    path
}

/// A free loopback TCP port (bound, then released).
///
/// # Panics
/// If no port can be bound.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// Fails (never skips) when ffmpeg/ffprobe are missing.
///
/// # Panics
/// If either tool does not run: run `scripts/test`.
pub fn require_ffmpeg() {
    for tool in ["ffmpeg", "ffprobe"] {
        let ok = std::process::Command::new(tool)
            .arg("-version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            ok,
            "{tool} is not installed: run scripts/test (it installs ffmpeg)"
        );
    }
}

/// Decodes `file` completely with ffmpeg (`-v error -f null -`); returns ffmpeg's error output
/// (empty when the file decodes cleanly) and whether it exited 0.
pub fn ffmpeg_decode(file: &std::path::Path) -> (bool, String) {
    require_ffmpeg();
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(file)
        // Frames keep their own times: the null muxer's default constant frame rate turns a
        // variable-rate clip (the demo's 50/100 ms frames) into "non monotonically increasing
        // dts" errors that say nothing about the clip.
        .args(["-fps_mode", "passthrough", "-enc_time_base", "-1"])
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The real `hksv-bridge` binary running with a config file; killed on drop.
pub struct BridgeProcess {
    child: std::process::Child,
    /// The config file it was started with.
    pub config: PathBuf,
    /// Its state directory.
    pub state_dir: PathBuf,
    /// Where its stderr goes (read it when a test fails).
    pub log: PathBuf,
}

impl BridgeProcess {
    /// Starts the bridge with `config` (a TOML file) and `state_dir`, then waits up to 20 s
    /// until every `ports` entry accepts TCP connections.
    ///
    /// # Panics
    /// If the binary is missing, exits early, or a port never opens.
    pub fn start(config: &std::path::Path, state_dir: &std::path::Path, ports: &[u16]) -> Self {
        let log = state_dir.with_extension("log");
        let err = std::fs::File::create(&log).expect("log file");
        let child = std::process::Command::new(bridge_bin())
            .arg("--config")
            .arg(config)
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--no-mdns")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn hksv-bridge");
        let mut me = Self {
            child,
            config: config.to_owned(),
            state_dir: state_dir.to_owned(),
            log,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        for &port in ports {
            loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                if let Ok(Some(status)) = me.child.try_wait() {
                    panic!("hksv-bridge exited with {status}: {}", me.log_text());
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "hksv-bridge did not open port {port} within 20 s: {}",
                    me.log_text()
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        me
    }

    /// Its stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills it and waits (a crash: SIGKILL).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops it as systemd does (SIGTERM, through `kill(1)`), waits up to 15 s for a clean
    /// exit and returns its status code.
    ///
    /// # Panics
    /// If it has not exited after 15 s.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "hksv-bridge did not exit within 15 s of SIGTERM: {}",
                self.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// GStreamer's RTSP server (a peer we did not write) serving an MP4 file; killed on drop.
/// The approach of `crates/source/tests` (its script is copied to `tests/peers`).
pub struct RtspServer {
    child: std::process::Child,
    /// `rtsp://127.0.0.1:PORT/cam`.
    pub url: String,
}

impl RtspServer {
    /// Starts it on `port` for `file`.
    ///
    /// # Panics
    /// If GStreamer's RTSP server is not installed: run `scripts/test`.
    pub fn start(port: u16, file: &std::path::Path) -> Self {
        use std::io::BufRead as _;
        let python =
            std::env::var("HKSV_TEST_GST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
        let script = workspace_root().join("crates/source/tests/peers/rtsp_server.py");
        let mut child = std::process::Command::new(&python)
            .arg(&script)
            .arg(port.to_string())
            .arg(file)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {python} for the GStreamer RTSP server ({e}): run scripts/test")
            });
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        if !line.starts_with("READY") {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!(
                "the GStreamer RTSP server did not start: {err}\nrun scripts/test (python3-gi, gir1.2-gst-rtsp-server-1.0)"
            );
        }
        let url = line.trim().trim_start_matches("READY ").to_owned();
        Self { child, url }
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
