//! The cargo-fuzz targets of `fuzz/fuzz_targets/`, unchanged, run on stable Rust for a short
//! time each (cargo-fuzz needs nightly, which CI cannot fetch): `fuzz-shim` turns each
//! `fuzz_target!` into a function, and this test feeds it seeded random inputs, mutations of
//! valid-looking prefixes, and the empty input. A panic or a failed assertion inside a target
//! fails the test and prints the input (hex) to reproduce it with cargo-fuzz.
//!
//! `HKSV_FUZZ_SMOKE_MS` sets the budget per target (default 2000 ms).
#![allow(clippy::indexing_slicing, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, RngExt as _, SeedableRng as _};

#[allow(
    unused_attributes,
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unreachable_pub
)]
#[path = "../fuzz/fuzz_targets/annexb_parse.rs"]
mod annexb_parse;
#[allow(
    unused_attributes,
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unreachable_pub
)]
#[path = "../fuzz/fuzz_targets/byte_ingest.rs"]
mod byte_ingest;
#[allow(
    unused_attributes,
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unreachable_pub
)]
#[path = "../fuzz/fuzz_targets/fmp4_parse_what_we_write.rs"]
mod fmp4_parse_what_we_write;
#[allow(
    unused_attributes,
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unreachable_pub
)]
#[path = "../fuzz/fuzz_targets/hap_core_unverified.rs"]
mod hap_core_unverified;
#[allow(
    unused_attributes,
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unreachable_pub
)]
#[path = "../fuzz/fuzz_targets/hap_http_request.rs"]
mod hap_http_request;
#[allow(
    unused_attributes,
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unreachable_pub
)]
#[path = "../fuzz/fuzz_targets/hap_session_frame.rs"]
mod hap_session_frame;
#[allow(
    unused_attributes,
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unreachable_pub
)]
#[path = "../fuzz/fuzz_targets/hds_codec_roundtrip.rs"]
mod hds_codec_roundtrip;
#[allow(
    unused_attributes,
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unreachable_pub
)]
#[path = "../fuzz/fuzz_targets/hds_frame.rs"]
mod hds_frame;
#[allow(
    unused_attributes,
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unreachable_pub
)]
#[path = "../fuzz/fuzz_targets/mp4_demux.rs"]
mod mp4_demux;
#[allow(
    unused_attributes,
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unreachable_pub
)]
#[path = "../fuzz/fuzz_targets/mqtt_payload.rs"]
mod mqtt_payload;
#[allow(
    unused_attributes,
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unreachable_pub
)]
#[path = "../fuzz/fuzz_targets/rtcp_srtp_parse.rs"]
mod rtcp_srtp_parse;
#[allow(
    unused_attributes,
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unreachable_pub
)]
#[path = "../fuzz/fuzz_targets/rtp_tlv_decode.rs"]
mod rtp_tlv_decode;
#[allow(
    unused_attributes,
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unreachable_pub
)]
#[path = "../fuzz/fuzz_targets/tlv8_decode.rs"]
mod tlv8_decode;
#[allow(
    unused_attributes,
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unreachable_pub
)]
#[path = "../fuzz/fuzz_targets/tlv8_roundtrip.rs"]
mod tlv8_roundtrip;

/// A target's name and entry point.
type Target = (&'static str, fn(&[u8]));

const TARGETS: &[Target] = &[
    ("annexb_parse", annexb_parse::fuzz_entry as fn(&[u8])),
    ("byte_ingest", byte_ingest::fuzz_entry as fn(&[u8])),
    (
        "fmp4_parse_what_we_write",
        fmp4_parse_what_we_write::fuzz_entry as fn(&[u8]),
    ),
    (
        "hap_core_unverified",
        hap_core_unverified::fuzz_entry as fn(&[u8]),
    ),
    (
        "hap_http_request",
        hap_http_request::fuzz_entry as fn(&[u8]),
    ),
    (
        "hap_session_frame",
        hap_session_frame::fuzz_entry as fn(&[u8]),
    ),
    (
        "hds_codec_roundtrip",
        hds_codec_roundtrip::fuzz_entry as fn(&[u8]),
    ),
    ("hds_frame", hds_frame::fuzz_entry as fn(&[u8])),
    ("mp4_demux", mp4_demux::fuzz_entry as fn(&[u8])),
    ("mqtt_payload", mqtt_payload::fuzz_entry as fn(&[u8])),
    ("rtcp_srtp_parse", rtcp_srtp_parse::fuzz_entry as fn(&[u8])),
    ("rtp_tlv_decode", rtp_tlv_decode::fuzz_entry as fn(&[u8])),
    ("tlv8_decode", tlv8_decode::fuzz_entry as fn(&[u8])),
    ("tlv8_roundtrip", tlv8_roundtrip::fuzz_entry as fn(&[u8])),
];

/// Bytes the targets' formats start with, so that random tails reach past the first check.
const PREFIXES: &[&[u8]] = &[
    b"",
    &[0, 0, 0, 1, 0x67],
    &[0, 0, 1, 0x65],
    &[0, 0, 0, 0x18, b'f', b't', b'y', b'p'],
    &[0, 0, 0, 0x08, b'm', b'o', b'o', b'f'],
    b"POST /pair-setup HTTP/1.1\r\nContent-Length: 10\r\n\r\n",
    b"PUT /characteristics HTTP/1.1\r\nContent-Length: 40\r\n\r\n{\"characteristics\":[",
    &[0x06, 0x01, 0x01],
    &[0x01, 0x00, 0x00, 0x40],
    &[0x80, 0xe0],
    &[0x81, 0xc9, 0x00, 0x07],
    b"{\"type\":\"new\",\"after\":{",
    b"ON",
];

fn budget() -> Duration {
    let ms = std::env::var("HKSV_FUZZ_SMOKE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    Duration::from_millis(ms)
}

fn input(rng: &mut StdRng) -> Vec<u8> {
    let prefix = PREFIXES[rng.random_range(0..PREFIXES.len())];
    let len = match rng.random_range(0..4) {
        0 => rng.random_range(0..16),
        1 => rng.random_range(0..256),
        2 => rng.random_range(0..4096),
        _ => rng.random_range(0..65_536),
    };
    let mut v = prefix.to_vec();
    let start = v.len();
    v.resize(start + len, 0);
    rng.fill_bytes(&mut v[start..]);
    v
}

#[test]
fn every_fuzz_target_survives_random_input() {
    let budget = budget();
    for (i, (name, run)) in TARGETS.iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(0x5eed_0000 + i as u64);
        let end = Instant::now() + budget;
        let mut n = 0u64;
        run(&[]);
        while Instant::now() < end {
            let data = input(&mut rng);
            let r = std::panic::catch_unwind(|| run(&data));
            assert!(
                r.is_ok(),
                "fuzz target {name} failed on input #{n}: {}",
                data.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
            n += 1;
        }
        eprintln!("{name}: {n} inputs in {budget:?}, no failure");
        assert!(n > 0, "{name} ran no input");
    }
}
