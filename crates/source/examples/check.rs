//! `cargo run -p source --example check -- SOURCE [SECONDS] [OUT_DIR]`: the library behind
//! `hksv-bridge check`, runnable before the subcommand is wired in.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let Some(spec) = args.next() else {
        eprintln!(
            "usage: check SOURCE [SECONDS] [OUT_DIR]\n  SOURCE: rtsp://…, v4l2:///dev/video0?…, http(s)://…, tcp://host:port, a file, -, exec:COMMAND, demo:"
        );
        return ExitCode::from(2);
    };
    let spec: source::SourceSpec = match spec.parse() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let seconds = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(source::check::DEFAULT_CHECK_SECONDS);
    let out_dir = args.next().map(PathBuf::from);
    eprintln!("Checking {spec} for {seconds} s …");
    let res = source::check(
        &spec,
        Duration::from_secs(seconds),
        out_dir.as_deref(),
        |p| {
            eprintln!(
                "  {:>2}/{} s: {} frames, {} fragments",
                p.elapsed.as_secs(),
                p.total.as_secs(),
                p.video_frames,
                p.fragments
            );
        },
    )
    .await;
    match res {
        Ok(report) => {
            println!("{report}");
            if report.is_ready() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("check failed: {e}");
            ExitCode::from(1)
        }
    }
}
