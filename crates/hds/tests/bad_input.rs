//! Hostile or broken input: every case ends in a clean close or an error response, never a
//! panic and never an allocation the input did not pay for.
#![allow(clippy::indexing_slicing, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{Pair, keys};
use hds::codec::{self, MAX_DEPTH};
use hds::controller::ControllerEvent;
use hds::frame::{FrameSealer, MAX_PAYLOAD_BYTES, Role, take_frame};
use hds::{
    Blame, CloseCause, Connection, Error, Event, HdsStatus, Message, PreparedSessions, Value,
};

fn closed_with(conn: &mut Connection) -> Option<Error> {
    let mut why = None;
    while let Some(e) = conn.poll_event() {
        if let Event::ConnectionClosed {
            why: CloseCause::Error(e),
        } = e
        {
            why = Some(e);
        }
    }
    why
}

fn sealed(sealer: &mut FrameSealer, msg: &Message) -> Vec<u8> {
    let mut p = Vec::new();
    msg.encode(&mut p).unwrap();
    let mut w = Vec::new();
    sealer.seal(&p, &mut w).unwrap();
    w
}

fn hello() -> Message {
    Message::request("control", "hello", 1, Value::Dict(vec![]))
}

fn ready_connection() -> (Connection, FrameSealer) {
    let mut conn = Connection::with_keys(&keys(), Instant::now());
    let mut sealer = keys().sealer(Role::Controller);
    let mut buf = BytesMut::from(&sealed(&mut sealer, &hello())[..]);
    conn.handle_incoming(Instant::now(), &mut buf).unwrap();
    assert!(conn.is_ready());
    (conn, sealer)
}

#[test]
fn truncated_frames_need_more_and_are_not_errors() {
    let mut sealer = keys().sealer(Role::Controller);
    let frame = sealed(&mut sealer, &hello());
    for cut in 0..frame.len() {
        let mut buf = BytesMut::from(&frame[..cut]);
        assert!(take_frame(&mut buf, 0).unwrap().is_none(), "cut at {cut}");
        assert_eq!(buf.len(), cut, "a partial frame stays in the buffer");
    }
    let mut conn = Connection::with_keys(&keys(), Instant::now());
    let mut buf = BytesMut::from(&frame[..frame.len() - 1]);
    conn.handle_incoming(Instant::now(), &mut buf).unwrap();
    assert!(!conn.is_closed() && !conn.is_ready());
    buf.extend_from_slice(&frame[frame.len() - 1..]);
    conn.handle_incoming(Instant::now(), &mut buf).unwrap();
    assert!(conn.is_ready());
}

#[test]
fn oversized_frame_closes_without_waiting_for_its_bytes() {
    let (mut conn, _) = ready_connection();
    // Header announces 0x100000 bytes (> 0xFFFFF); only the header has arrived.
    let mut buf = BytesMut::from(&[0x01, 0x10, 0x00, 0x00][..]);
    let err = conn.handle_incoming(Instant::now(), &mut buf).unwrap_err();
    assert!(matches!(
        err,
        Error::FrameTooLarge {
            payload_bytes: 0x10_0000,
            frame_counter: 1
        }
    ));
    assert_eq!(err.blame(), Blame::Peer);
    assert!(conn.is_closed());
    assert_eq!(closed_with(&mut conn), Some(err));
}

#[test]
fn we_refuse_to_send_an_oversized_payload() {
    let mut sealer = FrameSealer::new(&[1; 32]);
    let mut out = Vec::new();
    let big = vec![0u8; MAX_PAYLOAD_BYTES + 1];
    assert_eq!(
        sealer.seal(&big, &mut out),
        Err(Error::PayloadTooLarge {
            payload_bytes: MAX_PAYLOAD_BYTES + 1
        })
    );
    assert!(out.is_empty());
    assert_eq!(sealer.counter(), 0, "nonce not consumed");
    sealer.seal(&big[..MAX_PAYLOAD_BYTES], &mut out).unwrap();
    assert_eq!(out.len(), 4 + MAX_PAYLOAD_BYTES + 16);
}

