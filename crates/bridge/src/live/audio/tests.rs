//! `AudioSession` on virtual time: the demo clip's AAC through a `LiveFeed`, a receiver with
//! the rtp crate's SRTP context (pinned against libsrtp in `crates/rtp/tests/libsrtp.rs`).

use std::time::{Duration, Instant, SystemTime};

use recorder::{DemoSource, LiveFeed, LiveFeedConfig, MediaUnit};
use rtp::rtcp::RtcpPacket;
use rtp::srtp::{Context as Srtp, MasterKey, Suite};
use rtp::{RtpPacket, is_rtcp};

use super::*;

fn key() -> MasterKey {
    MasterKey::new(&[5; 16], &[6; 14]).unwrap()
}

fn params(rate: u32, ms: u8) -> AudioParams {
    AudioParams {
        payload_type: 110,
        ssrc: 0x0bad_cafe,
        rtcp_interval: Duration::from_secs(5),
        suite: Suite::AesCm128HmacSha1_80,
        send_key: key(),
        receive_key: key(),
        target: OpusTarget {
            sample_rate_hz: rate,
            packet_time_ms: ms,
            bitrate_bps: 24_000,
        },
        initial_sequence: 65_530,
        timestamp_origin: 0xffff_ff00,
        wall_clock_at_start: SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000),
    }
}

/// Everything the session queued, decrypted: RTP packets and sender reports.
#[derive(Default)]
struct Received {
    rtp: Vec<(u8, u16, u32, u32, bool, Vec<u8>)>,
    reports: Vec<rtp::rtcp::SenderReport>,
}

fn drain(s: &mut AudioSession, rx: &mut Srtp, got: &mut Received) {
    let mut b = Vec::new();
    while s.poll_transmit(&mut b) {
        if is_rtcp(&b) {
            let n = rx.unprotect_rtcp(&mut b).unwrap();
            for p in rtp::rtcp::parse_compound(&b[..n]).unwrap() {
                if let RtcpPacket::SenderReport(sr) = p {
                    got.reports.push(sr);
                }
            }
        } else {
            let n = rx.unprotect_rtp(&mut b).unwrap();
            let p = RtpPacket::parse(&b[..n]).unwrap();
            got.rtp.push((
                p.header.payload_type,
                p.header.sequence_number,
                p.header.timestamp,
                p.header.ssrc,
                p.header.marker,
                p.payload.to_vec(),
            ));
        }
    }
}

fn subscription(feed: &LiveFeed, target: OpusTarget) -> OpusSubscription {
    let opus = std::sync::Arc::new(
        super::super::opus_feed::OpusFeed::new(feed.audio_reader().unwrap(), target).unwrap(),
    );
    opus.subscribe()
}

/// Feeds `seconds` of the demo clip's audio in real (virtual) time; returns what arrived.
fn run(
    rate: u32,
    ms: u8,
    seconds: u32,
    clock: impl Fn(Instant, Instant) -> Option<SourceClock>,
) -> (AudioSession, Received) {
    let feed = LiveFeed::new(LiveFeedConfig::default());
    let mut demo = DemoSource::bundled().unwrap();
    feed.set_audio_config(demo.audio_config().cloned());
    let t0 = Instant::now();
    let p = params(rate, ms);
    let sub = subscription(&feed, p.target);
    let mut s = AudioSession::new(t0, p, sub);
    let mut rx = Srtp::new(Suite::AesCm128HmacSha1_80, &key());
    let mut got = Received::default();
    loop {
        let (due, unit) = demo.next_unit();
        if due > Duration::from_secs(u64::from(seconds)) {
            break;
        }
        let now = t0 + due;
        if matches!(unit, MediaUnit::Audio(_)) {
            feed.push(&unit);
        }
        s.set_video_clock(clock(t0, now));
        s.pull(now, false);
        if s.poll_timeout().is_some_and(|t| t <= now) {
            s.handle_timeout(now);
        }
        drain(&mut s, &mut rx, &mut got);
    }
    (s, got)
}

#[test]
fn packets_carry_the_negotiated_pt_and_ssrc_contiguous_sequence_numbers_and_packet_time_steps() {
    for (rate, ms) in [(16_000, 20), (24_000, 20), (8_000, 60), (16_000, 30)] {
        let (s, got) = run(rate, ms, 3, |_, _| None);
        let step = rate * u32::from(ms) / 1000;
        assert!(
            got.rtp.len() as u32 >= 2500 / u32::from(ms),
            "{rate}/{ms}: {} packets",
            got.rtp.len()
        );
        assert_eq!(s.packets, got.rtp.len() as u64);
        for (i, w) in got.rtp.windows(2).enumerate() {
            assert_eq!((w[1].0, w[1].3), (110, 0x0bad_cafe));
            assert_eq!(w[1].1, w[0].1.wrapping_add(1), "sequence at {i}");
            assert_eq!(
                w[1].2,
                w[0].2.wrapping_add(step),
                "timestamp at {i} ({rate}/{ms})"
            );
            assert!(!w[1].4, "marker only on the first packet");
        }
        assert_eq!(
            (got.rtp[0].1, got.rtp[0].2, got.rtp[0].4),
            (65_530, 0xffff_ff00, true)
        );
        // Each payload decodes to exactly one packet time.
        let mut dec = opus_rs::OpusDecoder::new(rate as i32, 1).unwrap();
        let mut pcm = vec![0.0; step as usize];
        for p in &got.rtp {
            assert_eq!(
                dec.decode(&p.5, step as usize, &mut pcm).unwrap(),
                step as usize
            );
        }
        // The first report goes with the first packet; none again before the interval.
        assert_eq!(got.reports.len(), 1);
        assert_eq!(got.reports[0].ssrc, 0x0bad_cafe);
        assert_eq!(got.reports[0].packet_count, 1);
    }
}

