//! The always-on path (issue #18): what a camera costs while nobody watches or records — RTSP
//! in, fMP4 fragments into the prebuffer ring — on the RELEASE `hksv-bridge`, against one
//! `ffmpeg -rtsp_transport tcp -i URL -c copy -f mp4 -movflags
//! frag_keyframe+empty_moov+default_base_moof /dev/null` per camera on the same server, in the
//! same run. GStreamer's RTSP server serves the live bench's clip (1080p30 2 Mbit/s H.264 + AAC,
//! 4 s GOP), one pipeline per client (`/cam-own`: independent cameras).
//!
//! For N = 1, 8, 32 (or `HKSV_BENCH_CAMERAS=1,8`): bridge CPU per camera (% of one core over
//! the window) and RSS per camera, ffmpeg's CPU and RSS per camera, and the ratio.
//! `HKSV_BENCH_RSS_MINUTES=20` adds a run of the largest N for that long with per-minute
//! RSS medians. Asserts nothing about speed. Linux only.
#![allow(clippy::indexing_slicing)] // bench: a panic is a failed run

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{clock_ticks_per_s, cpu_percent, cpu_ticks, kib_to_mib, read_status_kib};
use e2e_tests::{RtspServer, free_port};

const WARM_UP: Duration = Duration::from_secs(8);

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// CPU (% of one core, summed) and RSS (KiB, summed) of `pids` over `window`.
fn sample(pids: &[u32], clk: u64, window: Duration) -> (f64, u64) {
    let ticks = |pids: &[u32]| pids.iter().map(|p| cpu_ticks(*p)).sum::<u64>();
    let t0 = ticks(pids);
    let start = Instant::now();
    std::thread::sleep(window);
    let used = ticks(pids).saturating_sub(t0);
    let rss = pids
        .iter()
        .map(|p| read_status_kib(*p, "VmRSS:").unwrap_or(0))
        .sum();
    (cpu_percent(used, clk, start.elapsed()), rss)
}

struct Ffmpegs(Vec<Child>);

impl Drop for Ffmpegs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn ffmpeg_clients(url: &str, n: usize) -> Ffmpegs {
    Ffmpegs(
        (0..n)
            .map(|_| {
                Command::new("ffmpeg")
                    .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
                    .args([
                        "-rtsp_transport",
                        "tcp",
                        "-i",
                        url,
                        "-c",
                        "copy",
                        "-f",
                        "mp4",
                    ])
                    .args(["-movflags", "frag_keyframe+empty_moov+default_base_moof"])
                    .arg("/dev/null")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("ffmpeg")
            })
            .collect(),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bin = common::release_binary();
    let clk = clock_ticks_per_s();
    let window = Duration::from_secs(env_or("HKSV_BENCH_WINDOW_S", 30));
    let counts: Vec<usize> = std::env::var("HKSV_BENCH_CAMERAS")
        .unwrap_or_else(|_| "1,8,32".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let media = common::live_bench_media();
    let server = RtspServer::start(free_port(), &media);
    let url = format!("{}-own", server.url);
    println!(
        "hksv-bridge {}; {url} ({}); window {window:?}",
        bin.display(),
        media.display()
    );
    let mut rows = Vec::new();
    for &n in &counts {
        let started = Instant::now();
        let (bridge, _api, _dir) = common::start_cameras(&bin, n, &url, &|_| {
            "[cameras.motion.detector]\nenabled = false".into()
        })
        .await;
        let up_ms = started.elapsed().as_millis();
        tokio::time::sleep(WARM_UP).await;
        let pid = bridge.pid;
        let (bridge_cpu, bridge_rss) =
            tokio::task::spawn_blocking(move || sample(&[pid], clk, window))
                .await
                .unwrap();
        drop(bridge);

        let clients = ffmpeg_clients(&url, n);
        tokio::time::sleep(WARM_UP).await;
        let pids: Vec<u32> = clients.0.iter().map(Child::id).collect();
        let (ff_cpu, ff_rss) = tokio::task::spawn_blocking(move || sample(&pids, clk, window))
            .await
            .unwrap();
        let mut clients = clients;
        let exited = clients
            .0
            .iter_mut()
            .map(|c| c.try_wait().ok().flatten().is_some())
            .filter(|exited| *exited)
            .count();
        assert_eq!(exited, 0, "ffmpeg clients exited during the window");
        drop(clients);
        let nf = n as f64;
        println!(
            "N = {n:>2}: bridge {:.2} % of a core per camera ({bridge_cpu:.1} % total), RSS {:.2} MiB per camera ({:.1} MiB); ffmpeg {:.2} % per camera, RSS {:.1} MiB per camera; ratio {:.3} (API up after {up_ms} ms)",
            bridge_cpu / nf,
            kib_to_mib(bridge_rss) / nf,
            kib_to_mib(bridge_rss),
            ff_cpu / nf,
            kib_to_mib(ff_rss) / nf,
            bridge_cpu / ff_cpu
        );
        rows.push((n, bridge_cpu / nf, ff_cpu / nf));
    }
    println!();
    for (n, b, f) in &rows {
        println!(
            "ratio bridge/ffmpeg per camera, N = {n}: {:.3} ({b:.2} % vs {f:.2} %)",
            b / f
        );
    }

    let minutes: u64 = env_or("HKSV_BENCH_RSS_MINUTES", 0);
    if minutes > 0 {
        let n = counts.iter().copied().max().unwrap_or(1);
        let (bridge, _api, _dir) = common::start_cameras(&bin, n, &url, &|_| {
            "[cameras.motion.detector]\nenabled = false".into()
        })
        .await;
        println!("\nRSS per camera, {n} cameras, per-minute medians of 1 s samples:");
        for minute in 1..=minutes {
            let pid = bridge.pid;
            let mut samples: Vec<u64> = tokio::task::spawn_blocking(move || {
                (0..60)
                    .map(|_| {
                        std::thread::sleep(Duration::from_secs(1));
                        read_status_kib(pid, "VmRSS:").unwrap_or(0)
                    })
                    .collect()
            })
            .await
            .unwrap();
            samples.sort_unstable();
            println!(
                "  minute {minute:>2}: {:.2} MiB per camera ({:.1} MiB)",
                kib_to_mib(samples[30]) / n as f64,
                kib_to_mib(samples[30])
            );
        }
    }
}
