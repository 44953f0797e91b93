//! `LiveSession` on virtual time: a `LiveFeed` fed by hand, a receiver with the rtp crate's
//! SRTP context (pinned against libsrtp in `crates/rtp/tests/libsrtp.rs`), no socket, no sleep.
#![allow(clippy::indexing_slicing, clippy::unwrap_used)]

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use recorder::{H264Framing, LiveFeed, LiveFeedConfig, MediaUnit, ParameterSets, VideoAccessUnit};
use rtp::rtcp::{ReceiverReport, RtcpPacket};
use rtp::srtp::{Context as Srtp, MasterKey, Suite};
use rtp::{RtpPacket, is_rtcp};

use super::*;

const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f, 0xda];
const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
const MTU: usize = 1378;

fn key() -> MasterKey {
    MasterKey::new(&[3; 16], &[4; 14]).unwrap()
}

fn params(speed: u32) -> LiveParams {
    LiveParams {
        payload_type: 99,
        ssrc: 0x1234_5678,
        mtu: MTU,
        rtcp_interval: Duration::from_millis(500),
        liveness_timeout: DEFAULT_LIVENESS_TIMEOUT,
        catch_up_speed: speed,
        suite: Suite::AesCm128HmacSha1_80,
        send_key: key(),
        receive_key: key(),
        initial_sequence: 65_000,
        timestamp_origin: 0xffff_0000,
        wall_clock_at_start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
    }
}

fn annexb(nal: &[u8]) -> Bytes {
    let mut v = vec![0, 0, 0, 1];
    v.extend_from_slice(nal);
    Bytes::from(v)
}

/// Frame `n` at 30 fps (3000 ticks): an IDR of 4000 bytes every `gop` frames, else a 600-byte
/// P-frame.
fn frame(n: i64, gop: i64) -> MediaUnit {
    let nal: Vec<u8> = if n % gop == 0 {
        std::iter::once(0x65)
            .chain((0..4000).map(|i| i as u8))
            .collect()
    } else {
        std::iter::once(0x41)
            .chain((0..600).map(|i| (i + n) as u8))
            .collect()
    };
    MediaUnit::Video(VideoAccessUnit {
        pts_90k: 90_000 + n * 3000,
        dts_90k: None,
        data: annexb(&nal),
        framing: H264Framing::AnnexB,
    })
}

/// A feed with parameter sets and frames `0..frames` pushed (GOP of 60).
fn feed(frames: i64, config: LiveFeedConfig) -> LiveFeed {
    let f = LiveFeed::new(config);
    f.push(&MediaUnit::ParameterSets(ParameterSets {
        sps: Bytes::from_static(SPS),
        pps: Bytes::from_static(PPS),
    }));
    for n in 0..frames {
        f.push(&frame(n, 60));
    }
    f
}

/// What the viewer decrypted.
#[derive(Default)]
struct Viewer {
    rtp: Vec<(Instant, RtpPacketOwned)>,
    reports: Vec<(Instant, rtp::rtcp::SenderReport)>,
    max_datagram: usize,
}

#[derive(Debug, Clone)]
struct RtpPacketOwned {
    marker: bool,
    payload_type: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: Vec<u8>,
}

struct Harness {
    session: LiveSession,
    now: Instant,
    rx: Srtp,
    viewer: Viewer,
    events: Vec<LiveEvent>,
}

impl Harness {
    fn new(feed: &LiveFeed, speed: u32) -> Self {
        let now = Instant::now();
        let session = LiveSession::new(now, params(speed), feed.reader().unwrap()).unwrap();
        let mut h = Self {
            session,
            now,
            rx: Srtp::new(Suite::AesCm128HmacSha1_80, &key()),
            viewer: Viewer::default(),
            events: Vec::new(),
        };
        h.pump();
        h
    }