#[test]
fn frames_of_other_types_are_skipped_without_using_a_nonce() {
    let (mut conn, mut sealer) = ready_connection();
    let mut wire = vec![0x02, 0x00, 0x00, 0x03, 0xaa, 0xbb, 0xcc];
    wire.extend_from_slice(&[0u8; 16]);
    wire.extend_from_slice(&sealed(&mut sealer, &hello()));
    let mut buf = BytesMut::from(&wire[..]);
    conn.handle_incoming(Instant::now(), &mut buf).unwrap();
    assert!(!conn.is_closed());
    let mut out = Vec::new();
    let mut n = 0;
    while conn.poll_transmit(&mut out) {
        n += 1;
    }
    assert_eq!(n, 2, "both hellos answered");
}

#[test]
fn a_frame_failing_authentication_closes_with_its_counter() {
    let (mut conn, mut sealer) = ready_connection();
    let mut frame = sealed(&mut sealer, &hello());
    let last = frame.len() - 1;
    frame[last] ^= 1; // flip a tag bit
    let mut buf = BytesMut::from(&frame[..]);
    let err = conn.handle_incoming(Instant::now(), &mut buf).unwrap_err();
    assert_eq!(err, Error::Authentication { frame_counter: 1 });
    assert_eq!(err.blame(), Blame::Crypto);
    assert!(conn.is_closed());
    // Nothing is sent after the close.
    assert!(!conn.poll_transmit(&mut Vec::new()));
}

#[test]
fn a_frame_from_an_unknown_session_closes_only_that_connection() {
    let now = Instant::now();
    let mut sessions = PreparedSessions::new();
    sessions.insert(
        hds::PreparedSession::new(&[1; 32], &[2; 32], &[3; 32], now),
        1u32,
    );
    let mut stranger =
        hds::SessionKeys::derive(&[9; 32], &[2; 32], &[3; 32]).sealer(Role::Controller);
    let mut conn = Connection::accept(now);
    let mut buf = BytesMut::from(&sealed(&mut stranger, &hello())[..]);
    assert_eq!(
        conn.identify(now, &mut buf, &mut sessions),
        Err(Error::UnknownSession)
    );
    assert!(conn.is_closed());
    assert_eq!(
        sessions.len(),
        1,
        "the prepared session stays for the right connection"
    );
}

#[test]
fn an_unidentified_connection_cannot_make_us_buffer_a_large_frame() {
    let now = Instant::now();
    let mut sessions: PreparedSessions<u32> = PreparedSessions::new();
    sessions.insert(
        hds::PreparedSession::new(&[1; 32], &[2; 32], &[3; 32], now),
        1,
    );
    // A header announcing 1 MiB − 1 before any key matched: refused on its 4 bytes.
    let mut conn = Connection::accept(now);
    let mut buf = BytesMut::from(&[0x01, 0x0f, 0xff, 0xff][..]);
    assert!(matches!(
        conn.identify(now, &mut buf, &mut sessions),
        Err(Error::FrameTooLarge {
            payload_bytes: 0xF_FFFF,
            ..
        })
    ));
    assert!(conn.is_closed());
    // Just above the bound, too; a hello-sized header is merely incomplete.
    let mut conn = Connection::accept(now);
    let above = hds::MAX_FIRST_FRAME_PAYLOAD + 1;
    let mut buf = BytesMut::from(&[0x01, 0, (above >> 8) as u8, (above & 0xff) as u8][..]);
    assert!(conn.identify(now, &mut buf, &mut sessions).is_err());
    let mut conn = Connection::accept(now);
    let mut buf = BytesMut::from(&[0x01, 0, 0, 120][..]);
    assert_eq!(conn.identify(now, &mut buf, &mut sessions), Ok(None));
    assert_eq!(sessions.len(), 1);
}

