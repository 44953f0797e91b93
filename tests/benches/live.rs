//! Live view on the RELEASE `hksv-bridge` with a real RTSP source (issue #12): GStreamer's
//! RTSP server (`crates/source/tests/peers/rtsp_server.py`) serves a 1080p30 2 Mbit/s H.264
//! (+ AAC) file with a 4 s GOP; the bridge records it as usual (detector off) and viewers play
//! the iPhone (118, 117 START/END, SRTP, receiver reports every 0.5 s).
//!
//! Figures, printed (nothing about speed is asserted):
//! - 117 START → first decodable picture at the viewer (openh264), median of 20, for
//!   `catch_up_speed` 4 (default) and 0 (burst);
//! - delay behind real time 1 s, 2 s and 10 s after START: a viewer's arrival time of a frame
//!   minus that of the same frame (same slice bytes) at a reference client reading the RTSP
//!   source directly (the `source` crate's RTSP client, retina, as the bridge ingests), signed;
//! - how many starts lost packets at the viewer (a burst can overflow a socket buffer);
//! - CPU and RSS per viewer of the bridge (4 viewers vs none), against 4
//!   `ffmpeg -i rtsp://… -c:v copy -f rtp -srtp_out_suite AES_CM_128_HMAC_SHA1_80 srtp://…`
//!   processes (what an ffmpeg-based plugin runs per viewer) from the same RTSP server in the
//!   same run, as a ratio.
//!
//! `cargo bench -p e2e-tests --bench live`; builds the release binary unless
//! `HKSV_BRIDGE_BIN_RELEASE` names one; the media file is encoded once into
//! `target/bench-media/`. Needs ffmpeg with libx264 and Debian's python3-gi + gst-rtsp-server
//! (what `.ci/run` installs). Linux only (`/proc`).
#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // bench: a panic is a failed run

mod common;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Sampler, Usage, clock_ticks_per_s, kib_to_mib, release_binary};
use controller::live::{LiveIds, Viewer};
use controller::{HapClient, hksv};
use e2e_tests::{free_port, workspace_root};
use hap_tlv::rtp::{SessionCommand, SetupEndpointsResponse, SetupEndpointsStatus};
use tokio::net::UdpSocket;

const CAMERA: &str = "live-bench";
const STEP: Duration = Duration::from_secs(10);
/// Start-latency samples per setting.
const STARTS: usize = 20;
/// Concurrent viewers in the CPU phase (= `live_streams`).
const VIEWERS: usize = 4;
/// CPU sampling window.
const WINDOW: Duration = Duration::from_secs(20);
const KEY: [u8; 16] = [0x5a; 16];
const SALT: [u8; 14] = [0xa5; 14];

