//! HDS frame decoder and accessory connection on arbitrary bytes: the input is cut at a point the
//! fuzzer chooses (the first byte), fed in two pieces, and must never panic; the same bytes
//! sealed with the right key then reach the message layer.
#![no_main]

use bytes::BytesMut;
use hds::frame::{FrameOpener, take_frame};
use hds::{Connection, Role, SessionKeys};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(rest.len());
    let (a, b) = rest.split_at(cut);

    // Raw frame splitting with the key of neither side: never panics, never loops.
    let mut opener = FrameOpener::new(&[3; 32]);
    let mut buf = BytesMut::from(a);
    while let Ok(Some(f)) = take_frame(&mut buf, opener.counter()) {
        let _ = opener.open(f);
    }
    buf.extend_from_slice(b);
    while let Ok(Some(f)) = take_frame(&mut buf, opener.counter()) {
        let _ = opener.open(f);
    }

    // Authenticated garbage reaches the message decoder and connection state machine.
    let keys = SessionKeys::from_raw([1; 32], [2; 32]);
    let now = std::time::Instant::now();
    let mut conn = Connection::with_keys(&keys, now);
    let mut sealer = keys.sealer(Role::Controller);
    let mut wire = Vec::new();
    for piece in [a, b] {
        let _ = sealer.seal(piece, &mut wire);
    }
    let mut buf = BytesMut::from(&wire[..]);
    let _ = conn.handle_incoming(now, &mut buf);
    let mut out = Vec::new();
    while conn.poll_transmit(&mut out) {}
    while conn.poll_event().is_some() {}
});
