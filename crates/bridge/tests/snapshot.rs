//! `/resource` over real HAP: a camera fed the bundled demo clip, paired by our controller
//! crate, asked for snapshots under each CameraOperatingMode/RTP switch (protocol notes §5.6).

#![allow(clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use bridge::camera::Camera;
use controller::hksv::types::{
    ACTIVE, HOMEKIT_CAMERA_ACTIVE, OPERATING_MODE, RTP_STREAM_MANAGEMENT,
};
use controller::{AccessoryDb, CharWrite, HapClient, pair_setup};
use hap_server::pairing::controller::ControllerIdentity;
use motion::{DebounceConfig, MotionHub};
use recorder::DemoSource;
use serde_json::{Value as Json, json};
use tokio::sync::watch;
use tokio::task::JoinSet;

const CODE: &str = "031-45-154";
const EVENT_SNAPSHOTS_ACTIVE: &str = "223";
const PERIODIC_SNAPSHOTS_ACTIVE: &str = "225";
/// (reason, expected HAP status; 0 = a JPEG) for one switch turned off.
type Expected = [(Option<u8>, i64); 3];

const WAIT: Duration = Duration::from_secs(10);

/// (width, height) from SOF0, after checking SOI and EOI.
fn jpeg_size(jpeg: &[u8]) -> (u16, u16) {
    assert_eq!(&jpeg[..2], &[0xff, 0xd8], "SOI");
    assert_eq!(&jpeg[jpeg.len() - 2..], &[0xff, 0xd9], "EOI");
    let mut i = 2;
    while i + 9 <= jpeg.len() {
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        if jpeg[i + 1] == 0xc0 {
            return (
                u16::from_be_bytes([jpeg[i + 7], jpeg[i + 8]]),
                u16::from_be_bytes([jpeg[i + 5], jpeg[i + 6]]),
            );
        }
        i += 2 + len;
    }
    panic!("no SOF0");
}

fn image(w: u32, h: u32, reason: Option<u8>) -> Json {
    let mut body = json!({"aid": 1, "resource-type": "image", "image-width": w, "image-height": h});
    if let Some(r) = reason {
        body["reason"] = json!(r);
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_over_hap_follow_the_hksv_rules() {
    let dir = tempfile::tempdir().unwrap();
    let hub = MotionHub::new([("Cam", DebounceConfig::default())]).unwrap();
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
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], camera.port()));
    let id = ControllerIdentity::generate(&mut rand::rng());
    let keys = pair_setup(addr, &id, CODE, WAIT).await.unwrap();
    let mut hap = HapClient::connect(addr, &keys, WAIT).await.unwrap();

    // No media yet: -70402.
    let r = hap.resource(&image(640, 360, None)).await.unwrap();
    assert_eq!((r.status, r.json()), (207, json!({"status": -70402})));

    // Feed the clip up to its first IDR (and a little more). Nothing is decoded until asked:
    // the first request decodes that keyframe itself, so it is answered at once.
    let mut feeder = camera.feeder();
    let mut demo = DemoSource::bundled().unwrap();
    for _ in 0..20 {
        feeder.push(demo.next_unit().1);
    }
    let r = hap.resource(&image(640, 360, Some(0))).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    assert_eq!(jpeg_size(&r.body), (640, 360));
    let r = hap.resource(&image(1280, 720, None)).await.unwrap();
    assert_eq!(jpeg_size(&r.body), (1280, 720));

    // Other resource types → 404 -70409.
    let r = hap
        .resource(&json!({"resource-type": "video", "image-width": 1, "image-height": 1}))
        .await
        .unwrap();
    assert_eq!((r.status, r.json()), (404, json!({"status": -70409})));

    let db: AccessoryDb = hap.accessories().await.unwrap();
    let set = |svc: &str, ch: &str, on: bool| {
        let (aid, iid) = db.id_of(svc, ch).unwrap_or_else(|| panic!("{svc}/{ch}"));
        CharWrite::value(aid, iid, json!(on))
    };
    let cases: [(&str, &str, Expected); 4] = [
        (
            RTP_STREAM_MANAGEMENT,
            ACTIVE,
            [(None, -70412), (Some(0), -70412), (Some(1), -70412)],
        ),
        (
            OPERATING_MODE,
            HOMEKIT_CAMERA_ACTIVE,
            [(None, -70412), (Some(0), -70412), (Some(1), -70412)],
        ),
        (
            OPERATING_MODE,
            EVENT_SNAPSHOTS_ACTIVE,
            [(None, -70401), (Some(1), -70412), (Some(0), 0)],
        ),
        (
            OPERATING_MODE,
            PERIODIC_SNAPSHOTS_ACTIVE,
            [(None, -70401), (Some(0), -70412), (Some(1), 0)],
        ),
    ];
    for (svc, ch, expected) in cases {
        hap.write(&[set(svc, ch, false)], None).await.unwrap();
        for (reason, status) in expected {
            let r = hap.resource(&image(320, 180, reason)).await.unwrap();
            if status == 0 {
                assert_eq!(r.status, 200, "{ch} off, reason {reason:?}: {:?}", r.json());
                assert_eq!(jpeg_size(&r.body), (320, 180));
            } else {
                assert_eq!(
                    (r.status, r.json()),
                    (207, json!({"status": status})),
                    "{ch} off, reason {reason:?}"
                );
            }
        }
        hap.write(&[set(svc, ch, true)], None).await.unwrap();
    }
    let r = hap.resource(&image(320, 180, None)).await.unwrap();
    assert_eq!(r.status, 200, "all switches back on");
}