    /// Does what the driver does at `self.now`: units, timers, transmit, events.
    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            if let Some(r) = self.session.live_reader() {
                match r.try_next() {
                    Ok(Some(u)) => {
                        self.session.handle_unit(self.now, Ok(u));
                        progressed = true;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.session.handle_unit(self.now, Err(e));
                        progressed = true;
                    }
                }
            }
            if self.session.poll_timeout().is_some_and(|t| t <= self.now) {
                self.session.handle_timeout(self.now);
                progressed = true;
            }
            let mut buf = Vec::new();
            while self.session.poll_transmit(&mut buf) {
                self.receive(&buf);
            }
            while let Some(e) = self.session.poll_event() {
                self.events.push(e);
            }
            if !progressed {
                break;
            }
        }
    }

    fn receive(&mut self, datagram: &[u8]) {
        assert!(datagram.len() <= MTU, "datagram {} > MTU", datagram.len());
        self.viewer.max_datagram = self.viewer.max_datagram.max(datagram.len());
        let mut b = datagram.to_vec();
        if is_rtcp(&b) {
            let n = self.rx.unprotect_rtcp(&mut b).unwrap();
            for p in rtp::rtcp::parse_compound(&b[..n]).unwrap() {
                if let RtcpPacket::SenderReport(sr) = p {
                    self.viewer.reports.push((self.now, sr));
                }
            }
        } else {
            let n = self.rx.unprotect_rtp(&mut b).unwrap();
            let p = RtpPacket::parse(&b[..n]).unwrap();
            self.viewer.rtp.push((
                self.now,
                RtpPacketOwned {
                    marker: p.header.marker,
                    payload_type: p.header.payload_type,
                    seq: p.header.sequence_number,
                    ts: p.header.timestamp,
                    ssrc: p.header.ssrc,
                    payload: p.payload.to_vec(),
                },
            ));
        }
    }

    /// Advances virtual time in `step`s up to `until` after now, pumping at each.
    fn advance(&mut self, by: Duration, step: Duration) {
        let end = self.now + by;
        while self.now < end {
            self.now = (self.now + step).min(end);
            self.pump();
        }
    }

    /// A receiver report from the controller, protected with `key`.
    fn send_rr(&mut self, ctrl: &mut Srtp) {
        let mut b = Vec::new();
        ReceiverReport {
            ssrc: 0x0bad_cafe,
            reports: vec![],
        }
        .write(&mut b);
        ctrl.protect_rtcp(&mut b).unwrap();
        self.session.handle_datagram(self.now, &mut b);
        self.pump();
    }

    fn ended(&self) -> Option<LiveEnd> {
        self.events.iter().find_map(|e| match e {
            LiveEvent::Ended { why, .. } => Some(*why),
            _ => None,
        })
    }

    /// Timestamps of the marker packets (one per access unit).
    fn frame_timestamps(&self) -> Vec<(Instant, u32)> {
        self.viewer
            .rtp
            .iter()
            .filter(|(_, p)| p.marker)
            .map(|(t, p)| (*t, p.ts))
            .collect()
    }
}

#[test]
fn first_frame_at_once_parameter_sets_then_idr_with_a_sender_report() {
    let f = feed(10, LiveFeedConfig::default());
    let h = Harness::new(&f, DEFAULT_CATCH_UP_SPEED);
    // The IDR went out at start, before any time passed.
    let first = &h.viewer.rtp[0].1;
    assert_eq!(first.payload[0] & 0x1f, 24, "STAP-A first");
    assert_eq!(&first.payload[3..3 + SPS.len()], SPS);
    assert_eq!(first.payload_type, 99);
    assert_eq!(first.ssrc, 0x1234_5678);
    assert_eq!(first.seq, 65_000);
    assert_eq!(first.ts, 0xffff_0000, "the IDR has the random origin");
    let second = &h.viewer.rtp[1].1;
    assert_eq!(second.payload[0] & 0x1f, 28, "then the IDR in FU-A");
    assert_eq!(second.payload[1] & 0x1f, 5);
    assert_eq!(
        h.events.first(),
        Some(&LiveEvent::FirstFrame {
            latency: Duration::ZERO,
            backlog_units: 10
        })
    );
    assert_eq!(h.viewer.reports.len(), 1, "an SR with the first frame");
    assert_eq!(h.viewer.reports[0].1.ssrc, 0x1234_5678);
    // Exactly one frame so far: the P-frames wait for their catch-up time.
    assert_eq!(h.frame_timestamps().len(), 1);
    assert!(h.viewer.max_datagram <= MTU);
}