fn main() {
    let bin = release_binary();
    let media = common::live_bench_media();
    println!("hksv-bridge release binary: {}", bin.display());
    println!("source: {} over RTSP (GStreamer)", media.display());
    let clk_tck = clock_ticks_per_s();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for speed in [4, 0] {
        println!("\n== catch_up_speed = {speed} ==");
        // A fresh server per run: the file plays from its start for the reference client
        // first (a file that ended and restarted would repeat frames).
        let rtsp = RtspServer::start(&media);
        let reference = rt.block_on(Reference::start(&rtsp.url));
        rows.push((
            speed,
            rt.block_on(run(&bin, &rtsp.url, speed, &reference, clk_tck)),
        ));
    }
    println!("\n== ffmpeg, one process per viewer, {VIEWERS} viewers ==");
    let rtsp = RtspServer::start(&media);
    let ffmpeg = rt.block_on(ffmpeg_viewers(&rtsp.url, clk_tck));
    drop(rtsp);

    println!("\n== summary (release build, RTSP 1080p30 2 Mbit/s, 4 s GOP, loopback) ==");
    for (speed, r) in &rows {
        println!(
            "catch_up_speed {speed}: START→first picture ms min/med/max {} ({} of {STARTS} starts lost packets); delay behind a direct RTSP client, ms median/p90/max, at 1 s {}, 2 s {}, 10 s {}",
            common::triple_ms(&r.first_picture),
            r.lossy_starts,
            r.delays[0],
            r.delays[1],
            r.delays[2]
        );
        if let Some(c) = &r.cpu {
            println!(
                "catch_up_speed {speed}: bridge {:.2} % of a core with no viewer, {:.2} % with {VIEWERS}: {:.3} % per viewer; RSS {:.1} → {:.1} MiB: {:.2} MiB per viewer",
                c.idle.cpu_percent,
                c.busy.cpu_percent,
                c.per_viewer_cpu(),
                kib_to_mib(c.idle.rss_end_kib),
                kib_to_mib(c.busy.rss_end_kib),
                c.per_viewer_rss_mib()
            );
        }
    }
    let bridge_per_viewer = rows[0].1.cpu.as_ref().map(CpuFigures::per_viewer_cpu);
    println!(
        "ffmpeg: {:.2} % of a core and {:.1} MiB RSS per viewer (mean of {VIEWERS} processes; viewers decoded {} pictures, refused {} packets)",
        ffmpeg.cpu_percent, ffmpeg.rss_mib, ffmpeg.pictures, ffmpeg.rejected
    );
    if let Some(b) = bridge_per_viewer {
        println!(
            "ratio bridge/ffmpeg CPU per viewer: {:.3}",
            b / ffmpeg.cpu_percent
        );
    }
}

/// GStreamer's RTSP server on loopback; killed on drop.
struct RtspServer {
    child: Child,
    url: String,
}

