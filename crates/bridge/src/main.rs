//! hksv-bridge: runs the configured cameras as HomeKit Secure Video accessories (`run`, the
//! default), or one of the helper commands (`check`, `pair-info`, `reset`, `selftest`).
//! Logs go to stderr (`RUST_LOG`, default `info`); pairing information to stdout.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use bridge::app::{self, RunOptions};
use bridge::cli::{self, Cli, Command};
use bridge::config::Config;
use clap::Parser;

/// Bound of each network step of `selftest` (the recording may take up to 3× this).
const SELFTEST_STEP_TIMEOUT_S: u64 = 20;

/// A user error is one line on stderr and exit status 1: no `Debug` dump, no backtrace (even
/// with `RUST_BACKTRACE` set); the causes are joined with ": ".
fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hksv-bridge: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(real_main()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hksv-bridge: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn real_main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal (not in a file or the journal), and never with NO_COLOR.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
    let cli = Cli::parse();
    let flags = cli.flags();
    let config = cli::load_config(&flags)?;
    match cli.command.unwrap_or_else(Command::run) {
        Command::Run { .. } => {
            let options = RunOptions {
                demo_motion_ms: flags.demo_motion_ms,
            };
            app::run_with(config, options, app::wait_for_signal()).await
        }
        Command::Check {
            source,
            seconds,
            out,
        } => cli::check(&config, &source, seconds, out.as_deref()).await,
        Command::PairInfo { name, .. } => cli::pair_info(&config, name.as_deref()).await,
        Command::Reset { name, .. } => cli::reset(&config, &name),
        Command::Selftest { name, out, .. } => selftest(&config, name.as_deref(), out).await,
    }
}

/// `selftest [CAMERA]`: pairs with the running camera like a hub (or through a temporary API
/// pairing when it is already paired), records a clip and checks it.
async fn selftest(config: &Config, name: Option<&str>, out: Option<PathBuf>) -> anyhow::Result<()> {
    let camera = match name {
        Some(n) => config
            .camera(n)
            .with_context(|| format!("unknown camera {n:?}"))?,
        None => config.cameras.first().context("no cameras configured")?,
    };
    let info = cli::read_pair_info(config, camera)?;
    // In bridge mode the camera is reached through the bridge's port and found by its name.
    let port = info.port;
    anyhow::ensure!(
        port != 0,
        "{:?} has port 0 (chosen at start): give it a fixed port to selftest it",
        info.name
    );
    let out_dir = match out {
        Some(d) => d,
        None => std::env::temp_dir().join(format!(
            "hksv-bridge-selftest-{}",
            bridge::config::slug(&camera.name)
        )),
    };
    let report = controller::selftest::run(controller::selftest::SelftestOptions {
        hap_addr: SocketAddr::new(cli::connect_ip(config.bind), port),
        setup_code: Some(info.setup_code),
        api_base: format!("http://{}", cli::connect_addr(config.api.listen)),
        api_token: config.api.token.clone(),
        // Readable only by the bridge's user (0600): another local user cannot take over.
        selftest_secret: std::fs::read_to_string(
            config.state_root().join(bridge::api::SELFTEST_SECRET_FILE),
        )
        .ok()
        .map(|s| s.trim().to_owned()),
        camera_name: camera.name.clone(),
        out_dir,
        timeout: Duration::from_secs(SELFTEST_STEP_TIMEOUT_S),
    })
    .await?;
    println!("{report}");
    anyhow::ensure!(report.passed(), "selftest failed: see the steps above");
    Ok(())
}
