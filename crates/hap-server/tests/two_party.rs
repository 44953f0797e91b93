//! Controller and accessory in memory: the controller side of `pairing::controller` and
//! `SessionCipher::controller` talk to `conn::Connection` + `core::Core` with no sockets.
//! Covers the happy path (pair, verify, read, write, subscribe, events) and every bad input the
//! server must survive.
#![allow(clippy::indexing_slicing)] // tests: a panic is a failed check

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hap_server::conn::Connection;
use hap_server::core::{CATEGORY_IP_CAMERA, EVENT_BATCH};
use hap_server::http::Limits;
use hap_server::pairing::controller::{
    AccessoryPairing, ControllerIdentity, SetupClient, VerifyClient,
};
use hap_server::session::SessionCipher;
use hap_server::setup::SetupCode;
use hap_server::store::{MemoryStore, Store};
use hap_server::{
    Accessory, CharId, Characteristic, Core, CoreConfig, Format, HapStatus, HapType, Perms,
    Service, Value,
};
use hap_tlv::{Tlv8, TlvType};
use serde_json::{Value as Json, json};

const CODE: &str = "031-45-154";
const MOTION_SENSOR: HapType = HapType::apple(0x85);
const MOTION_DETECTED: HapType = HapType::apple(0x22);
const RECORDING: HapType = HapType::apple(0x204);
const ACTIVE: HapType = HapType::apple(0xB0);
const SETUP_DS: HapType = HapType::apple(0x131);
const RECORDING_AUDIO: HapType = HapType::apple(0x226);

fn accessory(writes: Arc<AtomicUsize>) -> Accessory {
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
                        .value(Value::String("Test".into())),
                ),
        )
        .service(
            Service::new(RECORDING)
                .primary()
                .linked(MOTION_SENSOR, "")
                .characteristic(
                    Characteristic::new(ACTIVE, Format::UInt8, Perms::PR | Perms::PW | Perms::EV)
                        .range(0.0, 1.0, 1.0)
                        .admin_write(),
                )
                .characteristic(
                    Characteristic::new(SETUP_DS, Format::Tlv8, Perms::PR | Perms::PW | Perms::WR)
                        .on_write(move |ctx, v| {
                            writes.fetch_add(1, Ordering::SeqCst);
                            // The handler sees this session's pair-verify secret (HDS keys).
                            assert_ne!(ctx.shared_secret().as_bytes(), &[0u8; 32]);
                            let Value::Bytes(b) = v else {
                                return Err(HapStatus::INVALID_VALUE_IN_REQUEST);
                            };
                            let mut reply = b.clone();
                            reply.reverse();
                            Ok(Some(Value::Bytes(reply)))
                        }),
                )
                .characteristic(Characteristic::new(
                    RECORDING_AUDIO,
                    Format::UInt8,
                    Perms::PR | Perms::PW | Perms::EV | Perms::TW,
                )),
        )
        .service(
            Service::new(MOTION_SENSOR).characteristic(Characteristic::new(
                MOTION_DETECTED,
                Format::Bool,
                Perms::PR | Perms::EV,
            )),
        )
}

fn config() -> CoreConfig {
    CoreConfig {
        name: "Test Camera".into(),
        model: "test".into(),
        category: CATEGORY_IP_CAMERA,
        setup_code: Some(SetupCode::parse(CODE).unwrap()),
        firmware_revision: "1.0.0".into(),
    }
}

fn open(store: &MemoryStore) -> Core {
    Core::open(
        config(),
        Arc::new(store.clone()),
        vec![accessory(Arc::new(AtomicUsize::new(0)))],
        &mut rand::rng(),
    )
    .unwrap()
}

/// A parsed HTTP response or EVENT.
#[derive(Debug)]
struct Msg {
    start: String,
    status: u16,
    body: Vec<u8>,
}

impl Msg {
    fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn tlv(&self) -> Tlv8 {
        Tlv8::decode(&self.body).unwrap()
    }
}

/// Splits complete messages off the front of `buf`.
fn parse_msgs(buf: &mut Vec<u8>) -> Vec<Msg> {
    let mut out = Vec::new();
    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8(buf[..end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let start = lines.next().unwrap().to_owned();
        let status = start.split(' ').nth(1).unwrap().parse().unwrap();
        let len: usize = lines
            .filter_map(|l| l.split_once(": "))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().unwrap());
        if buf.len() < end + 4 + len {
            break;
        }
        let body = buf[end + 4..end + 4 + len].to_vec();
        buf.drain(..end + 4 + len);
        out.push(Msg {
            start,
            status,
            body,
        });
    }
    out
}

/// One controller connection.
struct Client {
    conn: Connection,
    cipher: Option<SessionCipher>,
    raw: BytesMut,
    plain: Vec<u8>,
    closed: bool,
    /// Everything the client sent last, encrypted, for replay tests.
    last_sent: Vec<u8>,
}

