//! In-process recording flow against a real camera accessory on loopback TCP, driven by the
//! controller crate's HAP client and `hds::controller`: pair (pair-setup
//! M1–M6), pair-verify, select a recording configuration, SetupDataStreamTransport, HDS hello and
//! `dataSend/open`, init segment + prebuffer + live fragments, endOfStream, ack, the rejections,
//! and release of every resource on each exit path. The media comes from the bundled demo clip
//! pushed through the camera's feeder (no wall-clock waits for the ring to fill).
#![allow(clippy::indexing_slicing, clippy::unwrap_used, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bridge::camera::{Camera, CameraOptions};
use bytes::BytesMut;
use controller::{AccessoryDb, CharWrite, HapClient, pair_setup};
use hap_server::pairing::controller::ControllerIdentity;
use hap_tlv::hksv::{SetupDataStreamRequest, SetupDataStreamResponse};
use hds::controller::{Controller, ControllerEvent};
use hds::{Reason, SegmentKind};
use motion::{DebounceConfig, MotionHub, MotionSource};
use recorder::DemoSource;
use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::timeout;

const CODE: &str = "518-08-582";
const WAIT: Duration = Duration::from_secs(10);
/// HAP-NodeJS 209 vector (protocol-notes §3.4): prebuffer 4000 ms, motion, Main 4.0, AAC-LC.
const SELECTED: &str = "AR0BBKAPAAACCAEAAAAAAAAAAwsBAQACBgEEoA8AAAIkAQEAAhIBAQECAQIDBNAHAAAEBKAPAAADCwECsAQCAkAGAwEYAxQBAQACDwEBAQIBAAMBAwQEQAAAAA==";

/// (aid, iid) of characteristic `ch` in the service of type `svc` (short UUIDs).
fn id(db: &AccessoryDb, svc: &str, ch: &str) -> (u64, u64) {
    db.id_of(svc, ch)
        .unwrap_or_else(|| panic!("no {ch} in {svc}"))
}

struct Rig {
    camera: Camera,
    hub: MotionHub,
    feeder: bridge::camera::Feeder,
    demo: DemoSource,
    client: HapClient,
    db: AccessoryDb,
    _dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
    _tasks: JoinSet<()>,
}

impl Rig {
    async fn new() -> Self {
        Self::with_audio(false).await
    }

    /// `audio`: CameraOptions::audio, and the demo clip's AAC config is handed to the feeder
    /// (as a source reports it on connect).
    async fn with_audio(audio: bool) -> Self {
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
                audio,
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
        if audio {
            feeder.set_audio_config(demo.audio_config().cloned());
        }
        // Full: the demo's 3999 ms fragments make 7998 ms, 8 s within the ring's slack.
        while camera.ring().buffered() < Duration::from_millis(7_900) {
            feeder.push(demo.next_unit().1);
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], camera.port()));
        let identity = ControllerIdentity::generate(&mut rand::rng());
        let keys = pair_setup(addr, &identity, CODE, WAIT).await.unwrap();
        let mut client = HapClient::connect(addr, &keys, WAIT).await.unwrap();
        let db = client.accessories().await.unwrap();
        Self {
            camera,
            hub,
            feeder,
            demo,
            client,
            db,
            _dir: dir,
            _stop: stop,
            _tasks: tasks,
        }
    }

    /// Pushes one second of demo media (as the live source would).
    fn push_second(&mut self) {
        let (first, unit) = self.demo.next_unit();
        self.feeder.push(unit);
        loop {
            let (due, unit) = self.demo.next_unit();
            self.feeder.push(unit);
            if due >= first + Duration::from_secs(1) {
                return;
            }
        }
    }

    /// Writes `value` and returns the entry's HAP status (0 = written).
    async fn write(&mut self, svc: &str, ch: &str, value: Json) -> i64 {
        let (aid, iid) = id(&self.db, svc, ch);
        let r = self
            .client
            .write(&[CharWrite::value(aid, iid, value)], None)
            .await
            .unwrap();
        r[0].status
    }

    /// A timed write (`/prepare` then the write with its pid), as hubs write `tw`
    /// characteristics such as RecordingAudioActive.
    async fn timed_write(&mut self, svc: &str, ch: &str, value: Json) {
        let (aid, iid) = id(&self.db, svc, ch);
        let r = self
            .client
            .timed_write(&[CharWrite::value(aid, iid, value)], 10_000)
            .await
            .unwrap();
        assert_eq!(r[0].status, 0, "{r:?}");
    }

    /// Writes 131 and connects an HDS controller to the returned port.
    async fn hds(&mut self) -> (Controller, Link) {
        let salt = [7u8; 32];
        let req = SetupDataStreamRequest {
            controller_salt: salt,
        }
        .encode();
        let (aid, iid) = id(&self.db, "129", "131");
        let r = self
            .client
            .write(
                &[CharWrite {
                    response: true,
                    ..CharWrite::value(aid, iid, json!(B64.encode(req)))
                }],
                None,
            )
            .await
            .unwrap();
        assert_eq!(r[0].status, 0, "{r:?}");
        let v = r[0].value.as_ref().and_then(Json::as_str).unwrap();
        let resp = SetupDataStreamResponse::decode(&B64.decode(v).unwrap()).unwrap();
        assert_eq!(resp.status, 0);
        assert_eq!(resp.port, Some(self.camera.hds_port()));
        let keys = self.client.hds_keys(&salt, &resp.accessory_salt.unwrap());
        let mut hub = Controller::new(&keys);
        let mut tcp = Link {
            tcp: TcpStream::connect(("127.0.0.1", resp.port.unwrap()))
                .await
                .unwrap(),
            buf: BytesMut::new(),
        };
        hub.hello();
        flush(&mut hub, &mut tcp).await;
        assert_eq!(
            next_event(&mut hub, &mut tcp).await,
            ControllerEvent::HelloDone
        );
        (hub, tcp)
    }
}

