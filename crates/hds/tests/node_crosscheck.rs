//! Cross-check of our value codec and messages against HAP-NodeJS 2.2.3's DataStreamParser (a
//! reference codec we did not write), run by `node` with `tests/peers/hds_codec.js`.
//!
//! Needs `@homebridge/hap-nodejs` installed: `scripts/test` does it (`npm ci` in `tests/peers`)
//! and exports `HKSV_TEST_NODE_MODULES`. A missing peer fails the test.
#![allow(clippy::indexing_slicing, missing_docs)]

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use bytes::Bytes;
use common::recording;
use hds::message::{ChunkMeta, data_event_payload};
use hds::{HdsStatus, Message, Reason, SegmentKind, Value};
use serde_json::{Value as J, json};

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn node_modules() -> PathBuf {
    let dir = std::env::var_os("HKSV_TEST_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("tests/peers/node_modules"));
    assert!(
        dir.join("@homebridge/hap-nodejs/dist/lib/datastream/DataStreamParser.js")
            .is_file(),
        "HAP-NodeJS is not installed in {} — run scripts/test (it runs `npm ci` in tests/peers)",
        dir.display()
    );
    dir
}

/// Run the reference codec once. `request` is JSON text: key order matters to HAP-NodeJS's
/// writer (objects are encoded in insertion order), and serde_json's `Value` sorts keys.
fn node(request: &str) -> J {
    let modules = node_modules();
    let script = workspace_root().join("tests/peers/hds_codec.js");
    let mut child = Command::new("node")
        .arg(&script)
        .env("HKSV_TEST_NODE_MODULES", &modules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("`node` not found — run scripts/test (it installs nodejs)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "node exited with {}", out.status);
    serde_json::from_slice(&out.stdout).expect("node output is JSON")
}

/// Our value in the script's tagged JSON (what HAP-NodeJS's reader returns).
fn to_json(v: &Value) -> J {
    match v {
        Value::Null => J::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::Float(f) => json!(f),
        Value::String(s) => json!(s),
        Value::Data(d) => json!({ "$data": hex::encode(d) }),
        Value::Array(a) => J::Array(a.iter().map(to_json).collect()),
        Value::Dict(d) => J::Object(
            d.iter()
                .map(|(k, v)| (k.as_str().expect("string key").to_owned(), to_json(v)))
                .collect(),
        ),
        Value::Uuid(_) | Value::Date(_) => unreachable!("not used in these messages"),
    }
}

/// JSON text of `v` in wire order.
fn ordered(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("[{}]", a.iter().map(ordered).collect::<Vec<_>>().join(",")),
        Value::Dict(d) => format!(
            "{{{}}}",
            d.iter()
                .map(|(k, v)| format!("{}:{}", to_json(k), ordered(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => to_json(other).to_string(),
    }
}

/// Header as HAP-NodeJS's DataStreamServer builds it (Int64 id/status), JSON text in order.
fn ordered_header(m: &Message) -> String {
    match m.kind {
        hds::Kind::Event => format!(r#"{{"protocol":{:?},"event":{:?}}}"#, m.protocol, m.topic),
        hds::Kind::Request { id } => format!(
            r#"{{"protocol":{:?},"request":{:?},"id":{{"$int64":{id}}}}}"#,
            m.protocol, m.topic
        ),
        hds::Kind::Response { id, status } => format!(
            r#"{{"protocol":{:?},"response":{:?},"id":{{"$int64":{id}}},"status":{{"$int64":{}}}}}"#,
            m.protocol, m.topic, status.0
        ),
    }
}

fn header_json(m: &Message) -> J {
    let mut h = serde_json::Map::new();
    h.insert("protocol".into(), json!(m.protocol));
    match m.kind {
        hds::Kind::Event => {
            h.insert("event".into(), json!(m.topic));
        }
        hds::Kind::Request { id } => {
            h.insert("request".into(), json!(m.topic));
            h.insert("id".into(), json!(id));
        }
        hds::Kind::Response { id, status } => {
            h.insert("response".into(), json!(m.topic));
            h.insert("id".into(), json!(id));
            h.insert("status".into(), json!(status.0));
        }
    }
    J::Object(h)
}

fn meta(
    kind: SegmentKind,
    seq: i64,
    chunk: i64,
    last: bool,
    total: Option<u64>,
    eos: Option<bool>,
) -> ChunkMeta {
    ChunkMeta {
        stream_id: 1,
        kind,
        data_sequence_number: seq,
        data_chunk_sequence_number: chunk,
        is_last_data_chunk: last,
        data_total_size_bytes: total,
        end_of_stream: eos,
    }
}

/// Every shape of data event we send, with real fixture bytes.
fn data_events() -> Vec<(ChunkMeta, Bytes)> {
    let rec = recording();
    let init = rec[0].clone();
    let frag = rec[1].clone();
    let (first, rest) = (frag.slice(..262_144), frag.slice(262_144..));
    use SegmentKind::*;
    vec![
        (
            meta(MediaInitialization, 1, 1, true, Some(1143), Some(false)),
            init.clone(),
        ),
        (
            meta(MediaInitialization, 1, 1, true, Some(1143), Some(true)),
            init,
        ),
        (
            meta(MediaFragment, 2, 1, false, Some(371_381), None),
            first.clone(),
        ),
        (
            meta(MediaFragment, 2, 2, true, None, Some(false)),
            rest.clone(),
        ),
        (meta(MediaFragment, 2, 2, true, None, Some(true)), rest),
        (
            meta(MediaFragment, 40, 2, false, None, None),
            first.slice(..300),
        ),
        (
            meta(MediaFragment, 70_000, 1, true, Some(5), Some(true)),
            first.slice(..5),
        ),
    ]
}

fn data_event_message(m: &ChunkMeta, data: &Bytes) -> Message {
    let mut md = vec![
        ("dataType", Value::String(m.kind.as_str().into())),
        ("dataSequenceNumber", Value::Int(m.data_sequence_number)),
        (
            "dataChunkSequenceNumber",
            Value::Int(m.data_chunk_sequence_number),
        ),
        ("isLastDataChunk", Value::Bool(m.is_last_data_chunk)),
    ];
    if let Some(t) = m.data_total_size_bytes {
        md.push(("dataTotalSize", Value::Int(t as i64)));
    }
    let md = Value::Dict(
        md.into_iter()
            .map(|(k, v)| (Value::String(k.into()), v))
            .collect(),
    );
    let mut body = vec![
        (Value::String("streamId".into()), Value::Int(m.stream_id)),
        (
            Value::String("packets".into()),
            Value::Array(vec![Value::dict([
                ("data", Value::Data(data.clone())),
                ("metadata", md),
            ])]),
        ),
    ];
    if let Some(e) = m.end_of_stream {
        body.push((Value::String("endOfStream".into()), Value::Bool(e)));
    }
    Message::event("dataSend", "data", Value::Dict(body))
}

/// Values at every width boundary of §4.6.
fn edge_body() -> Value {
    let ints = [
        -(1i64 << 40),
        -2_147_483_649,
        -2_147_483_648,
        -32_769,
        -129,
        -128,
        -2,
        -1,
        0,
        1,
        38,
        39,
        40,
        127,
        128,
        255,
        32_767,
        32_768,
        2_147_483_647,
        2_147_483_648,
        1 << 40,
        (1 << 53) - 1,
    ];
    let strings: Vec<Value> = [0usize, 1, 32, 33, 255, 256, 65_535, 65_536]
        .iter()
        .map(|&n| Value::String("é".repeat(n / 2) + &"s".repeat(n % 2)))
        .collect();
    let datas: Vec<Value> = [0usize, 1, 32, 33, 255, 256, 65_535, 65_536]
        .iter()
        .map(|&n| Value::Data((0..n).map(|i| (i * 7) as u8).collect::<Vec<_>>().into()))
        .collect();
    let arrays: Vec<Value> = [0usize, 12, 13, 14, 15, 40]
        .iter()
        .map(|&n| Value::Array((0..n as i64).map(Value::Int).collect()))
        .collect();
    let big_dict = Value::Dict(
        (0..20)
            .map(|i| (Value::String(format!("k{i}")), Value::Bool(i % 2 == 0)))
            .collect(),
    );
    Value::dict([
        (
            "ints",
            Value::Array(ints.iter().map(|&i| Value::Int(i)).collect()),
        ),
        (
            "floats",
            Value::Array(vec![
                Value::Float(1.5),
                Value::Float(-0.25),
                Value::Float(1e300),
            ]),
        ),
        ("strings", Value::Array(strings)),
        ("datas", Value::Array(datas)),
        ("arrays", Value::Array(arrays)),
        ("bigDict", big_dict),
        (
            "nested",
            Value::dict([(
                "a",
                Value::dict([("b", Value::Array(vec![Value::Null, Value::Bool(false)]))]),
            )]),
        ),
    ])
}

fn our_messages() -> Vec<Message> {
    let mut v = vec![
        Message::response(
            "control",
            "hello",
            1,
            HdsStatus::SUCCESS,
            Value::Dict(vec![]),
        ),
        Message::response(
            "control",
            "hello",
            0,
            HdsStatus::SUCCESS,
            Value::Dict(vec![]),
        ),
        Message::response(
            "control",
            "hello",
            4_294_967_295,
            HdsStatus::SUCCESS,
            Value::Dict(vec![]),
        ),
        Message::response(
            "control",
            "hello",
            1 << 40,
            HdsStatus::SUCCESS,
            Value::Dict(vec![]),
        ),
        Message::response(
            "dataSend",
            "open",
            7,
            HdsStatus::SUCCESS,
            Value::dict([("status", Value::Int(0))]),
        ),
        Message::request("control", "hello", 3, Value::Dict(vec![])),
        Message::event(
            "dataSend",
            "ack",
            Value::dict([
                ("streamId", Value::Int(1)),
                ("endOfStream", Value::Bool(true)),
            ]),
        ),
        Message::event("misc", "edges", edge_body()),
    ];
    for r in 0..=9 {
        v.push(Message::response(
            "dataSend",
            "open",
            7,
            HdsStatus::PROTOCOL_SPECIFIC_ERROR,
            Value::dict([("status", Value::Int(r))]),
        ));
        v.push(Message::event(
            "dataSend",
            "close",
            Value::dict([
                ("streamId", Value::Int(1)),
                ("reason", Value::Int(Reason(r).0)),
            ]),
        ));
    }
    v
}

#[test]
fn hap_nodejs_decodes_what_we_encode() {
    let msgs = our_messages();
    let events = data_events();
    let mut payloads: Vec<Vec<u8>> = msgs
        .iter()
        .map(|m| {
            let mut p = Vec::new();
            m.encode(&mut p).unwrap();
            p
        })
        .collect();
    for (m, d) in &events {
        payloads.push(data_event_payload(m, d).unwrap());
    }
    let expected: Vec<J> = msgs
        .iter()
        .cloned()
        .chain(events.iter().map(|(m, d)| data_event_message(m, d)))
        .map(|m| json!({ "header": header_json(&m), "message": to_json(&m.body) }))
        .collect();
    let reply = node(
        &json!({ "decode": payloads.iter().map(hex::encode).collect::<Vec<_>>() }).to_string(),
    );
    let decoded = reply["decoded"].as_array().unwrap();
    assert_eq!(decoded.len(), expected.len());
    for (i, (got, want)) in decoded.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "payload {i} decodes differently in HAP-NodeJS");
    }
}

#[test]
fn our_data_events_are_byte_identical_to_hap_nodejs() {
    // HAP-NodeJS builds data events from plain numbers, so its writer picks the widths; with no
    // repeated multi-byte scalar in an event it emits no back-reference, and the bytes must
    // match ours exactly. Control messages are compared the same way with Int64 header ids.
    let events = data_events();
    let mut msgs: Vec<Message> = events
        .iter()
        .map(|(m, d)| data_event_message(m, d))
        .collect();
    let mut ours: Vec<Vec<u8>> = events
        .iter()
        .map(|(m, d)| data_event_payload(m, d).unwrap())
        .collect();
    for (top, id, status, body) in [
        (("control", "hello"), 1, 0, Value::Dict(vec![])),
        (
            ("dataSend", "open"),
            7,
            0,
            Value::dict([("status", Value::Int(0))]),
        ),
        (
            ("dataSend", "open"),
            7,
            6,
            Value::dict([("status", Value::Int(2))]),
        ),
        (
            ("dataSend", "open"),
            4_294_967_295,
            6,
            Value::dict([("status", Value::Int(9))]),
        ),
    ] {
        msgs.push(Message::response(top.0, top.1, id, HdsStatus(status), body));
    }
    for r in [0, 3, 5] {
        msgs.push(Message::event(
            "dataSend",
            "close",
            Value::dict([("streamId", Value::Int(1)), ("reason", Value::Int(r))]),
        ));
    }
    for m in &msgs[events.len()..] {
        let mut p = Vec::new();
        m.encode(&mut p).unwrap();
        ours.push(p);
    }
    let requests: Vec<String> = msgs
        .iter()
        .map(|m| {
            format!(
                r#"{{"header":{},"message":{}}}"#,
                ordered_header(m),
                ordered(&m.body)
            )
        })
        .collect();
    let reply = node(&format!(r#"{{"encode":[{}]}}"#, requests.join(",")));
    let theirs = reply["encoded"].as_array().unwrap();
    assert_eq!(theirs.len(), ours.len());
    for (i, (t, o)) in theirs.iter().zip(&ours).enumerate() {
        let mut t = t.as_str().unwrap().to_owned();
        if let Some((_, d)) = events.get(i).filter(|(_, d)| d.len() <= 32) {
            // The one deliberate difference (§7): HAP-NodeJS writes short data inline
            // (0x70 + n), which its own reader decodes as undefined; we write 0x91 n.
            let key = "4464617461"; // "data"
            let inline = format!("{key}{:02x}", 0x70 + d.len());
            assert!(
                t.contains(&inline),
                "payload {i}: expected HAP-NodeJS's inline data tag"
            );
            t = t.replacen(&inline, &format!("{key}91{:02x}", d.len()), 1);
        }
        assert_eq!(
            t,
            hex::encode(o),
            "payload {i} differs from HAP-NodeJS's bytes"
        );
    }
}

#[test]
fn we_decode_what_hap_nodejs_encodes_including_back_references() {
    // §4.8: id 0 → status written as back-reference a5. Repeated strings, Int64 and floats
    // become back-references; 39 is written inline (0x2f).
    let requests = r#"{ "encode": [
        {"header": {"protocol": "control", "response": "hello", "id": {"$int64": 0}, "status": {"$int64": 0}}, "message": {}},
        {"header": {"protocol": "dataSend", "request": "open", "id": {"$int64": 4294967295}},
         "message": {"target": "controller", "type": "ipcamera.recording", "streamId": 1, "reason": "motion"}},
        {"header": {"protocol": "misc", "event": "refs"},
         "message": {"a": "same", "b": "same", "c": {"$int64": 7}, "d": {"$int64": 7}, "e": 1.5, "f": 1.5,
                     "list": ["same", "x", "x", 39, 1000, 1000], "g": "a"}},
        {"header": {"protocol": "dataSend", "event": "ack"}, "message": {"streamId": 1, "endOfStream": true}},
        {"header": {"protocol": "dataSend", "event": "close"}, "message": {"streamId": 1, "reason": 6}}
    ]}"#;
    let reply = node(requests);
    let enc: Vec<Bytes> = reply["encoded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| Bytes::from(hex::decode(h.as_str().unwrap()).unwrap()))
        .collect();
    // The reference really emitted back-references: a5 at the end of the id-0 header (§4.8).
    assert_eq!(enc[0][0], 53);
    assert_eq!(enc[0][53], 0xa5);
    assert!(enc[2].iter().any(|&b| (0xa0..=0xcf).contains(&b)));
    assert!(enc[2].contains(&0x2f), "HAP-NodeJS writes 39 inline");

    let m0 = Message::decode(&enc[0]).unwrap();
    assert_eq!(
        m0,
        Message::response(
            "control",
            "hello",
            0,
            HdsStatus::SUCCESS,
            Value::Dict(vec![])
        )
    );
    let m1 = Message::decode(&enc[1]).unwrap();
    assert_eq!(m1.kind, hds::Kind::Request { id: 4_294_967_295 });
    assert_eq!(
        m1.body.get("type").and_then(Value::as_str),
        Some("ipcamera.recording")
    );
    assert_eq!(m1.body.get("streamId").and_then(Value::as_int), Some(1));
    let m2 = Message::decode(&enc[2]).unwrap();
    let s = |x: &str| Value::String(x.into());
    assert_eq!(
        m2.body,
        Value::Dict(vec![
            (s("a"), s("same")),
            (s("b"), s("same")),
            (s("c"), Value::Int(7)),
            (s("d"), Value::Int(7)),
            (s("e"), Value::Float(1.5)),
            (s("f"), Value::Float(1.5)),
            (
                s("list"),
                Value::Array(vec![
                    s("same"),
                    s("x"),
                    s("x"),
                    Value::Int(39),
                    Value::Int(1000),
                    Value::Int(1000)
                ])
            ),
            (s("g"), s("a")),
        ])
    );
    let m3 = Message::decode(&enc[3]).unwrap();
    assert_eq!(m3.body.get("endOfStream"), Some(&Value::Bool(true)));
    let m4 = Message::decode(&enc[4]).unwrap();
    assert_eq!(m4.body.get("reason").and_then(Value::as_int), Some(6));
}

#[test]
fn key_derivation_and_frames_match_hap_nodejs_crypto() {
    // HAP-NodeJS's hapCrypto derives the keys (as DataStreamServer.prepareSession) and seals
    // frames (as sendHDSFrame); ours must give the same bytes.
    let secret: [u8; 32] = core::array::from_fn(|i| i as u8);
    let c_salt: [u8; 32] = core::array::from_fn(|i| 0x80 + i as u8);
    let a_salt: [u8; 32] = core::array::from_fn(|i| 0xff - i as u8);
    let keys = hds::SessionKeys::derive(&secret, &c_salt, &a_salt);
    let payload = recording()[0].slice(..700);
    let counters = [0u64, 1, 255, 256, 1 << 33];
    let seal: Vec<J> = counters
        .iter()
        .map(|&n| json!({"key": hex::encode(keys.accessory_to_controller()), "counter": n, "payload": hex::encode(&payload)}))
        .collect();
    let reply = node(
        &json!({
            "keys": [{"secret": hex::encode(secret), "controllerSalt": hex::encode(c_salt), "accessorySalt": hex::encode(a_salt)}],
            "seal": seal,
        })
        .to_string(),
    );
    assert_eq!(
        reply["keys"][0]["accessoryToController"],
        json!(hex::encode(keys.accessory_to_controller()))
    );
    assert_eq!(
        reply["keys"][0]["controllerToAccessory"],
        json!(hex::encode(keys.controller_to_accessory()))
    );
    assert_ne!(
        keys.accessory_to_controller(),
        keys.controller_to_accessory()
    );
    for (i, &n) in counters.iter().enumerate() {
        let theirs = hex::decode(reply["sealed"][i].as_str().unwrap()).unwrap();
        let mut ours = Vec::new();
        hds::frame::FrameSealer::with_counter(keys.accessory_to_controller(), n)
            .seal(&payload, &mut ours)
            .unwrap();
        assert_eq!(ours, theirs, "frame at counter {n}");
        // The controller's opener authenticates HAP-NodeJS's frame only at the same counter.
        let mut buf = bytes::BytesMut::from(&theirs[..]);
        let frame = hds::frame::take_frame(&mut buf, n).unwrap().unwrap();
        let mut wrong =
            hds::frame::FrameOpener::with_counter(keys.accessory_to_controller(), n + 1);
        assert!(wrong.try_open(&frame).is_err());
        let mut opener = hds::frame::FrameOpener::with_counter(keys.accessory_to_controller(), n);
        assert_eq!(&opener.open(frame).unwrap()[..], &payload[..]);
        assert_eq!(opener.counter(), n + 1);
    }
}