impl Client {
    fn new(core: &mut Core) -> Self {
        Self {
            conn: Connection::new(core, Limits::default()),
            cipher: None,
            raw: BytesMut::new(),
            plain: Vec::new(),
            closed: false,
            last_sent: Vec::new(),
        }
    }

    fn send_raw(&mut self, core: &mut Core, bytes: &[u8], now: Instant) -> Vec<Msg> {
        let out = self.conn.handle_input(core, bytes, now, &mut rand::rng());
        self.closed |= out.close;
        self.receive(&out.bytes)
    }

    fn receive(&mut self, bytes: &[u8]) -> Vec<Msg> {
        match &mut self.cipher {
            Some(c) => {
                self.raw.extend_from_slice(bytes);
                c.decrypt(&mut self.raw, &mut self.plain).unwrap();
            }
            None => self.plain.extend_from_slice(bytes),
        }
        parse_msgs(&mut self.plain)
    }

    fn request(
        &mut self,
        core: &mut Core,
        method: &str,
        path: &str,
        ctype: &str,
        body: &[u8],
    ) -> Vec<Msg> {
        self.request_at(core, method, path, ctype, body, Instant::now())
    }

    fn request_at(
        &mut self,
        core: &mut Core,
        method: &str,
        path: &str,
        ctype: &str,
        body: &[u8],
        now: Instant,
    ) -> Vec<Msg> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        let wire = match &mut self.cipher {
            Some(c) => {
                let mut w = Vec::new();
                c.encrypt(&req, &mut w);
                w
            }
            None => req,
        };
        self.last_sent.clone_from(&wire);
        self.send_raw(core, &wire, now)
    }

    fn one(&mut self, core: &mut Core, method: &str, path: &str, body: &[u8]) -> Msg {
        let ctype = if path.starts_with("/pair") {
            "application/pairing+tlv8"
        } else {
            "application/hap+json"
        };
        let mut msgs = self.request(core, method, path, ctype, body);
        assert_eq!(msgs.len(), 1, "{method} {path}: {msgs:?}");
        msgs.remove(0)
    }

    fn get(&mut self, core: &mut Core, path: &str) -> Msg {
        self.one(core, "GET", path, b"")
    }

    fn put_json(&mut self, core: &mut Core, path: &str, body: &Json) -> Msg {
        self.one(core, "PUT", path, body.to_string().as_bytes())
    }

    fn events(&mut self, core: &mut Core, now: Instant) -> Vec<Msg> {
        let bytes = self.conn.poll_events(core, now);
        self.receive(&bytes)
    }
}

fn pair(core: &mut Core, id: &ControllerIdentity) -> AccessoryPairing {
    let mut c = Client::new(core);
    let mut setup = SetupClient::new(id.clone(), CODE);
    let m2 = c.one(core, "POST", "/pair-setup", &setup.m1());
    let m3 = setup.handle_m2(&m2.body, &mut rand::rng()).unwrap();
    let m4 = c.one(core, "POST", "/pair-setup", &m3);
    let m5 = setup.handle_m4(&m4.body).unwrap();
    let m6 = c.one(core, "POST", "/pair-setup", &m5);
    let acc = setup.handle_m6(&m6.body).unwrap();
    c.conn.close(core);
    acc
}

fn verify(core: &mut Core, id: &ControllerIdentity, acc: &AccessoryPairing) -> Client {
    let mut c = Client::new(core);
    let mut v = VerifyClient::new(id.clone(), acc.clone(), &mut rand::rng());
    let m2 = c.one(core, "POST", "/pair-verify", &v.m1().unwrap());
    let m3 = v.handle_m2(&m2.body).unwrap();
    let m4 = c.one(core, "POST", "/pair-verify", &m3);
    let secret = v.handle_m4(&m4.body).unwrap();
    c.cipher = Some(SessionCipher::controller(&secret));
    c
}

fn paired_core() -> (MemoryStore, Core, ControllerIdentity, AccessoryPairing) {
    let store = MemoryStore::new();
    let mut core = open(&store);
    let id = ControllerIdentity::generate(&mut rand::rng());
    let acc = pair(&mut core, &id);
    (store, core, id, acc)
}

fn find(core: &Core, svc: HapType, ch: HapType) -> CharId {
    core.database().find(1, svc, "", ch).unwrap()
}

fn tlv_state_error(m: &Msg) -> (Option<u8>, Option<u8>) {
    let t = m.tlv();
    (
        t.get(TlvType::STATE).and_then(|v| v.first().copied()),
        t.get(TlvType::ERROR).and_then(|v| v.first().copied()),
    )
}

