//! Live audio on the RELEASE `hksv-bridge` with a real RTSP source (issue #13): GStreamer's
//! RTSP server serves the live bench's 1080p30 2 Mbit/s H.264 + 32 kHz AAC-LC file; four
//! viewers play the iPhone (118, 117 START, receiver reports every 0.5 s).
//!
//! Figures, printed (nothing about speed is asserted):
//! - the bridge's CPU and RSS with 4 video-only viewers, then with 4 viewers that also take
//!   Opus 16 kHz / 20 ms: the difference per viewer is what the in-process AAC-LC → Opus path
//!   costs (decode, resample 32 → 16 kHz, encode, SRTP);
//! - against 4 `ffmpeg -allowed_media_types audio -i rtsp://… -c:a libopus -ar 16000 -ac 1
//!   -b:a 24k -frame_duration 20 -application voip -f rtp -srtp_out_suite …` processes (what an
//!   ffmpeg-based plugin runs per viewer for audio) on the same server, same run, as a ratio.
//!
//! `cargo bench -p e2e-tests --bench live_audio`; builds the release binary unless
//! `HKSV_BRIDGE_BIN_RELEASE` names one. Needs ffmpeg (libx264, libopus) and Debian's
//! python3-gi + gst-rtsp-server (what `.ci/run` installs). Linux only (`/proc`).
#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // bench: a panic is a failed run

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Sampler, Usage, clock_ticks_per_s, kib_to_mib, release_binary};
use controller::live::{LiveIds, Viewer};
use controller::{HapClient, hksv};
use e2e_tests::{RtspServer, free_port};
use hap_tlv::hksv::SampleRate;
use hap_tlv::rtp::{SessionCommand, SetupEndpointsResponse, SetupEndpointsStatus};
use tokio::net::UdpSocket;

const CAMERA: &str = "audio-bench";
const VIEWERS: usize = 4;
/// CPU sampling window per phase.
const WINDOW: Duration = Duration::from_secs(20);
/// Time after START before sampling (the GOP catch-up and the audio's first reports).
const WARM_UP: Duration = Duration::from_secs(5);
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
    let rtsp = RtspServer::start(free_port(), &media);
    let phases = rt.block_on(bridge_phases(&bin, &rtsp.url, clk_tck));
    let ffmpeg = rt.block_on(ffmpeg_audio(&rtsp.url, clk_tck));
    drop(rtsp);

    println!(
        "\n== summary (release build, RTSP 1080p30 2 Mbit/s + AAC-LC 32 kHz mono, loopback, Opus 16 kHz 20 ms) =="
    );
    println!(
        "ffmpeg (libopus) per viewer: {:.2} % of a core, {:.1} MiB RSS ({} audio packets received)",
        ffmpeg.0, ffmpeg.1, ffmpeg.2
    );
    for (n, video_only, with_audio, packets) in &phases {
        let per_viewer = (with_audio.cpu_percent - video_only.cpu_percent) / *n as f64;
        let rss =
            (kib_to_mib(with_audio.rss_end_kib) - kib_to_mib(video_only.rss_end_kib)) / *n as f64;
        println!(
            "bridge, {n} viewer(s): video only {:.2} % of a core, RSS {:.1} MiB; with audio {:.2} %, RSS {:.1} MiB ({packets} audio packets received)",
            video_only.cpu_percent,
            kib_to_mib(video_only.rss_end_kib),
            with_audio.cpu_percent,
            kib_to_mib(with_audio.rss_end_kib)
        );
        println!(
            "bridge live audio, {n} viewer(s): {per_viewer:.3} % of a core and {rss:.2} MiB RSS per viewer; ratio to ffmpeg per viewer {:.3}",
            per_viewer / ffmpeg.0
        );
    }
}

/// One viewer: its video and audio sockets (audio on the video port + 2, as 118 says).
struct Stream {
    video: UdpSocket,
    audio: UdpSocket,
    answer: SetupEndpointsResponse,
    session: [u8; 16],
}

