//! Accessory and controller in memory on virtual time: hello, open, data, ack, close, and the
//! open refusals of protocol notes §4.9 and timers of §5.4.
#![allow(clippy::indexing_slicing, missing_docs)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Pair, camera_ok, recording};
use hds::controller::ControllerEvent;
use hds::{CameraState, Event, HdsStatus, Initiator, Reason, SegmentKind};

fn send_recording(pair: &mut Pair, stream_id: i64, end: bool) {
    let segs = recording();
    let n = segs.len();
    for (i, s) in segs.into_iter().enumerate() {
        let kind = if i == 0 {
            SegmentKind::MediaInitialization
        } else {
            SegmentKind::MediaFragment
        };
        pair.accessory
            .send_segment(pair.now, stream_id, kind, s, end && i + 1 == n)
            .unwrap();
    }
    pair.drive();
}

fn segments(events: &[ControllerEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, ControllerEvent::Segment { .. }))
        .count()
}

#[test]
fn hello_open_data_ack_then_second_stream_on_same_connection() {
    let mut pair = Pair::new();
    pair.hello_and_open(1);
    assert!(
        pair.controller_events
            .contains(&ControllerEvent::OpenAccepted { stream_id: 1 })
    );
    assert!(
        pair.accessory_events
            .contains(&Event::StreamOpened { stream_id: 1 })
    );
    pair.take_accessory_events();
    pair.take_controller_events();

    send_recording(&mut pair, 1, true);
    let ev = pair.take_controller_events();
    assert_eq!(segments(&ev), 4);
    assert!(matches!(
        ev.last(),
        Some(ControllerEvent::Segment {
            end_of_stream: true,
            ..
        })
    ));

    pair.controller.ack(1);
    pair.drive();
    assert_eq!(
        pair.take_accessory_events(),
        vec![
            Event::AckReceived { stream_id: 1 },
            Event::StreamClosed {
                stream_id: 1,
                reason: Reason::NORMAL,
                by: Initiator::Controller
            }
        ]
    );
    assert_eq!(
        pair.accessory.poll_timeout(),
        None,
        "ack cancels the 12 s timer"
    );

    // §7: a second recording stream over the same HDS connection works.
    pair.controller.open(2);
    pair.drive();
    assert!(
        pair.accessory_events
            .contains(&Event::StreamOpened { stream_id: 2 })
    );
    send_recording(&mut pair, 2, false);
    assert_eq!(segments(&pair.take_controller_events()), 4);
    pair.controller.close_stream(2, Reason::NORMAL);
    pair.drive();
    assert!(pair.accessory_events.contains(&Event::StreamClosed {
        stream_id: 2,
        reason: Reason::NORMAL,
        by: Initiator::Controller
    }));
    assert!(!pair.accessory.is_closed());
}

#[test]
fn second_open_while_recording_is_busy() {
    let mut pair = Pair::new();
    pair.hello_and_open(1);
    pair.controller.open(2);
    pair.drive();
    assert!(
        pair.controller_events
            .contains(&ControllerEvent::OpenRejected {
                stream_id: 2,
                status: HdsStatus::PROTOCOL_SPECIFIC_ERROR,
                reason: Reason::BUSY
            })
    );
    assert_eq!(
        pair.accessory.open_stream(),
        Some(1),
        "first stream unaffected"
    );
}

#[test]
fn recording_on_another_connection_is_busy() {
    let mut pair = Pair::new();
    pair.accessory.set_camera_state(CameraState {
        recording_elsewhere: true,
        ..camera_ok()
    });
    pair.hello_and_open(1);
    assert!(pair.accessory_events.contains(&Event::OpenRejected {
        stream_id: 1,
        reason: Reason::BUSY
    }));
}

fn refused_with(camera: CameraState, reason: Reason) {
    let mut pair = Pair::new();
    pair.accessory.set_camera_state(camera);
    pair.hello_and_open(5);
    assert!(
        pair.controller_events
            .contains(&ControllerEvent::OpenRejected {
                stream_id: 5,
                status: HdsStatus::PROTOCOL_SPECIFIC_ERROR,
                reason
            }),
        "{:?}",
        pair.controller_events
    );
    assert_eq!(pair.accessory.open_stream(), None);
    assert!(
        pair.accessory
            .send_segment(
                pair.now,
                5,
                SegmentKind::MediaInitialization,
                Bytes::from_static(b"x"),
                false
            )
            .is_err()
    );
}

#[test]
fn open_while_recording_inactive_is_not_allowed() {
    refused_with(
        CameraState {
            recording_active: false,
            ..camera_ok()
        },
        Reason::NOT_ALLOWED,
    );
    refused_with(
        CameraState {
            camera_active: false,
            ..camera_ok()
        },
        Reason::NOT_ALLOWED,
    );
}

#[test]
fn open_without_selected_configuration_is_invalid_configuration() {
    refused_with(
        CameraState {
            configuration_selected: false,
            ..camera_ok()
        },
        Reason::INVALID_CONFIGURATION,
    );
}

#[test]
fn open_with_wrong_target_or_type_is_unexpected_failure() {
    for (target, kind) in [
        ("accessory", "ipcamera.recording"),
        ("controller", "audio.siri"),
    ] {
        let mut pair = Pair::new();
        pair.controller.hello();
        pair.drive();
        pair.controller.open_with(
            3,
            hds::Value::dict([
                ("target", hds::Value::String(target.into())),
                ("type", hds::Value::String(kind.into())),
                ("streamId", hds::Value::Int(3)),
            ]),
        );
        pair.drive();
        assert!(
            pair.controller_events
                .contains(&ControllerEvent::OpenRejected {
                    stream_id: 3,
                    status: HdsStatus::PROTOCOL_SPECIFIC_ERROR,
                    reason: Reason::UNEXPECTED_FAILURE
                })
        );
    }
}

