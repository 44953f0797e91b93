//! End to end: the real `hksv-bridge` binary, driven by our hub simulator (`controller`) over
//! the real wire path — HAP pairing, characteristics, SetupDataStreamTransport, HDS — with the
//! motion trigger coming through the bridge's HTTP API. The recording is checked against every
//! HKSV invariant and decoded by ffmpeg (a peer we did not write). One camera reads a real
//! RTSP server (GStreamer) serving the bundled real-camera clip.
//!
//! Missing peers (ffmpeg, GStreamer, the binary) FAIL with "run scripts/test".
#![allow(clippy::indexing_slicing)] // tests: a panic is a failed check

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use controller::checker;
use controller::hds_client::{HdsClient, Recording, RecordingEnd, StopWhen};
use controller::hksv::{self, HksvIds, SelectedRecording};
use controller::{HapClient, PairingKeys, pair_setup};
use e2e_tests::{
    BridgeProcess, RtspServer, ffmpeg_decode, free_port, require_ffmpeg, workspace_root,
};
use hap_server::pairing::controller::ControllerIdentity;
use hds::Reason;
use serde_json::json;

const CODE: &str = "031-45-154";
const CAMERA: &str = "e2e-cam";
const STEP: Duration = Duration::from_secs(10);

struct Bridge {
    process: BridgeProcess,
    hap: SocketAddr,
    api: String,
    _dir: tempfile::TempDir,
}

impl Bridge {
    fn start(source: &str) -> Self {
        Self::start_with(source, "")
    }