/// An HDS socket and the bytes read but not yet consumed (a partial frame).
struct Link {
    tcp: TcpStream,
    buf: BytesMut,
}

async fn flush(hub: &mut Controller, tcp: &mut Link) {
    let mut out = Vec::new();
    while hub.poll_transmit(&mut out) {}
    tcp.tcp.write_all(&out).await.unwrap();
}

/// Next non-chunk event.
async fn next_event(hub: &mut Controller, tcp: &mut Link) -> ControllerEvent {
    try_next_event(hub, tcp, WAIT)
        .await
        .expect("HDS read timed out")
}

/// Next non-chunk event within `wait`; bytes stay in the controller's buffer across calls.
async fn try_next_event(
    hub: &mut Controller,
    tcp: &mut Link,
    wait: Duration,
) -> Option<ControllerEvent> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        while let Some(ev) = hub.poll_event() {
            if !matches!(ev, ControllerEvent::Chunk { .. }) {
                return Some(ev);
            }
        }
        let n = tokio::time::timeout_at(deadline, tcp.tcp.read_buf(&mut tcp.buf))
            .await
            .ok()?
            .unwrap();
        assert!(n > 0, "HDS connection closed");
        hub.handle_incoming(&mut tcp.buf).unwrap();
    }
}

/// The first `traf`'s `trun` flags: 0x305 = data offset + first-sample-flags + sizes, i.e. the
/// fragment starts with a sync sample (the camera's layout, recorder::fmp4).
fn starts_with_idr(fragment: &[u8]) -> bool {
    let Some(pos) = fragment.windows(4).position(|w| w == b"trun") else {
        return false;
    };
    let flags = u32::from_be_bytes([0, fragment[pos + 5], fragment[pos + 6], fragment[pos + 7]]);
    if flags & 0x4 == 0 {
        return false;
    }
    // first_sample_flags follow sample_count (4) and data_offset (4): sample_depends_on = 2.
    let first_flags = &fragment[pos + 16..pos + 20];
    first_flags[0] & 0x03 == 0x02 && first_flags[1] & 0x01 == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_flow_end_to_end_in_process() {
    let mut rig = Rig::new().await;
    let cam = rig.camera.clone();

    // 209 read before any write → -70402 (HAP-NodeJS).
    let selected = id(&rig.db, "204", "209");
    let r = rig.client.read(&[selected]).await.unwrap();
    assert_eq!(r[0].status, -70402, "{r:?}");

    // Malformed and unknown-codec selections → -70410, nothing stored.
    let mut bad = B64.decode(SELECTED).unwrap();
    bad[35] = 1; // H.265
    assert_eq!(
        rig.write("204", "209", json!(B64.encode(&bad))).await,
        -70410
    );
    assert_eq!(
        rig.write("204", "209", json!(B64.encode(&bad[..20]))).await,
        -70410
    );
    assert!(cam.state().selected.is_none());

    // Open before recording is allowed → not allowed (1).
    let (mut hub, mut tcp) = rig.hds().await;
    hub.open(1);
    flush(&mut hub, &mut tcp).await;
    match next_event(&mut hub, &mut tcp).await {
        ControllerEvent::OpenRejected { reason, .. } => assert_eq!(reason, Reason::NOT_ALLOWED),
        e => panic!("{e:?}"),
    }

    // Select, Active = 1.
    assert_eq!(rig.write("204", "209", json!(SELECTED)).await, 0);
    assert_eq!(rig.write("204", "B0", json!(1)).await, 0);
    assert!(cam.state().recording_active && cam.state().selected.is_some());

    // Motion → MotionDetected; then open → init + prebuffer.
    rig.hub.trigger("Cam", true, MotionSource::Mqtt).unwrap();
    timeout(WAIT, async {
        while !cam.motion_detected() {
            tokio::time::sleep(Duration::from_millis(10)).await
        }
    })
    .await
    .unwrap();
    let readers_before = cam.ring().reader_count();
    hub.open(2);
    flush(&mut hub, &mut tcp).await;
    assert_eq!(
        next_event(&mut hub, &mut tcp).await,
        ControllerEvent::OpenAccepted { stream_id: 2 }
    );
    assert!(cam.is_recording());
    assert_eq!(cam.ring().reader_count(), readers_before + 1);
    let mut fragments = 0;
    match next_event(&mut hub, &mut tcp).await {
        ControllerEvent::Segment {
            kind,
            data_sequence_number,
            data,
            ..
        } => {
            assert_eq!(
                (kind, data_sequence_number),
                (SegmentKind::MediaInitialization, 1)
            );
            assert_eq!(&data[4..8], b"ftyp");
        }
        e => panic!("{e:?}"),
    }
    // Prebuffer: at least one fragment at once (4 s selected, 8 s held).
    let mut eos = false;
    while let Some(ev) = try_next_event(&mut hub, &mut tcp, Duration::from_millis(500)).await {
        match ev {
            ControllerEvent::Segment {
                kind,
                data_sequence_number,
                data,
                end_of_stream,
                ..
            } => {
                assert_eq!(kind, SegmentKind::MediaFragment);
                assert_eq!(data_sequence_number, 2 + fragments);
                assert_eq!(&data[4..8], b"moof");
                assert!(
                    starts_with_idr(&data),
                    "fragment {data_sequence_number} is not IDR-led"
                );
                assert!(!end_of_stream);
                fragments += 1;
            }
            e => panic!("{e:?}"),
        }
    }
    assert!(fragments >= 1, "no prebuffer fragment");

    // A second open on another HDS connection while recording → busy (2).
    let (mut hub2, mut tcp2) = rig.hds().await;
    hub2.open(9);
    flush(&mut hub2, &mut tcp2).await;
    match next_event(&mut hub2, &mut tcp2).await {
        ControllerEvent::OpenRejected { reason, .. } => assert_eq!(reason, Reason::BUSY),
        e => panic!("{e:?}"),
    }

    // Live fragment, then motion off → the fragment in progress ends the stream.
    let prebuffered = fragments;
    while fragments == prebuffered {
        rig.push_second();
        if let Some(ControllerEvent::Segment {
            end_of_stream,
            data,
            ..
        }) = try_next_event(&mut hub, &mut tcp, Duration::from_millis(100)).await
        {
            assert!(!end_of_stream);
            assert!(starts_with_idr(&data));
            fragments += 1;
        }
    }
    rig.hub.trigger("Cam", false, MotionSource::Mqtt).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    while !eos {
        rig.push_second();
        if let Some(ev) = try_next_event(&mut hub, &mut tcp, Duration::from_millis(100)).await {
            match ev {
                ControllerEvent::Segment { end_of_stream, .. } => eos = end_of_stream,
                e => panic!("{e:?}"),
            }
        }
    }
    hub.ack(2);
    flush(&mut hub, &mut tcp).await;
    timeout(WAIT, async {
        while cam.is_recording() {
            tokio::time::sleep(Duration::from_millis(10)).await
        }
    })
    .await
    .expect("ack releases the stream");
    timeout(WAIT, async {
        while cam.ring().reader_count() != readers_before {
            tokio::time::sleep(Duration::from_millis(10)).await
        }
    })
    .await
    .expect("reader released");

    // HomeKitCameraActive = 0 during a stream → close reason 1.
    rig.hub.trigger("Cam", true, MotionSource::Mqtt).unwrap();
    hub.open(3);
    flush(&mut hub, &mut tcp).await;
    assert_eq!(
        next_event(&mut hub, &mut tcp).await,
        ControllerEvent::OpenAccepted { stream_id: 3 }
    );
    assert_eq!(rig.write("21A", "21B", json!(0)).await, 0);
    loop {
        match next_event(&mut hub, &mut tcp).await {
            ControllerEvent::Segment { .. } => {}
            ControllerEvent::StreamClosed { stream_id, reason } => {
                assert_eq!((stream_id, reason), (3, Reason::NOT_ALLOWED));
                break;
            }
            e => panic!("{e:?}"),
        }
    }
    timeout(WAIT, async {
        while cam.is_recording() {
            tokio::time::sleep(Duration::from_millis(10)).await
        }
    })
    .await
    .unwrap();
    assert_eq!(rig.write("21A", "21B", json!(1)).await, 0);

    // Hub disconnects mid-recording → reader, slot and task released.
    hub.open(4);
    flush(&mut hub, &mut tcp).await;
    assert_eq!(
        next_event(&mut hub, &mut tcp).await,
        ControllerEvent::OpenAccepted { stream_id: 4 }
    );
    assert!(cam.is_recording());
    drop(tcp);
    drop(tcp2);
    timeout(WAIT, async {
        while cam.is_recording()
            || cam.hds_connections() != 0
            || cam.ring().reader_count() != readers_before
        {
            tokio::time::sleep(Duration::from_millis(10)).await
        }
    })
    .await
    .expect("resources released after the hub disconnected");

    // The HAP session closing closes its HDS connection.
    let (_hub3, mut tcp3) = rig.hds().await;
    assert_eq!(cam.hds_connections(), 1);
    drop(rig.client);
    let mut b = [0u8; 64];
    let n = timeout(WAIT, tcp3.tcp.read(&mut b))
        .await
        .expect("HDS not closed with its HAP session");
    assert!(matches!(n, Ok(0) | Err(_)));
    timeout(WAIT, async {
        while cam.hds_connections() != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await
        }
    })
    .await
    .unwrap();
}

