#![allow(clippy::indexing_slicing)] // test code: a panic is a failed check
//! The real `hksv-bridge` binary against aiohomekit (Home Assistant's HomeKit controller):
//! pair-setup with the setup code (and a wrong one), pair-verify, `/accessories`, reads, a
//! write, an `EVENT/1.0` after subscribing, a second (regular) pairing that is refused
//! `/pairings`, its removal closing its session, a restart that keeps the pairing, unpairing,
//! and `/identify` once unpaired. The first restart follows a kill -9; the last stop is a
//! SIGTERM that must end the process cleanly. A second test pairs aiohomekit with a bridge-mode
//! bridge of several cameras. The Python side is `tests/peers/hap_aiohomekit.py`.

use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const SETUP_CODE: &str = "031-45-154";
/// The demo camera's state subdirectory (the slug of "Demo Camera", see `bridge::config::slug`).
const CAMERA_STATE_SUBDIR: &str = "demo-camera";

struct Bridge {
    child: Child,
    port: u16,
}

impl Bridge {
    /// Starts the binary on `port` (0 = any free port) and waits until it listens.
    fn start(state_dir: &Path, port: u16) -> Self {
        let mut child = Command::new(e2e_tests::bridge_bin())
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            // Any free port: the default 127.0.0.1:8280 may be taken by another bridge.
            .args(["--api-listen", "127.0.0.1:0"])
            .args([
                "--setup-code",
                SETUP_CODE,
                "--demo-motion-ms",
                "300",
                "--no-mdns",
            ])
            .env("RUST_LOG", "hap_server=debug,info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start hksv-bridge");
        // The binary prints "Listening on <addr>:<port>" once bound; keep draining stdout after.
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(p) = line
                    .strip_prefix("Listening on ")
                    .and_then(|a| a.rsplit_once(':'))
                {
                    let _ = tx.send(p.1.parse::<u16>().ok());
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("hksv-bridge did not print its port")
            .expect("port number");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to hksv-bridge");
        Self { child, port }
    }

    /// SIGKILL: nothing gets a chance to flush, so what survives was persisted before replying.
    fn kill_9(mut self) {
        self.child.kill().expect("kill -9");
        let st = self.child.wait().expect("wait");
        assert!(!st.success());
    }

    /// SIGTERM, and the process must exit 0 on its own.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                assert!(st.success(), "hksv-bridge exited with {st} after SIGTERM");
                return;
            }
            assert!(Instant::now() < deadline, "hksv-bridge ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python(args: &[&str]) -> Value {
    let script = e2e_tests::workspace_root().join("tests/peers/hap_aiohomekit.py");
    let out: Output = Command::new(e2e_tests::python_with_aiohomekit())
        .arg(&script)
        .args(args)
        .output()
        .expect("run python with aiohomekit (run scripts/test to install it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "aiohomekit phase {args:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("bad JSON {last:?}: {e}"))
}

#[test]
fn aiohomekit_pairs_reads_subscribes_manages_pairings_and_survives_restart() {
    let state = tempfile::tempdir().expect("tempdir");
    let state_dir = state.path().join("state");
    let pairing_file = state.path().join("pairing.json");
    let bridge = Bridge::start(&state_dir, 0);
    let port = bridge.port;
    let r = python(&[
        "pair",
        &port.to_string(),
        SETUP_CODE,
        pairing_file.to_str().unwrap(),
    ]);
    assert_eq!(r["wrong_code_rejected"], true);
    assert_eq!(r["paired"], true);
    let services = r["service_types"].as_array().expect("service types");
    for t in ["0000003E-", "000000A2-", "00000085-"] {
        assert!(
            services.iter().any(|s| s.as_str().unwrap().starts_with(t)),
            "{t} in {services:?}"
        );
    }
    assert_eq!(r["protocol_version"], "1.1.0");
    assert!(
        r["motion_read"] == 0 || r["motion_read"] == 1,
        "{}",
        r["motion_read"]
    );
    assert_eq!(r["identify_write_errors"], serde_json::json!({}));
    let events = r["events"].as_array().expect("events");
    assert_eq!(events.len(), 2);
    assert_ne!(
        events[0], events[1],
        "MotionDetected toggles between events"
    );
    let me = r["controller_id"].as_str().expect("controller id");
    assert_eq!(r["pairings_before"], serde_json::json!([[me, 1]]));
    let with_second = r["pairings_with_second"].as_array().expect("pairings");
    assert_eq!(with_second.len(), 2);
    assert!(
        with_second.iter().any(|p| p[1] == 0),
        "second pairing is regular: {with_second:?}"
    );
    assert_eq!(r["second_verified"], true);
    assert_eq!(r["second_list_denied"], true);
    assert_eq!(r["second_add_denied"], true);
    assert_eq!(r["second_remove_denied"], true);
    assert_eq!(r["pairings_after_remove"], serde_json::json!([[me, 1]]));
    assert_eq!(r["second_session_closed"], true);

    // The state directory holds the secret key: private modes. One subdirectory per camera,
    // named after the demo camera ("Demo Camera").
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        let camera_dir = state_dir.join(CAMERA_STATE_SUBDIR);
        assert_eq!(mode(&state_dir), 0o700);
        assert_eq!(mode(&camera_dir), 0o700);
        for f in ["accessory.json", "pairings.json", "iids.json"] {
            assert_eq!(mode(&camera_dir.join(f)), 0o600, "{f}");
        }
    }

    bridge.kill_9();
    // Same port, as a controller with a cached address would expect.
    let bridge = Bridge::start(&state_dir, port);
    let r = python(&["verify", &port.to_string(), pairing_file.to_str().unwrap()]);
    assert_eq!(
        r["verified"], true,
        "pair-verify after restart without re-pairing"
    );
    assert_eq!(r["pairings"], serde_json::json!([[me, 1]]));
    assert_eq!(r["unpaired"], true);

    let r = python(&["unpaired", &port.to_string()]);
    assert_eq!(
        r["identify_ok"], true,
        "/identify is allowed again once unpaired"
    );
    bridge.stop();
}

/// Bridge mode seen by aiohomekit: one pairing for the bridge, its accessory database parsed by
/// aiohomekit's own model (bridge AID 1 without camera services, one accessory per camera), a
/// read and a `/resource` JPEG per camera AID, and AIDs that stay with their camera when the
/// configuration gains a camera in the middle.
#[test]
fn aiohomekit_pairs_a_bridge_and_each_camera_keeps_its_aid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state_dir, config) = (
        dir.path().join("state"),
        dir.path().join("hksv-bridge.toml"),
    );
    let port = e2e_tests::free_port();
    let write_config = |cameras: &[&str]| {
        let mut text = format!(
            "bind = \"127.0.0.1\"\nmode = \"bridge\"\n[api]\nlisten = \"127.0.0.1:0\"\n\
             [bridge]\nname = \"Yard\"\nport = {port}\nsetup_code = \"{SETUP_CODE}\"\n"
        );
        for c in cameras {
            text.push_str(&format!(
                "[[cameras]]\nname = \"{c}\"\nsource = \"demo:\"\n"
            ));
        }
        std::fs::write(&config, text).expect("config");
    };
    let pairing_file = dir.path().join("pairing.json");
    let run = || {
        python(&[
            "bridge",
            &port.to_string(),
            SETUP_CODE,
            pairing_file.to_str().unwrap(),
        ])
    };
    // (name, aid) in AID order.
    let aids_by_name = |r: &Value| -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = r["accessories"]
            .as_array()
            .expect("accessories")
            .iter()
            .map(|a| {
                (
                    a["name"].as_str().unwrap_or("").to_owned(),
                    a["aid"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        v.sort_by_key(|(_, aid)| *aid);
        v
    };

    write_config(&["Porch", "Garage"]);
    let bridge = e2e_tests::BridgeProcess::start(&config, &state_dir, &[port]);
    let r = run();
    assert_eq!(r["paired"], "new", "{r}");
    assert_eq!(
        aids_by_name(&r),
        [
            ("Yard".to_owned(), 1),
            ("Porch".to_owned(), 2),
            ("Garage".to_owned(), 3)
        ],
        "{r}\n{}",
        bridge.log_text()
    );
    let accessories = r["accessories"].as_array().expect("accessories");
    let bridge_services = accessories[0]["services"].to_string();
    assert!(
        !bridge_services.contains("00000085-") && !bridge_services.contains("00000204-"),
        "the bridge accessory carries no camera services: {bridge_services}"
    );
    for cam in &accessories[1..] {
        // Demo motion may be on already; a boolean either way (aiohomekit passes 0/1 through).
        assert!(
            [0, 1].iter().any(|v| cam["motion_read"] == *v),
            "MotionDetected read: {cam}"
        );
        assert_eq!(
            cam["snapshot_is_jpeg"],
            true,
            "snapshot for aid {}: {}",
            cam["aid"],
            bridge.log_text()
        );
        for service in ["00000204-", "00000129-", "00000110-", "0000021A-"] {
            assert!(
                cam["services"].to_string().contains(service),
                "{service} in {cam}"
            );
        }
    }
    assert_eq!(
        r["bridge_snapshot_is_jpeg"], false,
        "no snapshot from the bridge accessory itself"
    );
    drop(bridge);

    // A camera added in the middle gets a new AID; the others keep theirs, and the pairing
    // (kept in the bridge's state) still verifies.
    write_config(&["Porch", "Driveway", "Garage"]);
    let bridge = e2e_tests::BridgeProcess::start(&config, &state_dir, &[port]);
    let r = run();
    assert_eq!(r["paired"], "verified", "{r}");
    assert_eq!(
        aids_by_name(&r),
        [
            ("Yard".to_owned(), 1),
            ("Porch".to_owned(), 2),
            ("Garage".to_owned(), 3),
            ("Driveway".to_owned(), 4)
        ],
        "{r}\n{}",
        bridge.log_text()
    );
}