#[test]
fn a_verified_hub_cannot_send_frames_above_64_kib() {
    let (mut conn, _sealer) = ready_connection();
    let big = hds::MAX_INCOMING_PAYLOAD + 1;
    let mut buf = BytesMut::from(
        &[
            0x01,
            (big >> 16) as u8,
            (big >> 8) as u8,
            (big & 0xff) as u8,
        ][..],
    );
    assert!(conn.handle_incoming(Instant::now(), &mut buf).is_err());
    assert!(conn.is_closed());
}

#[test]
fn identification_picks_the_matching_session_and_expires_old_ones() {
    let now = Instant::now();
    let mut sessions = PreparedSessions::new();
    let a = hds::PreparedSession::new(&[1; 32], &[2; 32], &[3; 32], now);
    let b_keys = hds::SessionKeys::derive(&[4; 32], &[5; 32], &[6; 32]);
    sessions.insert(a, "a");
    sessions.insert(hds::PreparedSession::from_keys(b_keys.clone(), now), "b");
    let mut conn = Connection::accept(now);
    let mut buf = BytesMut::from(&sealed(&mut b_keys.sealer(Role::Controller), &hello())[..]);
    assert_eq!(conn.identify(now, &mut buf, &mut sessions), Ok(Some("b")));
    assert!(conn.is_ready());
    assert_eq!(sessions.len(), 1);
    // A prepared session lives 10 s.
    assert_eq!(sessions.poll_timeout(), Some(now + Duration::from_secs(10)));
    let late = now + Duration::from_secs(10);
    let mut conn = Connection::accept(late);
    let a_keys = hds::SessionKeys::derive(&[1; 32], &[2; 32], &[3; 32]);
    let mut buf = BytesMut::from(&sealed(&mut a_keys.sealer(Role::Controller), &hello())[..]);
    assert_eq!(
        conn.identify(late, &mut buf, &mut sessions),
        Err(Error::UnknownSession)
    );
    assert!(sessions.is_empty());
}

