//! The controller against an in-process `hap_server` accessory on loopback: pair-setup,
//! pair-verify, `/accessories`, reads, writes with a write-response, timed writes, events
//! interleaved with responses, `/pairings` add/list/remove, `/resource`, and saved keys reused
//! on a new connection.
#![allow(clippy::indexing_slicing)] // tests: a panic is a failed check

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use controller::{CharWrite, HapClient, HapError, PairingKeys, pair_setup};
use hap_server::core::CATEGORY_IP_CAMERA;
use hap_server::pairing::controller::ControllerIdentity;
use hap_server::setup::SetupCode;
use hap_server::store::MemoryStore;
use hap_server::{
    Accessory, Characteristic, Core, CoreConfig, Format, HapStatus, HapType, Perms, Server,
    ServerOptions, Service, Value,
};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

const CODE: &str = "518-08-582";
const WAIT: Duration = Duration::from_secs(10);

async fn start() -> (Server, SocketAddr, watch::Sender<bool>) {
    let acc = Accessory::new(1)
        .service(
            Service::new(HapType::apple(0x3E)).characteristic(Characteristic::new(
                HapType::apple(0x14),
                Format::Bool,
                Perms::PW,
            )),
        )
        .service(
            Service::new(HapType::apple(0x85)).characteristic(Characteristic::new(
                HapType::apple(0x22),
                Format::Bool,
                Perms::PR | Perms::EV,
            )),
        )
        .service(
            Service::new(HapType::apple(0x129))
                // Echoes the written TLV reversed, like a write-response characteristic.
                .characteristic(
                    Characteristic::new(
                        HapType::apple(0x131),
                        Format::Tlv8,
                        Perms::PR | Perms::PW | Perms::WR,
                    )
                    .on_write(|_, v| match v {
                        Value::Bytes(b) if !b.is_empty() => {
                            Ok(Some(Value::Bytes(b.iter().rev().copied().collect())))
                        }
                        _ => Err(HapStatus::INVALID_VALUE_IN_REQUEST),
                    }),
                )
                .characteristic(
                    Characteristic::new(
                        HapType::apple(0x11B),
                        Format::Bool,
                        Perms::PR | Perms::PW | Perms::EV | Perms::TW,
                    )
                    .value(Value::Bool(false)),
                ),
        );
    let mut core = Core::open(
        CoreConfig {
            name: "Controller Test".into(),
            model: "test".into(),
            category: CATEGORY_IP_CAMERA,
            setup_code: Some(SetupCode::parse(CODE).expect("code")),
            firmware_revision: "1.0.0".into(),
        },
        Arc::new(MemoryStore::new()),
        vec![acc],
        &mut rand::rng(),
    )
    .expect("core");
    core.set_resource_handler(Arc::new(|_, body| {
        match body.get("reason").and_then(|r| r.as_u64()) {
            Some(1) => Ok(Some(vec![0xFF, 0xD8, 0xFF, 0xD9])),
            _ => Err(HapStatus::NOT_ALLOWED_IN_CURRENT_STATE),
        }
    }));
    let server = Server::new(core);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = watch::channel(false);
    let s = server.clone();
    tokio::spawn(async move { s.serve(listener, ServerOptions::default(), rx).await });
    (server, addr, tx)
}

