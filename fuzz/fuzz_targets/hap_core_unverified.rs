//! The HAP accessory server as an unauthenticated peer sees it: `conn::Connection` + `Core`
//! (the driver's entry point) fed a sequence of requests on two connections that never finish
//! pair-verify. Checks the promises of `conn.rs`/`core.rs`: no panic; only /pair-setup,
//! /pair-verify and /identify (unpaired only) are served, everything else gets 470 (unknown
//! paths 404); no accessory data, no handler runs, no value or pairing changes, no event; the
//! wrong-code counter only grows (and is persisted); a paired accessory refuses pair-setup M1
//! with Unavailable and /identify.
//!
//! Input: byte 0 bit 0 = start paired (one admin pairing); then ops, each an op byte
//! (bit 7: connection B, bits 0–3: kind, bits 4–6: method for kinds 9 and 12) and, for most
//! kinds, a 2-byte little-endian length and that many body bytes (see `Op`).
#![no_main]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hap_server::conn::Connection;
use hap_server::core::CATEGORY_IP_CAMERA;
use hap_server::http::{Limits, parse_request};
use hap_server::setup::SetupCode;
use hap_server::store::MemoryStore;
use hap_server::{
    Accessory, Characteristic, Core, CoreConfig, Format, HapStatus, HapType, Perms, Service, Value,
};
use hap_tlv::{PairingError, Tlv8, TlvType};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng as _;
use rand::rngs::StdRng;

/// Not a code a fuzzer guesses: SRP needs the right 8 digits and SHA-512 proofs.
const CODE: &str = "518-08-582";
const METHODS: [&str; 8] = [
    "GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "get", "PATCH",
];
const PATHS: [&str; 8] = [
    "/pair-setup",
    "/pair-verify",
    "/accessories",
    "/characteristics",
    "/pairings",
    "/prepare",
    "/resource",
    "/identify",
];
/// Served only after pair-verify (`Core::handle_request`'s list).
const PROTECTED: [&str; 5] = [
    "/accessories",
    "/characteristics",
    "/prepare",
    "/pairings",
    "/resource",
];
const MAX_BODY: usize = 2048;
/// Pair-setup requests per input: M1 and M3 cost 3072-bit modexps (~50–100 ms here), and a
/// long run of them only makes each input slower, not the search wider.
const MAX_PAIR_SETUP: usize = 3;

#[derive(Default)]
struct Counters {
    reads: AtomicUsize,
    writes: AtomicUsize,
    resource: AtomicUsize,
    identify: AtomicUsize,
}

fn accessory(n: &Arc<Counters>) -> Accessory {
    let (r, w) = (n.clone(), n.clone());
    Accessory::new(1)
        .service(
            Service::new(HapType::apple(0x3E))
                .characteristic(Characteristic::new(
                    HapType::apple(0x14),
                    Format::Bool,
                    Perms::PW,
                ))
                .characteristic(
                    Characteristic::new(HapType::apple(0x23), Format::String, Perms::PR)
                        .value(Value::String("Cam".into())),
                ),
        )
        .service(
            Service::new(HapType::apple(0x204))
                .primary()
                .characteristic(
                    Characteristic::new(
                        HapType::apple(0xB0),
                        Format::UInt8,
                        Perms::PR | Perms::PW | Perms::EV,
                    )
                    .range(0.0, 1.0, 1.0)
                    .admin_write(),
                )
                .characteristic(
                    Characteristic::new(
                        HapType::apple(0x131),
                        Format::Tlv8,
                        Perms::PR | Perms::PW | Perms::WR,
                    )
                    .on_read(move |_| {
                        r.reads.fetch_add(1, Ordering::SeqCst);
                        Ok(Value::Bytes(vec![1, 2, 3]))
                    })
                    .on_write(move |_, _| {
                        w.writes.fetch_add(1, Ordering::SeqCst);
                        Ok(None)
                    }),
                )
                .characteristic(Characteristic::new(
                    HapType::apple(0x226),
                    Format::UInt8,
                    Perms::PR | Perms::PW | Perms::EV | Perms::TW,
                )),
        )
        .service(
            Service::new(HapType::apple(0x85)).characteristic(Characteristic::new(
                HapType::apple(0x22),
                Format::Bool,
                Perms::PR | Perms::EV,
            )),
        )
}