#[test]
fn pair_verify_read_write_subscribe_and_receive_events() {
    let (_store, mut core, id, acc) = paired_core();
    assert!(core.is_paired());
    assert_eq!(acc.pairing_id, core.pairing_id());
    let mut a = verify(&mut core, &id, &acc);
    let mut b = verify(&mut core, &id, &acc);

    let accs = a.get(&mut core, "/accessories");
    assert_eq!(accs.status, 200);
    let j = accs.json();
    assert_eq!(j["accessories"][0]["aid"], 1);
    assert_eq!(j["accessories"][0]["services"][0]["iid"], 1);

    let active = find(&core, RECORDING, ACTIVE);
    let motion = find(&core, MOTION_SENSOR, MOTION_DETECTED);
    let path = format!(
        "/characteristics?id={}.{},{}.{}&meta=1&perms=1&type=1&ev=1",
        active.aid, active.iid, motion.aid, motion.iid
    );
    let r = a.get(&mut core, &path);
    assert_eq!(r.status, 200);
    let c = &r.json()["characteristics"];
    assert_eq!(c[0]["value"], 0);
    assert_eq!(c[0]["format"], "uint8");
    assert_eq!(c[0]["perms"], json!(["pr", "pw", "ev"]));
    assert_eq!(c[0]["type"], "B0");
    assert_eq!(c[0]["ev"], false);
    assert!(
        c[0].get("status").is_none(),
        "200 carries no per-entry status"
    );

    // Subscribe B to Active and MotionDetected; A subscribes to Active only.
    let sub = |ids: &[CharId]| json!({"characteristics": ids.iter().map(|i| json!({"aid": i.aid, "iid": i.iid, "ev": true})).collect::<Vec<_>>()});
    assert_eq!(
        b.put_json(&mut core, "/characteristics", &sub(&[active, motion]))
            .status,
        204
    );
    assert_eq!(
        a.put_json(&mut core, "/characteristics", &sub(&[active]))
            .status,
        204
    );
    let r = b.get(
        &mut core,
        &format!("/characteristics?id={}.{}&ev=1", active.aid, active.iid),
    );
    assert_eq!(r.json()["characteristics"][0]["ev"], true);

    // A writes Active: B gets a (batched) event, A (the writer) does not.
    let t0 = Instant::now();
    let w = json!({"characteristics": [{"aid": 1, "iid": active.iid, "value": 1}]});
    let msgs = a.request_at(
        &mut core,
        "PUT",
        "/characteristics",
        "application/hap+json",
        w.to_string().as_bytes(),
        t0,
    );
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].status, 204);
    assert!(
        a.events(&mut core, t0 + EVENT_BATCH * 2).is_empty(),
        "no echo to the writer"
    );
    assert!(b.events(&mut core, t0).is_empty(), "batched, not yet due");
    let ev = b.events(&mut core, t0 + EVENT_BATCH);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].start, "EVENT/1.0 200 OK");
    assert_eq!(
        ev[0].json(),
        json!({"characteristics": [{"aid": 1, "iid": active.iid, "value": 1}]})
    );

    // The application sets MotionDetected: immediate for B; A is not subscribed.
    let t1 = Instant::now();
    assert!(core.set_value(motion, Value::Bool(true), t1));
    let ev = b.events(&mut core, t1);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].json()["characteristics"][0]["value"], 1, "bool as 1");
    assert!(a.events(&mut core, t1 + EVENT_BATCH).is_empty());
    // Setting the same value again is not a change: no event.
    assert!(core.set_value(motion, Value::Bool(true), t1));
    assert!(b.events(&mut core, t1 + EVENT_BATCH).is_empty());

    // Coalescing: two changes of Active inside the window → one event with the last value.
    let t2 = Instant::now();
    assert!(core.set_value(active, Value::UInt(0), t2));
    assert!(core.set_value(active, Value::UInt(1), t2 + Duration::from_millis(10)));
    let ev = b.events(&mut core, t2 + EVENT_BATCH);
    assert_eq!(ev.len(), 1);
    assert_eq!(
        ev[0].json()["characteristics"],
        json!([{"aid": 1, "iid": active.iid, "value": 1}])
    );

    // Unsubscribe B from Active: no more events.
    let unsub = json!({"characteristics": [{"aid": 1, "iid": active.iid, "ev": false}]});
    assert_eq!(
        b.put_json(&mut core, "/characteristics", &unsub).status,
        204
    );
    assert!(core.set_value(active, Value::UInt(0), t2));
    assert!(b.events(&mut core, t2 + EVENT_BATCH * 4).is_empty());
}