    /// [`start`](Self::start) with more keys for the camera's table.
    fn start_with(source: &str, camera_toml: &str) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let (hap_port, api_port) = (free_port(), free_port());
        let config = dir.path().join("hksv-bridge.toml");
        let state = dir.path().join("state");
        std::fs::write(
            &config,
            format!(
                "bind = \"127.0.0.1\"\nmdns = false\n\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n\n\
                 [[cameras]]\nname = \"{CAMERA}\"\nsource = \"{source}\"\nport = {hap_port}\nsetup_code = \"{CODE}\"\n{camera_toml}"
            ),
        )
        .expect("config");
        let process = BridgeProcess::start(&config, &state, &[hap_port, api_port]);
        Self {
            process,
            hap: SocketAddr::from(([127, 0, 0, 1], hap_port)),
            api: format!("http://127.0.0.1:{api_port}"),
            _dir: dir,
        }
    }

    /// Bridge mode: one HAP bridge (setup code [`CODE`]) carrying a demo camera per name.
    fn start_bridge_mode(cameras: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let (hap_port, api_port) = (free_port(), free_port());
        let config = dir.path().join("hksv-bridge.toml");
        let state = dir.path().join("state");
        let mut text = format!(
            "bind = \"127.0.0.1\"\nmdns = false\nmode = \"bridge\"\n\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n\n\
             [bridge]\nname = \"e2e-bridge\"\nport = {hap_port}\nsetup_code = \"{CODE}\"\n"
        );
        for c in cameras {
            text.push_str(&format!(
                "\n[[cameras]]\nname = \"{c}\"\nsource = \"demo:\"\n"
            ));
        }
        std::fs::write(&config, text).expect("config");
        let process = BridgeProcess::start(&config, &state, &[hap_port, api_port]);
        Self {
            process,
            hap: SocketAddr::from(([127, 0, 0, 1], hap_port)),
            api: format!("http://127.0.0.1:{api_port}"),
            _dir: dir,
        }
    }

    /// SIGTERM (a clean exit, status 0), then start again on the same ports.
    fn restart_gracefully(&mut self) {
        assert_eq!(
            self.process.terminate(),
            Some(0),
            "{}",
            self.process.log_text()
        );
        self.start_again();
    }

    fn restart(&mut self) {
        self.process.stop();
        self.start_again();
    }

    fn start_again(&mut self) {
        let ports = [
            self.hap.port(),
            self.api
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("port"),
        ];
        self.process = BridgeProcess::start(
            &self.process.config.clone(),
            &self.process.state_dir.clone(),
            &ports,
        );
    }

    /// The newest `GET /api/cameras/{CAMERA}/events` entry once `done` holds for it.
    async fn latest_event(
        &self,
        within: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let page = self
                .get_json(&format!("/api/cameras/{CAMERA}/events?limit=1"))
                .await;
            let entry = page[0].clone();
            if !entry.is_null() && done(&entry) {
                return entry;
            }
            assert!(Instant::now() < deadline, "history: {page}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `GET /metrics`, parsed by `tests/peers/metrics_parse.py` (prometheus-client).
    async fn metrics(&self) -> serde_json::Value {
        let resp = reqwest::get(format!("{}/metrics", self.api))
            .await
            .expect("GET /metrics");
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
        let text = resp.text().await.expect("body");
        let mut child = std::process::Command::new(e2e_tests::python_with_aiohomekit())
            .arg(workspace_root().join("tests/peers/metrics_parse.py"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run metrics_parse.py");
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(text.as_bytes()).expect("write metrics");
        }
        let out = child.wait_with_output().expect("metrics_parse.py");
        assert!(
            out.status.success(),
            "the Prometheus parser refused /metrics: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    }

    /// `GET path` on the API, as JSON.
    async fn get_json(&self, path: &str) -> serde_json::Value {
        let body = reqwest::get(format!("{}{path}", self.api))
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .text()
            .await
            .expect("body");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// `GET /api/cameras`.
    async fn cameras(&self) -> serde_json::Value {
        self.get_json("/api/cameras").await
    }

    async fn motion(&self, detected: bool) {
        let r = reqwest::Client::new()
            .post(format!("{}/api/cameras/{CAMERA}/motion", self.api))
            .header("content-type", "application/json")
            .body(json!({"detected": detected}).to_string())
            .timeout(STEP)
            .send()
            .await
            .expect("motion API");
        assert_eq!(
            r.status().as_u16(),
            200,
            "POST /motion: {}",
            self.process.log_text()
        );
    }

    /// Waits (at most `within`) until `GET /api/cameras` reports at least `min_ms` of media in
    /// the camera's prebuffer ring, so a recording starts warm as a hub's does (HKSV §3.1:
    /// the hub asks for a ≥ 4000 ms prebuffer before motion).
    async fn wait_for_prebuffer(&self, min_ms: u64, within: Duration) {
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
            if last.is_some_and(|ms| ms >= min_ms) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "prebuffer_ms stayed below {min_ms} for {within:?} (last {last:?}): {}",
            self.process.log_text()
        );
    }
}

/// One home hub: a verified HAP session and the HKSV characteristic ids.
struct Hub {
    hap: HapClient,
    ids: HksvIds,
    keys: PairingKeys,
}

impl Hub {
    async fn pair(addr: SocketAddr) -> Self {
        let me = ControllerIdentity::generate(&mut rand::rng());
        let keys = pair_setup(addr, &me, CODE, STEP).await.expect("pair-setup");
        Self::verify(addr, keys).await
    }

    async fn verify(addr: SocketAddr, keys: PairingKeys) -> Self {
        let mut hap = HapClient::connect(addr, &keys, STEP)
            .await
            .expect("pair-verify");
        let db = hap.accessories().await.expect("/accessories");
        let ids = HksvIds::find(&db).expect("HKSV characteristics");
        Self { hap, ids, keys }
    }

    /// Reads 205/206/207, writes the derived 209 and switches recording on.
    async fn enable(&mut self) -> SelectedRecording {
        let supported = hksv::read_supported(&mut self.hap, &self.ids)
            .await
            .expect("205/206/207");
        assert!(supported.prebuffer_ms >= 4000, "§3.1: prebuffer ≥ 4000 ms");
        let sel = supported.select().expect("select");
        hksv::write_selected(&mut self.hap, &self.ids, &sel.encode())
            .await
            .expect("write 209");
        let back = hksv::read_selected(&mut self.hap, &self.ids)
            .await
            .expect("read 209");
        assert_eq!(back, sel.encode(), "209 reads back as written");
        hksv::write_flag(&mut self.hap, self.ids.camera_active, true)
            .await
            .expect("HomeKitCameraActive");
        hksv::write_flag(&mut self.hap, self.ids.recording_active, true)
            .await
            .expect("recording Active");
        self.hap
            .subscribe(&[self.ids.motion_detected], true)
            .await
            .expect("subscribe");
        sel
    }

    async fn hds(&mut self) -> HdsClient {
        let (setup, keys) = hksv::setup_data_stream(&mut self.hap, &self.ids)
            .await
            .expect("131");
        assert_eq!(setup.status, 0, "SetupDataStreamTransport status");
        HdsClient::connect(SocketAddr::from(([127, 0, 0, 1], setup.port)), &keys, STEP)
            .await
            .expect("HDS hello")
    }

    async fn expect_motion_event(&mut self) {
        let (aid, iid) = self.ids.motion_detected;
        let got = self
            .hap
            .wait_for_event(aid, iid, STEP, |v| v == &json!(true) || v == &json!(1))
            .await;
        assert!(got.is_some(), "no MotionDetected event after POST /motion");
    }
}

fn stop_after(fragments: usize) -> StopWhen {
    StopWhen {
        max_fragments: fragments,
        max_duration: Duration::from_secs(40),
        stall: Duration::from_secs(12),
    }
}

fn check_and_decode(rec: &Recording, sel: &SelectedRecording, out: &Path, label: &str) {
    let report = checker::check(rec, u64::from(sel.fragment_length_ms));
    println!("{label}:\n{report}");
    assert!(
        report.passed(),
        "{label}: recording invariants failed:\n{report}"
    );
    assert!(
        rec.segments.len() >= 2,
        "{label}: init + at least one fragment"
    );
    let clip = checker::write_clip(rec, out).expect("write clip");
    let (ok, errors) = ffmpeg_decode(&clip);
    assert!(
        ok && errors.trim().is_empty(),
        "{label}: ffmpeg could not decode {}: {errors}",
        clip.display()
    );
    if let Some(d) = rec.open_to_first_chunk {
        println!(
            "{label}: dataSend/open → first chunk {:.1} ms (goal ≤ 20 ms)",
            d.as_secs_f64() * 1000.0
        );
    }
}

async fn record_once(
    bridge: &Bridge,
    hub: &mut Hub,
    sel: &SelectedRecording,
    out: &Path,
    label: &str,
) {
    let mut hds = hub.hds().await;
    bridge.motion(true).await;
    hub.expect_motion_event().await;
    let rec = hds.record(1, stop_after(2)).await;
    bridge.motion(false).await;
    check_and_decode(&rec, sel, out, label);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_camera_records_a_valid_clip() {
    require_ffmpeg();
    let bridge = Bridge::start("demo:");
    let mut hub = Hub::pair(bridge.hap).await;
    let sel = hub.enable().await;
    // A hub records a warm camera: the open→first-chunk figure printed below is the warm one.
    bridge
        .wait_for_prebuffer(4000, Duration::from_secs(15))
        .await;
    let cams = bridge.cameras().await;
    assert_eq!(cams[0]["state"], json!("streaming"), "{cams}");
    assert_eq!(cams[0]["last_error"], json!(null), "{cams}");
    // The camera in detail: the stream, the GOP verdict, the pairing (no code once paired).
    let d: serde_json::Value = bridge.get_json(&format!("/api/cameras/{CAMERA}")).await;
    assert_eq!(d["stream"]["width"], json!(1920), "{d}");
    assert_eq!(d["gop_level"], json!("ok"), "{d}");
    assert_eq!(
        (d["paired"].clone(), d["setup_code"].clone()),
        (json!(true), json!(null)),
        "{d}"
    );
    assert_eq!(d["controllers"].as_array().map(Vec::len), Some(1), "{d}");
    assert_eq!(d["homekit"]["recording_active"], json!(true), "{d}");
    assert!(d["selected"]["resolution"].is_string(), "{d}");
    // The built-in detector's work is visible (the demo camera runs it).
    let det = &d["detector"];
    let n = |k: &str| det[k].as_u64().unwrap_or(u64::MAX / 4);
    // Every unit it was handed was decoded, skipped (before the first IDR) or refused.
    assert!(n("access_units") > 0, "{d}");
    assert_eq!(
        n("decoded") + n("skipped") + n("rejected"),
        n("access_units"),
        "{d}"
    );
    assert!(
        det["queue_drops"].is_u64() && det["busy_ms"].is_u64(),
        "{d}"
    );
    let out = tempfile::tempdir().expect("tmp");
    record_once(&bridge, &mut hub, &sel, out.path(), "demo camera").await;
    // The history has the event: HTTP motion, the hub's stream, how fast and how it ended.
    let entry = bridge
        .latest_event(STEP, |e| e["outcome"] != json!("recording"))
        .await;
    assert_eq!(entry["outcome"], json!("recorded"), "{entry}");
    assert_eq!(entry["trigger"], json!("http"), "{entry}");
    let r = &entry["recording"];
    assert!(r["opened_after_ms"].as_u64().is_some(), "{entry}");
    assert!(r["fragments"].as_u64().is_some_and(|n| n >= 2), "{entry}");
    assert!(r["bytes"].as_u64().is_some_and(|n| n > 100_000), "{entry}");
    assert_eq!(r["completed"], json!(true), "{entry}");
    println!("history entry: {entry}");
    // /metrics parses with the Prometheus client's OpenMetrics parser, and its counters moved.
    let m = bridge.metrics().await;
    let cam = [("camera", CAMERA)];
    assert_eq!(metric(&m, "hksv_recordings_opened_total", &cam), Some(1.0));
    let completed = [("camera", CAMERA), ("outcome", "completed")];
    assert_eq!(
        metric(&m, "hksv_recordings_ended_total", &completed),
        Some(1.0)
    );
    let http = [("camera", CAMERA), ("trigger", "http")];
    assert_eq!(metric(&m, "hksv_motion_events_total", &http), Some(1.0));
    assert!(metric(&m, "hksv_video_frames_total", &cam).is_some_and(|v| v > 50.0));
    assert_eq!(metric(&m, "hksv_source_up", &cam), Some(1.0));
    assert_eq!(
        metric(&m, "hksv_recording_open_latency_seconds_count", &cam),
        Some(1.0)
    );
    assert!(metric(&m, "process_resident_memory_bytes", &[]).is_some_and(|v| v > 1e6));
    // Its log went to a file: plain text, no terminal colour codes.
    let log = bridge.process.log_text();
    assert!(
        !log.is_empty() && !log.contains('\u{1b}'),
        "ANSI codes in a log file"
    );
}

/// A user error is one line and exit status 1, without a backtrace even when asked for one;
/// `--version` names the commit.
#[test]
fn user_errors_are_one_line_and_the_version_names_the_commit() {
    let state = tempfile::tempdir().expect("tmp");
    let out = std::process::Command::new(e2e_tests::bridge_bin())
        .args(["selftest", "No Such Camera", "--state-dir"])
        .arg(state.path())
        .env("RUST_BACKTRACE", "1")
        .env_remove("HKSV_CONFIG")
        .output()
        .expect("run hksv-bridge");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("unknown camera") && !err.contains("backtrace"),
        "{err}"
    );
    let v = std::process::Command::new(e2e_tests::bridge_bin())
        .arg("--version")
        .output()
        .expect("run hksv-bridge --version");
    let v = String::from_utf8_lossy(&v.stdout);
    // "hksv-bridge 0.1.0 (<git describe>)", or "(unknown)" outside a checkout.
    let commit = v
        .trim()
        .rsplit_once('(')
        .map(|(_, c)| c.trim_end_matches(')'));
    assert!(commit.is_some_and(|c| !c.is_empty()), "{v}");
}

/// Booleans from the environment read as a user writes them; a bad one is a one-line error
/// that names the variable, and nothing runs.
#[test]
fn environment_booleans_accept_the_usual_spellings() {
    let state = tempfile::tempdir().expect("tmp");
    let run = |value: &str| {
        std::process::Command::new(e2e_tests::bridge_bin())
            .arg("pair-info")
            .arg("--state-dir")
            .arg(state.path())
            .env("HKSV_NO_MDNS", value)
            .env_remove("HKSV_CONFIG")
            .output()
            .expect("run hksv-bridge")
    };
    for ok in ["1", "0", "true", "false", "yes", "no", "on", "off"] {
        let out = run(ok);
        assert!(
            out.status.success(),
            "HKSV_NO_MDNS={ok}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run("maybe");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HKSV_NO_MDNS") && err.contains("maybe"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_camera_records_a_valid_clip() {
    require_ffmpeg();
    let clip = workspace_root().join("crates/recorder/assets/demo.mp4");
    let rtsp = RtspServer::start(free_port(), &clip);
    let bridge = Bridge::start(&rtsp.url);
    let mut hub = Hub::pair(bridge.hap).await;
    // A new camera (no persisted facts) answers only once it knows the stream: the first read
    // already describes the clip: 1920x1080 at 16 fps, AAC 32 kHz (ffprobe of demo.mp4:
    // avg_frame_rate 193000/12003; its nominal r_frame_rate of 20 is not what it sends).
    let first = hksv::read_supported(&mut hub.hap, &hub.ids)
        .await
        .expect("205/206/207");
    let (w, h, fps) = first.video[0].attributes[0];
    assert_eq!((w, h, fps), (1920, 1080, 16), "{first:?}");
    assert_eq!(first.audio[0].sample_rates, vec![3], "32 kHz: {first:?}");
    let sel = hub.enable().await;
    // Let the camera fill its prebuffer from the RTSP stream.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = hksv::read_supported(&mut hub.hap, &hub.ids)
        .await
        .expect("205/206/207");
    assert_eq!(later, first, "205/206/207 changed after the hub selected");
    let out = tempfile::tempdir().expect("tmp");
    record_once(&bridge, &mut hub, &sel, out.path(), "RTSP camera").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_disconnect_and_restart_without_repairing() {
    require_ffmpeg();
    let mut bridge = Bridge::start("demo:");
    let mut a = Hub::pair(bridge.hap).await;
    let sel = a.enable().await;
    let b_id = ControllerIdentity::generate(&mut rand::rng());
    a.hap
        .add_pairing(&b_id.pairing_id, &b_id.public_key(), true)
        .await
        .expect("add hub B");
    let mut b = Hub::verify(
        bridge.hap,
        PairingKeys {
            identity: b_id,
            accessory: a.keys.accessory.clone(),
        },
    )
    .await;

    // Hub A records; hub B's open during it is refused as busy.
    let mut hds_a = a.hds().await;
    let mut hds_b = b.hds().await;
    bridge.motion(true).await;
    hds_a.send_open(1).await.expect("open A");
    let first = hds_a
        .next_event(STEP)
        .await
        .expect("A: open response or chunk");
    println!("hub A first event: {first:?}");
    let busy = hds_b.record(1, stop_after(1)).await;
    assert!(
        matches!(
            busy.end,
            RecordingEnd::Rejected {
                reason: Reason::BUSY,
                ..
            }
        ),
        "second hub's open while recording: {:?}",
        busy.end
    );

    // Hub A disconnects mid-recording; a new recording (hub B) then works.
    drop(hds_a);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = tempfile::tempdir().expect("tmp");
    let started = Instant::now();
    let rec = hds_b.record(2, stop_after(2)).await;
    assert!(started.elapsed() < Duration::from_secs(45));
    check_and_decode(&rec, &sel, out.path(), "after hub A disconnected");
    bridge.motion(false).await;

    // Restart the bridge; hub A comes back with its saved keys, no re-pairing.
    let keys_file = out.path().join("hub-a.json");
    a.keys.save(&keys_file).expect("save keys");
    drop((a, b, hds_b));
    bridge.restart();
    let mut a = Hub::verify(
        bridge.hap,
        PairingKeys::load(&keys_file).expect("load keys"),
    )
    .await;
    let back = hksv::read_selected(&mut a.hap, &a.ids)
        .await
        .expect("209 after restart");
    assert_eq!(
        back,
        sel.encode(),
        "selected configuration survives a restart"
    );
    a.hap
        .subscribe(&[a.ids.motion_detected], true)
        .await
        .expect("subscribe");
    let out2 = tempfile::tempdir().expect("tmp");
    record_once(&bridge, &mut a, &sel, out2.path(), "after restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_cleanly() {
    let bridge = Bridge::start("demo:");
    let mut hub = Hub::pair(bridge.hap).await;
    let sel = hub.enable().await;

    // dataSend/open while recording is off → not allowed.
    hksv::write_flag(&mut hub.hap, hub.ids.recording_active, false)
        .await
        .expect("Active = 0");
    let mut hds = hub.hds().await;
    let rec = hds.record(1, stop_after(1)).await;
    assert!(
        matches!(
            rec.end,
            RecordingEnd::Rejected {
                reason: Reason::NOT_ALLOWED,
                ..
            }
        ),
        "open with recording off: {:?}",
        rec.end
    );

    // Snapshots while HomeKitCameraActive = 0 are refused whatever the reason (HAP-NodeJS
    // order: -70412; -70401 when the reason is missing and a snapshot switch is off). With the
    // default switches on, a request without a reason is served, so the camera is turned off
    // first.
    hksv::write_flag(&mut hub.hap, hub.ids.camera_active, false)
        .await
        .expect("HomeKitCameraActive = 0");
    for body in [
        json!({"resource-type": "image", "image-width": 640, "image-height": 360}),
        json!({"resource-type": "image", "image-width": 640, "image-height": 360, "reason": 9}),
    ] {
        let r = hub.hap.resource(&body).await.expect("/resource");
        assert_eq!(
            r.status,
            207,
            "{body}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        let status = r.json()["status"].as_i64();
        assert!(
            matches!(status, Some(-70401 | -70412)),
            "{body}: status {status:?}"
        );
    }

    // A malformed selected configuration: error status, the old one is kept.
    let r = hub
        .hap
        .write(
            &[controller::CharWrite::value(
                hub.ids.selected.0,
                hub.ids.selected.1,
                json!("AQL/"),
            )],
            None,
        )
        .await
        .expect("PUT");
    assert_ne!(r[0].status, 0, "malformed 209 accepted");
    let kept = hksv::read_selected(&mut hub.hap, &hub.ids)
        .await
        .expect("209");
    assert_eq!(kept, sel.encode(), "old configuration kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_with_source_down_reports_motion_and_never_hangs() {
    let closed = free_port();
    let bridge = Bridge::start(&format!("rtsp://127.0.0.1:{closed}/nothing"));
    let mut hub = Hub::pair(bridge.hap).await;
    let supported = hksv::read_supported(&mut hub.hap, &hub.ids)
        .await
        .expect("205/206/207 stay readable while the source is down");
    let sel = supported.select().expect("select");
    hksv::write_selected(&mut hub.hap, &hub.ids, &sel.encode())
        .await
        .expect("209");
    hksv::write_flag(&mut hub.hap, hub.ids.recording_active, true)
        .await
        .expect("Active");
    hub.hap
        .subscribe(&[hub.ids.motion_detected], true)
        .await
        .expect("subscribe");
    let mut hds = hub.hds().await;
    bridge.motion(true).await;
    hub.expect_motion_event().await;
    let started = Instant::now();
    let rec = hds
        .record(
            1,
            StopWhen {
                max_fragments: 2,
                max_duration: Duration::from_secs(20),
                stall: Duration::from_secs(8),
            },
        )
        .await;
    println!(
        "source down: {:?} after {:?}, {} segment(s)",
        rec.end,
        started.elapsed(),
        rec.segments.len()
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // The API says why nothing arrives: down since start, with the connection's error.
    let cams = bridge.cameras().await;
    let cam = &cams[0];
    assert_eq!(cam["state"], json!("retrying"), "{cam}");
    let err = cam["last_error"].as_str().unwrap_or_default();
    assert!(err.contains(&format!("127.0.0.1:{closed}")), "{cam}");
    assert!(
        cam["since"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{cam}"
    );
    // One log line for the state change, none per retry, and no "lost" for a never-reached source.
    let log = bridge.process.log_text();
    assert_eq!(log.matches("source unreachable").count(), 1, "{log}");
    assert!(!log.contains("source lost"), "{log}");
    assert!(
        !matches!(
            rec.end,
            RecordingEnd::Stalled | RecordingEnd::ConnectionLost(_)
        ),
        "a recording request must get the prebuffer or a clean close, got {:?}",
        rec.end
    );
}

/// The value of sample `name` with exactly `labels` in parsed `/metrics` samples.
fn metric(samples: &serde_json::Value, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples.as_array()?.iter().find_map(|s| {
        let l = s[1].as_object()?;
        let same = s[0] == json!(name)
            && l.len() == labels.len()
            && labels.iter().all(|(k, v)| l.get(*k) == Some(&json!(v)));
        same.then(|| s[2].as_f64()).flatten()
    })
}

/// Runs `selftest` (our hub simulator) against `camera` with the setup code; asserts that every
/// step and check passed and that ffmpeg decodes the clip.
async fn selftest_passes(bridge: &Bridge, camera: &str) {
    let out = tempfile::tempdir().expect("tmp");
    let report = controller::selftest::run(controller::selftest::SelftestOptions {
        hap_addr: bridge.hap,
        setup_code: Some(CODE.into()),
        api_base: bridge.api.clone(),
        api_token: None,
        // What `hksv-bridge selftest` reads: the run's secret in the state root.
        selftest_secret: std::fs::read_to_string(bridge.process.state_dir.join("selftest.secret"))
            .ok()
            .map(|s| s.trim().to_owned()),
        camera_name: camera.into(),
        out_dir: out.path().to_owned(),
        timeout: STEP,
    })
    .await
    .expect("selftest");
    println!("{camera}:\n{report}");
    assert!(
        report.passed(),
        "{camera}: {report}\nbridge log:\n{}",
        bridge.process.log_text()
    );
    let clip = report.clip.clone().expect("clip written");
    let (ok, errors) = ffmpeg_decode(&clip);
    assert!(ok && errors.trim().is_empty(), "{camera}: {errors}");
    // selftest's 3 s of live view is in the camera's live-view history.
    let live = bridge
        .get_json(&format!(
            "/api/cameras/{}/live-sessions",
            camera.replace(' ', "%20")
        ))
        .await;
    let last = &live[0];
    assert!(
        last["packets"].as_u64().is_some_and(|p| p > 10),
        "{camera}: {live}"
    );
    assert!(
        last["first_frame_ms"].as_u64().is_some(),
        "{camera}: {live}"
    );
    assert_eq!(last["failed_to_start"], json!(false), "{camera}: {live}");
    assert_eq!(last["viewer"], json!("127.0.0.1"), "{camera}: {live}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_against_an_unpaired_demo_camera_passes_and_unpairs() {
    require_ffmpeg();
    let bridge = Bridge::start("demo:");
    selftest_passes(&bridge, CAMERA).await;
    // The camera is unpaired again: a fresh hub can pair with the setup code.
    let _again = Hub::pair(bridge.hap).await;
}

/// Bridge mode over the real wire path: the selftest (our hub simulator) pairs with the bridge,
/// finds each camera's accessory by name, records it over HDS and unpairs; both cameras of the
/// one bridge record valid clips that ffmpeg decodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_mode_records_each_bridged_camera() {
    require_ffmpeg();
    let bridge = Bridge::start_bridge_mode(&["Porch", "Garage"]);
    for camera in ["Garage", "Porch"] {
        selftest_passes(&bridge, camera).await;
    }
    // The API names each camera's AID on the bridge's port.
    let list = bridge.cameras().await;
    let aids: Vec<(String, u64, u64)> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_owned(),
                c["aid"].as_u64().unwrap_or(0),
                c["port"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let port = u64::from(bridge.hap.port());
    assert_eq!(
        aids,
        [
            ("Porch".to_owned(), 2, port),
            ("Garage".to_owned(), 3, port)
        ]
    );
}

/// Motion on a camera no hub records: the history says so, and why, in plain words; it
/// survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn motion_without_a_hub_is_explained_in_the_history() {
    // Only the API's motion: the detector would fire on the demo loop's cut.
    let mut bridge = Bridge::start_with("demo:", "[cameras.motion.detector]\nenabled = false\n");
    bridge.motion(true).await;
    bridge.motion(false).await;
    // Motion turns off after min_on_ms (10 s by default); 10 s of hub grace later the entry is
    // closed with the diagnosis.
    let entry = bridge
        .latest_event(Duration::from_secs(30), |e| {
            e["outcome"] != json!("waiting")
        })
        .await;
    assert!(
        entry["motion_ms"].as_u64().is_some_and(|m| m >= 10_000),
        "{entry}"
    );
    assert_eq!(entry["outcome"], json!("no recording"), "{entry}");
    assert!(
        entry["diagnosis"]
            .as_str()
            .is_some_and(|d| d.contains("not paired")),
        "{entry}"
    );
    assert_eq!(entry["recording"], json!(null), "{entry}");
    // The history is written within a second; a clean stop writes what is pending at once.
    bridge.restart_gracefully();
    let again = bridge.latest_event(STEP, |_| true).await;
    assert_eq!(again, entry, "the history survives a restart");
}

/// The status page in headless Chromium against the real binary: the camera's card, a decoded
/// snapshot, the QR code decoding to the setup URI, a new event without a reload, then a hub
/// pairs and records and the clip appears (and the QR code goes) without a reload; no
/// JavaScript errors; the screenshot is kept in `target/test-artifacts/status-page.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_a_real_browser() {
    // Short debounce: the page's own motion event is over before the hub's recording starts.
    let bridge = Bridge::start_with(
        "demo:",
        "[cameras.motion.detector]\nenabled = false\n[cameras.motion.debounce]\nmin_on_ms = 500\nhold_ms = 500\n",
    );
    let detail: serde_json::Value = bridge.get_json(&format!("/api/cameras/{CAMERA}")).await;
    let uri = detail["setup_uri"]
        .as_str()
        .expect("unpaired: a setup URI")
        .to_owned();
    assert_eq!(detail["setup_code"], json!(CODE), "{detail}");
    let artifacts = workspace_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let shot = artifacts.join("status-page.png");
    let mut child = std::process::Command::new(e2e_tests::python_with_aiohomekit())
        .arg(workspace_root().join("tests/peers/status_page.py"))
        .args([bridge.api.as_str(), CAMERA, uri.as_str()])
        .arg(&shot)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run status_page.py (Debian chromium + playwright: run scripts/test)");
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead as _;
        let mut ready = Some(ready_tx);
        let mut last = String::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line == "READY" {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            } else {
                last = line;
            }
        }
        last
    });
    // The page has shown the unpaired camera; now a hub pairs and records, and the page must
    // show the clip without a reload.
    tokio::time::timeout(Duration::from_secs(60), ready_rx)
        .await
        .expect("status_page.py reached READY")
        .expect("status_page.py reached READY");
    let mut hub = Hub::pair(bridge.hap).await;
    let sel = hub.enable().await;
    bridge
        .wait_for_prebuffer(4000, Duration::from_secs(15))
        .await;
    let deadline = Instant::now() + STEP;
    while bridge.cameras().await[0]["motion"] != json!(false) {
        assert!(Instant::now() < deadline, "motion stayed on");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let clip = tempfile::tempdir().expect("tmp");
    record_once(&bridge, &mut hub, &sel, clip.path(), "status page camera").await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("status_page.py");
    let last = reader.join().expect("reader");
    assert!(
        out.status.success(),
        "status_page.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(&last).expect("JSON");
    println!("status page: {r}");
    assert_eq!(r["js_errors"], json!([]), "{r}");
    assert_eq!(r["qr"], json!([detail["setup_uri"]]), "{r}");
    assert_eq!(r["setup_code_shown"], json!(CODE), "{r}");
    assert!(
        r["snapshot_width"].as_u64().is_some_and(|w| w >= 320),
        "{r}"
    );
    assert!(
        r["events_after"].as_u64() > r["events_before"].as_u64(),
        "{r}"
    );
    assert!(
        r["first_event"]
            .as_str()
            .is_some_and(|e| e.contains("http")),
        "{r}"
    );
    assert!(
        r["recorded_event"]
            .as_str()
            .is_some_and(|e| e.contains("fragments")),
        "{r}"
    );
    assert_eq!(r["qr_hidden_after_pairing"], json!(true), "{r}");
    // The page's snapshots are counted and timed in /metrics.
    let m = bridge.metrics().await;
    let cam = [("camera", CAMERA)];
    assert!(metric(&m, "hksv_snapshot_requests_total", &cam).is_some_and(|n| n >= 1.0));
    assert!(metric(&m, "hksv_snapshot_seconds_total", &cam).is_some_and(|s| s > 0.0));
}

/// MQTT out against a real mosquitto broker, read by mosquitto_sub: Home Assistant discovery,
/// availability, motion and recording state, and the recording's start and end events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_out_publishes_discovery_state_and_recording_events() {
    require_ffmpeg();
    let port = free_port();
    let mosquitto = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("mosquitto not found: run scripts/test");
    // No config file: mosquitto 2 then listens on loopback only, anonymous allowed.
    let mut broker = std::process::Command::new(mosquitto)
        .args(["-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start mosquitto");
    let deadline = Instant::now() + STEP;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut sub = std::process::Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-v", "-q", "1"])
        .args(["-t", "hksv-bridge/#", "-t", "homeassistant/#"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start mosquitto_sub (mosquitto-clients: run scripts/test)");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let lines = lines.clone();
        let out = sub.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().expect("lines").push(l);
            }
        });
    }
    let bridge = Bridge::start_with(
        "demo:",
        &format!(
            "[cameras.motion.detector]\nenabled = false\n\n[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\n"
        ),
    );
    let mut hub = Hub::pair(bridge.hap).await;
    let sel = hub.enable().await;
    bridge
        .wait_for_prebuffer(4000, Duration::from_secs(15))
        .await;
    let out = tempfile::tempdir().expect("tmp");
    record_once(&bridge, &mut hub, &sel, out.path(), "MQTT camera").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let done = || {
        let l = lines.lock().expect("lines");
        l.iter().any(|l| {
            l.starts_with("hksv-bridge/e2e-cam/event ") && l.contains("\"outcome\":\"recorded\"")
        }) && l.iter().any(|l| l == "hksv-bridge/e2e-cam/recording OFF")
    };
    while !done() {
        assert!(
            Instant::now() < deadline,
            "MQTT: {:#?}",
            lines.lock().expect("lines")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all = lines.lock().expect("lines").clone();
    let _ = sub.kill();
    let _ = broker.kill();
    let _ = (sub.wait(), broker.wait());
    for expected in [
        "hksv-bridge/status online",
        "hksv-bridge/e2e-cam/source streaming",
        "hksv-bridge/e2e-cam/motion ON",
        "hksv-bridge/e2e-cam/motion OFF",
        "hksv-bridge/e2e-cam/recording ON",
    ] {
        assert!(
            all.iter().any(|l| l == expected),
            "{expected} missing: {all:#?}"
        );
    }
    assert!(
        all.iter()
            .any(|l| l.starts_with("hksv-bridge/e2e-cam/event ")
                && l.contains("\"outcome\":\"recording\"")),
        "no start event: {all:#?}"
    );
    // Home Assistant discovery: the fields its MQTT binary_sensor schema needs.
    let config_line = all
        .iter()
        .find(|l| l.starts_with("homeassistant/binary_sensor/hksv_e2e-cam_motion/config "))
        .unwrap_or_else(|| panic!("no discovery: {all:#?}"));
    let config: serde_json::Value = serde_json::from_str(
        config_line
            .split_once(' ')
            .map(|(_, j)| j)
            .expect("payload"),
    )
    .expect("discovery JSON");
    assert_eq!(config["state_topic"], json!("hksv-bridge/e2e-cam/motion"));
    assert_eq!(config["device_class"], json!("motion"));
    assert_eq!(config["availability_topic"], json!("hksv-bridge/status"));
    assert_eq!(
        (config["payload_on"].clone(), config["payload_off"].clone()),
        (json!("ON"), json!("OFF"))
    );
    assert!(
        config["unique_id"].is_string() && config["device"]["identifiers"][0].is_string(),
        "{config}"
    );
    assert!(
        all.iter()
            .any(|l| l.starts_with("homeassistant/binary_sensor/hksv_e2e-cam_recording/config "))
    );
}