#[test]
fn no_hello_within_10_s_closes() {
    let t0 = Instant::now();
    let mut conn = Connection::accept(t0);
    assert_eq!(conn.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    conn.handle_timeout(t0 + Duration::from_millis(9_999));
    assert!(!conn.is_closed());
    conn.handle_timeout(t0 + Duration::from_secs(10));
    assert!(conn.is_closed());
    assert_eq!(closed_with(&mut conn), Some(Error::HelloTimeout));
    // Identified but silent: same deadline, counted from accept.
    let mut conn = Connection::with_keys(&keys(), t0);
    conn.handle_timeout(t0 + Duration::from_secs(10));
    assert_eq!(closed_with(&mut conn), Some(Error::HelloTimeout));
}

#[test]
fn first_message_other_than_hello_closes() {
    let mut conn = Connection::with_keys(&keys(), Instant::now());
    let mut sealer = keys().sealer(Role::Controller);
    let open = Message::request("dataSend", "open", 1, Value::Dict(vec![]));
    let mut buf = BytesMut::from(&sealed(&mut sealer, &open)[..]);
    assert_eq!(
        conn.handle_incoming(Instant::now(), &mut buf),
        Err(Error::ExpectedHello { frame_counter: 0 })
    );
    assert!(!conn.poll_transmit(&mut Vec::new()), "no reply");
}

#[test]
fn data_before_open_closes() {
    let (mut conn, mut sealer) = ready_connection();
    let data = Message::event(
        "dataSend",
        "data",
        Value::dict([
            ("streamId", Value::Int(5)),
            ("packets", Value::Array(vec![])),
        ]),
    );
    let mut buf = BytesMut::from(&sealed(&mut sealer, &data)[..]);
    assert_eq!(
        conn.handle_incoming(Instant::now(), &mut buf),
        Err(Error::DataBeforeOpen {
            stream_id: 5,
            frame_counter: 1
        })
    );
    assert!(conn.is_closed());
}

#[test]
fn unknown_protocol_or_topic_gets_an_error_response_and_unknown_events_are_ignored() {
    let mut pair = Pair::new();
    pair.controller.hello();
    pair.drive();
    pair.controller
        .send(&Message::request("siri", "audio", 77, Value::Dict(vec![])));
    pair.controller.send(&Message::request(
        "dataSend",
        "teleport",
        78,
        Value::Dict(vec![]),
    ));
    pair.controller
        .send(&Message::event("whatever", "ping", Value::Dict(vec![])));
    pair.controller.send(&Message::event(
        "dataSend",
        "ack",
        Value::dict([("streamId", Value::Int(3))]),
    ));
    pair.drive();
    let responses: Vec<_> = pair
        .take_controller_events()
        .into_iter()
        .filter_map(|e| match e {
            ControllerEvent::Other(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(responses.len(), 2, "{responses:?}");
    assert_eq!(
        responses[0].kind,
        hds::Kind::Response {
            id: 77,
            status: HdsStatus::MISSING_PROTOCOL
        }
    );
    assert_eq!(
        responses[1].kind,
        hds::Kind::Response {
            id: 78,
            status: HdsStatus::PROTOCOL_SPECIFIC_ERROR
        }
    );
    assert_eq!(responses[1].body.get("status"), Some(&Value::Int(4)));
    assert!(!pair.accessory.is_closed());
}

#[test]
fn malformed_payloads_close_cleanly() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty payload", vec![]),
        ("header length beyond payload", vec![0x10, 0xe0]),
        ("unknown tag", vec![0x01, 0x37, 0xe0]),
        ("zero tag", vec![0x01, 0x00, 0xe0]),
        ("header not a dict", vec![0x01, 0x09, 0xe0]),
        (
            "back-reference to nothing",
            vec![0x03, 0xe1, 0xa0, 0xa0, 0xe0],
        ),
        (
            "string length beyond input",
            vec![0x06, 0xe1, 0x64, 0xff, 0xff, 0xff, 0xff, 0xe0],
        ),
    ];
    for (what, payload) in cases {
        let (mut conn, mut sealer) = ready_connection();
        let mut w = Vec::new();
        sealer.seal(&payload, &mut w).unwrap();
        let mut buf = BytesMut::from(&w[..]);
        let err = conn.handle_incoming(Instant::now(), &mut buf).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Malformed {
                    frame_counter: Some(1),
                    ..
                }
            ),
            "{what}: {err:?}"
        );
        assert!(conn.is_closed(), "{what}");
    }
}

#[test]
fn deep_nesting_is_refused() {
    let mut deep = vec![0xd1; MAX_DEPTH + 1];
    deep.push(0x08);
    let e = codec::decode(&Bytes::from(deep)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Malformed {
                what: "containers nested too deep",
                ..
            }
        ),
        "{e:?}"
    );
    let mut ok = vec![0xd1; MAX_DEPTH];
    ok.push(0x08);
    assert!(codec::decode(&Bytes::from(ok)).is_ok());
    // Terminated containers nest the same way.
    let e = codec::decode(&Bytes::from(vec![0xdf; 100_000])).unwrap_err();
    assert!(matches!(e, Error::Malformed { .. }));
}

#[test]
fn huge_declared_lengths_are_checked_before_allocating() {
    for tag in [0x61u8, 0x62, 0x63, 0x64, 0x91, 0x92, 0x93, 0x94] {
        let mut input = vec![tag];
        input.extend_from_slice(&[0xff; 8]);
        let e = codec::decode(&Bytes::from(input)).unwrap_err();
        assert!(matches!(e, Error::Malformed { .. }), "tag {tag:#x}");
    }
}