/// Handler types of the init segment's `trak`s, in order (`hdlr`: size, type, version/flags,
/// pre_defined, then handler_type).
fn handlers(init: &[u8]) -> Vec<[u8; 4]> {
    init.windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"hdlr")
        .map(|(i, _)| init[i + 12..i + 16].try_into().unwrap())
        .collect()
}

/// `traf` boxes in a fragment's `moof` (the first box; its size bounds the search).
fn traf_count(fragment: &[u8]) -> usize {
    let moof_len = u32::from_be_bytes(fragment[..4].try_into().unwrap()) as usize;
    assert_eq!(&fragment[4..8], b"moof");
    fragment[..moof_len]
        .windows(4)
        .filter(|w| *w == b"traf")
        .count()
}

/// Opens `stream_id` on a fresh HDS connection and returns the init segment and the
/// prebuffered fragments, then disconnects (which releases the recording).
async fn record_prebuffer(rig: &mut Rig, stream_id: i64) -> (Vec<u8>, Vec<Vec<u8>>) {
    let cam = rig.camera.clone();
    let (mut hub, mut tcp) = rig.hds().await;
    hub.open(stream_id);
    flush(&mut hub, &mut tcp).await;
    assert_eq!(
        next_event(&mut hub, &mut tcp).await,
        ControllerEvent::OpenAccepted { stream_id }
    );
    let init = match next_event(&mut hub, &mut tcp).await {
        ControllerEvent::Segment { kind, data, .. } => {
            assert_eq!(kind, SegmentKind::MediaInitialization);
            data.to_vec()
        }
        e => panic!("{e:?}"),
    };
    let mut fragments = Vec::new();
    while let Some(ev) = try_next_event(&mut hub, &mut tcp, Duration::from_millis(500)).await {
        match ev {
            ControllerEvent::Segment { kind, data, .. } => {
                assert_eq!(kind, SegmentKind::MediaFragment);
                fragments.push(data.to_vec());
            }
            e => panic!("{e:?}"),
        }
    }
    assert!(!fragments.is_empty(), "no prebuffer fragment");
    drop(tcp);
    timeout(WAIT, async {
        while cam.is_recording() {
            tokio::time::sleep(Duration::from_millis(10)).await
        }
    })
    .await
    .expect("disconnect releases the recording");
    (init, fragments)
}

