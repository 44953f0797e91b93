//! The camera's own limits on HDS, driven by the hub simulator of the controller crate over
//! loopback: the `max_recording_s` cap (accessory close reason 3, protocol-notes §5.3/§5.4) and
//! the 10 s life of a prepared HDS session (§4.4). Media is the bundled demo clip pushed through
//! the camera's feeder, faster than real time.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bridge::camera::{Camera, CameraOptions, Feeder};
use controller::hds_client::{HdsClient, HdsClientError, RecordingEnd, StopWhen};
use controller::hksv::{self, HksvIds};
use controller::{HapClient, pair_setup};
use hap_server::pairing::controller::ControllerIdentity;
use hds::connection::PREPARED_SESSION_LIFETIME;
use hds::controller::ControllerEvent;
use hds::{Reason, SegmentKind};
use motion::{DebounceConfig, MotionHub, MotionSource};
use recorder::DemoSource;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::timeout;

const CODE: &str = "270-61-934";
const WAIT: Duration = Duration::from_secs(10);
/// HAP-NodeJS 209 vector (protocol-notes §3.4): prebuffer 4000 ms, motion, Main 4.0, AAC-LC.
const SELECTED: &str = "AR0BBKAPAAACCAEAAAAAAAAAAwsBAQACBgEEoA8AAAIkAQEAAhIBAQECAQIDBNAHAAAEBKAPAAADCwECsAQCAkAGAwEYAxQBAQACDwEBAQIBAAMBAwQEQAAAAA==";

/// A camera with 8 s of demo media in its ring, paired, with its recording selected and
/// enabled (Active = 1) over HAP.
struct Rig {
    camera: Camera,
    hub: MotionHub,
    feeder: Feeder,
    demo: DemoSource,
    hap: HapClient,
    ids: HksvIds,
    _dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
    _tasks: JoinSet<()>,
}

impl Rig {
    async fn new(max_recording_s: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let fast = DebounceConfig {
            min_on_ms: 0,
            hold_ms: 0,
            ..DebounceConfig::default()
        };
        let hub = MotionHub::new([("Cam", fast)]).unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let camera = Camera::start(
            CameraOptions {
                max_recording_s,
                ..common::options(dir.path(), Some(CODE))
            },
            hub.clone(),
            &mut tasks,
            stop_rx,
        )
        .await
        .unwrap();
        let mut feeder = camera.feeder();
        let mut demo = DemoSource::bundled().unwrap();
        // Full: the demo's 3999 ms fragments make 7998 ms, 8 s within the ring's slack.
        while camera.ring().buffered() < Duration::from_millis(7_900) {
            feeder.push(demo.next_unit().1);
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], camera.port()));
        let id = ControllerIdentity::generate(&mut rand::rng());
        let keys = pair_setup(addr, &id, CODE, WAIT).await.unwrap();
        let mut hap = HapClient::connect(addr, &keys, WAIT).await.unwrap();
        let db = hap.accessories().await.unwrap();
        let ids = HksvIds::find(&db).unwrap();
        hksv::write_selected(&mut hap, &ids, &B64.decode(SELECTED).unwrap())
            .await
            .unwrap();
        hksv::write_flag(&mut hap, ids.recording_active, true)
            .await
            .unwrap();
        Self {
            camera,
            hub,
            feeder,
            demo,
            hap,
            ids,
            _dir: dir,
            _stop: stop,
            _tasks: tasks,
        }
    }

    /// SetupDataStreamTransport, then a hello'd HDS connection with its keys.
    async fn hds(&mut self) -> HdsClient {
        let (setup, keys) = hksv::setup_data_stream(&mut self.hap, &self.ids)
            .await
            .unwrap();
        assert_eq!((setup.status, setup.port), (0, self.camera.hds_port()));
        HdsClient::connect(SocketAddr::from(([127, 0, 0, 1], setup.port)), &keys, WAIT)
            .await
            .unwrap()
    }
}

/// Pushes one second of demo media (as the live source would).
fn push_second(feeder: &mut Feeder, demo: &mut DemoSource) {
    let (first, unit) = demo.next_unit();
    feeder.push(unit);
    loop {
        let (due, unit) = demo.next_unit();
        feeder.push(unit);
        if due >= first + Duration::from_secs(1) {
            return;
        }
    }
}

/// Waits until `done` holds (polling), or fails with `what`.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    timeout(WAIT, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

