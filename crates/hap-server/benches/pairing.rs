//! Server CPU per pair-setup (M1–M6) and per pair-verify (M1–M4), driven by the controller
//! side in memory. `*/server_only` times just the accessory's `handle` calls.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hap_server::pairing::controller::{
    AccessoryPairing, ControllerIdentity, SetupClient, VerifyClient,
};
use hap_server::pairing::{
    AccessoryIdentity, PairSetup, PairVerify, Pairing, SetupContext, SetupOutcome, VerifyOutcome,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

const CODE: &str = "031-45-154";

fn body(o: SetupOutcome) -> Vec<u8> {
    match o {
        SetupOutcome::Reply(r) | SetupOutcome::WrongCode(r) => r,
        SetupOutcome::Paired { reply, .. } => reply,
    }
}

/// One full pair-setup; returns the time spent in the accessory's `handle`.
fn pair_setup(
    rng: &mut StdRng,
    accessory: &AccessoryIdentity,
    controller: &ControllerIdentity,
) -> Duration {
    let ctx = SetupContext {
        identity: accessory,
        setup_code: CODE,
        paired: false,
        failed_attempts: 0,
    };
    let mut server = PairSetup::new();
    let mut client = SetupClient::new(controller.clone(), CODE);
    let mut server_time = Duration::ZERO;
    let mut step = |server: &mut PairSetup, rng: &mut StdRng, msg: &[u8]| {
        let t = Instant::now();
        let out = server.handle(1, msg, &ctx, t, rng);
        server_time += t.elapsed();
        out
    };
    let m2 = body(step(&mut server, rng, &client.m1()));
    let m3 = client.handle_m2(&m2, rng).unwrap();
    let m4 = body(step(&mut server, rng, &m3));
    let m5 = client.handle_m4(&m4).unwrap();
    let out = step(&mut server, rng, &m5);
    assert!(matches!(out, SetupOutcome::Paired { .. }));
    black_box(client.handle_m6(&body(out)).unwrap());
    server_time
}

fn pair_verify(
    rng: &mut StdRng,
    accessory: &AccessoryIdentity,
    controller: &ControllerIdentity,
    accessory_pairing: &AccessoryPairing,
    lookup: &dyn Fn(&str) -> Option<Pairing>,
) -> Duration {
    let mut server = PairVerify::new();
    let mut client = VerifyClient::new(controller.clone(), accessory_pairing.clone(), rng);
    let m1 = client.m1().unwrap();
    let t = Instant::now();
    let VerifyOutcome::Reply(m2) = server.handle(&m1, accessory, lookup, rng) else {
        panic!("M2");
    };
    let mut server_time = t.elapsed();
    let m3 = client.handle_m2(&m2).unwrap();
    let t = Instant::now();
    let out = server.handle(&m3, accessory, lookup, rng);
    server_time += t.elapsed();
    let VerifyOutcome::Verified { reply, .. } = out else {
        panic!("M4");
    };
    black_box(client.handle_m4(&reply).unwrap());
    server_time
}

fn benches(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let accessory = AccessoryIdentity::generate(&mut rng);
    let controller = ControllerIdentity::generate(&mut rng);

    let mut g = c.benchmark_group("pair_setup");
    g.sample_size(10);
    g.bench_function("both_sides", |b| {
        b.iter(|| pair_setup(&mut rng, &accessory, &controller));
    });
    g.bench_function("server_only", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| pair_setup(&mut rng, &accessory, &controller))
                .sum()
        });
    });
    g.finish();

    let accessory_pairing = AccessoryPairing {
        pairing_id: accessory.pairing_id.clone(),
        ltpk: accessory.public_key(),
    };
    let stored = Pairing {
        controller_id: controller.pairing_id.clone(),
        ltpk: controller.public_key(),
        admin: true,
    };
    let lookup = move |id: &str| (id == stored.controller_id).then(|| stored.clone());
    let mut g = c.benchmark_group("pair_verify");
    g.bench_function("both_sides", |b| {
        b.iter(|| {
            pair_verify(
                &mut rng,
                &accessory,
                &controller,
                &accessory_pairing,
                &lookup,
            )
        });
    });
    g.bench_function("server_only", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    pair_verify(
                        &mut rng,
                        &accessory,
                        &controller,
                        &accessory_pairing,
                        &lookup,
                    )
                })
                .sum()
        });
    });
    g.finish();
}

criterion_group!(pairing, benches);
criterion_main!(pairing);