#[test]
fn backlog_is_sent_at_four_times_real_time_then_live_follows_with_source_spacing() {
    let f = feed(30, LiveFeedConfig::default()); // 1 s of GOP
    let mut h = Harness::new(&f, 4);
    let t0 = h.now;
    h.advance(Duration::from_millis(300), Duration::from_millis(5));
    let frames = h.frame_timestamps();
    assert_eq!(frames.len(), 30, "the whole second of backlog in 250 ms");
    let last_backlog = frames[29].0 - t0;
    assert!(
        last_backlog >= Duration::from_millis(240) && last_backlog <= Duration::from_millis(255),
        "{last_backlog:?}"
    );
    for w in frames.windows(2) {
        assert_eq!(w[1].1.wrapping_sub(w[0].1), 750, "timestamps compressed 4×");
    }
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, LiveEvent::CaughtUp { units: 30, .. })),
        "{:?}",
        h.events
    );
    // Live: a new frame goes out as soon as it arrives, 3000 ticks after the previous.
    f.push(&frame(30, 60));
    h.pump();
    let frames = h.frame_timestamps();
    assert_eq!(frames.len(), 31);
    assert_eq!(frames[30].0, h.now);
    assert_eq!(frames[30].1.wrapping_sub(frames[29].1), 3000);
    // Sequence numbers are contiguous across the 16-bit wrap.
    for w in h.viewer.rtp.windows(2) {
        assert_eq!(w[1].1.seq, w[0].1.seq.wrapping_add(1));
    }
}

#[test]
fn catch_up_speed_zero_bursts_the_whole_gop_at_start() {
    let f = feed(45, LiveFeedConfig::default());
    let h = Harness::new(&f, 0);
    let frames = h.frame_timestamps();
    assert_eq!(frames.len(), 45);
    assert!(
        frames
            .iter()
            .all(|(t, ts)| *t == h.now && *ts == 0xffff_0000)
    );
    assert!(matches!(h.events[1], LiveEvent::CaughtUp { units: 45, .. }));
}

#[test]
fn sender_reports_follow_the_interval_and_map_rtp_to_wall_time() {
    let f = feed(1, LiveFeedConfig::default());
    let mut h = Harness::new(&f, 4);
    let mut ctrl = Srtp::new(Suite::AesCm128HmacSha1_80, &key());
    for _ in 0..5 {
        h.advance(Duration::from_secs(1), Duration::from_millis(50));
        h.send_rr(&mut ctrl);
    }
    let reports = &h.viewer.reports;
    assert_eq!(reports.len(), 11, "one at start, then every 0.5 s for 5 s");
    for w in reports.windows(2) {
        assert_eq!(w[1].0 - w[0].0, Duration::from_millis(500));
        // 0.5 s = 45000 ticks of RTP time and 2^31 of NTP fraction.
        assert_eq!(
            w[1].1.rtp_timestamp.wrapping_sub(w[0].1.rtp_timestamp),
            45_000
        );
        assert_eq!(w[1].1.ntp_timestamp - w[0].1.ntp_timestamp, 1 << 31);
    }
    assert!(reports.iter().all(|(_, r)| r.packet_count >= 1));
    assert_eq!(h.session.heard(), 5);
    assert_eq!(h.ended(), None);
}

#[test]
fn silence_ends_the_stream_and_forged_rtcp_does_not_keep_it_alive() {
    let f = feed(3, LiveFeedConfig::default());
    let mut h = Harness::new(&f, 4);
    let mut forger = Srtp::new(
        Suite::AesCm128HmacSha1_80,
        &MasterKey::new(&[9; 16], &[9; 14]).unwrap(),
    );
    for _ in 0..29 {
        h.advance(Duration::from_secs(1), Duration::from_millis(100));
        h.send_rr(&mut forger);
        // Garbage and RTP from the controller are dropped too.
        h.session.handle_datagram(h.now, &mut [0x80, 99, 0, 1]);
        h.session.handle_datagram(h.now, &mut [0x80, 201, 0]);
    }
    assert_eq!(h.ended(), None);
    h.advance(Duration::from_millis(1100), Duration::from_millis(100));
    assert_eq!(h.ended(), Some(LiveEnd::Silent));
    assert_eq!(h.session.heard(), 0);
    assert_eq!(h.session.rejected(), 29 * 3);
    assert_eq!(f.reader_count(), 0, "the reader is dropped at the end");
    assert_eq!(h.session.poll_timeout(), None);
}