fn open(store: &MemoryStore, counters: &Arc<Counters>) -> Core {
    let config = CoreConfig {
        name: "Fuzz Camera".into(),
        model: "fuzz".into(),
        category: CATEGORY_IP_CAMERA,
        setup_code: Some(SetupCode::parse(CODE).expect("valid code")),
        firmware_revision: "1.0.0".into(),
    };
    let mut core = Core::open(
        config,
        Arc::new(store.clone()),
        vec![accessory(counters)],
        &mut StdRng::seed_from_u64(1),
    )
    .expect("memory store never fails");
    let c = counters.clone();
    core.set_resource_handler(Arc::new(move |_, _| {
        c.resource.fetch_add(1, Ordering::SeqCst);
        Ok(Some(b"\xff\xd8jpeg".to_vec()))
    }));
    let c = counters.clone();
    core.set_identify_handler(Arc::new(move || {
        c.identify.fetch_add(1, Ordering::SeqCst);
    }));
    core
}

/// Every characteristic's stored value, in database order.
fn values(core: &Core) -> Vec<Value> {
    core.database()
        .accessories()
        .iter()
        .flat_map(|a| a.services())
        .flat_map(|s| s.characteristics())
        .map(|c| c.stored_value().clone())
        .collect()
}

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    /// A 2-byte LE length (capped) and that many bytes, or fewer at the end of the input.
    fn chunk(&mut self) -> &'a [u8] {
        let lo = self.byte().unwrap_or(0);
        let hi = self.byte().unwrap_or(0);
        let n = usize::from(u16::from_le_bytes([lo, hi]))
            .min(MAX_BODY)
            .min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

fn request(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let ct = if path.starts_with("/pair") {
        "application/pairing+tlv8"
    } else {
        "application/hap+json"
    };
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nHost: fuzz.local\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Printable, space-free ASCII, so the request line stays one token.
fn token(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '_'
            }
        })
        .collect()
}

/// Bytes a peer sends for one op, and whether they are one well-formed request.
fn op_bytes(kind: u8, method_ix: u8, input: &mut Input<'_>) -> (Vec<u8>, bool) {
    let method = METHODS[usize::from(method_ix) % METHODS.len()];
    match kind {
        0 => (request("POST", "/pair-setup", input.chunk()), true),
        1 => (request("POST", "/pair-verify", input.chunk()), true),
        2 => (request("GET", "/accessories", input.chunk()), true),
        3 => {
            let q = token(input.chunk());
            (request("GET", &format!("/characteristics?{q}"), b""), true)
        }
        4 => (request("PUT", "/characteristics", input.chunk()), true),
        5 => (request("POST", "/pairings", input.chunk()), true),
        6 => (request("PUT", "/prepare", input.chunk()), true),
        7 => (request("POST", "/resource", input.chunk()), true),
        8 => (request("POST", "/identify", input.chunk()), true),
        9 => {
            let path = format!("/{}", token(input.chunk()));
            (request(method, &path, input.chunk()), true)
        }
        10 => (input.chunk().to_vec(), false),
        12 => {
            let path = PATHS[usize::from(input.byte().unwrap_or(0)) % PATHS.len()];
            (request(method, path, input.chunk()), true)
        }
        13 => {
            // A well-formed M3: the fuzzer picks A (up to 384 bytes) and the proof.
            let a = input.chunk();
            let proof = input.chunk();
            let mut t = Tlv8::new();
            t.push_u8(TlvType::STATE, 3)
                .push(TlvType::PUBLIC_KEY, a)
                .push(TlvType::PROOF, proof);
            (request("POST", "/pair-setup", &t.encode()), true)
        }
        14 => {
            // A well-formed M1 with a fuzzed Method byte.
            let mut t = Tlv8::new();
            t.push_u8(TlvType::STATE, 1)
                .push_u8(TlvType::METHOD, input.byte().unwrap_or(0));
            (request("POST", "/pair-setup", &t.encode()), true)
        }
        _ => {
            // A well-formed pair-verify M1/M3 shape: State, PublicKey/EncryptedData.
            let state = input.byte().unwrap_or(1);
            let value = input.chunk();
            let ty = if state == 3 {
                TlvType::ENCRYPTED_DATA
            } else {
                TlvType::PUBLIC_KEY
            };
            let mut t = Tlv8::new();
            t.push_u8(TlvType::STATE, state).push(ty, value);
            (request("POST", "/pair-verify", &t.encode()), true)
        }
    }
}

