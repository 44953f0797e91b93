//! What a controller (or anyone on the LAN) can send to a live-view port: the RTCP compound
//! parser, the RTP header parser, SRTP/SRTCP unprotect and the H.264 depacketizer (fed the
//! input as a run of packets) never panic on arbitrary bytes, and a packet without the key never
//! authenticates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtp::srtp::{Context, MasterKey, Suite};

fuzz_target!(|data: &[u8]| {
    let _ = rtp::rtcp::parse_compound(data);
    let _ = rtp::RtpPacket::parse(data);
    // Split the input into packets at each 0xff byte; each is one RTP packet's payload.
    let mut depacketizer = rtp::Depacketizer::new(4096);
    for (i, payload) in data.split(|b| *b == 0xff).enumerate() {
        let header = rtp::RtpHeader {
            marker: payload.first().is_some_and(|b| b & 1 == 1),
            payload_type: 99,
            sequence_number: u16::try_from(i % 65_536).unwrap_or(0),
            timestamp: u32::from(payload.first().copied().unwrap_or(0) & 0xf0),
            ssrc: 1,
        };
        if let Ok(Some(unit)) = depacketizer.push(&header, payload) {
            assert!(unit.annex_b.len() <= 4096);
        }
    }
    let master = MasterKey::new(&[7; 16], &[9; 14]).expect("valid lengths");
    let mut ctx = Context::new(Suite::AesCm128HmacSha1_80, &master);
    let mut buf = data.to_vec();
    assert!(ctx.unprotect_rtp(&mut buf).is_err() || data.len() >= 22);
    let mut buf = data.to_vec();
    let _ = ctx.unprotect_rtcp(&mut buf);
});