/// The hub's audio choice is applied per recording (protocol-notes §6.1): RecordingAudioActive
/// = 0 gives clips without the audio track although the camera records AAC; = 1 with the AAC
/// selection of the 209 vector gives both tracks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_audio_active_decides_the_audio_track() {
    let mut rig = Rig::with_audio(true).await;
    let cam = rig.camera.clone();
    assert_eq!(rig.write("204", "209", json!(SELECTED)).await, 0);
    assert_eq!(rig.write("204", "B0", json!(1)).await, 0);
    let sel = cam.state().selected_configuration().unwrap();
    assert!(sel.audio.is_some(), "the 209 vector selects AAC-LC");
    rig.hub.trigger("Cam", true, MotionSource::Mqtt).unwrap();

    rig.timed_write("204", "226", json!(0)).await;
    assert!(!cam.state().recording_audio_active);
    let (init, fragments) = record_prebuffer(&mut rig, 1).await;
    assert_eq!(handlers(&init), [*b"vide"], "audio off: one trak");
    for f in &fragments {
        assert_eq!(traf_count(f), 1, "audio off: no audio traf");
        assert!(starts_with_idr(f));
    }

    rig.timed_write("204", "226", json!(1)).await;
    assert!(cam.state().recording_audio_active);
    let (init, fragments) = record_prebuffer(&mut rig, 2).await;
    assert_eq!(
        handlers(&init),
        [*b"vide", *b"soun"],
        "audio on, selected, and the demo source has AAC: two traks"
    );
    for f in &fragments {
        assert_eq!(traf_count(f), 2, "audio on: video and audio traf");
        assert!(starts_with_idr(f));
    }
}

