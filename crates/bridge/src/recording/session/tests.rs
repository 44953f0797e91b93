//! Every way a recording ends, on virtual time against hds's controller (the hub's side): no
//! socket, no sleep. The ring is fed from the bundled demo clip through a real fragmenter.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use hds::controller::{Controller, ControllerEvent};
use hds::{Reason, SegmentKind, SessionKeys};
use recorder::{DemoSource, Fragmenter, FragmenterConfig, PrebufferConfig, PrebufferRing};

use super::*;

const STREAM: i64 = 1;

fn conditions() -> Conditions {
    Conditions {
        recording_active: true,
        camera_active: true,
        recording_audio_active: false,
        selection: Some(Selection {
            prebuffer_ms: 4000,
            audio: false,
        }),
    }
}

fn options() -> SessionOptions {
    SessionOptions {
        audio_configured: false,
        max_recording: Duration::from_secs(60),
        init_wait: INIT_WAIT,
    }
}

/// The camera side (source → fragmenter → ring → session) and the hub, on one virtual clock.
struct Rig {
    now: Instant,
    source: DemoSource,
    fragmenter: Fragmenter,
    /// Media time fed so far.
    fed: Duration,
    ring: PrebufferRing,
    slot: RecordingSlot,
    session: RecordingSession,
    hub: Controller,
    events: Vec<RecordingEvent>,
    hub_events: Vec<ControllerEvent>,
}

impl Rig {
    fn new(options: SessionOptions) -> Self {
        Self::with_slot(options, RecordingSlot::new())
    }

    fn with_slot(options: SessionOptions, slot: RecordingSlot) -> Self {
        let now = Instant::now();
        let keys = SessionKeys::derive(&[1; 32], &[2; 32], &[3; 32]);
        let source = DemoSource::bundled().unwrap();
        let config = FragmenterConfig {
            audio_config: source.audio_config().cloned(),
            ..FragmenterConfig::default()
        };
        let ring = PrebufferRing::new(PrebufferConfig::default()).unwrap();
        let mut session = RecordingSession::new(
            Connection::with_keys(&keys, now),
            ring.clone(),
            slot.clone(),
            options,
        );
        session.set_conditions(now, conditions());
        Self {
            now,
            source,
            fragmenter: Fragmenter::new(config).unwrap(),
            fed: Duration::ZERO,
            ring,
            slot,
            session,
            hub: Controller::new(&keys),
            events: Vec::new(),
            hub_events: Vec::new(),
        }
    }

    /// Feeds `d` more media into the ring (no session call: the driver would be woken by
    /// the reader).
    fn feed(&mut self, d: Duration) {
        let until = self.fed + d;
        while self.fed < until {
            let (due, unit) = self.source.next_unit();
            self.fed = self.fed.max(due);
            let _ = self.fragmenter.push(unit);
            while let Some(ev) = self.fragmenter.poll_event() {
                self.ring.push_event(ev);
            }
        }
    }

