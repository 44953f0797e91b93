//! When the source changes (first seen, or another resolution and profile after a reconnect),
//! 205/206/207 are re-derived and sent as events to a subscribed hub, the hub's selection is
//! kept (we record the native stream whatever it says), and the source's facts are persisted so
//! that a restarted camera serves the same values before its source is back.
//!
//! The hub is the `controller` crate's HAP client; the second stream is made by ffmpeg (a peer
//! we did not write). Missing ffmpeg FAILS with "run scripts/test".
#![allow(clippy::indexing_slicing, clippy::unwrap_used, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bridge::camera::Camera;
use controller::hksv::{self, HksvIds};
use controller::{HapClient, PairingKeys, pair_setup};
use hap_server::pairing::controller::ControllerIdentity;
use hap_tlv::hksv::{H264Profile, SupportedVideoRecordingConfiguration};
use motion::MotionHub;
use recorder::DemoSource;
use serde_json::Value as Json;
use tokio::sync::watch;
use tokio::task::JoinSet;

const CODE: &str = "518-08-582";
const WAIT: Duration = Duration::from_secs(10);

struct Running {
    camera: Camera,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

async fn start(dir: &Path) -> Running {
    let hub = MotionHub::new([("Cam", motion::DebounceConfig::default())]).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let camera = Camera::start(common::options(dir, Some(CODE)), hub, &mut tasks, stop_rx)
        .await
        .unwrap();
    Running {
        camera,
        stop,
        tasks,
    }
}

impl Running {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.camera.port()))
    }

    /// Feeds `seconds` of `clip` through a fresh feeder (a source (re)connecting).
    fn feed(&self, clip: &mut DemoSource, seconds: u64) {
        let mut feeder = self.camera.feeder();
        let (first, unit) = clip.next_unit();
        feeder.push(unit);
        loop {
            let (due, unit) = clip.next_unit();
            feeder.push(unit);
            if due >= first + Duration::from_secs(seconds) {
                return;
            }
        }
    }

    async fn shut_down(mut self) {
        self.stop.send(true).unwrap();
        while self.tasks.join_next().await.is_some() {}
    }
}

fn video_of(value: &Json) -> SupportedVideoRecordingConfiguration {
    let bytes = B64
        .decode(value.as_str().expect("tlv8 is a base64 string"))
        .unwrap();
    SupportedVideoRecordingConfiguration::decode(&bytes).unwrap()
}

/// (width, height, profiles) of the first codec's first attribute: the source's own stream once
/// it is known.
fn summary(v: &SupportedVideoRecordingConfiguration) -> (u16, u16, Vec<H264Profile>) {
    let c = &v.codecs[0];
    (
        c.attributes[0].width,
        c.attributes[0].height,
        c.profiles.clone(),
    )
}

async fn hub(addr: SocketAddr, keys: &PairingKeys) -> (HapClient, HksvIds) {
    let mut hap = HapClient::connect(addr, keys, WAIT).await.unwrap();
    let db = hap.accessories().await.unwrap();
    let ids = HksvIds::find(&db).unwrap();
    (hap, ids)
}

/// A 640x360 High-profile H.264 clip made by ffmpeg.
fn small_high_profile_clip(dir: &Path) -> DemoSource {
    let out = dir.join("small.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=640x360:rate=15",
        ])
        .args([
            "-t",
            "6",
            "-c:v",
            "libx264",
            "-profile:v",
            "high",
            "-g",
            "15",
        ])
        .args(["-pix_fmt", "yuv420p"])
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("ffmpeg is required ({e}): run scripts/test"));
    assert!(status.success(), "ffmpeg failed: run scripts/test");
    DemoSource::from_mp4(std::fs::read(&out).unwrap().into()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_changes_update_205_to_207_with_events_keep_the_selection_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let run = start(&state).await;
    let me = ControllerIdentity::generate(&mut rand::rng());
    let keys = pair_setup(run.addr(), &me, CODE, WAIT).await.unwrap();
    let (mut hap, ids) = hub(run.addr(), &keys).await;

    // Before the source is seen: the defaults (Main and High).
    let before = video_of(
        &hap.read_one(ids.supported_video.0, ids.supported_video.1)
            .await
            .unwrap(),
    );
    assert_eq!(summary(&before).2, [H264Profile::Main, H264Profile::High]);

    let supported = hksv::read_supported(&mut hap, &ids).await.unwrap();
    let sel = supported.select().unwrap().encode();
    hksv::write_selected(&mut hap, &ids, &sel).await.unwrap();
    hap.subscribe(&[ids.supported_video], true).await.unwrap();

    // The bundled clip: 1920x1080 Main.
    let mut demo = DemoSource::bundled().unwrap();
    run.feed(&mut demo, 5);
    let (aid, iid) = ids.supported_video;
    let ev = hap
        .wait_for_event(aid, iid, WAIT, |v| {
            v.as_str().is_some() && summary(&video_of(v)).2 == [H264Profile::Main]
        })
        .await
        .expect("206 event once the source is known");
    assert_eq!(
        summary(&video_of(&ev)),
        (1920, 1080, vec![H264Profile::Main])
    );

    // The camera comes back as 640x360 High: a new event, mandatory resolutions still offered,
    // and the hub's selection still reads back unchanged.
    let mut small = small_high_profile_clip(dir.path());
    run.feed(&mut small, 5);
    let ev = hap
        .wait_for_event(aid, iid, WAIT, |v| {
            v.as_str().is_some() && summary(&video_of(v)).0 == 640
        })
        .await
        .expect("206 event after the source changed");
    let video = video_of(&ev);
    assert_eq!(summary(&video), (640, 360, vec![H264Profile::High]));
    let sizes: Vec<(u16, u16)> = video.codecs[0]
        .attributes
        .iter()
        .map(|a| (a.width, a.height))
        .collect();
    assert!(
        sizes.contains(&(1920, 1080)) && sizes.contains(&(1280, 720)),
        "{sizes:?}"
    );
    assert_eq!(hksv::read_selected(&mut hap, &ids).await, Some(sel.clone()));
    drop(hap);
    run.shut_down().await;

    // Restarted, no media yet: the last source's values, not the defaults.
    let run = start(&state).await;
    let (mut hap, ids) = hub(run.addr(), &keys).await;
    let after = video_of(
        &hap.read_one(ids.supported_video.0, ids.supported_video.1)
            .await
            .unwrap(),
    );
    assert_eq!(summary(&after), (640, 360, vec![H264Profile::High]));
    assert_eq!(hksv::read_selected(&mut hap, &ids).await, Some(sel));
    run.shut_down().await;
}