#[test]
fn sender_reports_come_every_interval_and_map_now_onto_the_video_clock() {
    // The video presents source time 0 at t0 + 1 s, and follows the source from there.
    let (_, got) = run(16_000, 20, 12, |t0, _| {
        Some(SourceClock {
            source_90k: 0,
            at: t0 + Duration::from_secs(1),
        })
    });
    assert!(got.reports.len() >= 3, "{} reports", got.reports.len());
    let ntp_s = |sr: &rtp::rtcp::SenderReport| {
        (sr.ntp_timestamp >> 32) as f64 + (sr.ntp_timestamp & 0xffff_ffff) as f64 / 2f64.powi(32)
    };
    for w in got.reports.windows(2) {
        // 5 s apart (within one AAC unit of the feed's steps).
        let dt = ntp_s(&w[1]) - ntp_s(&w[0]);
        assert!((dt - 5.0).abs() < 0.07, "reports {dt} s apart");
        // The RTP clock runs at 16 kHz against the wall clock of the reports.
        let drtp = w[1].rtp_timestamp.wrapping_sub(w[0].rtp_timestamp) as f64;
        assert!((drtp / dt - 16_000.0).abs() < 16.0, "{} Hz", drtp / dt);
    }
    // Source time 0 (the clip's first audio sample, RTP origin) is presented 1 s after t0: a
    // report at wall time w maps to origin + (w - start - 1 s) × 16 kHz.
    let start = 2_000_000.0 + 2_208_988_800.0;
    for sr in &got.reports {
        let expect = (ntp_s(sr) - start - 1.0) * 16_000.0;
        let rtp = f64::from(sr.rtp_timestamp.wrapping_sub(0xffff_ff00) as i32);
        assert!(
            (rtp - expect).abs() < 16.0 * 2.0,
            "report maps {rtp}, expected {expect}"
        );
    }
}

#[test]
fn audio_that_cannot_be_transcoded_is_dropped_alone_with_a_reason() {
    let feed = LiveFeed::new(LiveFeedConfig::default());
    // AAC-ELD: not decodable here.
    feed.set_audio_config(Some(
        recorder::aac::AudioSpecificConfig::parse(&[0xf8, 0xf0, 0x20, 0x00]).unwrap(),
    ));
    let t0 = Instant::now();
    let p = params(16_000, 20);
    let sub = subscription(&feed, p.target);
    let mut s = AudioSession::new(t0, p, sub);
    feed.push(&MediaUnit::Audio(recorder::input::AudioFrame {
        pts_samples: 0,
        data: bytes::Bytes::from_static(&[1, 2, 3]),
    }));
    s.pull(t0, false);
    match s.poll_event() {
        Some(AudioEvent::Dropped { reason }) => assert!(reason.contains("AAC-LC"), "{reason}"),
        e => panic!("{e:?}"),
    }
    assert!(!s.has_reader());
    assert_eq!(s.packets, 0);
    assert_eq!(s.poll_timeout(), None);
    // Garbage on the audio port is counted, not trusted.
    s.handle_datagram(&mut [0x80, 110, 0, 1]);
    s.handle_datagram(&mut [0x81, 201, 0, 7, 0, 0, 0, 0]);
    assert_eq!((s.heard, s.rejected), (0, 2));
}

#[test]
fn muted_audio_is_taken_and_not_sent() {
    let feed = LiveFeed::new(LiveFeedConfig::default());
    let mut demo = DemoSource::bundled().unwrap();
    feed.set_audio_config(demo.audio_config().cloned());
    let t0 = Instant::now();
    let p = params(16_000, 20);
    let sub = subscription(&feed, p.target);
    let mut s = AudioSession::new(t0, p, sub);
    let mut fed = 0;
    while fed < 20 {
        if let (_, u @ MediaUnit::Audio(_)) = demo.next_unit() {
            feed.push(&u);
            fed += 1;
        }
    }
    s.pull(t0, true);
    assert_eq!(s.packets, 0);
    assert!(!s.poll_transmit(&mut Vec::new()));
    // Unmuted, what comes next is sent (what came while muted is gone).
    s.pull(t0, false);
    assert_eq!(s.packets, 0);
    while fed < 40 {
        if let (_, u @ MediaUnit::Audio(_)) = demo.next_unit() {
            feed.push(&u);
            fed += 1;
        }
    }
    s.pull(t0, false);
    assert!(s.packets > 20, "{} packets", s.packets);
    assert_eq!(s.units(), Some((40, 0)));
}