/// A recording still running at `max_recording_s` (motion held on, media flowing at 4× real
/// time) is closed by the camera with reason 3 after everything produced so far was sent; the
/// recording slot and the ring reader are released, and the same HDS connection can open the
/// next recording.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_recording_s_closes_with_reason_cancelled_and_frees_the_slot() {
    const MAX_RECORDING_S: u32 = 2;
    let mut rig = Rig::new(MAX_RECORDING_S).await;
    let cam = rig.camera.clone();
    let readers_before = cam.ring().reader_count();
    rig.hub.trigger("Cam", true, MotionSource::Mqtt).unwrap();
    wait_until("MotionDetected is on", || cam.motion_detected()).await;
    let mut hds = rig.hds().await;
    assert_eq!(cam.hds_connections(), 1);

    // The live source: one second of media every 250 ms, until the test ends.
    let (mut feeder, mut demo) = (rig.feeder, rig.demo);
    let (live_stop, mut live_stopped) = watch::channel(false);
    let live = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = tick.tick() => push_second(&mut feeder, &mut demo),
                _ = live_stopped.changed() => return,
            }
        }
    });

    let opened = Instant::now();
    let rec = hds
        .record(
            1,
            StopWhen {
                max_fragments: usize::MAX,
                max_duration: Duration::from_secs(30),
                stall: WAIT,
            },
        )
        .await;
    let elapsed = opened.elapsed();
    assert_eq!(
        rec.end,
        RecordingEnd::ClosedByAccessory(Reason::CANCELLED),
        "after {elapsed:?}"
    );
    assert!(
        elapsed >= Duration::from_secs(MAX_RECORDING_S.into()),
        "closed before the cap: {elapsed:?}"
    );
    // Well before the hub's own 30 s limit (margin for a loaded machine).
    assert!(
        elapsed < Duration::from_secs(u64::from(MAX_RECORDING_S) + 8),
        "the cap was not enforced: {elapsed:?}"
    );
    // What was sent before the close: the init segment, the prebuffer and the live fragments
    // produced meanwhile (4 s fragments at 4× real time: about one a second), in sequence, none
    // marked endOfStream (motion never ended).
    let kinds: Vec<SegmentKind> = rec.segments.iter().map(|s| s.kind).collect();
    assert_eq!(kinds.first(), Some(&SegmentKind::MediaInitialization));
    let fragments = kinds
        .iter()
        .filter(|k| **k == SegmentKind::MediaFragment)
        .count();
    assert!(
        fragments >= 2,
        "prebuffer and live fragments expected, got {fragments}"
    );
    for (i, s) in rec.segments.iter().enumerate() {
        assert_eq!(s.data_sequence_number, i as i64 + 1);
        assert!(!s.end_of_stream, "segment {} ended the stream", i + 1);
    }

    wait_until("the recording slot is free", || !cam.is_recording()).await;
    wait_until("the ring reader is released", || {
        cam.ring().reader_count() == readers_before
    })
    .await;
    // The stream was closed, not the connection.
    assert_eq!(cam.hds_connections(), 1);

    // The slot is free again: the next open on the same connection gets its init segment.
    hds.send_open(2).await.unwrap();
    assert_eq!(
        hds.next_event(WAIT).await.unwrap(),
        ControllerEvent::OpenAccepted { stream_id: 2 }
    );
    let first = loop {
        match hds.next_event(WAIT).await.unwrap() {
            ControllerEvent::Chunk { .. } => {}
            e => break e,
        }
    };
    assert!(
        matches!(
            first,
            ControllerEvent::Segment {
                stream_id: 2,
                kind: SegmentKind::MediaInitialization,
                data_sequence_number: 1,
                ..
            }
        ),
        "{first:?}"
    );
    assert!(cam.is_recording());
    hds.close_stream(2, Reason::NORMAL).await.unwrap();
    wait_until("the hub's close frees the slot", || !cam.is_recording()).await;

    live_stop.send(true).unwrap();
    live.await.unwrap();
    drop(hds);
    wait_until("no HDS connection, reader or slot is left", || {
        cam.hds_connections() == 0
            && !cam.is_recording()
            && cam.ring().reader_count() == readers_before
    })
    .await;
    assert_eq!(cam.prepared_sessions(), 0);
}

/// A SetupDataStreamTransport write prepares an HDS session for 10 s (§4.4): a connection
/// within that time is identified; one made after it is closed by the camera without a hello,
/// and the expired session is gone. Real time (the camera's timers and sockets run on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_session_expires_after_its_lifetime() {
    let mut rig = Rig::new(180).await;
    let cam = rig.camera.clone();
    let hds_addr = SocketAddr::from(([127, 0, 0, 1], cam.hds_port()));

    // Two sessions prepared on the same HAP session: one used at once, one left to expire.
    let (late, late_keys) = hksv::setup_data_stream(&mut rig.hap, &rig.ids)
        .await
        .unwrap();
    let (early, early_keys) = hksv::setup_data_stream(&mut rig.hap, &rig.ids)
        .await
        .unwrap();
    assert_eq!((late.status, early.status), (0, 0));
    let prepared_at = Instant::now();
    assert_eq!(cam.prepared_sessions(), 2);
    let on_time = HdsClient::connect(hds_addr, &early_keys, WAIT)
        .await
        .expect("a connection within the lifetime is identified");
    assert_eq!(cam.prepared_sessions(), 1);
    assert_eq!(cam.hds_connections(), 1);

    let expired_at = prepared_at + PREPARED_SESSION_LIFETIME;
    tokio::time::sleep_until((expired_at + Duration::from_millis(500)).into()).await;
    let late_result = HdsClient::connect(hds_addr, &late_keys, WAIT).await;
    assert!(
        matches!(
            late_result,
            Err(HdsClientError::Closed | HdsClientError::Io(_))
        ),
        "a connection after the lifetime must be refused: {late_result:?}"
    );
    assert_eq!(cam.prepared_sessions(), 0, "the expired session was kept");
    // Only the identified connection is left.
    wait_until("the refused connection's task ends", || {
        cam.hds_connections() == 1
    })
    .await;
    drop(on_time);
    wait_until("no HDS connection is left", || cam.hds_connections() == 0).await;
}