#[tokio::test]
async fn pairing_http_events_and_pairings_against_hap_server() {
    let (server, addr, _stop) = start().await;
    let me = ControllerIdentity::generate(&mut rand::rng());

    // A wrong setup code is refused by the accessory (M4 error), a right one pairs.
    let wrong = pair_setup(addr, &me, "111-22-333", WAIT).await;
    assert!(matches!(wrong, Err(HapError::Pairing(_))), "{wrong:?}");
    let keys = pair_setup(addr, &me, CODE, WAIT).await.expect("pair-setup");
    assert_eq!(keys.accessory.pairing_id, server.lock().pairing_id());

    let mut a = HapClient::connect(addr, &keys, WAIT).await.expect("verify");
    let db = a.accessories().await.expect("/accessories");
    let motion = db.id_of("85", "22").expect("MotionDetected");
    let sdt = db.id_of("129", "131").expect("SetupDataStreamTransport");
    let night = db.id_of("129", "11B").expect("timed characteristic");
    assert_eq!(
        db.find("129", "131").map(|(_, c)| c.perms.clone()),
        Some(vec!["pr".to_owned(), "pw".to_owned(), "wr".to_owned()])
    );

    // Read.
    assert_eq!(
        a.read_one(motion.0, motion.1).await.expect("read"),
        json!(0)
    );

    // Write-response: the handler's value comes back base64-encoded in the 207 entry.
    let w = CharWrite {
        response: true,
        ..CharWrite::value(sdt.0, sdt.1, json!("AQID"))
    };
    assert_eq!(a.write_one(w).await.expect("write"), Some(json!("AwIB")));
    // A value the handler refuses gives that entry's HAP status.
    let r = a
        .write(&[CharWrite::value(sdt.0, sdt.1, json!(""))], None)
        .await
        .expect("write");
    assert_eq!(r[0].status, -70410);

    // A timed characteristic needs /prepare + pid.
    let plain = a
        .write(&[CharWrite::value(night.0, night.1, json!(true))], None)
        .await
        .expect("write");
    assert_ne!(plain[0].status, 0, "tw without pid must be refused");
    let timed = a
        .timed_write(&[CharWrite::value(night.0, night.1, json!(true))], 5000)
        .await
        .expect("timed write");
    assert_eq!(timed[0].status, 0);
    assert_eq!(a.read_one(night.0, night.1).await.expect("read"), json!(1));

    // Events arrive on the channel, also while requests are answered.
    let sub = a.subscribe(&[motion], true).await.expect("subscribe");
    assert_eq!(sub[0].status, 0);
    let motion_id = server
        .lock()
        .database()
        .find(1, HapType::apple(0x85), "", HapType::apple(0x22))
        .expect("id");
    assert!(server.set_value(motion_id, Value::Bool(true)));
    assert_eq!(a.read_one(night.0, night.1).await.expect("read"), json!(1));
    let got = a
        .wait_for_event(motion.0, motion.1, WAIT, |v| {
            v == &json!(1) || v == &json!(true)
        })
        .await;
    assert!(got.is_some(), "no MotionDetected event");

    // /resource: allowed reason → JPEG; other → 207 with the HAP status.
    let ok = a
        .resource(&json!({"resource-type": "image", "image-width": 640, "image-height": 360, "reason": 1}))
        .await
        .expect("resource");
    assert_eq!(
        (ok.status, ok.body.as_slice()),
        (200, &[0xFF, 0xD8, 0xFF, 0xD9][..])
    );
    let refused = a
        .resource(&json!({"resource-type": "image", "image-width": 640, "image-height": 360}))
        .await
        .expect("resource");
    assert_eq!(refused.status, 207);
    assert_eq!(refused.json()["status"], json!(-70412));

    // /pairings: add a second controller, list both, verify as it, remove it.
    let other = ControllerIdentity::generate(&mut rand::rng());
    a.add_pairing(&other.pairing_id, &other.public_key(), false)
        .await
        .expect("add");
    let list = a.list_pairings().await.expect("list");
    assert_eq!(list.len(), 2);
    assert!(
        list.iter()
            .any(|p| p.controller_id == me.pairing_id && p.admin)
    );
    assert!(
        list.iter().any(|p| p.controller_id == other.pairing_id
            && !p.admin
            && p.ltpk == other.public_key())
    );
    let other_keys = PairingKeys {
        identity: other.clone(),
        accessory: keys.accessory.clone(),
    };
    let mut b = HapClient::connect(addr, &other_keys, WAIT)
        .await
        .expect("verify other");
    assert!(
        b.list_pairings().await.is_err(),
        "non-admin may not list pairings"
    );
    a.remove_pairing(&other.pairing_id).await.expect("remove");
    assert!(HapClient::connect(addr, &other_keys, WAIT).await.is_err());

    // Saved keys work on a new connection.
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("keys.json");
    keys.save(&path).expect("save");
    let loaded = PairingKeys::load(&path).expect("load");
    let mut c = HapClient::connect(addr, &loaded, WAIT)
        .await
        .expect("verify loaded");
    assert_eq!(c.read_one(night.0, night.1).await.expect("read"), json!(1));

    // Removing ourselves (the last admin) unpairs the accessory.
    c.remove_pairing(&me.pairing_id).await.expect("remove self");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!server.lock().is_paired());
}