#[test]
fn write_response_returns_the_handler_value_with_207() {
    let store = MemoryStore::new();
    let writes = Arc::new(AtomicUsize::new(0));
    let mut core = Core::open(
        config(),
        Arc::new(store),
        vec![accessory(writes.clone())],
        &mut rand::rng(),
    )
    .unwrap();
    let id = ControllerIdentity::generate(&mut rand::rng());
    let acc = pair(&mut core, &id);
    let mut a = verify(&mut core, &id, &acc);
    let ds = find(&core, RECORDING, SETUP_DS);
    let w = json!({"characteristics": [{"aid": 1, "iid": ds.iid, "value": "AQID", "r": true}]});
    let r = a.put_json(&mut core, "/characteristics", &w);
    assert_eq!(r.status, 207);
    assert_eq!(
        r.json(),
        json!({"characteristics": [{"aid": 1, "iid": ds.iid, "status": 0, "value": "AwIB"}]})
    );
    assert_eq!(writes.load(Ordering::SeqCst), 1);
    // Without "r" the same write is a plain 204.
    let w = json!({"characteristics": [{"aid": 1, "iid": ds.iid, "value": "AQID"}]});
    assert_eq!(a.put_json(&mut core, "/characteristics", &w).status, 204);
    assert_eq!(writes.load(Ordering::SeqCst), 2);
}

