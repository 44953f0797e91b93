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

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    Bridge, STEP, Sampler, Usage, clock_ticks_per_s, kib_to_mib, max, median, min, read_status_kib,
    release_binary, sample_usage, triple_ms, us,
};

use controller::HapClient;
use controller::hds_client::HdsClient;
use controller::hksv::{self, HksvIds};
use hds::Reason;
use hds::SegmentKind;
use hds::controller::ControllerEvent;

const CAMERA: &str = "bench-cam";
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
    // Paired; the hub stays connected when idle, as a real one does.
    let common::Paired {
        bridge,
        mut hap,
        dir: _dir,
        ..
    } = common::start_paired(bin, CAMERA, "demo:", detector, "", "").await;
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
