//! CPU cost of recording: 60 s of 1080p30 2 Mbit/s H.264 + AAC turned into HKSV fragments in
//! the prebuffer ring, against `ffmpeg -c copy` into fragmented MP4 on the same input, in one
//! run; plus the ring's peak memory at 8 s of prebuffer. Prints figures; asserts nothing.
//!
//! Run: `cargo bench -p recorder --bench fragment`. Needs ffmpeg (scripts/test installs it).
//! The input is generated once into the system temp dir and reused.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use recorder::demux;
use recorder::{Fragmenter, FragmenterConfig, PrebufferConfig, PrebufferRing};

/// CPU time of this thread (Linux `/proc/thread-self/schedstat`, first field, ns).
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    Duration::from_nanos(s.split_whitespace().next().unwrap().parse().unwrap())
}

fn input() -> PathBuf {
    let dir = std::env::temp_dir().join("hksv-recorder-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("in-1080p30-2mbit-60s.mp4");
    if !path.exists() {
        eprintln!("generating {} with ffmpeg (once)…", path.display());
        let tmp = dir.join("in.partial.mp4");
        let ok = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-y", "-loglevel", "error"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30"])
            .args([
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                "60",
            ])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-b:v",
                "2M",
                "-maxrate",
                "2M",
                "-bufsize",
                "4M",
            ])
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
            .args(["-c:a", "aac", "-b:a", "64k", "-ac", "1"])
            .arg(&tmp)
            .status()
            .expect("ffmpeg is required: run scripts/test or apt-get install ffmpeg");
        assert!(ok.success());
        std::fs::rename(&tmp, &path).unwrap();
    }
    path
}

/// Read + demux + fragment + ring, all on this thread. Returns (CPU time, ring peak bytes,
/// fragments).
fn ours(path: &Path) -> (Duration, usize, usize) {
    let start = thread_cpu();
    let data = Bytes::from(std::fs::read(path).unwrap());
    let file = demux::demux(data).unwrap();
    let config = FragmenterConfig {
        audio_config: file.audio_config(),
        ..Default::default()
    };
    let mut fragmenter = Fragmenter::new(config).unwrap();
    let ring = PrebufferRing::new(PrebufferConfig::default()).unwrap();
    let mut fragments = 0;
    for unit in file.media_units() {
        let _ = fragmenter.push(unit);
        while let Some(e) = fragmenter.poll_event() {
            fragments += usize::from(matches!(e, recorder::FragmenterEvent::Fragment(_)));
            ring.push_event(e);
        }
    }
    fragmenter.finish();
    while let Some(e) = fragmenter.poll_event() {
        fragments += usize::from(matches!(e, recorder::FragmenterEvent::Fragment(_)));
        ring.push_event(e);
    }
    (thread_cpu() - start, ring.peak_bytes_held(), fragments)
}

/// `ffmpeg -c copy` to fragmented MP4 on stdout (discarded); CPU time (user + sys) from bash's
/// `times` for its children.
fn ffmpeg_copy(path: &Path) -> Duration {
    let script = format!(
        "ffmpeg -nostdin -v error -i '{}' -c copy -f mp4 -movflags frag_keyframe+empty_moov+default_base_moof pipe:1 > /dev/null; times",
        path.display()
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // `times` prints shell times, then children's "XmY.YYYs XmY.YYYs".
    let children = text.lines().last().unwrap();
    children
        .split_whitespace()
        .map(|t| {
            let (m, s) = t.trim_end_matches('s').split_once('m').unwrap();
            Duration::from_secs_f64(m.parse::<f64>().unwrap() * 60.0 + s.parse::<f64>().unwrap())
        })
        .sum()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo test --benches` passes `--bench`-less flags; run only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let path = input();
    let size = std::fs::metadata(&path).unwrap().len();
    let _ = ours(&path); // warm the page cache and allocator
    let runs: Vec<(Duration, usize, usize)> = (0..7).map(|_| ours(&path)).collect();
    let ours_cpu = median(runs.iter().map(|r| r.0).collect());
    let (_, peak, fragments) = runs[0];
    let ffmpeg_cpu = median((0..5).map(|_| ffmpeg_copy(&path)).collect());
    println!("input: 60 s 1080p30 H.264 2 Mbit/s + AAC-LC 48 kHz mono 64 kbit/s, {size} bytes");
    println!(
        "recorder (read+demux+fragment+ring): {:.1} ms CPU (median of 7), {fragments} fragments",
        ours_cpu.as_secs_f64() * 1e3
    );
    println!(
        "ffmpeg -c copy frag mp4:              {:.1} ms CPU (median of 5)",
        ffmpeg_cpu.as_secs_f64() * 1e3
    );
    println!(
        "ratio recorder/ffmpeg: {:.3} (goal <= 0.1)",
        ours_cpu.as_secs_f64() / ffmpeg_cpu.as_secs_f64()
    );
    println!(
        "ring peak bytes held (keep 8 s): {peak} ({:.2} MiB)",
        peak as f64 / 1048576.0
    );
}