#[test]
fn per_entry_errors_give_207_with_every_status() {
    let (_s, mut core, id, acc) = paired_core();
    let mut a = verify(&mut core, &id, &acc);
    let motion = find(&core, MOTION_SENSOR, MOTION_DETECTED);
    let identify = find(&core, HapType::apple(0x3E), HapType::apple(0x14));
    // Read: one good, one write-only, one unknown.
    let r = a.get(
        &mut core,
        &format!(
            "/characteristics?id=1.{},1.{},1.999",
            motion.iid, identify.iid
        ),
    );
    assert_eq!(r.status, 207);
    let c = &r.json()["characteristics"];
    assert_eq!(c[0]["status"], 0);
    assert_eq!(c[0]["value"], 0);
    assert_eq!(c[1]["status"], -70405);
    assert_eq!(c[2]["status"], -70410);
    // Write: read-only, out of range, no ev perm, neither value nor ev.
    let active = find(&core, RECORDING, ACTIVE);
    let w = json!({"characteristics": [
        {"aid": 1, "iid": motion.iid, "value": 1},
        {"aid": 1, "iid": active.iid, "value": 7},
        {"aid": 1, "iid": identify.iid, "ev": true},
        {"aid": 1, "iid": active.iid},
        {"aid": 1, "iid": active.iid, "value": 1},
    ]});
    let r = a.put_json(&mut core, "/characteristics", &w);
    assert_eq!(r.status, 207);
    let statuses: Vec<i64> = r.json()["characteristics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, vec![-70404, -70410, -70406, -70410, 0]);
    assert_eq!(core.value(active), Some(&Value::UInt(1)));
    // Missing id → 400; duplicate ids → 422.
    let r = a.get(&mut core, "/characteristics");
    assert_eq!((r.status, r.json()), (400, json!({"status": -70410})));
    let r = a.get(
        &mut core,
        &format!("/characteristics?id=1.{0},1.{0}", motion.iid),
    );
    assert_eq!(r.status, 422);
    let r = a.get(&mut core, "/characteristics?id=1.x");
    assert_eq!(r.status, 400);
}

#[test]
fn timed_writes_need_a_matching_unexpired_prepare() {
    let (_s, mut core, id, acc) = paired_core();
    let mut a = verify(&mut core, &id, &acc);
    let audio = find(&core, RECORDING, RECORDING_AUDIO);
    let write = |pid: Option<u64>| {
        let mut w = json!({"characteristics": [{"aid": 1, "iid": audio.iid, "value": 1}]});
        if let Some(p) = pid {
            w["pid"] = json!(p);
        }
        w
    };
    let status_of = |m: &Msg| m.json()["characteristics"][0]["status"].clone();
    // tw without pid → -70410.
    let r = a.put_json(&mut core, "/characteristics", &write(None));
    assert_eq!((r.status, status_of(&r)), (207, json!(-70410)));
    // Prepare, then write with the same pid in time → success.
    let t0 = Instant::now();
    let prep = json!({"ttl": 1000, "pid": 42}).to_string();
    let m = a.request_at(
        &mut core,
        "PUT",
        "/prepare",
        "application/hap+json",
        prep.as_bytes(),
        t0,
    );
    assert_eq!((m[0].status, m[0].json()), (200, json!({"status": 0})));
    let body = write(Some(42)).to_string();
    let m = a.request_at(
        &mut core,
        "PUT",
        "/characteristics",
        "application/hap+json",
        body.as_bytes(),
        t0 + Duration::from_millis(500),
    );
    assert_eq!(m[0].status, 204);
    assert_eq!(core.value(audio), Some(&Value::UInt(1)));
    // The prepare is consumed: the same pid again fails.
    let m = a.request_at(
        &mut core,
        "PUT",
        "/characteristics",
        "application/hap+json",
        body.as_bytes(),
        t0 + Duration::from_millis(600),
    );
    assert_eq!(status_of(&m[0]), json!(-70410));
    // Expired prepare, or a different pid → -70410.
    let _ = a.request_at(
        &mut core,
        "PUT",
        "/prepare",
        "application/hap+json",
        prep.as_bytes(),
        t0,
    );
    let m = a.request_at(
        &mut core,
        "PUT",
        "/characteristics",
        "application/hap+json",
        body.as_bytes(),
        t0 + Duration::from_millis(1500),
    );
    assert_eq!(status_of(&m[0]), json!(-70410));
    let _ = a.request_at(
        &mut core,
        "PUT",
        "/prepare",
        "application/hap+json",
        prep.as_bytes(),
        t0,
    );
    let other = write(Some(43)).to_string();
    let m = a.request_at(
        &mut core,
        "PUT",
        "/characteristics",
        "application/hap+json",
        other.as_bytes(),
        t0,
    );
    assert_eq!(status_of(&m[0]), json!(-70410));
    // Malformed prepare → 400.
    let r = a.put_json(&mut core, "/prepare", &json!({"ttl": 5}));
    assert_eq!((r.status, r.json()), (400, json!({"status": -70410})));
}

#[test]
fn wrong_setup_code_is_authentication_and_is_counted_persistently() {
    let store = MemoryStore::new();
    let mut core = open(&store);
    let mut c = Client::new(&mut core);
    let mut setup = SetupClient::new(ControllerIdentity::generate(&mut rand::rng()), "111-22-333");
    let m2 = c.one(&mut core, "POST", "/pair-setup", &setup.m1());
    let m3 = setup.handle_m2(&m2.body, &mut rand::rng()).unwrap();
    let m4 = c.one(&mut core, "POST", "/pair-setup", &m3);
    assert_eq!(
        tlv_state_error(&m4),
        (Some(4), Some(2)),
        "State=4 Error=Authentication"
    );
    assert_eq!(core.failed_attempts(), 1);
    assert!(!core.is_paired());
    // Survives a restart.
    c.conn.close(&mut core);
    drop(core);
    let mut core = open(&store);
    assert_eq!(core.failed_attempts(), 1);
    // A successful pairing clears the count.
    let _ = pair(&mut core, &ControllerIdentity::generate(&mut rand::rng()));
    assert_eq!(core.failed_attempts(), 0);
    assert_eq!(open(&store).failed_attempts(), 0);
}

#[test]
fn after_100_failures_pair_setup_is_max_tries() {
    let store = MemoryStore::new();
    drop(open(&store));
    // Write the persisted counter directly: 100 real SRP rounds are slow in debug builds.
    let mut f: Json =
        serde_json::from_slice(&store.load("accessory.json").unwrap().unwrap()).unwrap();
    f["failed_attempts"] = json!(100);
    store
        .save("accessory.json", f.to_string().as_bytes())
        .unwrap();
    let mut core = open(&store);
    let mut c = Client::new(&mut core);
    let mut setup = SetupClient::new(ControllerIdentity::generate(&mut rand::rng()), CODE);
    let m2 = c.one(&mut core, "POST", "/pair-setup", &setup.m1());
    assert_eq!(
        tlv_state_error(&m2),
        (Some(2), Some(5)),
        "State=2 Error=MaxTries"
    );
}

#[test]
fn pair_setup_while_paired_is_unavailable() {
    let (_s, mut core, _id, _acc) = paired_core();
    let mut c = Client::new(&mut core);
    let mut setup = SetupClient::new(ControllerIdentity::generate(&mut rand::rng()), CODE);
    let m2 = c.one(&mut core, "POST", "/pair-setup", &setup.m1());
    assert_eq!(
        tlv_state_error(&m2),
        (Some(2), Some(6)),
        "State=2 Error=Unavailable"
    );
}

#[test]
fn endpoints_before_verify_are_470_and_identify_only_while_unpaired() {
    let store = MemoryStore::new();
    let mut core = open(&store);
    let identified = Arc::new(AtomicUsize::new(0));
    let i2 = identified.clone();
    core.set_identify_handler(Arc::new(move || {
        i2.fetch_add(1, Ordering::SeqCst);
    }));
    let mut c = Client::new(&mut core);
    for (m, p) in [
        ("GET", "/accessories"),
        ("GET", "/characteristics?id=1.2"),
        ("PUT", "/characteristics"),
        ("PUT", "/prepare"),
        ("POST", "/pairings"),
        ("POST", "/resource"),
    ] {
        let r = c.one(&mut core, m, p, b"{}");
        assert_eq!(
            (r.status, r.json()),
            (470, json!({"status": -70401})),
            "{m} {p}"
        );
    }
    let r = c.one(&mut core, "GET", "/nope", b"");
    assert_eq!((r.status, r.json()), (404, json!({"status": -70409})));
    assert_eq!(c.one(&mut core, "POST", "/identify", b"").status, 204);
    assert_eq!(identified.load(Ordering::SeqCst), 1);
    assert!(!c.closed);

    let id = ControllerIdentity::generate(&mut rand::rng());
    let _ = pair(&mut core, &id);
    let r = c.one(&mut core, "POST", "/identify", b"");
    assert_eq!((r.status, r.json()), (400, json!({"status": -70401})));
    assert_eq!(identified.load(Ordering::SeqCst), 1);
}

#[test]
fn tampered_or_replayed_frames_close_only_that_connection() {
    let (_s, mut core, id, acc) = paired_core();
    let mut a = verify(&mut core, &id, &acc);
    let mut b = verify(&mut core, &id, &acc);
    let mut c = verify(&mut core, &id, &acc);

    // Tamper one ciphertext byte of A's request.
    let req = b"GET /accessories HTTP/1.1\r\n\r\n";
    let mut wire = Vec::new();
    a.cipher.as_mut().unwrap().encrypt(req, &mut wire);
    wire[5] ^= 0x01;
    let msgs = a.send_raw(&mut core, &wire, Instant::now());
    assert!(msgs.is_empty(), "no reply to a forged frame");
    assert!(a.closed, "tampered frame closes the connection");

    // Replay B's last frame: the nonce counter moved on, so it fails authentication.
    assert_eq!(b.get(&mut core, "/accessories").status, 200);
    let replay = b.last_sent.clone();
    let msgs = b.send_raw(&mut core, &replay, Instant::now());
    assert!(msgs.is_empty());
    assert!(b.closed, "replayed frame closes the connection");

    // An oversize length field (> 1024) also closes.
    let mut d = verify(&mut core, &id, &acc);
    let _ = d.send_raw(&mut core, &[0xFF, 0xFF, 0, 0], Instant::now());
    assert!(d.closed);

    // C is unaffected.
    assert_eq!(c.get(&mut core, "/accessories").status, 200);
    assert!(!c.closed);
}

#[test]
fn malformed_http_json_and_tlv_get_clean_errors() {
    let (_s, mut core, id, acc) = paired_core();
    // Plaintext garbage → 400 then close.
    let mut p = Client::new(&mut core);
    let m = p.send_raw(&mut core, b"\x00\x01garbage\r\n\r\n", Instant::now());
    assert_eq!(m[0].status, 400);
    assert!(p.closed);
    // Oversized body → 413.
    let mut q = Client::new(&mut core);
    let m = q.send_raw(
        &mut core,
        b"POST /pair-setup HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n",
        Instant::now(),
    );
    assert_eq!(m[0].status, 413);
    assert!(q.closed);
    // Byte-at-a-time delivery still works (incremental parser).
    let mut s = Client::new(&mut core);
    let raw = b"POST /identify HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    let mut got = Vec::new();
    for byte in raw {
        got.extend(s.send_raw(&mut core, &[*byte], Instant::now()));
    }
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].status, 400, "identify while paired");

    let mut a = verify(&mut core, &id, &acc);
    for body in [&b"{"[..], b"[]", b"{\"characteristics\": 5}", b"\xff\xfe"] {
        let r = a.one(&mut core, "PUT", "/characteristics", body);
        assert_eq!((r.status, r.json()), (400, json!({"status": -70410})));
    }
    let w = json!({"characteristics": [{"aid": "x", "iid": 1, "value": 1}]});
    let r = a.put_json(&mut core, "/characteristics", &w);
    assert_eq!(r.status, 207);
    assert_eq!(r.json()["characteristics"][0]["status"], -70410);
    // Malformed TLV on /pairings and /pair-verify, /pair-setup: TLV errors, no panic.
    for body in [&b"\x06"[..], b"\x06\x05\x01", b"", b"\x00\x01\x09"] {
        let r = a.one(&mut core, "POST", "/pairings", body);
        assert_eq!(r.status, 200);
        assert_eq!(tlv_state_error(&r), (Some(2), Some(1)));
        let mut n = Client::new(&mut core);
        let r = n.one(&mut core, "POST", "/pair-verify", body);
        assert_eq!(r.status, 200);
        assert!(r.tlv().get(TlvType::ERROR).is_some());
        let r = n.one(&mut core, "POST", "/pair-setup", body);
        assert!(r.tlv().get(TlvType::ERROR).is_some());
    }
    assert!(!a.closed);
    assert_eq!(a.get(&mut core, "/accessories").status, 200);
}

