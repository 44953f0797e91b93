//! Measures the running RELEASE `hksv-bridge` with one demo camera (issue #7): idle CPU and
//! RSS, and on a warm camera (prebuffer full, as a hub records it) the time from
//! `dataSend/open` to the first chunk (goal ≤ 20 ms) and to the first complete fragment, plus
//! CPU and peak RSS while recording. Runs once with the built-in motion detector disabled and
//! once enabled. Prints figures; asserts nothing about speed.
//!
//! `cargo bench -p e2e-tests --bench bridge` builds the release binary itself
//! (`cargo build --release -p bridge --bin hksv-bridge`) unless `HKSV_BRIDGE_BIN_RELEASE`
//! names one. Linux only: it reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
#![allow(clippy::indexing_slicing)] // bench: a panic is a failed run

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use controller::hds_client::HdsClient;
use controller::hksv::{self, HksvIds};
use controller::{HapClient, pair_setup};
use e2e_tests::{free_port, workspace_root};
use hap_server::pairing::controller::ControllerIdentity;
use hds::Reason;
use hds::SegmentKind;
use hds::controller::ControllerEvent;
use serde_json::json;

const CODE: &str = "031-45-154";
const CAMERA: &str = "bench-cam";
const STEP: Duration = Duration::from_secs(10);
/// Idle sampling window.
const IDLE: Duration = Duration::from_secs(30);
/// Recordings per run.
const RECORDINGS: usize = 10;
/// Fragments received per recording before the hub closes.
const FRAGMENTS_PER_RECORDING: usize = 2;
/// Prebuffer the idle phase waits for (the ring keeps ≥ 8 s).
const WARM_PREBUFFER_MS: u64 = 8000;

fn main() {
    let bin = release_binary();
    println!("hksv-bridge release binary: {}", bin.display());
    let clk_tck = clock_ticks_per_s();
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut rows = Vec::new();
    for detector in [false, true] {
        let label = if detector {
            "detector on"
        } else {
            "detector off"
        };
        println!("\n== demo camera, {label} ==");
        let row = rt.block_on(run_once(&bin, detector, clk_tck));
        row.print(label);
        rows.push((label, row));
    }
    println!(
        "\n== summary (release build, 1 demo camera, {RECORDINGS} warm recordings × {FRAGMENTS_PER_RECORDING} fragments; total {:.0} s) ==",
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<13} {:>9} {:>9} {:>9} {:>10} {:>10} {:>21} {:>21}",
        "run",
        "idle CPU",
        "idle RSS",
        "rec CPU",
        "rec peak",
        "VmHWM",
        "open→chunk ms",
        "open→fragment ms"
    );
    println!(
        "{:<13} {:>9} {:>9} {:>9} {:>10} {:>10} {:>21} {:>21}",
        "", "% core", "MiB", "% core", "RSS MiB", "MiB", "min/med/max", "min/med/max"
    );
    for (label, r) in &rows {
        println!(
            "{:<13} {:>9.2} {:>9.1} {:>9.2} {:>10.1} {:>10.1} {:>21} {:>21}",
            label,
            r.idle.cpu_percent,
            kib_to_mib(r.idle.rss_end_kib),
            r.recording.cpu_percent,
            kib_to_mib(r.recording.rss_peak_kib),
            kib_to_mib(r.hwm_kib),
            triple_ms(&r.open_to_first_chunk),
            triple_ms(&r.open_to_first_fragment),
        );
    }
}

/// Figures of one bridge run.
struct RunFigures {
    idle: Usage,
    recording: Usage,
    hwm_kib: u64,
    open_to_first_chunk: Vec<Duration>,
    open_to_first_fragment: Vec<Duration>,
    prebuffer_at_idle_ms: u64,
}

impl RunFigures {
    fn print(&self, label: &str) {
        println!(
            "{label}: idle {:.0} s (prebuffer {} ms): CPU {:.2} % of one core, RSS {:.1} MiB (peak {:.1} MiB)",
            self.idle.window.as_secs_f64(),
            self.prebuffer_at_idle_ms,
            self.idle.cpu_percent,
            kib_to_mib(self.idle.rss_end_kib),
            kib_to_mib(self.idle.rss_peak_kib),
        );
        println!(
            "{label}: recording {:.0} s: CPU {:.2} % of one core, peak RSS {:.1} MiB, VmHWM {:.1} MiB",
            self.recording.window.as_secs_f64(),
            self.recording.cpu_percent,
            kib_to_mib(self.recording.rss_peak_kib),
            kib_to_mib(self.hwm_kib),
        );
        println!(
            "{label}: open→first chunk (µs): min {} / median {} / max {} (n = {})",
            us(min(&self.open_to_first_chunk)),
            us(median(&self.open_to_first_chunk)),
            us(max(&self.open_to_first_chunk)),
            self.open_to_first_chunk.len()
        );
        println!(
            "{label}: open→first complete fragment (µs): min {} / median {} / max {} (n = {})",
            us(min(&self.open_to_first_fragment)),
            us(median(&self.open_to_first_fragment)),
            us(max(&self.open_to_first_fragment)),
            self.open_to_first_fragment.len()
        );
    }
}

