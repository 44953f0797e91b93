//! A hostile device on the LAN against the RELEASE `hksv-bridge` (issue #14): one demo camera
//! (detector off), a paired hub that stays connected, then a flood of unauthenticated
//! connections. Prints figures; asserts only that the hub still records.
//!
//! 1. Flood: 2,000 HAP and 2,000 HDS connections at once from 2,000 loopback addresses (so
//!    per-host shares do not apply), each HDS one announcing a 1 MiB
//!    frame and sending 64 KiB of junk, held open while the hub records a clip; RSS before,
//!    peak during, and 10 s after they close (goal: ≤ 64 MiB above idle, back within 10 %).
//! 2. File descriptors exhausted: the bridge's limit lowered to 40 (`prlimit`; below what 32
//!    HAP connections need), then 50 connections every 100 ms for 10 s; the bridge's CPU meanwhile (goal < 5 % of a core).
//!
//! `cargo bench -p e2e-tests --bench flood`; builds the release binary unless
//! `HKSV_BRIDGE_BIN_RELEASE` names one. Linux only (`/proc`, `prlimit`).
#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // bench: a panic is a failed run

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Bridge, Sampler, clock_ticks_per_s, kib_to_mib, read_status_kib, release_binary};
use controller::HapClient;
use controller::hds_client::HdsClient;
use controller::hksv::{self, HksvIds};
use hds::SegmentKind;
use hds::controller::ControllerEvent;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

const CAMERA: &str = "flood-cam";
const STEP: Duration = Duration::from_secs(10);
const FLOOD: usize = 2000;

fn main() {
    // Room for 4,000 sockets of our own.
    let me = std::process::id().to_string();
    let _ = Command::new("prlimit")
        .args(["--pid", &me, "--nofile=65536:65536"])
        .status();
    let bin = release_binary();
    println!("hksv-bridge release binary: {}", bin.display());
    let clk_tck = clock_ticks_per_s();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&bin, clk_tck));
}

struct Rig {
    bridge: Bridge,
    hap_addr: SocketAddr,
    hap: HapClient,
    ids: HksvIds,
    _dir: tempfile::TempDir,
}

async fn rig(bin: &Path) -> Rig {
    let common::Paired {
        bridge,
        hap_addr,
        mut hap,
        dir,
    } = common::start_paired(bin, CAMERA, "demo:", false, "", "").await;
    let ids = HksvIds::find(&hap.accessories().await.unwrap()).unwrap();
    let sel = hksv::read_supported(&mut hap, &ids)
        .await
        .unwrap()
        .select()
        .unwrap();
    hksv::write_selected(&mut hap, &ids, &sel.encode())
        .await
        .unwrap();
    hksv::write_flag(&mut hap, ids.camera_active, true)
        .await
        .unwrap();
    hksv::write_flag(&mut hap, ids.recording_active, true)
        .await
        .unwrap();
    Rig {
        bridge,
        hap_addr,
        hap,
        ids,
        _dir: dir,
    }
}

/// A prepared data stream: its HDS port and a connected, hello'd client.
async fn data_stream(r: &mut Rig) -> (u16, HdsClient) {
    let (setup, keys) = hksv::setup_data_stream(&mut r.hap, &r.ids).await.unwrap();
    let hds = HdsClient::connect(SocketAddr::from(([127, 0, 0, 1], setup.port)), &keys, STEP)
        .await
        .expect("HDS hello");
    (setup.port, hds)
}

/// Records one fragment; `Ok(ms to the first fragment)`.
async fn record(hds: &mut HdsClient, r: &Rig, stream_id: i64) -> Result<Duration, String> {
    r.bridge.motion(true).await;
    let t = Instant::now();
    hds.send_open(stream_id).await.map_err(|e| e.to_string())?;
    let out = loop {
        match hds.next_event(STEP * 2).await {
            Ok(ControllerEvent::Segment {
                kind: SegmentKind::MediaFragment,
                ..
            }) => break Ok(t.elapsed()),
            Ok(ControllerEvent::ConnectionClosed { why }) => break Err(why.to_string()),
            Ok(_) => {}
            Err(e) => break Err(e.to_string()),
        }
    };
    let _ = hds.close_stream(stream_id, hds::Reason::NORMAL).await;
    r.bridge.motion(false).await;
    out
}

