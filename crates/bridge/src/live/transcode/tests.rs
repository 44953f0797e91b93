use super::*;
use recorder::{DemoSource, MediaUnit};

/// The bundled clip's AAC-LC (32 kHz mono), `seconds` of it, as a viewer's reader yields it.
fn demo_audio(seconds: u32) -> Vec<LiveAudio> {
    let mut demo = DemoSource::bundled().unwrap();
    let config = Arc::new(demo.audio_config().unwrap().clone());
    let frames = (seconds * config.sample_rate_hz / config.samples_per_frame) as usize;
    let mut out = Vec::new();
    while out.len() < frames {
        if let (_, MediaUnit::Audio(a)) = demo.next_unit() {
            out.push(LiveAudio {
                pts_samples: a.pts_samples,
                data: a.data,
                config: Arc::clone(&config),
            });
        }
    }
    out
}

fn target(rate: u32, ms: u8) -> OpusTarget {
    OpusTarget {
        sample_rate_hz: rate,
        packet_time_ms: ms,
        bitrate_bps: 24_000,
    }
}

fn run(t: &mut AacToOpus, units: &[LiveAudio]) -> Vec<OpusPacket> {
    let mut out = Vec::new();
    for u in units {
        t.push(u, &mut out).unwrap();
    }
    out
}

#[test]
fn demo_audio_becomes_packets_of_exactly_the_packet_time_at_every_rate() {
    // 3 s: the clip loops after 3.8 s with a 96 ms gap in its audio.
    let units = demo_audio(3);
    let source_samples = units.len() as u64 * 1024;
    for rate in OPUS_RATES_HZ {
        for ms in PACKET_TIMES_MS {
            let mut t = AacToOpus::new(target(rate, ms)).unwrap();
            let packets = run(&mut t, &units);
            let samples = t.target().packet_samples();
            // All the source's time, less the resampler's delay and a partial packet.
            let expected = (source_samples * u64::from(rate) / 32_000) as usize / samples;
            assert!(
                packets.len() + 3 >= expected && packets.len() <= expected,
                "{rate} Hz {ms} ms: {} packets, expected about {expected}",
                packets.len()
            );
            let step_90k = i64::from(ms) * 90;
            let mut decoder = opus_rs::OpusDecoder::new(rate as i32, 1).unwrap();
            let mut pcm = vec![0.0f32; samples];
            for (i, p) in packets.iter().enumerate() {
                assert_eq!(
                    p.source_90k,
                    units[0].pts_samples * 90_000 / 32_000 + i as i64 * step_90k
                );
                assert!(!p.discontinuity);
                let n = decoder.decode(&p.data, samples, &mut pcm).unwrap();
                assert_eq!(n, samples, "{rate} Hz {ms} ms packet {i}");
            }
            // 20 ms is one frame (code 0); 30 ms three 10 ms frames in one code-3 packet.
            let code = packets[0].data[0] & 3;
            match ms {
                20 => assert_eq!(code, 0),
                30 => assert_eq!(code, 3),
                _ => {}
            }
        }
    }
}

#[test]
fn a_gap_in_the_source_marks_a_discontinuity_and_time_follows_the_source() {
    let units = demo_audio(3);
    let mut t = AacToOpus::new(target(16_000, 20)).unwrap();
    let before = run(&mut t, &units[..40]);
    // 10 access units (320 ms) lost.
    let after = run(&mut t, &units[50..]);
    assert!(before.iter().all(|p| !p.discontinuity));
    assert!(after[0].discontinuity);
    assert_eq!(after[0].source_90k, units[50].pts_samples * 90_000 / 32_000);
    assert!(after[1..].iter().all(|p| !p.discontinuity));
}

