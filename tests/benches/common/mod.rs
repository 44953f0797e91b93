//! Shared by the benches that drive the release binary: the bridge process, `/proc` sampling
//! (CPU ticks, VmRSS) and figure formatting. Linux only.
#![allow(dead_code, unreachable_pub)] // each bench uses part of it

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use e2e_tests::workspace_root;
use serde_json::json;

/// Bound of each API call.
pub const STEP: Duration = Duration::from_secs(10);
/// Setup code of the benches' cameras.
pub const SETUP_CODE: &str = "031-45-154";

/// A bridge with one camera and a controller paired with it that stays connected.
pub struct Paired {
    /// The bridge process.
    pub bridge: Bridge,
    /// The camera's HAP address.
    pub hap_addr: std::net::SocketAddr,
    /// The paired controller's session.
    pub hap: controller::HapClient,
    /// Config, state and log.
    pub dir: tempfile::TempDir,
}

/// Starts `bin` with camera `camera` on `source` (loopback, no mDNS, the built-in detector
/// on or off), `top` TOML before the camera table and `in_camera` lines inside it; pairs a
/// fresh controller and waits until the ring holds 4 s.
pub async fn start_paired(
    bin: &Path,
    camera: &str,
    source: &str,
    detector: bool,
    top: &str,
    in_camera: &str,
) -> Paired {
    let dir = tempfile::tempdir().expect("tmp");
    let (hap_port, api_port) = (e2e_tests::free_port(), e2e_tests::free_port());
    let config = dir.path().join("hksv-bridge.toml");
    std::fs::write(
        &config,
        format!(
            "bind = \"127.0.0.1\"\nmdns = false\n\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n\n{top}\n\
             [[cameras]]\nname = \"{camera}\"\nsource = \"{source}\"\nport = {hap_port}\nsetup_code = \"{SETUP_CODE}\"\n\
             {in_camera}\n\n[cameras.motion.detector]\nenabled = {detector}\n"
        ),
    )
    .expect("config");
    let bridge = Bridge::start(
        bin,
        &config,
        &dir.path().join("state"),
        camera,
        hap_port,
        api_port,
    );
    let hap_addr = std::net::SocketAddr::from(([127, 0, 0, 1], hap_port));
    let me = hap_server::pairing::controller::ControllerIdentity::generate(&mut rand::rng());
    let keys = controller::pair_setup(hap_addr, &me, SETUP_CODE, STEP)
        .await
        .expect("pair-setup");
    let hap = controller::HapClient::connect(hap_addr, &keys, STEP)
        .await
        .expect("pair-verify");
    bridge
        .wait_for_prebuffer(4000, Duration::from_secs(30))
        .await;
    Paired {
        bridge,
        hap_addr,
        hap,
        dir,
    }
}

/// A bridge with `cameras` accessory-mode cameras `cam0`… on `source`, each table followed by
/// `per_camera(i)` (keys, then sub-tables), unpaired, on loopback without mDNS; waits until
/// `cam0`'s ring holds 2 s. Returns the process, its API port and its directory.
pub async fn start_cameras(
    bin: &Path,
    cameras: usize,
    source: &str,
    per_camera: &dyn Fn(usize) -> String,
) -> (Bridge, u16, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let api_port = e2e_tests::free_port();
    let mut toml =
        format!("bind = \"127.0.0.1\"\nmdns = false\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n");
    // The first camera's port is needed to wait for it; the others take any free port (fixed
    // picks could collide with the HDS listeners the bridge binds on port 0 meanwhile).
    let first_port = e2e_tests::free_port();
    for i in 0..cameras {
        let port = if i == 0 { first_port } else { 0 };
        toml.push_str(&format!(
            "\n[[cameras]]\nname = \"cam{i}\"\nsource = \"{source}\"\nport = {port}\n{}\n",
            per_camera(i)
        ));
    }
    let config = dir.path().join("hksv-bridge.toml");
    std::fs::write(&config, toml).expect("config");
    let bridge = Bridge::start(
        bin,
        &config,
        &dir.path().join("state"),
        "cam0",
        first_port,
        api_port,
    );
    bridge
        .wait_for_prebuffer(2000, Duration::from_secs(30))
        .await;
    (bridge, api_port, dir)
}

/// `GET` of an API path as JSON.
pub async fn api_get(port: u16, path: &str) -> serde_json::Value {
    let body = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .timeout(STEP)
        .send()
        .await
        .expect("API")
        .text()
        .await
        .expect("API body");
    serde_json::from_str(&body).expect("API JSON")
}

/// The release bridge process; killed on drop.
pub struct Bridge {
    child: Child,
    /// Its process id.
    pub pid: u32,
    api: String,
    camera: String,
    log: PathBuf,
}

