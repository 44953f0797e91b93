//! hksv-bridge: serves a HomeKit accessory over HAP (IP), prints its setup code, `X-HM://`
//! URI and QR code, and stops cleanly on SIGINT/SIGTERM.
#![forbid(unsafe_code)]

use bridge::{accessory, qr};

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use hap_server::core::{CATEGORY_IP_CAMERA, CoreConfig};
use hap_server::setup::SetupCode;
use hap_server::store::FileStore;
use hap_server::{Core, Server, ServerOptions, Value};
use tokio::sync::watch;
use tracing::info;

/// Command line; every flag can also come from its `HKSV_*` environment variable.
#[derive(Debug, Parser)]
#[command(
    name = "hksv-bridge",
    version,
    about = "Turns cameras into HomeKit Secure Video cameras"
)]
struct Args {
    /// Directory for keys, pairings and IDs [default: $XDG_STATE_HOME/hksv-bridge or
    /// ~/.local/state/hksv-bridge].
    #[arg(long, env = "HKSV_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "HKSV_BIND", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// TCP port of the HAP server (0 = any free port).
    #[arg(long, env = "HKSV_PORT", default_value_t = 51826)]
    port: u16,
    /// Setup code XXX-XX-XXX; generated and kept in the state directory when absent.
    #[arg(long, env = "HKSV_SETUP_CODE", value_parser = parse_setup_code)]
    setup_code: Option<SetupCode>,
    /// Accessory name shown in the Home app and on mDNS.
    #[arg(long, env = "HKSV_NAME", default_value = "HKSV Bridge")]
    name: String,
    /// Demo: toggle MotionDetected every this many milliseconds (0 = never).
    #[arg(long, env = "HKSV_DEMO_MOTION_MS", default_value_t = 0)]
    demo_motion_ms: u64,
    /// Do not advertise over mDNS.
    #[arg(long, env = "HKSV_NO_MDNS")]
    no_mdns: bool,
}

fn parse_setup_code(s: &str) -> Result<SetupCode, String> {
    SetupCode::parse(s).map_err(|e| e.to_string())
}

fn default_state_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("hksv-bridge");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local/state/hksv-bridge");
    }
    PathBuf::from("hksv-bridge-state")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let state_dir = args.state_dir.clone().unwrap_or_else(default_state_dir);
    let store = FileStore::open(&state_dir)
        .with_context(|| format!("opening state directory {}", state_dir.display()))?;
    let config = CoreConfig {
        name: args.name.clone(),
        model: accessory::MODEL_NAME.to_owned(),
        category: CATEGORY_IP_CAMERA,
        setup_code: args.setup_code.clone(),
        firmware_revision: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let core = Core::open(
        config,
        Arc::new(store),
        vec![accessory::demo_accessory(&args.name)],
        &mut rand::rng(),
    )
    .context("loading accessory state")?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.bind, args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.bind, args.port))?;
    let port = listener.local_addr()?.port();
    let server = Server::new(core);
    {
        let core = server.lock();
        let uri = core.setup_uri();
        println!("hksv-bridge {}", env!("CARGO_PKG_VERSION"));
        println!("Setup code: {}", core.setup_code().as_str());
        println!("Setup URI:  {uri}");
        if let Some(code) = qr::render(&uri) {
            println!("{code}");
        }
        println!("Listening on {}:{port}", args.bind);
        info!(state_dir = %state_dir.display(), pairing_id = core.pairing_id(), paired = core.is_paired(), "accessory ready");
    }
    if !args.no_mdns {
        server.advertise(port);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    if args.demo_motion_ms > 0 {
        tokio::spawn(demo_motion(
            server.clone(),
            Duration::from_millis(args.demo_motion_ms),
            stop_rx.clone(),
        ));
    }
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down");
        let _ = stop_tx.send(true);
    });
    server
        .serve(listener, ServerOptions::default(), stop_rx)
        .await?;
    info!("stopped");
    Ok(())
}

/// Toggles MotionDetected periodically so controllers see events without a camera.
async fn demo_motion(server: Server, period: Duration, mut stop: watch::Receiver<bool>) {
    let id =
        server
            .lock()
            .database()
            .find(1, accessory::MOTION_SENSOR, "", accessory::MOTION_DETECTED);
    let Some(id) = id else { return };
    let mut on = false;
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                on = !on;
                server.set_value(id, Value::Bool(on));
            }
            _ = stop.changed() => return,
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_rejects_adk_invalid_setup_codes() {
        for bad in ["123-45-678", "111-11-111", "12-345-678", "abc"] {
            assert!(
                Args::try_parse_from(["hksv-bridge", "--setup-code", bad]).is_err(),
                "{bad}"
            );
        }
        let ok = Args::try_parse_from(["hksv-bridge", "--setup-code", "031-45-154"]).unwrap();
        assert_eq!(ok.setup_code.unwrap().as_str(), "031-45-154");
    }

    #[test]
    fn no_arguments_is_a_valid_command_line() {
        let a = Args::try_parse_from(["hksv-bridge"]).unwrap();
        assert!(a.port > 0 || std::env::var_os("HKSV_PORT").is_some());
        assert!(
            default_state_dir().ends_with("hksv-bridge")
                || default_state_dir().ends_with("hksv-bridge-state")
        );
    }
}