#[test]
fn corrupt_units_are_skipped_with_an_error_and_the_stream_goes_on() {
    let units = demo_audio(2);
    let mut t = AacToOpus::new(target(24_000, 20)).unwrap();
    let mut out = Vec::new();
    for u in &units[..10] {
        t.push(u, &mut out).unwrap();
    }
    let mut errors = 0;
    for garbage in [vec![0xffu8; 40], vec![0x00; 1], vec![], vec![0x5a; 600]] {
        let bad = LiveAudio {
            data: bytes::Bytes::from(garbage),
            ..units[10].clone()
        };
        if matches!(t.push(&bad, &mut out), Err(TranscodeError::Decode(_))) {
            errors += 1;
        }
    }
    assert!(errors >= 2, "only {errors} garbage units were refused");
    assert_eq!(t.corrupt, errors);
    let n = out.len();
    for u in &units[11..] {
        t.push(u, &mut out).unwrap();
    }
    assert!(out.len() > n + 20, "the stream did not go on");
}

#[test]
fn a_new_config_starts_a_new_decoder_and_unsupported_ones_are_refused() {
    let units = demo_audio(1);
    let mut t = AacToOpus::new(target(16_000, 20)).unwrap();
    let first = run(&mut t, &units);
    assert!(!first.is_empty());
    // An equal stream behind a new config (a reconnect; a trailing zero byte in the ASC),
    // and a jump in time: the decoder is rebuilt and the packets are marked.
    let config2 = Arc::new(AudioSpecificConfig::parse(&[0x12, 0x88, 0x00]).unwrap());
    assert_ne!(config2, units[0].config);
    let moved: Vec<LiveAudio> = units
        .iter()
        .map(|u| LiveAudio {
            pts_samples: u.pts_samples + 1_000_000,
            config: Arc::clone(&config2),
            ..u.clone()
        })
        .collect();
    let second = run(&mut t, &moved);
    assert!(second[0].discontinuity);
    // AAC-ELD is not decodable here: refused, the transcoder stays usable.
    let eld = Arc::new(AudioSpecificConfig::parse(&[0xf8, 0xf0, 0x20, 0x00]).unwrap());
    let r = t.push(
        &LiveAudio {
            config: eld,
            ..units[0].clone()
        },
        &mut Vec::new(),
    );
    assert!(matches!(r, Err(TranscodeError::Source(_))), "{r:?}");
    assert!(!run(&mut t, &units).is_empty());
}

#[test]
fn targets_homekit_does_not_use_are_refused() {
    assert!(matches!(
        AacToOpus::new(target(44_100, 20)),
        Err(TranscodeError::Target(_))
    ));
    assert!(matches!(
        AacToOpus::new(target(16_000, 25)),
        Err(TranscodeError::Target(_))
    ));
    assert_eq!(target(24_000, 60).packet_samples(), 1440);
}

#[test]
fn code3_packets_carry_vbr_lengths_and_refuse_mixed_frames() {
    let a = [vec![0x08, 1, 2, 3], vec![0x08; 300], vec![0x08, 9]];
    let p = code3_packet(&a).unwrap();
    // TOC (code 3), count byte (VBR, 3 frames), length 3, length 299 as 255 + 4 × 11.
    assert_eq!(&p[..6], &[0x0b, 0x83, 3, 255, 11, 1]);
    assert_eq!(p.len(), 2 + 1 + 2 + 3 + 299 + 1);
    assert!(code3_packet(&[vec![0x08, 1], vec![0x10, 1]]).is_err());
    assert!(code3_packet(&[vec![0x09, 1]]).is_err());
    assert!(code3_packet(&[]).is_err());
}

#[test]
fn random_bytes_as_access_units_never_panic_and_the_stream_recovers() {
    let units = demo_audio(2);
    let mut t = AacToOpus::new(target(16_000, 20)).unwrap();
    let mut out = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (i, u) in units.iter().enumerate().take(40) {
        let len = (next() % 900) as usize;
        let garbage: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Every other unit garbage, with odd timestamps too.
        let bad = LiveAudio {
            pts_samples: u.pts_samples + (next() % 3000) as i64 - 1500,
            data: bytes::Bytes::from(garbage),
            ..u.clone()
        };
        let _ = t.push(&bad, &mut out);
        if i % 2 == 0 {
            let _ = t.push(u, &mut out);
        }
    }
    let n = out.len();
    for u in &units[40..] {
        t.push(u, &mut out).unwrap();
    }
    assert!(
        out.len() > n + 30,
        "no recovery after garbage: {} → {}",
        n,
        out.len()
    );
}