impl Bridge {
    /// Starts `bin` with `config`, state in `state`, and waits for both ports; `camera` is the
    /// name the API calls use.
    pub fn start(
        bin: &Path,
        config: &Path,
        state: &Path,
        camera: &str,
        hap_port: u16,
        api_port: u16,
    ) -> Self {
        let log = state.with_extension("log");
        let err = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin)
            .arg("--config")
            .arg(config)
            .arg("--state-dir")
            .arg(state)
            .arg("--no-mdns")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn hksv-bridge");
        let mut me = Self {
            pid: child.id(),
            child,
            api: format!("http://127.0.0.1:{api_port}"),
            camera: camera.to_owned(),
            log,
        };
        // HKSV_BENCH_START_S: older binaries started their cameras one GOP after another.
        let start_s = std::env::var("HKSV_BENCH_START_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20);
        let deadline = Instant::now() + Duration::from_secs(start_s);
        for port in [hap_port, api_port] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Ok(Some(status)) = me.child.try_wait() {
                    panic!("hksv-bridge exited with {status}: {}", me.log_text());
                }
                assert!(
                    Instant::now() < deadline,
                    "hksv-bridge did not open port {port} within {start_s} s: {}",
                    me.log_text()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        me
    }

    /// What the bridge logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// POST /motion.
    pub async fn motion(&self, detected: bool) {
        let r = reqwest::Client::new()
            .post(format!("{}/api/cameras/{}/motion", self.api, self.camera))
            .header("content-type", "application/json")
            .body(json!({"detected": detected}).to_string())
            .timeout(STEP)
            .send()
            .await
            .expect("POST /motion");
        assert_eq!(
            r.status().as_u16(),
            200,
            "POST /motion: {}",
            self.log_text()
        );
    }

    /// Waits until `/api/cameras` reports ≥ `min_ms` of prebuffer; returns the reported value.
    pub async fn wait_for_prebuffer(&self, min_ms: u64, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        let mut last = None;
        while Instant::now() < deadline {
            let body = reqwest::Client::new()
                .get(format!("{}/api/cameras", self.api))
                .timeout(STEP)
                .send()
                .await
                .expect("GET /api/cameras")
                .text()
                .await
                .expect("camera list body");
            let list: serde_json::Value = serde_json::from_str(&body).expect("JSON camera list");
            last = list
                .as_array()
                .and_then(|cams| cams.iter().find(|c| c["name"] == self.camera.as_str()))
                .and_then(|c| c["prebuffer_ms"].as_u64());
            if let Some(ms) = last.filter(|ms| *ms >= min_ms) {
                return ms;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "prebuffer_ms stayed below {min_ms} for {within:?} (last {last:?}): {}",
            self.log_text()
        );
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU and memory of the process over one window.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub window: Duration,
    /// utime + stime over the window, as % of one core.
    pub cpu_percent: f64,
    /// VmRSS at the end, KiB.
    pub rss_end_kib: u64,
    /// Highest VmRSS sampled, KiB.
    pub rss_peak_kib: u64,
}

/// Samples VmRSS every 100 ms on a thread; CPU from `/proc/<pid>/stat` at start and stop.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
    pid: u32,
    clk_tck: u64,
    started: Instant,
    ticks_at_start: u64,
}

impl Sampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32, clk_tck: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(read_status_kib(pid, "VmRSS:").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        });
        Self {
            stop,
            thread,
            pid,
            clk_tck,
            started: Instant::now(),
            ticks_at_start: cpu_ticks(pid),
        }
    }

    /// Stops and returns the window's figures.
    pub fn stop(self) -> Usage {
        let ticks = cpu_ticks(self.pid).saturating_sub(self.ticks_at_start);
        let window = self.started.elapsed();
        let rss_end_kib = read_status_kib(self.pid, "VmRSS:").unwrap_or(0);
        self.stop.store(true, Ordering::Relaxed);
        let rss_peak_kib = self.thread.join().unwrap_or(0).max(rss_end_kib);
        Usage {
            window,
            cpu_percent: cpu_percent(ticks, self.clk_tck, window),
            rss_end_kib,
            rss_peak_kib,
        }
    }
}

/// Samples for `window` while this thread sleeps (nothing else talks to the bridge).
pub fn sample_usage(pid: u32, clk_tck: u64, window: Duration) -> Usage {
    let s = Sampler::start(pid, clk_tck);
    std::thread::sleep(window);
    s.stop()
}

pub fn cpu_percent(ticks: u64, clk_tck: u64, window: Duration) -> f64 {
    let secs = window.as_secs_f64();
    if secs == 0.0 || clk_tck == 0 {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss)] // tick counts are far below 2^52
    let cpu_s = ticks as f64 / clk_tck as f64;
    cpu_s / secs * 100.0
}

/// utime + stime of `pid` in clock ticks (proc(5): fields 14 and 15 of `/proc/<pid>/stat`).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces: count fields after its closing ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> u64 { fields.get(n - 3).and_then(|v| v.parse().ok()).unwrap_or(0) };
    field(14) + field(15)
}

