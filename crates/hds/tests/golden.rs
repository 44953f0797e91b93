//! Golden payloads in `testdata/golden` (sources in its README): byte-exact checks of what the
//! accessory puts on the wire, decrypted with the controller's key.
#![allow(clippy::indexing_slicing, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{keys, recording, testdata};
use hds::frame::{FrameSealer, Role, take_frame};
use hds::message::{ChunkMeta, data_event_payload};
use hds::{Connection, HdsStatus, Message, SegmentKind, Value};

fn golden(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(testdata(&format!("golden/{name}"))).unwrap();
    let hex: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .concat();
    hex::decode(hex).unwrap()
}

/// The hub's end of the wire: seals what it sends, opens what the accessory sent.
struct Hub {
    sealer: FrameSealer,
    opener: hds::frame::FrameOpener,
}

impl Hub {
    fn new() -> Self {
        Self {
            sealer: keys().sealer(Role::Controller),
            opener: keys().opener(Role::Controller),
        }
    }

    /// Feed `msgs` to `conn`, then decrypt everything it transmits into payloads.
    fn exchange(&mut self, conn: &mut Connection, msgs: &[Message]) -> Vec<Bytes> {
        let mut wire = Vec::new();
        for m in msgs {
            let mut p = Vec::new();
            m.encode(&mut p).unwrap();
            self.sealer.seal(&p, &mut wire).unwrap();
        }
        let mut buf = BytesMut::from(&wire[..]);
        conn.handle_incoming(Instant::now(), &mut buf).unwrap();
        self.drain(conn)
    }

    fn drain(&mut self, conn: &mut Connection) -> Vec<Bytes> {
        let mut out = Vec::new();
        while conn.poll_transmit(&mut out) {}
        let mut buf = BytesMut::from(&out[..]);
        let mut payloads = Vec::new();
        while let Some(f) = take_frame(&mut buf, self.opener.counter()).unwrap() {
            payloads.push(self.opener.open(f).unwrap());
        }
        assert!(buf.is_empty());
        payloads
    }
}

fn accessory_replies(msgs: &[Message], conn: &mut Connection) -> Vec<Bytes> {
    Hub::new().exchange(conn, msgs)
}

fn hello(id: i64) -> Message {
    Message::request("control", "hello", id, Value::Dict(vec![]))
}

#[test]
fn hello_response_for_id_1_matches_protocol_notes_4_8() {
    let mut conn = Connection::with_keys(&keys(), Instant::now());
    let sent = accessory_replies(&[hello(1)], &mut conn);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].len(), 63);
    assert_eq!(&sent[0][..], &golden("hello_response_id1.hex")[..]);
}

#[test]
fn hello_response_for_id_0_has_no_back_reference_and_equals_hap_nodejs_form_in_value() {
    let mut conn = Connection::with_keys(&keys(), Instant::now());
    let sent = accessory_replies(&[hello(0)], &mut conn);
    assert_eq!(&sent[0][..], &golden("hello_response_id0.hex")[..]);
    // HAP-NodeJS's 55-byte form (status = a5) decodes to the same message with our decoder.
    let theirs = Bytes::from(golden("hello_response_id0_hapnodejs.hex"));
    assert_eq!(theirs.len(), 55);
    assert_eq!(
        Message::decode(&theirs).unwrap(),
        Message::decode(&sent[0]).unwrap()
    );
}

#[test]
fn hello_request_frame_is_46_bytes_as_on_the_wire() {
    // §7: "A hello request is a 46-byte payload (0100002e)".
    let mut p = Vec::new();
    hello(12345).encode(&mut p).unwrap();
    let mut wire = Vec::new();
    FrameSealer::new(&[9; 32]).seal(&p, &mut wire).unwrap();
    assert_eq!(&wire[..4], &[0x01, 0x00, 0x00, 0x2e]);
    assert_eq!(wire.len(), 4 + 46 + 16);
}