    /// Moves bytes both ways until both sides are quiet, collecting events.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            let mut out = Vec::new();
            while self.session.poll_transmit(&mut out) {}
            if !out.is_empty() {
                moved = true;
                let _ = self.hub.handle_incoming(&mut BytesMut::from(&out[..]));
            }
            let mut out = Vec::new();
            while self.hub.poll_transmit(&mut out) {}
            if !out.is_empty() {
                moved = true;
                let _ = self
                    .session
                    .handle_incoming(self.now, &mut BytesMut::from(&out[..]));
            }
            while let Some(ev) = self.hub.poll_event() {
                self.hub_events.push(ev);
            }
            while let Some(ev) = self.session.poll_event() {
                self.events.push(ev);
            }
            if !moved {
                return;
            }
        }
    }

    /// Advances the clock to `now + d` in deadline steps, delivering ring fragments as the
    /// driver would.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.session.drain_ring(self.now);
            self.pump();
            match self.session.poll_timeout() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.session.handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = end;
        self.session.handle_timeout(self.now);
        self.session.drain_ring(self.now);
        self.pump();
    }

    fn hello(&mut self) {
        self.hub.hello();
        self.pump();
        assert!(self.hub_events.contains(&ControllerEvent::HelloDone));
    }

    /// Hello, then `dataSend/open` on [`STREAM`].
    fn open(&mut self) {
        self.hello();
        self.hub.open(STREAM);
        self.pump();
    }

    fn ended(&self) -> Option<&EndReason> {
        self.events.iter().find_map(|e| match e {
            RecordingEvent::Ended { why, .. } => Some(why),
            _ => None,
        })
    }

    fn hub_closed_with(&self) -> Option<Reason> {
        self.hub_events.iter().find_map(|e| match e {
            ControllerEvent::StreamClosed { reason, .. } => Some(*reason),
            _ => None,
        })
    }

    /// (kind, end_of_stream) of every segment the hub reassembled.
    fn segments(&self) -> Vec<(SegmentKind, bool)> {
        self.hub_events
            .iter()
            .filter_map(|e| match e {
                ControllerEvent::Segment {
                    kind,
                    end_of_stream,
                    ..
                } => Some((*kind, *end_of_stream)),
                _ => None,
            })
            .collect()
    }

    /// A camera with 12 s buffered, motion on, and an opened stream.
    fn streaming(options: SessionOptions) -> Self {
        let mut rig = Self::new(options);
        rig.feed(Duration::from_secs(12));
        rig.session.set_motion(true);
        rig.open();
        assert!(
            matches!(
                rig.events.first(),
                Some(RecordingEvent::Opened {
                    stream_id: STREAM,
                    ..
                })
            ),
            "{:?}",
            rig.events
        );
        assert!(rig.slot.is_taken());
        rig
    }
}

#[test]
fn open_sends_the_init_segment_then_the_prebuffer() {
    let rig = Rig::streaming(options());
    let segs = rig.segments();
    assert_eq!(
        segs.first(),
        Some(&(SegmentKind::MediaInitialization, false))
    );
    let RecordingEvent::Opened {
        prebuffer_fragments,
        prebuffer_ms,
        audio,
        ..
    } = rig.events[0]
    else {
        unreachable!()
    };
    assert_eq!((prebuffer_ms, audio), (4000, false));
    assert!(prebuffer_fragments >= 1, "a 4 s prebuffer of 4 s fragments");
    assert_eq!(segs.len(), 1 + prebuffer_fragments);
    assert!(
        segs[1..]
            .iter()
            .all(|s| *s == (SegmentKind::MediaFragment, false))
    );
    assert_eq!(rig.session.stream_id(), Some(STREAM));
}

#[test]
fn live_fragments_follow_while_motion_lasts() {
    let mut rig = Rig::streaming(options());
    let before = rig.segments().len();
    rig.feed(Duration::from_secs(9));
    rig.advance(Duration::from_secs(9));
    assert!(rig.segments().len() >= before + 2, "{:?}", rig.segments());
    assert!(rig.ended().is_none());
}

#[test]
fn hub_close_ends_the_stream_and_frees_the_slot() {
    let mut rig = Rig::streaming(options());
    rig.hub.close_stream(STREAM, Reason::NORMAL);
    rig.pump();
    assert_eq!(rig.ended(), Some(&EndReason::HubClosed(Reason::NORMAL)));
    assert!(!rig.slot.is_taken());
    assert!(rig.session.fragment_reader().is_none());
    assert_eq!(rig.ring.reader_count(), 0, "the reader is dropped");
    assert!(
        !rig.session.is_closed(),
        "the connection stays for the next recording"
    );
}

#[test]
fn motion_end_sends_end_of_stream_and_the_ack_ends_the_stream() {
    let mut rig = Rig::streaming(options());
    rig.session.set_motion(false);
    rig.feed(Duration::from_secs(5));
    rig.advance(Duration::from_millis(10));
    assert_eq!(
        rig.segments().last(),
        Some(&(SegmentKind::MediaFragment, true))
    );
    // Ending: more fragments are not sent, and the slot is held until the hub answers.
    let n = rig.segments().len();
    rig.feed(Duration::from_secs(5));
    rig.advance(Duration::from_millis(10));
    assert_eq!(rig.segments().len(), n);
    assert!(rig.slot.is_taken());
    rig.hub.ack(STREAM);
    rig.pump();
    assert_eq!(rig.ended(), Some(&EndReason::HubAcked));
    assert!(!rig.slot.is_taken());
}