async fn socket_pair() -> (UdpSocket, UdpSocket) {
    loop {
        let v = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let p = v.local_addr().unwrap().port();
        if p < u16::MAX - 2
            && let Ok(a) = UdpSocket::bind(("127.0.0.1", p + 2)).await
        {
            return (v, a);
        }
    }
}

async fn open(hap: &mut HapClient, ids: &LiveIds, audio: bool) -> Stream {
    let (video, audio_socket) = socket_pair().await;
    let port = video.local_addr().unwrap().port();
    let session: [u8; 16] = rand::random();
    let req = controller::live::setup_endpoints_request(session, port, &KEY, &SALT);
    hksv::write_tlv(hap, ids.setup_endpoints, &req)
        .await
        .expect("118");
    let answer =
        SetupEndpointsResponse::decode(&hksv::read_tlv(hap, ids.setup_endpoints).await.unwrap())
            .unwrap();
    assert_eq!(answer.status, SetupEndpointsStatus::Success);
    let start = controller::live::selected_stream_request_with_audio(
        session,
        SessionCommand::Start,
        Some(1378),
        (1280, 720, 30),
        audio.then_some((SampleRate::Hz16000, 20)),
    );
    hksv::write_tlv(hap, ids.selected, &start)
        .await
        .expect("117 START");
    Stream {
        video,
        audio: audio_socket,
        answer,
        session,
    }
}

/// Receives on both sockets for `for_`, answering video sender reports with receiver
/// reports every 0.5 s (liveness); returns the audio datagrams seen.
async fn watch(s: Stream, for_: Duration) -> (Stream, u64) {
    let master = rtp::MasterKey::new(&KEY, &SALT).unwrap();
    let mut viewer = Viewer::new(&master, rand::random::<u32>() >> 1);
    let rtcp_to = s
        .answer
        .accessory_address
        .as_ref()
        .map(|a| SocketAddr::new(a.address.parse().unwrap(), a.video_rtp_port));
    let (mut vbuf, mut abuf) = (vec![0u8; 2048], vec![0u8; 2048]);
    let start = Instant::now();
    let end = start + for_;
    let mut next_rr = start + Duration::from_millis(500);
    let mut audio = 0;
    while Instant::now() < end {
        let wake = tokio::time::Instant::from_std(next_rr.min(end));
        tokio::select! {
            r = s.video.recv(&mut vbuf) => if let Ok(n) = r { viewer.on_datagram(&mut vbuf[..n], start.elapsed()) },
            r = s.audio.recv(&mut abuf) => if r.is_ok() { audio += 1 },
            () = tokio::time::sleep_until(wake) => {}
        }
        if Instant::now() >= next_rr {
            next_rr += Duration::from_millis(500);
            if let Some(to) = rtcp_to {
                let rr = viewer.receiver_report(start.elapsed());
                let _ = s.video.send_to(&rr, to).await;
            }
        }
    }
    (s, audio)
}