/// Opens `n` connections to `addr`, each from its own loopback address (127.1.x.y: many
/// hosts, so per-host shares do not help the bridge) and sending `junk`; keeps what the
/// kernel let us open.
async fn flood(addr: SocketAddr, n: usize, junk: &'static [u8]) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let from = SocketAddr::from(([127, 1, (i / 250) as u8, (i % 250 + 1) as u8], 0));
        let connect = async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(from)?;
            socket.connect(addr).await
        };
        // A full accept backlog makes connect wait for SYN retries: bound it.
        match tokio::time::timeout(Duration::from_millis(200), connect).await {
            Ok(Ok(mut s)) => {
                let _ = s.write_all(junk).await;
                held.push(s);
            }
            _ => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    held
}

fn rss_mib(pid: u32) -> f64 {
    kib_to_mib(read_status_kib(pid, "VmRSS:").unwrap_or(0))
}

async fn run(bin: &Path, clk_tck: u64) {
    // ---- 1. 2,000 + 2,000 unauthenticated connections while the hub records ----
    let mut r = rig(bin).await;
    let pid = r.bridge.pid;
    let (hds_port, mut hds) = data_stream(&mut r).await;
    let before = record(&mut hds, &r, 1).await;
    // Idle after one recording, so its own buffers are in the baseline.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_mib(pid);
    println!("recording before the flood: {before:?}; then idle RSS {idle:.1} MiB");

    // An HDS frame header announcing 1 MiB − 1, then 64 KiB of junk.
    static HDS_JUNK: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
        let mut v = vec![0x01, 0x0f, 0xff, 0xff];
        v.resize(4 + 64 * 1024, 0xAA);
        v
    });
    let sampler = Sampler::start(pid, clk_tck);
    let t = Instant::now();
    let hds_addr = SocketAddr::from(([127, 0, 0, 1], hds_port));
    let (hap_flood, hds_flood) = tokio::join!(
        flood(r.hap_addr, FLOOD, b"POST /pair-setup HTTP/1.1\r\n"),
        flood(hds_addr, FLOOD, HDS_JUNK.as_slice())
    );
    println!(
        "flood: {} HAP and {} HDS connections opened in {:.1} s",
        hap_flood.len(),
        hds_flood.len(),
        t.elapsed().as_secs_f64()
    );
    // The paired hub records during the flood, on a fresh data stream.
    let (_, mut hds2) = data_stream(&mut r).await;
    let during = record(&mut hds2, &r, 1).await;
    let usage = sampler.stop();
    let peak_over = kib_to_mib(usage.rss_peak_kib) - idle;
    println!(
        "during the flood: recording {during:?}; bridge CPU {:.1} % of a core over {:.1} s, peak RSS {:.1} MiB (+{:.1} MiB over idle)",
        usage.cpu_percent,
        usage.window.as_secs_f64(),
        kib_to_mib(usage.rss_peak_kib),
        kib_to_mib(usage.rss_peak_kib) - idle
    );
    drop(hap_flood);
    drop(hds_flood);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = rss_mib(pid);
    println!(
        "10 s after the flood closed: RSS {after:.1} MiB ({:+.1} % of idle)",
        (after - idle) / idle * 100.0
    );
    assert!(
        during.is_ok(),
        "the paired hub could not record during the flood"
    );
    drop(hds);
    drop(hds2);
    drop(r);

    // ---- 2. file descriptors exhausted ----
    let r = rig(bin).await;
    let pid = r.bridge.pid;
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--nofile=40:40"])
        .status()
        .unwrap();
    assert!(status.success(), "prlimit on the bridge");
    let sampler = Sampler::start(pid, clk_tck);
    let end = Instant::now() + Duration::from_secs(10);
    let mut held = Vec::new();
    while Instant::now() < end {
        held.extend(flood(r.hap_addr, 50, b"").await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let usage = sampler.stop();
    let log = r.bridge.log_text();
    let accept_warnings = log.matches("accept failed").count();
    println!(
        "fd limit 40, {} connections held over {:.0} s: bridge CPU {:.2} % of a core; {} 'accept failed' warnings logged",
        held.len(),
        usage.window.as_secs_f64(),
        usage.cpu_percent,
        accept_warnings
    );
    drop(held);
    println!(
        "\n== summary (release build, 1 demo camera, loopback) ==\n\
         {FLOOD} HAP + {FLOOD} HDS unauthenticated connections: peak RSS +{:.1} MiB over idle {:.1} MiB, 10 s after: {:+.1} %; hub recorded during the flood: {}\n\
         fd exhaustion (limit 40): {:.2} % of a core, {} warnings",
        peak_over,
        idle,
        (after - idle) / idle * 100.0,
        during.is_ok(),
        usage.cpu_percent,
        accept_warnings
    );
}