#[test]
fn no_ack_within_12_s_of_end_of_stream_ends_the_stream() {
    let mut rig = Rig::streaming(options());
    rig.session.set_motion(false);
    rig.feed(Duration::from_secs(5));
    rig.advance(Duration::from_secs(11));
    assert!(rig.ended().is_none());
    rig.advance(Duration::from_secs(2));
    assert_eq!(rig.ended(), Some(&EndReason::NoAck));
    assert!(!rig.slot.is_taken());
}

#[test]
fn motion_returning_before_the_next_fragment_keeps_the_stream() {
    let mut rig = Rig::streaming(options());
    rig.session.set_motion(false);
    rig.session.set_motion(true);
    rig.feed(Duration::from_secs(9));
    rig.advance(Duration::from_secs(9));
    assert!(rig.segments().iter().all(|(_, eos)| !eos));
}

#[test]
fn camera_off_closes_with_reason_1() {
    let mut rig = Rig::streaming(options());
    let off = Conditions {
        camera_active: false,
        ..conditions()
    };
    rig.session.set_conditions(rig.now, off);
    rig.pump();
    assert_eq!(rig.hub_closed_with(), Some(Reason::NOT_ALLOWED));
    assert_eq!(rig.ended(), Some(&EndReason::CameraOff));
    assert!(!rig.slot.is_taken());
}

#[test]
fn max_length_closes_with_reason_3() {
    let mut rig = Rig::streaming(SessionOptions {
        max_recording: Duration::from_secs(10),
        ..options()
    });
    rig.advance(Duration::from_secs(9));
    assert!(rig.ended().is_none());
    rig.advance(Duration::from_secs(2));
    assert_eq!(rig.hub_closed_with(), Some(Reason::CANCELLED));
    assert_eq!(rig.ended(), Some(&EndReason::MaxLength));
    assert!(!rig.slot.is_taken());
}

#[test]
fn a_broken_reader_closes_with_reason_5() {
    let mut rig = Rig::streaming(options());
    rig.ring.close();
    rig.advance(Duration::from_millis(10));
    assert_eq!(rig.hub_closed_with(), Some(Reason::UNEXPECTED_FAILURE));
    assert_eq!(
        rig.ended(),
        Some(&EndReason::ReaderFailed(ReaderError::Closed))
    );
    assert!(!rig.slot.is_taken());
}

#[test]
fn a_reader_error_from_the_driver_closes_with_reason_5() {
    let mut rig = Rig::streaming(options());
    rig.session
        .handle_fragment(rig.now, Err(ReaderError::Lagged { queue_len: 16 }));
    rig.pump();
    assert_eq!(rig.hub_closed_with(), Some(Reason::UNEXPECTED_FAILURE));
    assert_eq!(
        rig.ended(),
        Some(&EndReason::ReaderFailed(ReaderError::Lagged {
            queue_len: 16
        }))
    );
}

fn closes_locally(why: LocalClose) {
    let mut rig = Rig::streaming(options());
    rig.session.close(rig.now, why);
    rig.pump();
    let end = ConnectionEnd::Local(why);
    assert_eq!(rig.ended(), Some(&EndReason::ConnectionClosed(end.clone())));
    assert_eq!(
        rig.events.last(),
        Some(&RecordingEvent::ConnectionClosed(end))
    );
    assert!(rig.session.is_closed());
    assert!(!rig.slot.is_taken());
    assert_eq!(rig.ring.reader_count(), 0);
    let mut out = Vec::new();
    assert!(!rig.session.poll_transmit(&mut out), "nothing after close");
}

#[test]
fn hap_session_closed_ends_the_connection_and_the_stream() {
    closes_locally(LocalClose::HapSessionClosed);
}

#[test]
fn socket_closed_ends_the_connection_and_the_stream() {
    closes_locally(LocalClose::SocketClosed);
}

#[test]
fn shutdown_ends_the_connection_and_the_stream() {
    closes_locally(LocalClose::Shutdown);
}