#[test]
fn open_responses_match_hap_nodejs_bytes() {
    let mut conn = Connection::with_keys(&keys(), Instant::now());
    conn.set_camera_state(common::camera_ok());
    let sent = accessory_replies(&[hello(1), open(1), open(1)], &mut conn);
    assert_eq!(sent.len(), 3);
    assert_eq!(&sent[1][..], &golden("open_response_accept.hex")[..]);
    assert_eq!(&sent[2][..], &golden("open_response_busy.hex")[..]);
    let busy = Message::decode(&sent[2]).unwrap();
    assert_eq!(
        busy.kind,
        hds::Kind::Response {
            id: 1,
            status: HdsStatus::PROTOCOL_SPECIFIC_ERROR
        }
    );
}

fn open(id: i64) -> Message {
    Message::request(
        "dataSend",
        "open",
        id,
        Value::dict([
            ("target", Value::String("controller".into())),
            ("type", Value::String("ipcamera.recording".into())),
            ("streamId", Value::Int(1)),
        ]),
    )
}

#[test]
fn data_events_and_cancel_close_on_the_wire_match_golden_bytes() {
    let t0 = Instant::now();
    let mut conn = Connection::with_keys(&keys(), t0);
    conn.set_camera_state(common::camera_ok());
    let mut hub = Hub::new();
    assert_eq!(hub.exchange(&mut conn, &[hello(1), open(2)]).len(), 2);
    let rec = recording();
    conn.send_segment(
        t0,
        1,
        SegmentKind::MediaInitialization,
        rec[0].clone(),
        false,
    )
    .unwrap();
    conn.send_segment(t0, 1, SegmentKind::MediaFragment, rec[1].clone(), true)
        .unwrap();
    let sent = hub.drain(&mut conn);
    assert_eq!(sent.len(), 3);
    let split = |p: &Bytes, before: &str, after: &str, chunk: &[u8]| {
        let (b, a) = (golden(before), golden(after));
        assert_eq!(p.len(), b.len() + chunk.len() + a.len());
        assert_eq!(&p[..b.len()], &b[..], "{before}");
        assert_eq!(&p[b.len()..b.len() + chunk.len()], chunk);
        assert_eq!(&p[b.len() + chunk.len()..], &a[..], "{after}");
    };
    split(
        &sent[0],
        "data_init_before.hex",
        "data_init_after.hex",
        &rec[0],
    );
    split(
        &sent[1],
        "data_sequence2_chunk1_before.hex",
        "data_sequence2_chunk1_after.hex",
        &rec[1][..262_144],
    );
    // §7: a 262144-byte chunk travels in a 262320-byte payload.
    assert_eq!(sent[1].len(), 262_320);

    // No ack: 12 s after end of stream the accessory sends close reason 3 (cancelled).
    conn.handle_timeout(t0 + Duration::from_millis(11_999));
    assert!(hub.drain(&mut conn).is_empty());
    conn.handle_timeout(t0 + Duration::from_secs(12));
    let sent = hub.drain(&mut conn);
    assert_eq!(sent.len(), 1);
    assert_eq!(&sent[0][..], &golden("close_reason3.hex")[..]);
}

#[test]
fn data_events_match_protocol_notes_4_9() {
    let rec = recording();
    let frag = &rec[1];
    let first = data_event_payload(
        &ChunkMeta {
            stream_id: 1,
            kind: SegmentKind::MediaFragment,
            data_sequence_number: 2,
            data_chunk_sequence_number: 1,
            is_last_data_chunk: false,
            data_total_size_bytes: Some(371_381),
            end_of_stream: None,
        },
        &frag[..262_144],
    )
    .unwrap();
    let before = golden("data_sequence2_chunk1_before.hex");
    let after = golden("data_sequence2_chunk1_after.hex");
    // §7: a 262144-byte chunk travels in a 262320-byte payload.
    assert_eq!(first.len(), 262_320);
    assert_eq!(&first[..before.len()], &before[..]);
    assert_eq!(
        &first[before.len()..before.len() + 262_144],
        &frag[..262_144]
    );
    assert_eq!(&first[before.len() + 262_144..], &after[..]);
}