/// One bridge process with a demo camera: config file, fixed free ports, `--no-mdns`.
async fn run_once(bin: &Path, detector: bool, clk_tck: u64) -> RunFigures {
    let dir = tempfile::tempdir().expect("tmp");
    let (hap_port, api_port) = (free_port(), free_port());
    let config = dir.path().join("hksv-bridge.toml");
    std::fs::write(
        &config,
        format!(
            "bind = \"127.0.0.1\"\nmdns = false\n\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n\n\
             [[cameras]]\nname = \"{CAMERA}\"\nsource = \"demo:\"\nport = {hap_port}\nsetup_code = \"{CODE}\"\n\n\
             [cameras.motion.detector]\nenabled = {detector}\n"
        ),
    )
    .expect("config");
    let bridge = Bridge::start(bin, &config, &dir.path().join("state"), hap_port, api_port);
    let hap_addr = SocketAddr::from(([127, 0, 0, 1], hap_port));

    // Pair and enable recording while the prebuffer fills (a hub stays connected when idle).
    let me = ControllerIdentity::generate(&mut rand::rng());
    let keys = pair_setup(hap_addr, &me, CODE, STEP)
        .await
        .expect("pair-setup");
    let mut hap = HapClient::connect(hap_addr, &keys, STEP)
        .await
        .expect("pair-verify");
    let db = hap.accessories().await.expect("/accessories");
    let ids = HksvIds::find(&db).expect("HKSV characteristics");
    enable_recording(&mut hap, &ids).await;

    let prebuffer_at_idle_ms = bridge
        .wait_for_prebuffer(WARM_PREBUFFER_MS, Duration::from_secs(30))
        .await;
    let idle = sample_usage(bridge.pid, clk_tck, IDLE);

    let sampler = Sampler::start(bridge.pid, clk_tck);
    let mut open_to_first_chunk = Vec::new();
    let mut open_to_first_fragment = Vec::new();
    for i in 0..RECORDINGS {
        // Each recording starts warm: the ring refills between recordings.
        bridge.wait_for_prebuffer(4000, STEP).await;
        // A fresh data stream per recording: chunks still in flight after our close would
        // belong to a stream the hub side no longer knows (the hub simulator rejects those).
        let mut hds = data_stream(&mut hap, &ids).await;
        bridge.motion(true).await;
        let stream_id = i64::try_from(i).unwrap_or(0) + 1;
        let t = record(&mut hds, stream_id, &bridge).await;
        open_to_first_chunk.push(t.first_chunk);
        open_to_first_fragment.push(t.first_fragment);
        bridge.motion(false).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let recording = sampler.stop();
    let hwm_kib = read_status_kib(bridge.pid, "VmHWM:").unwrap_or(0);
    drop(bridge);
    RunFigures {
        idle,
        recording,
        hwm_kib,
        open_to_first_chunk,
        open_to_first_fragment,
        prebuffer_at_idle_ms,
    }
}

/// SetupDataStreamTransport, then an HDS connection with `control/hello` done.
async fn data_stream(hap: &mut HapClient, ids: &HksvIds) -> HdsClient {
    let (setup, hds_keys) = hksv::setup_data_stream(hap, ids)
        .await
        .expect("SetupDataStreamTransport");
    assert_eq!(setup.status, 0, "SetupDataStreamTransport status");
    HdsClient::connect(
        SocketAddr::from(([127, 0, 0, 1], setup.port)),
        &hds_keys,
        STEP,
    )
    .await
    .expect("HDS hello")
}

/// Reads 205/206/207, writes the derived 209, HomeKitCameraActive = 1, recording Active = 1.
async fn enable_recording(hap: &mut HapClient, ids: &HksvIds) {
    let supported = hksv::read_supported(hap, ids).await.expect("205/206/207");
    let sel = supported.select().expect("select a configuration");
    hksv::write_selected(hap, ids, &sel.encode())
        .await
        .expect("write 209");
    hksv::write_flag(hap, ids.camera_active, true)
        .await
        .expect("HomeKitCameraActive");
    hksv::write_flag(hap, ids.recording_active, true)
        .await
        .expect("recording Active");
}

struct Timings {
    first_chunk: Duration,
    first_fragment: Duration,
}

/// `dataSend/open`, timed to the first chunk and the first complete media fragment; receives
/// [`FRAGMENTS_PER_RECORDING`] fragments, then closes with reason 0 (normal).
async fn record(hds: &mut HdsClient, stream_id: i64, bridge: &Bridge) -> Timings {
    let opened_at = Instant::now();
    hds.send_open(stream_id).await.expect("dataSend/open");
    let (mut first_chunk, mut first_fragment) = (None, None);
    let mut fragments = 0;
    while fragments < FRAGMENTS_PER_RECORDING {
        let ev = hds
            .next_event(STEP)
            .await
            .unwrap_or_else(|e| panic!("stream {stream_id}: {e}: {}", bridge.log_text()));
        match ev {
            ControllerEvent::Chunk { meta, .. } if meta.stream_id == stream_id => {
                first_chunk.get_or_insert_with(|| opened_at.elapsed());
            }
            ControllerEvent::Segment {
                stream_id: id,
                kind: SegmentKind::MediaFragment,
                ..
            } if id == stream_id => {
                first_fragment.get_or_insert_with(|| opened_at.elapsed());
                fragments += 1;
            }
            ControllerEvent::OpenRejected {
                stream_id: id,
                reason,
                ..
            } if id == stream_id => panic!("stream {stream_id}: open refused: {reason:?}"),
            ControllerEvent::StreamClosed {
                stream_id: id,
                reason,
            } if id == stream_id => {
                panic!("stream {stream_id}: closed by the accessory early: {reason:?}")
            }
            ControllerEvent::ConnectionClosed { why } => panic!("HDS connection closed: {why}"),
            _ => {}
        }
    }
    hds.close_stream(stream_id, Reason::NORMAL)
        .await
        .expect("dataSend/close");
    Timings {
        first_chunk: first_chunk.expect("a chunk came before the fragment"),
        first_fragment: first_fragment.expect("a fragment"),
    }
}

/// The release bridge process; killed on drop.
struct Bridge {
    child: Child,
    pid: u32,
    api: String,
    log: PathBuf,
}

impl Bridge {
    fn start(bin: &Path, config: &Path, state: &Path, hap_port: u16, api_port: u16) -> Self {
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
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in [hap_port, api_port] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Ok(Some(status)) = me.child.try_wait() {
                    panic!("hksv-bridge exited with {status}: {}", me.log_text());
                }
                assert!(
                    Instant::now() < deadline,
                    "hksv-bridge did not open port {port} within 20 s: {}",
                    me.log_text()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        me
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn motion(&self, detected: bool) {
        let r = reqwest::Client::new()
            .post(format!("{}/api/cameras/{CAMERA}/motion", self.api))
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
    async fn wait_for_prebuffer(&self, min_ms: u64, within: Duration) -> u64 {
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
                .and_then(|cams| cams.iter().find(|c| c["name"] == CAMERA))
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
struct Usage {
    window: Duration,
    /// utime + stime over the window, as % of one core.
    cpu_percent: f64,
    rss_end_kib: u64,
    rss_peak_kib: u64,
}

/// Samples VmRSS every 100 ms on a thread; CPU from `/proc/<pid>/stat` at start and stop.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
    pid: u32,
    clk_tck: u64,
    started: Instant,
    ticks_at_start: u64,
}

impl Sampler {
    fn start(pid: u32, clk_tck: u64) -> Self {
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

    fn stop(self) -> Usage {
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
fn sample_usage(pid: u32, clk_tck: u64, window: Duration) -> Usage {
    let s = Sampler::start(pid, clk_tck);
    std::thread::sleep(window);
    s.stop()
}

fn cpu_percent(ticks: u64, clk_tck: u64, window: Duration) -> f64 {
    let secs = window.as_secs_f64();
    if secs == 0.0 || clk_tck == 0 {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss)] // tick counts are far below 2^52
    let cpu_s = ticks as f64 / clk_tck as f64;
    cpu_s / secs * 100.0
}

/// utime + stime of `pid` in clock ticks (proc(5): fields 14 and 15 of `/proc/<pid>/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces: count fields after its closing ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> u64 { fields.get(n - 3).and_then(|v| v.parse().ok()).unwrap_or(0) };
    field(14) + field(15)
}

/// A `kB` line of `/proc/<pid>/status` (e.g. `VmRSS:`), in KiB.
fn read_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// `getconf CLK_TCK` (USER_HZ); 100 on every common Linux build when getconf is missing.
fn clock_ticks_per_s() -> u64 {
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
fn release_binary() -> PathBuf {
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

fn kib_to_mib(kib: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)] // KiB counts are far below 2^52
    let k = kib as f64;
    k / 1024.0
}

fn sorted(v: &[Duration]) -> Vec<Duration> {
    let mut s = v.to_vec();
    s.sort();
    s
}

fn min(v: &[Duration]) -> Option<Duration> {
    v.iter().min().copied()
}

fn max(v: &[Duration]) -> Option<Duration> {
    v.iter().max().copied()
}

fn median(v: &[Duration]) -> Option<Duration> {
    let s = sorted(v);
    s.get(s.len() / 2).copied()
}

fn us(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".into(), |d| d.as_micros().to_string())
}

fn triple_ms(v: &[Duration]) -> String {
    let ms = |d: Option<Duration>| {
        d.map_or_else(
            || "-".into(),
            |d| format!("{:.1}", d.as_secs_f64() * 1000.0),
        )
    };
    format!("{}/{}/{}", ms(min(v)), ms(median(v)), ms(max(v)))
}
