//! HomeKit settings are written before they are acknowledged: right after the 204 the file on
//! disk already holds the new value (a kill -9 then loses nothing), and when the file cannot be
//! written the controller gets an error and the value stays as it was, in memory and on disk.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bridge::camera::Camera;
use controller::{CharWrite, HapClient, pair_setup};
use hap_server::pairing::controller::ControllerIdentity;
use motion::MotionHub;
use serde_json::{Value as Json, json};
use tokio::sync::watch;
use tokio::task::JoinSet;

const CODE: &str = "518-08-584";
const WAIT: Duration = Duration::from_secs(10);
/// CameraOperatingMode / HomeKitCameraActive (the privacy switch).
const OPERATING_MODE: &str = "21A";
const CAMERA_ACTIVE: &str = "21B";

fn on_disk(dir: &std::path::Path) -> Json {
    serde_json::from_slice(&std::fs::read(dir.join("camera-state.json")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_privacy_switch_is_on_disk_before_the_204_and_a_failed_write_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hub = MotionHub::new([("Cam", motion::DebounceConfig::default())]).unwrap();
    let (_stop, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let camera = Camera::start(
        common::options(dir.path(), Some(CODE)),
        hub,
        &mut tasks,
        stop_rx,
    )
    .await
    .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], camera.port()));
    let keys = pair_setup(
        addr,
        &ControllerIdentity::generate(&mut rand::rng()),
        CODE,
        WAIT,
    )
    .await
    .unwrap();
    let mut hap = HapClient::connect(addr, &keys, WAIT).await.unwrap();
    let db = hap.accessories().await.unwrap();
    let (aid, iid) = db.id_of(OPERATING_MODE, CAMERA_ACTIVE).unwrap();

    for value in [0, 1, 0] {
        let r = hap
            .write(&[CharWrite::value(aid, iid, json!(value))], None)
            .await
            .unwrap();
        assert_eq!(r[0].status, 0);
        // No wait: what a kill -9 right now would leave behind.
        assert_eq!(
            on_disk(dir.path())["camera_active"],
            json!(value == 1),
            "saved before the acknowledgement"
        );
    }

    // The state file cannot be replaced (a directory in its place: fails even for root).
    let file = dir.path().join("camera-state.json");
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    let r = hap
        .write(&[CharWrite::value(aid, iid, json!(1))], None)
        .await
        .unwrap();
    assert_eq!(r[0].status, -70407, "OutOfResource, not a silent 204");
    let v = hap.read_one(aid, iid).await.unwrap();
    assert!(
        v == json!(0) || v == json!(false),
        "the value stays as it was: {v}"
    );
    // Space again: the write goes through and lands on disk.
    std::fs::remove_dir(&file).unwrap();
    let r = hap
        .write(&[CharWrite::value(aid, iid, json!(1))], None)
        .await
        .unwrap();
    assert_eq!(r[0].status, 0);
    assert_eq!(on_disk(dir.path())["camera_active"], json!(true));
}