/// A `kB` line of `/proc/<pid>/status` (e.g. `VmRSS:`), in KiB.
pub fn read_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// `getconf CLK_TCK` (USER_HZ); 100 on every common Linux build when getconf is missing.
pub fn clock_ticks_per_s() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// `HKSV_BRIDGE_BIN_RELEASE`, or the executable of `cargo build --release -p bridge --bin
/// hksv-bridge` (built now; cargo's JSON messages name the file).
pub fn release_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("HKSV_BRIDGE_BIN_RELEASE") {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "HKSV_BRIDGE_BIN_RELEASE={} does not exist",
            p.display()
        );
        return p;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!("building: cargo build --release -p bridge --bin hksv-bridge");
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--release",
            "-p",
            "bridge",
            "--bin",
            "hksv-bridge",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo build --release");
    assert!(out.status.success(), "cargo build --release failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "hksv-bridge")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo named the hksv-bridge executable")
}

pub fn kib_to_mib(kib: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)] // KiB counts are far below 2^52
    let k = kib as f64;
    k / 1024.0
}

pub fn sorted(v: &[Duration]) -> Vec<Duration> {
    let mut s = v.to_vec();
    s.sort();
    s
}

pub fn min(v: &[Duration]) -> Option<Duration> {
    v.iter().min().copied()
}

pub fn max(v: &[Duration]) -> Option<Duration> {
    v.iter().max().copied()
}

pub fn median(v: &[Duration]) -> Option<Duration> {
    let s = sorted(v);
    s.get(s.len() / 2).copied()
}

pub fn us(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".into(), |d| d.as_micros().to_string())
}

pub fn triple_ms(v: &[Duration]) -> String {
    let ms = |d: Option<Duration>| {
        d.map_or_else(
            || "-".into(),
            |d| format!("{:.1}", d.as_secs_f64() * 1000.0),
        )
    };
    format!("{}/{}/{}", ms(min(v)), ms(median(v)), ms(max(v)))
}

/// The live benches' 1080p30 2 Mbit/s test file (+ 32 kHz AAC-LC), encoded once (ffmpeg lavfi testsrc2 + a sine, libx264
/// Main, GOP 120 = 4 s, CBR-ish), 240 s so the RTSP server outlasts the run.
pub fn live_bench_media() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| e2e_tests::workspace_root().join("target"), PathBuf::from)
        .join("bench-media");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("live-1080p30-2M.mp4");
    if path.exists() {
        return path;
    }
    println!("encoding {} (once)", path.display());
    let tmp = dir.join("live-1080p30-2M.tmp.mp4");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=32000"])
        .args(["-t", "240", "-c:v", "libx264", "-preset", "superfast"])
        .args(["-profile:v", "main", "-pix_fmt", "yuv420p"])
        .args(["-b:v", "2M", "-maxrate", "2M", "-bufsize", "2M"])
        .args([
            "-g",
            "120",
            "-keyint_min",
            "120",
            "-sc_threshold",
            "0",
            "-bf",
            "0",
        ])
        .args(["-c:a", "aac", "-b:a", "48k", "-ac", "1"])
        .arg(&tmp)
        .status()
        .expect("ffmpeg (Debian ffmpeg with libx264)");
    assert!(status.success(), "encoding the bench media failed");
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// `n` ffmpeg processes, each reading `input` (arguments up to and including `-i URL`),
/// applying `codec` and sending SRTP (AES_CM_128_HMAC_SHA1_80, `inline` = base64 key || salt)
/// to a loopback socket of its own: what an ffmpeg-based plugin runs per viewer. After 3 s of
/// warm-up (the RTSP handshake) each process is sampled while `receive` runs on its socket;
/// then they are killed. Returns each process's usage and each `receive`'s result, in order.
pub async fn ffmpeg_srtp_senders<T, F, Fut>(
    n: usize,
    input: &[&str],
    codec: &[&str],
    inline: &str,
    clk_tck: u64,
    receive: F,
) -> (Vec<Usage>, Vec<T>)
where
    F: Fn(tokio::net::UdpSocket) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut children = Vec::new();
    let mut sockets = Vec::new();
    for _ in 0..n {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("udp");
        let port = socket.local_addr().expect("port").port();
        let child = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
            .args(input)
            .args(codec)
            .args(["-f", "rtp", "-srtp_out_suite", "AES_CM_128_HMAC_SHA1_80"])
            .args(["-srtp_out_params", inline])
            .arg(format!("srtp://127.0.0.1:{port}?pkt_size=1378"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ffmpeg");
        children.push(child);
        sockets.push(socket);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let samplers: Vec<Sampler> = children
        .iter()
        .map(|c| Sampler::start(c.id(), clk_tck))
        .collect();
    let mut set = tokio::task::JoinSet::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let fut = receive(socket);
        set.spawn(async move { (i, fut.await) });
    }
    let mut results = set.join_all().await;
    results.sort_by_key(|(i, _)| *i);
    let usages = samplers.into_iter().map(Sampler::stop).collect();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    (usages, results.into_iter().map(|(_, r)| r).collect())
}
