//! The selftest's temporary pairings: removed when they outlive their TTL (a selftest that was
//! interrupted) and at the next start after a crash, while the user's own pairing stays.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::Path;
use std::time::Duration;

use bridge::camera::{Camera, TEMPORARY_PAIRINGS_FILE};
use motion::MotionHub;
use tokio::sync::watch;
use tokio::task::JoinSet;

async fn start(dir: &Path) -> (Camera, watch::Sender<bool>, JoinSet<()>) {
    let hub = MotionHub::new([("Cam", motion::DebounceConfig::default())]).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let camera = Camera::start(common::options(dir, None), hub, &mut tasks, stop_rx)
        .await
        .unwrap();
    (camera, stop, tasks)
}

fn has(camera: &Camera, id: &str) -> bool {
    camera.server().lock().find_pairing(id).is_some()
}

#[tokio::test]
async fn temporary_pairings_expire_and_do_not_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (camera, stop, mut tasks) = start(dir.path()).await;
    camera
        .server()
        .lock()
        .add_controller_pairing("home", [7; 32], true)
        .unwrap();

    camera
        .add_temporary_pairing("selftest-a", [1; 32], Duration::from_millis(200))
        .unwrap();
    assert!(has(&camera, "selftest-a"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !has(&camera, "selftest-a"),
        "expired temporary pairing removed"
    );
    assert!(has(&camera, "home"), "the user's pairing stays");

    // Removed by its selftest: unlisted, and removing it twice is fine.
    camera
        .add_temporary_pairing("selftest-b", [2; 32], Duration::from_secs(600))
        .unwrap();
    camera.remove_temporary_pairing("selftest-b").unwrap();
    camera.remove_temporary_pairing("selftest-b").unwrap();
    assert!(!has(&camera, "selftest-b"));

    // A crash with one still present: the next start removes it.
    camera
        .add_temporary_pairing("selftest-c", [3; 32], Duration::from_secs(600))
        .unwrap();
    let listed = std::fs::read_to_string(dir.path().join(TEMPORARY_PAIRINGS_FILE)).unwrap();
    assert!(
        listed.contains("selftest-c") && !listed.contains("selftest-b"),
        "{listed}"
    );
    stop.send(true).unwrap();
    while tasks.join_next().await.is_some() {}
    drop(camera);

    let (camera, _stop, _tasks) = start(dir.path()).await;
    assert!(
        !has(&camera, "selftest-c"),
        "left-over temporary pairing purged at start"
    );
    assert!(has(&camera, "home"));
    assert!(camera.is_paired());
}