/// One HTTP response from the plaintext output.
struct Resp<'a> {
    status: u16,
    content_type: Option<&'a str>,
    body: &'a [u8],
}

/// Splits plaintext output into responses; everything must parse (no encrypted bytes, no
/// EVENT).
fn responses(mut out: &[u8]) -> Vec<Resp<'_>> {
    let mut list = Vec::new();
    while !out.is_empty() {
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("response head")
            + 4;
        let (head, rest) = out.split_at(end);
        let head = std::str::from_utf8(head).expect("ASCII head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("status line");
        assert!(
            status_line.starts_with("HTTP/1.1 "),
            "not a response: {status_line:?}"
        );
        let status: u16 = status_line[9..12].parse().expect("status code");
        let mut content_type = None;
        let mut len = 0;
        for l in lines {
            if let Some(v) = l.strip_prefix("Content-Type: ") {
                content_type = Some(v);
            } else if let Some(v) = l.strip_prefix("Content-Length: ") {
                len = v.parse().expect("length");
            }
        }
        let (body, rest) = rest.split_at(len);
        list.push(Resp {
            status,
            content_type,
            body,
        });
        out = rest;
    }
    list
}

/// What any response to an unverified peer may be.
fn check_generic(r: &Resp<'_>, paired: bool) {
    match r.status {
        200 => assert_eq!(
            r.content_type,
            Some("application/pairing+tlv8"),
            "200 with data"
        ),
        204 => assert!(!paired, "204 (identify) while paired"),
        207 => panic!("207 to an unverified peer"),
        s => assert!(s >= 400, "status {s} to an unverified peer"),
    }
    assert_ne!(r.content_type, Some("image/jpeg"));
    if r.content_type == Some("application/hap+json") {
        let j: serde_json::Value = serde_json::from_slice(r.body).expect("JSON body");
        let obj = j.as_object().expect("object");
        assert!(obj.keys().all(|k| k == "status"), "accessory data: {j}");
    }
    if r.content_type == Some("application/pairing+tlv8") {
        let t = Tlv8::decode(r.body).expect("our TLV");
        let state = t.get(TlvType::STATE).and_then(|s| s.first().copied());
        let error = t.get(TlvType::ERROR);
        // M4 (proof accepted) or M6 / pair-verify M4 without an error needs the setup code or
        // a paired controller's key.
        assert!(
            error.is_some() || state == Some(2),
            "state {state:?} reached without secrets"
        );
        if paired && t.get(TlvType::SALT).is_some() {
            panic!("pair-setup M2 while paired");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let Some(flags) = input.byte() else { return };
    let start_paired = flags & 1 == 1;
    let store = MemoryStore::new();
    let counters = Arc::new(Counters::default());
    let mut core = open(&store, &counters);
    if start_paired {
        core.add_controller_pairing("11:22:33:44:55:66", [7; 32], true)
            .expect("admin pairing");
    }
    let pairings = core.pairings().to_vec();
    let initial_values = values(&core);
    let limits = Limits::default();
    let mut rng = StdRng::seed_from_u64(2);
    let start = Instant::now();
    // (connection, no raw bytes fed since it opened)
    let mut conns = [
        (Connection::new(&mut core, limits), true),
        (Connection::new(&mut core, limits), true),
    ];
    let mut attempts = core.failed_attempts();
    let mut steps = 0u64;
    let mut pair_setups = 0;
    while let Some(op) = input.byte() {
        steps += 1;
        let now = start + Duration::from_millis(steps * 300);
        let which = usize::from(op >> 7);
        let kind = op & 0x0f;
        if kind == 11 {
            let (old, _) = std::mem::replace(
                &mut conns[which],
                (Connection::new(&mut core, limits), true),
            );
            old.close(&mut core);
            continue;
        }
        let (bytes, well_formed) = op_bytes(kind, (op >> 4) & 7, &mut input);
        let setups = bytes
            .windows(10)
            .filter(|w| w.eq_ignore_ascii_case(b"pair-setup"))
            .count();
        pair_setups += setups;
        if pair_setups > MAX_PAIR_SETUP {
            continue;
        }
        let (conn, clean) = &mut conns[which];
        let identify_before = counters.identify.load(Ordering::SeqCst);
        let out = conn.handle_input(&mut core, &bytes, now, &mut rng);
        assert!(
            !conn.is_encrypted(),
            "pair-verify completed without a controller key"
        );
        assert!(!core.is_verified(conn.id()));
        assert!(
            conn.poll_events(&mut core, now).is_empty(),
            "event to an unverified peer"
        );
        let list = responses(&out.bytes);
        for r in &list {
            check_generic(r, start_paired);
        }
        let identified = counters.identify.load(Ordering::SeqCst) - identify_before;
        if *clean && well_formed {
            // Exactly the answer the parsed request deserves.
            match parse_request(&bytes, &limits) {
                Ok(Some((req, used))) => {
                    assert_eq!(used, bytes.len());
                    assert_eq!(list.len(), 1, "one request, one response");
                    let r = &list[0];
                    let path = req.path.as_str();
                    let post = req.method == "POST";
                    let expected = match path {
                        "/pair-setup" | "/pair-verify" if !post => 405,
                        "/pair-setup" | "/pair-verify" => 200,
                        "/identify" if !post => 405,
                        "/identify" if start_paired => 400,
                        "/identify" => 204,
                        p if PROTECTED.contains(&p) => 470,
                        _ => 404,
                    };
                    assert_eq!(r.status, expected, "{} {path}", req.method);
                    if expected == 470 || expected == 400 {
                        let j: serde_json::Value = serde_json::from_slice(r.body).unwrap();
                        assert_eq!(j["status"], HapStatus::INSUFFICIENT_PRIVILEGES.code());
                    }
                    assert_eq!(identified, usize::from(expected == 204));
                    assert!(!out.close);
                    if path == "/pair-setup" && post && start_paired {
                        let t = Tlv8::decode(r.body).unwrap();
                        assert!(
                            t.get(TlvType::ERROR).is_some(),
                            "pair-setup served while paired"
                        );
                        let m1 = Tlv8::decode(&req.body).ok().is_some_and(|b| {
                            b.get(TlvType::STATE) == Some(&[1][..])
                                && matches!(b.get(TlvType::METHOD), Some([0 | 1]))
                        });
                        if m1 {
                            assert_eq!(
                                t.get(TlvType::ERROR),
                                Some(&[PairingError::UNAVAILABLE.0][..]),
                                "M1 while paired"
                            );
                        }
                    }
                }
                Ok(None) => panic!("a whole request parsed as incomplete"),
                Err(_) => {
                    assert!(out.close, "unparsable request must close");
                    assert!(list.len() == 1 && list[0].status >= 400);
                }
            }
        } else {
            assert!(identified == 0 || !start_paired);
        }
        if !well_formed {
            *clean = false;
        }
        // Shared invariants after every step.
        assert_eq!(core.pairings(), &pairings[..], "pairings changed");
        assert_eq!(values(&core), initial_values, "a value changed");
        assert_eq!(counters.reads.load(Ordering::SeqCst), 0, "read handler ran");
        assert_eq!(
            counters.writes.load(Ordering::SeqCst),
            0,
            "write handler ran"
        );
        assert_eq!(
            counters.resource.load(Ordering::SeqCst),
            0,
            "resource handler ran"
        );
        let now_attempts = core.failed_attempts();
        assert!(now_attempts >= attempts, "failed attempts went down");
        if start_paired {
            assert_eq!(
                now_attempts, 0,
                "wrong code counted while paired (no M2 to answer)"
            );
        }
        attempts = now_attempts;
        if out.close {
            let (old, _) = std::mem::replace(
                &mut conns[which],
                (Connection::new(&mut core, limits), true),
            );
            old.close(&mut core);
        }
    }
    for (c, _) in conns {
        c.close(&mut core);
    }
    assert_eq!(core.connection_count(), 0);
    // What was persisted is what the core holds.
    drop(core);
    let reopened = open(&store, &counters);
    assert_eq!(reopened.pairings(), &pairings[..]);
    assert_eq!(reopened.failed_attempts(), attempts);
});