impl RtspServer {
    fn start(media: &Path) -> Self {
        let port = free_port();
        let script = workspace_root().join("crates/source/tests/peers/rtsp_server.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(port.to_string())
            .arg(media)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 with gst-rtsp-server (Debian python3-gi)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("rtsp_server.py: {line:?}"))
            .to_owned();
        Self { child, url }
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Slice bytes identify a frame across both paths (both pass NAL units through untouched).
/// `None` when the access unit has no slice.
fn frame_key(data: &[u8], framing: recorder::H264Framing) -> Option<u64> {
    let mut h = DefaultHasher::new();
    let mut any = false;
    for nal in recorder::h264::nal_units(data, framing).flatten() {
        if matches!(nal.first().map(|b| b & 0x1f), Some(1 | 5)) {
            nal.hash(&mut h);
            any = true;
        }
    }
    any.then(|| h.finish())
}

/// Signed milliseconds `a - b`.
fn signed_ms(a: Instant, b: Instant) -> f64 {
    if a >= b {
        (a - b).as_secs_f64() * 1000.0
    } else {
        -((b - a).as_secs_f64() * 1000.0)
    }
}

/// "median / p90 / max" of `v`, ms.
fn spread(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .map_or_else(|| "-".into(), |x| format!("{x:.1}"))
    };
    format!("{}/{}/{}", at(0.5), at(0.9), at(1.0))
}

/// A direct RTSP client (the `source` crate: retina, as the bridge itself ingests) whose
/// frame arrival times stand for "real time"; stopped on drop.
struct Reference {
    arrivals: Arc<Mutex<HashMap<u64, Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Reference {
    async fn start(url: &str) -> Self {
        use source::CameraSource as _;
        let spec: source::SourceSpec = url.parse().unwrap();
        let mut src = source::open(&spec, source::ReconnectPolicy::default()).unwrap();
        let arrivals = Arc::new(Mutex::new(HashMap::new()));
        let map = arrivals.clone();
        let task = tokio::spawn(async move {
            while let Ok(ev) = src.next_event().await {
                let source::SourceEvent::Unit(recorder::MediaUnit::Video(v)) = ev else {
                    continue;
                };
                let now = Instant::now();
                if let Some(k) = frame_key(&v.data, v.framing) {
                    map.lock().unwrap().entry(k).or_insert(now);
                }
            }
        });
        let me = Self { arrivals, task };
        let t = Instant::now();
        while me.arrivals.lock().unwrap().len() < 30 {
            assert!(t.elapsed() < STEP * 2, "the reference client got no frames");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        me
    }

    fn arrival(&self, key: u64) -> Option<Instant> {
        self.arrivals.lock().unwrap().get(&key).copied()
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct CpuFigures {
    idle: Usage,
    busy: Usage,
}

impl CpuFigures {
    fn per_viewer_cpu(&self) -> f64 {
        (self.busy.cpu_percent - self.idle.cpu_percent) / VIEWERS as f64
    }

    fn per_viewer_rss_mib(&self) -> f64 {
        (kib_to_mib(self.busy.rss_end_kib) - kib_to_mib(self.idle.rss_end_kib)) / VIEWERS as f64
    }
}

struct RunFigures {
    first_picture: Vec<Duration>,
    /// "median/p90/max" ms at 1, 2 and 10 s.
    delays: [String; 3],
    /// Starts whose viewer lost packets (a burst can overflow its socket buffer).
    lossy_starts: usize,
    cpu: Option<CpuFigures>,
}

/// One viewer's stream on service `ids`: its socket, the 118 answer, START's instant.
struct Stream {
    socket: UdpSocket,
    answer: SetupEndpointsResponse,
    session: [u8; 16],
}

async fn open(hap: &mut HapClient, ids: &LiveIds) -> (Stream, Instant) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let session: [u8; 16] = rand::random();
    let req = controller::live::setup_endpoints_request(session, port, &KEY, &SALT);
    hksv::write_tlv(hap, ids.setup_endpoints, &req)
        .await
        .expect("118");
    let answer =
        SetupEndpointsResponse::decode(&hksv::read_tlv(hap, ids.setup_endpoints).await.unwrap())
            .unwrap();
    assert_eq!(answer.status, SetupEndpointsStatus::Success);
    let start = Instant::now();
    hksv::write_tlv(
        hap,
        ids.selected,
        &controller::live::selected_stream_request(session, SessionCommand::Start, Some(1378)),
    )
    .await
    .expect("117 START");
    (
        Stream {
            socket,
            answer,
            session,
        },
        start,
    )
}

async fn end(hap: &mut HapClient, ids: &LiveIds, s: &Stream) {
    hksv::write_tlv(
        hap,
        ids.selected,
        &controller::live::selected_stream_request(s.session, SessionCommand::End, None),
    )
    .await
    .expect("117 END");
}

/// Receives on `s` for `for_`, answering with receiver reports every 0.5 s.
async fn watch(s: &Stream, start: Instant, for_: Duration) -> Viewer {
    let master = rtp::MasterKey::new(&KEY, &SALT).unwrap();
    let mut viewer = Viewer::new(&master, rand::random::<u32>() >> 1);
    let rtcp_to = s
        .answer
        .accessory_address
        .as_ref()
        .map(|a| SocketAddr::new(a.address.parse().unwrap(), a.video_rtp_port));
    let mut buf = vec![0u8; 2048];
    let mut next_rr = start + Duration::from_millis(500);
    let end = start + for_;
    while Instant::now() < end {
        let wake = next_rr.min(end);
        if let Ok(Ok(n)) = tokio::time::timeout_at(wake.into(), s.socket.recv(&mut buf)).await {
            viewer.on_datagram(&mut buf[..n], start.elapsed());
        }
        if Instant::now() >= next_rr {
            next_rr += Duration::from_millis(500);
            if let Some(to) = rtcp_to {
                let rr = viewer.receiver_report(start.elapsed());
                let _ = s.socket.send_to(&rr, to).await;
            }
        }
    }
    viewer
}

/// Median delay behind the reference of the frames `viewer` completed in `[at - 0.25 s,
/// at + 0.25 s]` after `start`.
fn delay_at(viewer: &Viewer, start: Instant, reference: &Reference, at: Duration) -> Vec<f64> {
    let lo = at.saturating_sub(Duration::from_millis(250));
    let hi = at + Duration::from_millis(250);
    viewer
        .access_units()
        .filter(|(t, _)| *t >= lo && *t <= hi)
        .filter_map(|(t, b)| {
            let seen_at = start + t;
            let direct = reference.arrival(frame_key(b, recorder::H264Framing::AnnexB)?)?;
            Some(signed_ms(seen_at, direct))
        })
        .collect()
}

async fn run(bin: &Path, url: &str, speed: u32, reference: &Reference, clk_tck: u64) -> RunFigures {
    let common::Paired {
        bridge,
        mut hap,
        dir: _dir,
        ..
    } = common::start_paired(
        bin,
        CAMERA,
        url,
        false,
        &format!("[live]\ncatch_up_speed = {speed}\n"),
        &format!("live_streams = {VIEWERS}"),
    )
    .await;
    let services = LiveIds::each(&hap.accessories().await.unwrap());
    assert_eq!(services.len(), VIEWERS);

    let mut first_picture = Vec::new();
    let mut lossy_starts = 0;
    for i in 0..STARTS {
        let (s, start) = open(&mut hap, &services[0]).await;
        let viewer = watch(&s, start, Duration::from_millis(800)).await;
        end(&mut hap, &services[0], &s).await;
        let seen = tokio::task::spawn_blocking(move || viewer.finish())
            .await
            .unwrap();
        assert!(
            seen.pictures > 0 && seen.rejected == 0,
            "start {i}: {seen:?}"
        );
        if seen.broken_units > 0 || seen.decode_errors > 0 {
            lossy_starts += 1;
            println!(
                "start {i}: {} access units lost to reassembly, {} decode errors (of {})",
                seen.broken_units, seen.decode_errors, seen.access_units
            );
        }
        first_picture.push(seen.first_picture.expect("a picture"));
        // Vary where in the GOP the next start falls.
        tokio::time::sleep(Duration::from_millis(300 + 137 * (i as u64 % 7))).await;
    }
    println!(
        "START→first picture (ms) min/med/max {} (n = {STARTS})",
        common::triple_ms(&first_picture)
    );

    let idle = (speed == 4).then(|| {
        let s = Sampler::start(bridge.pid, clk_tck);
        std::thread::sleep(WINDOW);
        s.stop()
    });

    // VIEWERS at once for 12 s (delay at 1, 2, 10 s); CPU over a further WINDOW.
    let mut streams = Vec::new();
    for ids in &services {
        streams.push(open(&mut hap, ids).await);
    }
    let watch_for = Duration::from_secs(12)
        + if idle.is_some() {
            WINDOW
        } else {
            Duration::ZERO
        };
    let sampler = Arc::new(Mutex::new(None));
    let sampler_slot = sampler.clone();
    let pid = bridge.pid;
    let sample = idle.is_some();
    let sampling = tokio::spawn(async move {
        if sample {
            tokio::time::sleep(Duration::from_secs(12)).await;
            *sampler_slot.lock().unwrap() = Some(Sampler::start(pid, clk_tck));
        }
    });
    let watched = watch_all(streams, watch_for).await;
    sampling.await.unwrap();
    let busy = sampler.lock().unwrap().take().map(Sampler::stop);
    for (ids, (s, ..)) in services.iter().zip(&watched) {
        end(&mut hap, ids, s).await;
    }
    let mut d1 = Vec::new();
    let mut d2 = Vec::new();
    let mut d10 = Vec::new();
    for (_, start, viewer) in &watched {
        d1.extend(delay_at(viewer, *start, reference, Duration::from_secs(1)));
        d2.extend(delay_at(viewer, *start, reference, Duration::from_secs(2)));
        d10.extend(delay_at(viewer, *start, reference, Duration::from_secs(10)));
    }
    for (i, (_, _, viewer)) in watched.into_iter().enumerate() {
        let seen = tokio::task::spawn_blocking(move || viewer.finish())
            .await
            .unwrap();
        assert!(
            seen.pictures > 0 && seen.rejected == 0,
            "viewer {i}: {seen:?}"
        );
        if seen.broken_units > 0 || seen.decode_errors > 0 {
            println!(
                "viewer {i}: {} access units lost, {} decode errors (of {})",
                seen.broken_units, seen.decode_errors, seen.access_units
            );
        }
    }
    let figures = RunFigures {
        first_picture,
        delays: [spread(&mut d1), spread(&mut d2), spread(&mut d10)],
        lossy_starts,
        cpu: idle.zip(busy).map(|(idle, busy)| CpuFigures { idle, busy }),
    };
    println!(
        "delay behind a direct RTSP client, ms median/p90/max: at 1 s {} (n = {}), 2 s {} (n = {}), 10 s {} (n = {})",
        figures.delays[0],
        d1.len(),
        figures.delays[1],
        d2.len(),
        figures.delays[2],
        d10.len()
    );
    drop(bridge);
    figures
}

/// Watches every stream at once; gives the streams back with their viewers.
async fn watch_all(
    streams: Vec<(Stream, Instant)>,
    for_: Duration,
) -> Vec<(Stream, Instant, Viewer)> {
    let mut set = tokio::task::JoinSet::new();
    for (i, (s, start)) in streams.into_iter().enumerate() {
        set.spawn(async move {
            let v = watch(&s, start, for_).await;
            (i, s, start, v)
        });
    }
    let mut out = set.join_all().await;
    out.sort_by_key(|(i, ..)| *i);
    out.into_iter().map(|(_, s, t, v)| (s, t, v)).collect()
}

struct FfmpegFigures {
    cpu_percent: f64,
    rss_mib: f64,
    pictures: u64,
    rejected: u64,
}

/// `VIEWERS` ffmpeg processes, each from the RTSP server to its own viewer over SRTP.
async fn ffmpeg_viewers(url: &str, clk_tck: u64) -> FfmpegFigures {
    let inline = base64::engine::general_purpose::STANDARD.encode([KEY.as_slice(), &SALT].concat());
    let url_args = ["-rtsp_transport", "tcp", "-i", url];
    let (usages, viewers) = common::ffmpeg_srtp_senders(
        VIEWERS,
        &url_args,
        &["-an", "-c:v", "copy"],
        &inline,
        clk_tck,
        |socket| async move {
            let master = rtp::MasterKey::new(&KEY, &SALT).unwrap();
            let mut viewer = Viewer::new(&master, 1);
            let start = Instant::now();
            let mut buf = vec![0u8; 2048];
            while start.elapsed() < WINDOW {
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buf)).await
                {
                    viewer.on_datagram(&mut buf[..n], start.elapsed());
                }
            }
            viewer
        },
    )
    .await;
    let (mut pictures, mut rejected) = (0, 0);
    for v in viewers {
        let seen = tokio::task::spawn_blocking(move || v.finish())
            .await
            .unwrap();
        pictures += seen.pictures;
        rejected += seen.rejected;
    }
    let n = usages.len() as f64;
    let fig = FfmpegFigures {
        cpu_percent: usages.iter().map(|u| u.cpu_percent).sum::<f64>() / n,
        rss_mib: usages
            .iter()
            .map(|u| kib_to_mib(u.rss_end_kib))
            .sum::<f64>()
            / n,
        pictures,
        rejected,
    };
    println!(
        "ffmpeg per viewer: {:.2} % of a core, {:.1} MiB RSS; {} pictures decoded by the viewers",
        fig.cpu_percent, fig.rss_mib, fig.pictures
    );
    fig
}