fn pairings_req(method: u8, extra: &[(TlvType, &[u8])]) -> Vec<u8> {
    let mut t = Tlv8::new();
    t.push_u8(TlvType::STATE, 1)
        .push_u8(TlvType::METHOD, method);
    for (ty, v) in extra {
        t.push(*ty, v);
    }
    t.encode()
}

#[test]
fn pairings_add_list_remove_with_admin_checks() {
    let (store, mut core, admin, acc) = paired_core();
    let mut a = verify(&mut core, &admin, &acc);
    let user = ControllerIdentity::generate(&mut rand::rng());
    let add = pairings_req(
        3,
        &[
            (TlvType::IDENTIFIER, user.pairing_id.as_bytes()),
            (TlvType::PUBLIC_KEY, &user.public_key()),
            (TlvType::PERMISSIONS, &[0]),
        ],
    );
    let r = a.one(&mut core, "POST", "/pairings", &add);
    assert_eq!(tlv_state_error(&r), (Some(2), None));
    assert_eq!(core.pairings().len(), 2);

    // Same id with another key → Unknown.
    let other = ControllerIdentity::generate(&mut rand::rng());
    let clash = pairings_req(
        3,
        &[
            (TlvType::IDENTIFIER, user.pairing_id.as_bytes()),
            (TlvType::PUBLIC_KEY, &other.public_key()),
            (TlvType::PERMISSIONS, &[1]),
        ],
    );
    assert_eq!(
        tlv_state_error(&a.one(&mut core, "POST", "/pairings", &clash)),
        (Some(2), Some(1))
    );

    // List: both, separated.
    let r = a.one(&mut core, "POST", "/pairings", &pairings_req(5, &[]));
    let t = r.tlv();
    let ids: Vec<&[u8]> = t.get_all(TlvType::IDENTIFIER).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&user.pairing_id.as_bytes()));
    let perms: Vec<&[u8]> = t.get_all(TlvType::PERMISSIONS).collect();
    assert_eq!(perms.len(), 2);

    // The regular controller verifies, but every /pairings method is Authentication.
    let mut u = verify(&mut core, &user, &acc);
    assert_eq!(u.get(&mut core, "/accessories").status, 200);
    let remove_admin = pairings_req(4, &[(TlvType::IDENTIFIER, admin.pairing_id.as_bytes())]);
    for body in [add.clone(), remove_admin.clone(), pairings_req(5, &[])] {
        let r = u.one(&mut core, "POST", "/pairings", &body);
        assert_eq!(
            tlv_state_error(&r),
            (Some(2), Some(2)),
            "non-admin → Authentication"
        );
    }
    assert_eq!(core.pairings().len(), 2);

    // The admin removes the user: the user's session is asked to close.
    let remove_user = pairings_req(4, &[(TlvType::IDENTIFIER, user.pairing_id.as_bytes())]);
    let r = a.one(&mut core, "POST", "/pairings", &remove_user);
    assert_eq!(tlv_state_error(&r), (Some(2), None));
    assert!(core.close_requested(u.conn.id()));
    assert!(!core.close_requested(a.conn.id()));
    assert_eq!(core.pairings().len(), 1);
    // Persisted.
    assert_eq!(open(&store).pairings().len(), 1);
}