#[test]
fn a_tampered_frame_closes_the_connection_with_an_error() {
    let mut rig = Rig::streaming(options());
    rig.hub.ack(STREAM);
    let mut out = Vec::new();
    while rig.hub.poll_transmit(&mut out) {}
    let last = out.len() - 1;
    out[last] ^= 0x01;
    let r = rig
        .session
        .handle_incoming(rig.now, &mut BytesMut::from(&out[..]));
    assert!(r.is_err());
    rig.pump();
    assert!(matches!(
        rig.ended(),
        Some(EndReason::ConnectionClosed(ConnectionEnd::Error(_)))
    ));
    assert!(rig.session.is_closed());
    assert!(!rig.slot.is_taken());
}

#[test]
fn an_open_before_the_first_init_segment_waits_for_it() {
    let mut rig = Rig::new(options());
    rig.session.set_motion(true);
    rig.open();
    assert_eq!(
        rig.events,
        vec![RecordingEvent::WaitingForInit { stream_id: STREAM }]
    );
    assert!(rig.slot.is_taken(), "a waiting open holds the slot");
    assert!(rig.segments().is_empty());
    rig.advance(Duration::from_secs(1));
    // The source delivers its first fragments (the init segment comes with the first).
    rig.feed(Duration::from_secs(5));
    rig.advance(Duration::from_millis(200));
    assert!(
        matches!(rig.events.get(1), Some(RecordingEvent::Opened { .. })),
        "{:?}",
        rig.events
    );
    assert_eq!(
        rig.segments().first(),
        Some(&(SegmentKind::MediaInitialization, false))
    );
}

#[test]
fn no_init_segment_within_the_wait_closes_with_reason_5() {
    let mut rig = Rig::new(options());
    rig.open();
    rig.advance(INIT_WAIT - Duration::from_millis(200));
    assert!(rig.ended().is_none());
    rig.advance(Duration::from_millis(400));
    assert_eq!(rig.hub_closed_with(), Some(Reason::UNEXPECTED_FAILURE));
    assert_eq!(rig.ended(), Some(&EndReason::NoInitSegment));
    assert!(!rig.slot.is_taken());
}

#[test]
fn camera_off_while_waiting_for_the_init_segment_closes_with_reason_1() {
    let mut rig = Rig::new(options());
    rig.open();
    let off = Conditions {
        camera_active: false,
        ..conditions()
    };
    rig.session.set_conditions(rig.now, off);
    rig.pump();
    assert_eq!(rig.hub_closed_with(), Some(Reason::NOT_ALLOWED));
    assert_eq!(rig.ended(), Some(&EndReason::CameraOff));
    assert!(!rig.slot.is_taken());
}

#[test]
fn a_second_recording_of_the_camera_is_busy() {
    // Another HDS connection of the same camera holds the slot.
    let slot = RecordingSlot::new();
    let held = slot.try_acquire().unwrap();
    let mut rig = Rig::with_slot(options(), slot);
    rig.feed(Duration::from_secs(12));
    rig.open();
    let rejected = rig.hub_events.iter().find_map(|e| match e {
        ControllerEvent::OpenRejected { reason, .. } => Some(*reason),
        _ => None,
    });
    assert_eq!(rejected, Some(Reason::BUSY));
    assert_eq!(
        rig.events,
        vec![RecordingEvent::Refused {
            stream_id: STREAM,
            reason: Reason::BUSY
        }]
    );
    assert!(rig.segments().is_empty());
    drop(held);
    // Free again: the next open on this connection records.
    rig.hub.open(STREAM + 1);
    rig.pump();
    assert!(
        rig.events.iter().any(
            |e| matches!(e, RecordingEvent::Opened { stream_id, .. } if *stream_id == STREAM + 1)
        ),
        "{:?}",
        rig.events
    );
}

#[test]
fn an_open_without_a_selected_configuration_is_refused() {
    let mut rig = Rig::new(options());
    rig.feed(Duration::from_secs(12));
    rig.session.set_conditions(
        rig.now,
        Conditions {
            selection: None,
            ..conditions()
        },
    );
    rig.open();
    assert!(
        matches!(rig.events.first(), Some(RecordingEvent::Refused { .. })),
        "{:?}",
        rig.events
    );
    assert!(!rig.slot.is_taken());
    assert!(rig.segments().is_empty());
}