/// "Remove Accessory" in the Home app mid-recording: the hub removes its own pairing over HAP
/// (§1.8, the last admin, so every pairing goes). Its HAP session closes after the reply, and
/// the HDS connection it prepared must close with it, releasing the recording slot, the ring
/// reader and the task, although the hub keeps the HDS socket open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_hubs_pairing_mid_recording_closes_its_hds_connection() {
    let mut rig = Rig::new().await;
    let cam = rig.camera.clone();
    assert_eq!(rig.write("204", "209", json!(SELECTED)).await, 0);
    assert_eq!(rig.write("204", "B0", json!(1)).await, 0);
    rig.hub.trigger("Cam", true, MotionSource::Mqtt).unwrap();
    let readers_before = cam.ring().reader_count();
    let (mut hub, mut tcp) = rig.hds().await;
    hub.open(1);
    flush(&mut hub, &mut tcp).await;
    assert_eq!(
        next_event(&mut hub, &mut tcp).await,
        ControllerEvent::OpenAccepted { stream_id: 1 }
    );
    assert!(cam.is_recording());

    let hub_id = cam.server().lock().pairings()[0].controller_id.clone();
    rig.client.remove_pairing(&hub_id).await.unwrap();
    assert!(!cam.is_paired());
    assert!(rig.client.closed(WAIT).await, "HAP session closed");

    // Drain what the camera already sent; then it must close the socket.
    timeout(WAIT, async {
        let mut b = [0u8; 65536];
        while matches!(tcp.tcp.read(&mut b).await, Ok(n) if n > 0) {}
    })
    .await
    .expect("HDS not closed after the hub's pairing was removed");
    timeout(WAIT, async {
        while cam.is_recording()
            || cam.hds_connections() != 0
            || cam.ring().reader_count() != readers_before
        {
            tokio::time::sleep(Duration::from_millis(10)).await
        }
    })
    .await
    .expect("recording slot, reader and task released");
}