#[test]
fn removing_the_last_admin_unpairs_and_closes_every_session() {
    let (store, mut core, admin, acc) = paired_core();
    let mut a = verify(&mut core, &admin, &acc);
    let user = ControllerIdentity::generate(&mut rand::rng());
    let add = pairings_req(
        3,
        &[
            (TlvType::IDENTIFIER, user.pairing_id.as_bytes()),
            (TlvType::PUBLIC_KEY, &user.public_key()),
            (TlvType::PERMISSIONS, &[0]),
        ],
    );
    let _ = a.one(&mut core, "POST", "/pairings", &add);
    let u = verify(&mut core, &user, &acc);
    let _ = core.take_advertisement_changed();
    assert_eq!(
        core.txt_record()
            .iter()
            .find(|(k, _)| *k == "sf")
            .unwrap()
            .1,
        "0"
    );

    let remove_self = pairings_req(4, &[(TlvType::IDENTIFIER, admin.pairing_id.as_bytes())]);
    let out = a.conn.handle_input(
        &mut core,
        &{
            let body = remove_self;
            let mut req = format!(
                "POST /pairings HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            req.extend_from_slice(&body);
            let mut w = Vec::new();
            a.cipher.as_mut().unwrap().encrypt(&req, &mut w);
            w
        },
        Instant::now(),
        &mut rand::rng(),
    );
    assert!(
        out.close,
        "the requester's own session closes after the reply"
    );
    let reply = a.receive(&out.bytes);
    assert_eq!(tlv_state_error(&reply[0]), (Some(2), None));
    assert!(!core.is_paired(), "no admin left → every pairing removed");
    assert!(core.close_requested(u.conn.id()));
    assert!(core.take_advertisement_changed());
    assert_eq!(
        core.txt_record()
            .iter()
            .find(|(k, _)| *k == "sf")
            .unwrap()
            .1,
        "1"
    );
    assert!(!open(&store).is_paired());
}

#[test]
fn restart_keeps_identity_pairings_iids_and_config_number() {
    let (store, mut core, id, acc) = paired_core();
    let before_json = {
        let mut a = verify(&mut core, &id, &acc);
        a.get(&mut core, "/accessories").json()
    };
    let c_before = core.config_number();
    let pid = core.pairing_id().to_owned();
    let setup_id = core.setup_id().to_owned();
    drop(core);

    let mut core = open(&store);
    assert_eq!(core.pairing_id(), pid);
    assert_eq!(core.setup_id(), setup_id);
    assert_eq!(core.config_number(), c_before, "same database → same c#");
    // The stored accessory key still verifies: no re-pairing.
    let mut a = verify(&mut core, &id, &acc);
    assert_eq!(a.get(&mut core, "/accessories").json(), before_json);

    // A structure change bumps c# and keeps old iids.
    let motion = find(&core, MOTION_SENSOR, MOTION_DETECTED);
    let extra = accessory(Arc::new(AtomicUsize::new(0))).service(
        Service::new(HapType::apple(0x86)).characteristic(Characteristic::new(
            HapType::apple(0x71),
            Format::UInt8,
            Perms::PR | Perms::EV,
        )),
    );
    drop(core);
    let core = Core::open(
        config(),
        Arc::new(store.clone()),
        vec![extra],
        &mut rand::rng(),
    )
    .unwrap();
    assert_eq!(core.config_number(), c_before + 1);
    assert_eq!(find(&core, MOTION_SENSOR, MOTION_DETECTED), motion);
    let txt = core.txt_record();
    assert_eq!(
        txt.iter().find(|(k, _)| *k == "c#").unwrap().1,
        (c_before + 1).to_string()
    );
    drop(core);

    // A firmware update bumps c# too (ADK), even with the same database.
    let extra = || {
        accessory(Arc::new(AtomicUsize::new(0))).service(
            Service::new(HapType::apple(0x86)).characteristic(Characteristic::new(
                HapType::apple(0x71),
                Format::UInt8,
                Perms::PR | Perms::EV,
            )),
        )
    };
    let same = Core::open(
        config(),
        Arc::new(store.clone()),
        vec![extra()],
        &mut rand::rng(),
    )
    .unwrap();
    assert_eq!(same.config_number(), c_before + 1);
    drop(same);
    let mut updated = config();
    updated.firmware_revision = "1.0.1".into();
    let core = Core::open(
        updated,
        Arc::new(store.clone()),
        vec![extra()],
        &mut rand::rng(),
    )
    .unwrap();
    assert_eq!(core.config_number(), c_before + 2);
}

#[test]
fn txt_record_has_every_hap_key() {
    let store = MemoryStore::new();
    let core = open(&store);
    let txt: std::collections::HashMap<_, _> = core.txt_record().into_iter().collect();
    assert_eq!(txt["ff"], "0");
    assert_eq!(txt["pv"], "1.1");
    assert_eq!(txt["s#"], "1");
    assert_eq!(txt["sf"], "1");
    assert_eq!(txt["ci"], "17");
    assert_eq!(txt["md"], "test");
    assert_eq!(txt["id"], core.pairing_id());
    assert_eq!(txt["c#"], "1");
    assert_eq!(
        txt["sh"],
        hap_server::setup::setup_hash(core.setup_id(), core.pairing_id())
    );
    assert!(core.setup_uri().starts_with("X-HM://"));
    assert!(core.setup_uri().ends_with(core.setup_id()));
}

#[test]
fn resource_requests_reach_the_handler() {
    let (_s, mut core, id, acc) = paired_core();
    let mut a = verify(&mut core, &id, &acc);
    let r = a.one(
        &mut core,
        "POST",
        "/resource",
        br#"{"resource-type":"image","image-width":640,"image-height":360}"#,
    );
    assert_eq!(
        (r.status, r.json()),
        (404, json!({"status": -70409})),
        "no handler"
    );
    core.set_resource_handler(Arc::new(|_ctx, req| match req["image-width"].as_u64() {
        Some(640) => Ok(Some(vec![0xFF, 0xD8, 0xFF])),
        Some(1) => Err(HapStatus::RESOURCE_BUSY),
        _ => Ok(None),
    }));
    let r = a.one(
        &mut core,
        "POST",
        "/resource",
        br#"{"resource-type":"image","image-width":640,"image-height":360}"#,
    );
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &[0xFF, 0xD8, 0xFF][..])
    );
    let r = a.one(&mut core, "POST", "/resource", br#"{"image-width":1}"#);
    assert_eq!((r.status, r.json()), (207, json!({"status": -70403})));
    let r = a.one(&mut core, "POST", "/resource", b"not json");
    assert_eq!(r.status, 400);
}
