//! Session frame codec throughput: 1 MiB encrypted by one side and decrypted by the other.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hap_server::pairing::SharedSecret;
use hap_server::session::SessionCipher;

const MIB: usize = 1 << 20;

fn benches(c: &mut Criterion) {
    let secret = SharedSecret::from_bytes([7; 32]);
    let plain = vec![0x5A_u8; MIB];
    let mut g = c.benchmark_group("session");
    g.throughput(Throughput::Bytes(MIB as u64));
    let mut acc = SessionCipher::accessory(&secret);
    let mut ctl = SessionCipher::controller(&secret);
    let mut wire = Vec::with_capacity(MIB + MIB / 1024 * 18);
    let mut out = Vec::with_capacity(MIB);
    g.bench_function("encrypt_1MiB", |b| {
        b.iter(|| {
            wire.clear();
            acc.encrypt(black_box(&plain), &mut wire);
        });
    });
    // Fresh pair: the encrypt-only run advanced `acc`'s counter without `ctl` seeing it.
    let mut acc = SessionCipher::accessory(&secret);
    g.bench_function("encrypt_decrypt_1MiB", |b| {
        b.iter(|| {
            wire.clear();
            out.clear();
            acc.encrypt(black_box(&plain), &mut wire);
            let mut buf = BytesMut::from(&wire[..]);
            ctl.decrypt(&mut buf, &mut out).unwrap();
            black_box(&out);
        });
    });
    g.finish();
}

criterion_group!(session, benches);
criterion_main!(session);