#[test]
fn no_ack_within_12_s_of_end_of_stream_cancels() {
    let mut pair = Pair::new();
    pair.hello_and_open(1);
    send_recording(&mut pair, 1, true);
    pair.take_controller_events();
    let deadline = pair.accessory.poll_timeout().expect("12 s timer armed");
    assert_eq!(deadline - pair.now, Duration::from_secs(12));
    pair.advance(Duration::from_millis(11_999));
    assert!(
        pair.take_controller_events().is_empty(),
        "nothing before 12 s"
    );
    pair.advance(Duration::from_millis(1));
    assert_eq!(
        pair.take_controller_events(),
        vec![ControllerEvent::StreamClosed {
            stream_id: 1,
            reason: Reason::CANCELLED
        }]
    );
    assert!(pair.accessory_events.contains(&Event::StreamClosed {
        stream_id: 1,
        reason: Reason::CANCELLED,
        by: Initiator::Accessory
    }));
}

#[test]
fn hub_close_stops_at_once_without_reply() {
    let mut pair = Pair::new();
    pair.hello_and_open(9);
    let segs = recording();
    pair.accessory
        .send_segment(
            pair.now,
            9,
            SegmentKind::MediaInitialization,
            segs[0].clone(),
            false,
        )
        .unwrap();
    pair.accessory
        .send_segment(
            pair.now,
            9,
            SegmentKind::MediaFragment,
            segs[1].clone(),
            false,
        )
        .unwrap();
    // The hub's close arrives before the queued chunks went out.
    pair.controller.close_stream(9, Reason::NORMAL);
    let mut out = Vec::new();
    while pair.controller.poll_transmit(&mut out) {}
    let mut buf = bytes::BytesMut::from(&out[..]);
    // Identify + hello already happened in hello_and_open, so plain handle_incoming works.
    pair.accessory.handle_incoming(pair.now, &mut buf).unwrap();
    assert_eq!(
        pair.accessory.queued_frames(),
        0,
        "unsent chunks dropped, no reply queued"
    );
    assert!(matches!(
        pair.accessory.send_segment(
            pair.now,
            9,
            SegmentKind::MediaFragment,
            segs[2].clone(),
            false
        ),
        Err(hds::Error::UnknownStream { stream_id: 9 })
    ));
    assert_eq!(pair.accessory.poll_timeout(), None);
}

#[test]
fn accessory_close_stream_reaches_the_hub() {
    let mut pair = Pair::new();
    pair.hello_and_open(4);
    pair.take_controller_events();
    pair.accessory.close_stream(4, Reason::NOT_ALLOWED).unwrap();
    pair.drive();
    assert_eq!(
        pair.take_controller_events(),
        vec![ControllerEvent::StreamClosed {
            stream_id: 4,
            reason: Reason::NOT_ALLOWED
        }]
    );
}

#[test]
fn misuse_of_send_segment_is_refused() {
    let mut pair = Pair::new();
    pair.hello_and_open(1);
    let segs = recording();
    let misuse = |r: Result<(), hds::Error>| matches!(r, Err(hds::Error::StreamMisuse { .. }));
    assert!(misuse(pair.accessory.send_segment(
        pair.now,
        1,
        SegmentKind::MediaFragment,
        segs[1].clone(),
        false
    )));
    assert!(misuse(pair.accessory.send_segment(
        pair.now,
        1,
        SegmentKind::MediaInitialization,
        Bytes::new(),
        false
    )));
    pair.accessory
        .send_segment(
            pair.now,
            1,
            SegmentKind::MediaInitialization,
            segs[0].clone(),
            true,
        )
        .unwrap();
    assert!(misuse(pair.accessory.send_segment(
        pair.now,
        1,
        SegmentKind::MediaFragment,
        segs[1].clone(),
        false
    )));
    assert!(matches!(
        pair.accessory.send_segment(
            pair.now,
            2,
            SegmentKind::MediaFragment,
            segs[1].clone(),
            false
        ),
        Err(hds::Error::UnknownStream { stream_id: 2 })
    ));
}

#[test]
fn segments_over_two_chunks_keep_numbering() {
    // Fragments > 512 KiB (3+ chunks) are not in the fixture; build one.
    let mut pair = Pair::new();
    pair.hello_and_open(1);
    pair.take_controller_events();
    let init = recording().remove(0);
    let big: Bytes = (0..(3 * 262_144 + 5))
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    pair.accessory
        .send_segment(pair.now, 1, SegmentKind::MediaInitialization, init, false)
        .unwrap();
    pair.accessory
        .send_segment(pair.now, 1, SegmentKind::MediaFragment, big.clone(), true)
        .unwrap();
    pair.drive();
    let ev = pair.take_controller_events();
    let chunk_nos: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            ControllerEvent::Chunk { meta, data } if meta.data_sequence_number == 2 => {
                Some((meta.data_chunk_sequence_number, data.len()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        chunk_nos,
        vec![(1, 262_144), (2, 262_144), (3, 262_144), (4, 5)]
    );
    assert!(ev.iter().any(
        |e| matches!(e, ControllerEvent::Segment { data, end_of_stream: true, .. } if *data == big)
    ));
}

#[test]
fn close_for_another_stream_is_ignored() {
    let mut pair = Pair::new();
    pair.hello_and_open(1);
    pair.take_accessory_events();
    pair.controller.close_stream(99, Reason::NORMAL);
    pair.drive();
    assert!(pair.take_accessory_events().is_empty());
    assert_eq!(pair.accessory.open_stream(), Some(1));
    assert!(!pair.accessory.is_closed());
}
