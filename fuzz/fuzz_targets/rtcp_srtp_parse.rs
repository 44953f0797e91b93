//! What a controller (or anyone on the LAN) can send to a live-view port: the RTCP compound
//! parser, the RTP header parser and SRTP/SRTCP unprotect never panic on arbitrary bytes, and a
//! packet without the key never authenticates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtp::srtp::{Context, MasterKey, Suite};

fuzz_target!(|data: &[u8]| {
    let _ = rtp::rtcp::parse_compound(data);
    let _ = rtp::RtpPacket::parse(data);
    let master = MasterKey::new(&[7; 16], &[9; 14]).expect("valid lengths");
    let mut ctx = Context::new(Suite::AesCm128HmacSha1_80, &master);
    let mut buf = data.to_vec();
    assert!(ctx.unprotect_rtp(&mut buf).is_err() || data.len() >= 22);
    let mut buf = data.to_vec();
    let _ = ctx.unprotect_rtcp(&mut buf);
});