#[test]
fn back_reference_amplification_is_bounded() {
    // One 1000-byte string, then ~1M references to it: without a budget this would copy 1 GB.
    let mut input = vec![0xdf, 0x62, 0xe8, 0x03];
    input.extend_from_slice(&[b'x'; 1000]);
    input.extend(std::iter::repeat_n(0xa0, 1_000_000));
    input.push(0x03);
    let e = codec::decode(&Bytes::from(input)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Malformed {
                what: "back-references copy too much",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn terminated_forms_and_whole_inline_range_decode() {
    // 0x2f = 39 (HAP-NodeJS's reader rejects it), inline data, NUL-terminated string,
    // terminated data, terminated dict and array, float32, UUID, date, -1.
    let input = hex::decode(concat!(
        "ef",
        "41",
        "61",
        "2f", // "a": 39
        "41",
        "62",
        "73",
        "010203", // "b": data(3) inline
        "41",
        "63",
        "6f",
        "6869",
        "00", // "c": "hi"
        "41",
        "64",
        "9f",
        "0405",
        "03", // "d": data 04 05
        "41",
        "65",
        "df",
        "07",
        "08",
        "03", // "e": [-1, 0]
        "41",
        "66",
        "35",
        "0000c03f", // "f": 1.5f32
        "41",
        "67",
        "05",
        "000102030405060708090a0b0c0d0e0f", // "g": uuid
        "41",
        "68",
        "06",
        "0000000000000000", // "h": date 0.0
        "03"
    ))
    .unwrap();
    let v = codec::decode(&Bytes::from(input)).unwrap();
    assert_eq!(v.get("a"), Some(&Value::Int(39)));
    assert_eq!(
        v.get("b"),
        Some(&Value::Data(Bytes::from_static(&[1, 2, 3])))
    );
    assert_eq!(v.get("c"), Some(&Value::String("hi".into())));
    assert_eq!(v.get("d"), Some(&Value::Data(Bytes::from_static(&[4, 5]))));
    assert_eq!(
        v.get("e"),
        Some(&Value::Array(vec![Value::Int(-1), Value::Int(0)]))
    );
    assert_eq!(v.get("f"), Some(&Value::Float(1.5)));
    assert_eq!(
        v.get("g"),
        Some(&Value::Uuid(core::array::from_fn(|i| i as u8)))
    );
    assert_eq!(v.get("h"), Some(&Value::Date(0.0)));
    // The encoder writes 39 as int8 and data with an explicit length.
    assert_eq!(Value::Int(39).to_vec(), vec![0x30, 0x27]);
    assert_eq!(Value::Int(38).to_vec(), vec![0x2e]);
    assert_eq!(
        Value::Data(Bytes::from_static(&[7])).to_vec(),
        vec![0x91, 0x01, 0x07]
    );
}

#[test]
fn controller_rejects_a_misbehaving_accessory() {
    // An accessory that skips the init segment: the controller closes with AccessoryMisbehaved.
    let mut pair = Pair::new();
    pair.hello_and_open(1);
    let mut sealer_keys = keys().sealer(Role::Accessory);
    // Re-derive the accessory's counter position: hello + open responses used 0 and 1.
    let mut scratch = Vec::new();
    sealer_keys.seal(b"", &mut scratch).unwrap();
    sealer_keys.seal(b"", &mut scratch).unwrap();
    let bad = hds::message::data_event_payload(
        &hds::message::ChunkMeta {
            stream_id: 1,
            kind: hds::SegmentKind::MediaFragment,
            data_sequence_number: 2,
            data_chunk_sequence_number: 1,
            is_last_data_chunk: true,
            data_total_size_bytes: Some(3),
            end_of_stream: Some(false),
        },
        b"abc",
    )
    .unwrap();
    let mut w = Vec::new();
    sealer_keys.seal(&bad, &mut w).unwrap();
    let mut buf = BytesMut::from(&w[..]);
    let e = pair.controller.handle_incoming(&mut buf).unwrap_err();
    assert!(
        matches!(
            e,
            Error::AccessoryMisbehaved {
                frame_counter: 2,
                ..
            }
        ),
        "{e:?}"
    );
}
