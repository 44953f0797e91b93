//! Request handling cost on the accessory: parsing a request, answering reads and writes, and
//! fanning a value change out to subscribed sessions.
#![allow(missing_docs, clippy::unwrap_used, clippy::indexing_slicing)] // bench setup, fixed sizes

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use hap_server::core::CATEGORY_IP_CAMERA;
use hap_server::http::{Limits, parse_request};
use hap_server::pairing::{Pairing, SharedSecret};
use hap_server::store::MemoryStore;
use hap_server::{
    Accessory, CharId, Characteristic, Core, CoreConfig, Format, HapType, Perms, Service, Value,
};

/// Enough services to look like a camera: 6 services of 5 characteristics.
fn accessory() -> Accessory {
    let mut a = Accessory::new(1);
    for s in 0..6u32 {
        let mut svc = Service::new(HapType::apple(0x3E + s));
        for c in 0..5u32 {
            svc = svc.characteristic(
                Characteristic::new(
                    HapType::apple(0x100 + c),
                    Format::UInt8,
                    Perms::PR | Perms::PW | Perms::EV,
                )
                .range(0.0, 100.0, 1.0),
            );
        }
        a = a.service(svc);
    }
    a
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("hap_http");
    let body = r#"{"characteristics":[{"aid":1,"iid":9,"value":1}]}"#;
    let put = format!(
        "PUT /characteristics HTTP/1.1\r\nHost: Camera._hap._tcp.local\r\nContent-Type: application/hap+json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let put = put.as_bytes();
    g.bench_function("parse_put_request", |b| {
        b.iter(|| {
            parse_request(black_box(put), &Limits::default())
                .unwrap()
                .unwrap()
        });
    });

    let mut core = Core::open(
        CoreConfig {
            name: "Bench".into(),
            model: "bench".into(),
            category: CATEGORY_IP_CAMERA,
            setup_code: None,
            firmware_revision: "1.0.0".into(),
        },
        Arc::new(MemoryStore::new()),
        vec![accessory()],
        &mut rand::rng(),
    )
    .unwrap();
    let controller = Pairing {
        controller_id: "C".into(),
        ltpk: [1; 32],
        admin: true,
    };
    let conns: Vec<u64> = (0..8)
        .map(|_| {
            let id = core.open_connection();
            core.mark_verified(id, &controller, SharedSecret::from_bytes([2; 32]));
            id
        })
        .collect();
    let me = conns[0];
    let get = |path: &str| {
        let raw = format!("GET {path} HTTP/1.1\r\n\r\n");
        parse_request(raw.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap()
            .0
    };
    let accessories = get("/accessories");
    g.bench_function("get_accessories_30_characteristics", |b| {
        b.iter(|| black_box(core.handle_request(me, &accessories, Instant::now())));
    });
    let read = get("/characteristics?id=1.2,1.3,1.4&meta=1");
    g.bench_function("get_characteristics_3", |b| {
        b.iter(|| black_box(core.handle_request(me, &read, Instant::now())));
    });

    // Seven other sessions subscribe to one characteristic; each write queues 7 events.
    let target = CharId { aid: 1, iid: 2 };
    let sub = format!(
        "PUT /characteristics HTTP/1.1\r\nContent-Length: {0}\r\n\r\n{1}",
        r#"{"characteristics":[{"aid":1,"iid":2,"ev":true}]}"#.len(),
        r#"{"characteristics":[{"aid":1,"iid":2,"ev":true}]}"#
    );
    let sub = parse_request(sub.as_bytes(), &Limits::default())
        .unwrap()
        .unwrap()
        .0;
    for &c in &conns[1..] {
        let _ = core.handle_request(c, &sub, Instant::now());
    }
    let mut v = 0u64;
    g.bench_function("set_value_fanout_7_and_take_events", |b| {
        b.iter(|| {
            v = (v + 1) % 100;
            let now = Instant::now();
            core.set_value(target, Value::UInt(v), now);
            for &c in &conns[1..] {
                black_box(core.take_events(c, now + hap_server::core::EVENT_BATCH));
            }
        });
    });
    g.finish();
}

criterion_group!(group, benches);
criterion_main!(group);
