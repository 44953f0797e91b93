//! First run on a fresh machine (issue 15): the build needs no libclang, and the packaged
//! systemd unit is valid and hardened. `.ci/run` also builds the release binary on a machine
//! without libclang and runs the README's command for 5 s.
#![allow(clippy::indexing_slicing)] // tests: a panic is a failed check

use std::process::Command;

/// No crate in the build runs bindgen (which needs libclang at build time): V4L2 comes from
/// `moq-v4l`, whose kernel bindings are checked in (docs/decisions.md D7).
#[test]
fn the_build_needs_no_libclang() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(e2e_tests::workspace_root())
        .args([
            "tree",
            "--workspace",
            "--locked",
            "--offline",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.lines().any(|l| l.starts_with("moq-v4l ")), "{tree}");
    let offenders: Vec<&str> = tree
        .lines()
        .filter(|l| l.starts_with("bindgen ") || l.starts_with("clang-sys "))
        .collect();
    assert!(
        offenders.is_empty(),
        "libclang at build time: {offenders:?}"
    );
}

/// `packaging/hksv-bridge.service` passes `systemd-analyze verify` (with ExecStart pointed at the
/// binary under test) and scores "OK" or better on `systemd-analyze security`.
#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("systemd-analyze not found (Debian package systemd); run scripts/test");
    let unit =
        std::fs::read_to_string(e2e_tests::workspace_root().join("packaging/hksv-bridge.service"))
            .expect("read packaging/hksv-bridge.service");
    for key in [
        "DynamicUser=yes",
        "StateDirectory=hksv-bridge",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "Restart=on-failure",
        "--state-dir /var/lib/hksv-bridge",
    ] {
        assert!(unit.lines().any(|l| l.contains(key)), "unit lacks {key}");
    }
    let bin = e2e_tests::bridge_bin();
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("hksv-bridge.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/hksv-bridge", &bin.to_string_lossy()),
    )
    .expect("write unit");
    let verify = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze verify");
    let err = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "systemd-analyze verify: {err}");
    // Warnings (unknown keys, bad values) go to stderr with a zero exit status.
    let unit_lines: Vec<&str> = err.lines().filter(|l| l.contains("hksv-bridge")).collect();
    assert!(unit_lines.is_empty(), "systemd-analyze verify: {err}");
    let security = Command::new(analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze security");
    let report = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for hksv-bridge.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {report}"));
    // The unit scores 1.7 ("OK"); one with no hardening scores 9.6 ("UNSAFE").
    assert!(exposure <= 2.0, "exposure {exposure}: {report}");
}

/// A source that can never work stops `run` before it prints a setup code: one line, exit 1,
/// naming the camera and the key.
#[test]
fn a_source_that_can_never_work_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let missing = dir.path().join("no-such-clip.mp4");
    for (source, expect) in [
        ("rtps://192.168.1.20/stream1", "unknown scheme rtps"),
        ("rtsps://u:secret@192.168.1.20/stream1", "rtsps://"),
        (missing.to_str().expect("utf-8 path"), "no-such-clip.mp4"),
        ("v4l2:///dev/video-none", "/dev/video-none"),
    ] {
        let config = dir.path().join("hksv-bridge.toml");
        std::fs::write(
            &config,
            format!(
                "mdns = false\n[api]\nlisten = \"127.0.0.1:0\"\n[[cameras]]\nname = \"Porch\"\nsource = \"{source}\"\nport = 0\n"
            ),
        )
        .expect("config");
        let out = Command::new(e2e_tests::bridge_bin())
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .output()
            .expect("run hksv-bridge");
        let err = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{source}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{source}: {err}");
        assert!(
            err.contains("camera \"Porch\": source:") && err.contains(expect),
            "{source}: {err}"
        );
        assert!(!err.contains("secret"), "{err}");
        assert!(
            !stdout.contains("X-HM://"),
            "{source}: paired a dead camera: {stdout}"
        );
    }
}

/// `pair-info` reads; it does not log or bump a database change (`c#` stays as stored).
#[test]
fn pair_info_changes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    let pair_info = || {
        Command::new(e2e_tests::bridge_bin())
            .arg("pair-info")
            .arg("--state-dir")
            .arg(&state)
            .env_remove("HKSV_CONFIG")
            .output()
            .expect("run hksv-bridge pair-info")
    };
    let accessory_file = state.join("demo-camera/accessory.json");
    let first = pair_info();
    assert!(first.status.success());
    let stored = std::fs::read_to_string(&accessory_file).expect("accessory.json written");
    let second = pair_info();
    assert!(second.status.success());
    for out in [&first, &second] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("database"), "{err}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Setup code:"));
    }
    assert_eq!(
        std::fs::read_to_string(&accessory_file).expect("accessory.json"),
        stored,
        "pair-info rewrote the accessory file"
    );
}

/// Through the binary: `check --help` lists check's flags, not run's; `run --help` has them.
#[test]
fn each_subcommand_lists_only_its_flags() {
    let help = |sub: &str| {
        let out = Command::new(e2e_tests::bridge_bin())
            .args([sub, "--help"])
            .output()
            .expect("run hksv-bridge --help");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let check = help("check");
    assert!(
        check.contains("--seconds") && check.contains("--config"),
        "{check}"
    );
    assert!(
        !check.contains("--port") && !check.contains("--no-mdns"),
        "{check}"
    );
    let run = help("run");
    assert!(run.contains("--port") && run.contains("--no-mdns"), "{run}");
    let pair_info = help("pair-info");
    assert!(!pair_info.contains("--demo-motion-ms"), "{pair_info}");
}