/// For 1 and `VIEWERS` viewers: the bridge's usage with video-only viewers, then with
/// viewers that take audio too, and the audio datagrams those received.
async fn bridge_phases(
    bin: &std::path::Path,
    url: &str,
    clk_tck: u64,
) -> Vec<(usize, Usage, Usage, u64)> {
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
        "",
        &format!("live_streams = {VIEWERS}"),
    )
    .await;
    let services = LiveIds::each(&hap.accessories().await.unwrap());
    assert_eq!(services.len(), VIEWERS);
    let mut usages = Vec::new();
    let mut audio_seen = 0;
    let mut phases = Vec::new();
    for (viewers, audio) in [(1, false), (1, true), (VIEWERS, false), (VIEWERS, true)] {
        println!("\n== bridge, {viewers} viewer(s), audio {audio} ==");
        let mut streams = Vec::new();
        for ids in &services[..viewers] {
            streams.push(open(&mut hap, ids, audio).await);
        }
        let pid = bridge.pid;
        let sampling = tokio::spawn(async move {
            tokio::time::sleep(WARM_UP).await;
            let s = Sampler::start(pid, clk_tck);
            tokio::time::sleep(WINDOW).await;
            s.stop()
        });
        let mut set = tokio::task::JoinSet::new();
        for (i, s) in streams.into_iter().enumerate() {
            set.spawn(async move { (i, watch(s, WARM_UP + WINDOW).await) });
        }
        let mut watched = set.join_all().await;
        // join_all gives completion order; the ENDs go to each stream's own service.
        watched.sort_by_key(|(i, _)| *i);
        let watched: Vec<(Stream, u64)> = watched.into_iter().map(|(_, w)| w).collect();
        let usage = sampling.await.unwrap();
        let packets: u64 = watched.iter().map(|(_, n)| n).sum();
        println!(
            "bridge: {:.2} % of a core, RSS {:.1} MiB; {packets} audio datagrams at the viewers",
            usage.cpu_percent,
            kib_to_mib(usage.rss_end_kib)
        );
        if audio {
            assert!(packets > 0, "no audio reached the viewers");
            audio_seen = packets;
        }
        for (ids, (s, _)) in services.iter().zip(&watched) {
            let end =
                controller::live::selected_stream_request(s.session, SessionCommand::End, None);
            if let Err(e) = hksv::write_tlv(&mut hap, ids.selected, &end).await {
                println!("117 END refused (the stream had ended): {e:?}");
            }
        }
        for line in bridge
            .log_text()
            .lines()
            .filter(|l| l.contains("live view ended") || l.contains("live audio"))
        {
            println!("  log: {line}");
        }
        usages.push(usage);
        if audio {
            let with_audio = usages.pop().unwrap();
            phases.push((viewers, usages.pop().unwrap(), with_audio, audio_seen));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    drop(bridge);
    phases
}

/// `VIEWERS` ffmpeg processes, each transcoding the source's audio to Opus over SRTP for its
/// own viewer: mean CPU %, mean RSS MiB, audio datagrams received.
async fn ffmpeg_audio(url: &str, clk_tck: u64) -> (f64, f64, u64) {
    println!("\n== ffmpeg (libopus), one process per viewer, {VIEWERS} viewers ==");
    let inline = base64::engine::general_purpose::STANDARD.encode([KEY.as_slice(), &SALT].concat());
    let url_args = [
        "-rtsp_transport",
        "tcp",
        "-allowed_media_types",
        "audio",
        "-i",
        url,
    ];
    let codec = [
        "-vn",
        "-c:a",
        "libopus",
        "-application",
        "voip",
        "-ar",
        "16000",
        "-ac",
        "1",
        "-b:a",
        "24k",
        "-frame_duration",
        "20",
        "-payload_type",
        "110",
    ];
    let (usages, counts) = common::ffmpeg_srtp_senders(
        VIEWERS,
        &url_args,
        &codec,
        &inline,
        clk_tck,
        |socket| async move {
            let mut n = 0u64;
            let mut buf = vec![0u8; 2048];
            let start = Instant::now();
            while start.elapsed() < WINDOW {
                if let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buf)).await
                {
                    n += 1;
                }
            }
            n
        },
    )
    .await;
    let packets: u64 = counts.into_iter().sum();
    let n = usages.len() as f64;
    let cpu = usages.iter().map(|u| u.cpu_percent).sum::<f64>() / n;
    let rss = usages
        .iter()
        .map(|u| kib_to_mib(u.rss_end_kib))
        .sum::<f64>()
        / n;
    println!("ffmpeg per viewer: {cpu:.2} % of a core, {rss:.1} MiB RSS; {packets} datagrams");
    (cpu, rss, packets)
}