#[test]
fn receiver_reports_keep_it_alive_past_the_timeout() {
    let f = feed(3, LiveFeedConfig::default());
    let mut h = Harness::new(&f, 4);
    let mut ctrl = Srtp::new(Suite::AesCm128HmacSha1_80, &key());
    for _ in 0..40 {
        h.advance(Duration::from_secs(1), Duration::from_millis(250));
        h.send_rr(&mut ctrl);
    }
    assert_eq!(h.ended(), None);
    assert_eq!(f.reader_count(), 1);
}

#[test]
fn stop_sends_nothing_more_and_frees_the_reader() {
    let f = feed(30, LiveFeedConfig::default());
    let mut h = Harness::new(&f, 4);
    h.advance(Duration::from_millis(100), Duration::from_millis(10));
    let sent = h.viewer.rtp.len();
    h.session.stop(h.now, LiveEnd::Stopped);
    h.pump();
    f.push(&frame(30, 60));
    h.advance(Duration::from_secs(2), Duration::from_millis(10));
    assert_eq!(h.viewer.rtp.len(), sent, "no packet after END");
    assert_eq!(f.reader_count(), 0);
    let ended: Vec<_> = h
        .events
        .iter()
        .filter(|e| matches!(e, LiveEvent::Ended { .. }))
        .collect();
    assert_eq!(ended.len(), 1);
    assert!(matches!(
        ended[0],
        LiveEvent::Ended {
            why: LiveEnd::Stopped,
            units,
            ..
        } if *units > 1 && *units < 30
    ));
    // A second stop is ignored.
    h.session.stop(h.now, LiveEnd::Shutdown);
    assert_eq!(h.session.poll_event(), None);
}

#[test]
fn source_gone_and_a_lagging_viewer_end_the_stream() {
    let f = feed(3, LiveFeedConfig::default());
    let mut h = Harness::new(&f, 0);
    f.close();
    h.pump();
    assert_eq!(h.ended(), Some(LiveEnd::SourceGone));

    let f = feed(
        3,
        LiveFeedConfig {
            reader_queue_units: 5,
            ..LiveFeedConfig::default()
        },
    );
    let mut h = Harness::new(&f, 0);
    for n in 3..20 {
        f.push(&frame(n, 60));
    }
    h.pump();
    assert_eq!(h.ended(), Some(LiveEnd::Lagged));
    assert_eq!(f.reader_count(), 0);
}

#[test]
fn malformed_access_units_are_skipped_and_the_stream_goes_on() {
    let f = feed(2, LiveFeedConfig::default());
    let mut h = Harness::new(&f, 0);
    let before = h.frame_timestamps().len();
    f.push(&MediaUnit::Video(VideoAccessUnit {
        pts_90k: 90_000 + 2 * 3000,
        dts_90k: None,
        data: Bytes::from_static(&[1, 2, 3, 4]),
        framing: H264Framing::AnnexB,
    }));
    f.push(&frame(3, 60));
    h.pump();
    assert_eq!(h.frame_timestamps().len(), before + 1);
    assert_eq!(h.ended(), None);
}

#[test]
fn a_tiny_mtu_is_refused_and_every_datagram_fits_a_small_one() {
    let f = feed(2, LiveFeedConfig::default());
    let mut p = params(0);
    p.mtu = 39;
    assert_eq!(
        LiveSession::new(Instant::now(), p, f.reader().unwrap()).unwrap_err(),
        LiveSetupError::Mtu(39)
    );
    let mut p = params(0);
    p.mtu = 1200;
    let mut s = LiveSession::new(Instant::now(), p, f.reader().unwrap()).unwrap();
    let now = Instant::now();
    while let Some(Ok(Some(u))) = s.live_reader().map(|r| r.try_next()) {
        s.handle_unit(now, Ok(u));
    }
    let mut buf = Vec::new();
    let mut n = 0;
    while s.poll_transmit(&mut buf) {
        assert!(buf.len() <= 1200);
        n += 1;
    }
    assert!(n > 4);
}
