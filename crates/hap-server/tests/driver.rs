//! The tokio driver on loopback TCP: pair, verify, events pushed by the application, a removed
//! controller's connection closed by the server, the connection limit, unverified connections
//! closed when idle, and shutdown.
#![allow(clippy::indexing_slicing)] // tests: a panic is a failed check

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Client, WAIT, pair, verify};

use hap_server::core::CATEGORY_IP_CAMERA;
use hap_server::pairing::controller::{ControllerIdentity, SetupClient};
use hap_server::setup::SetupCode;
use hap_server::store::MemoryStore;
use hap_server::{
    Accessory, Characteristic, Core, CoreConfig, Format, HapType, Perms, Server, ServerOptions,
    Service, Value,
};
use hap_tlv::{Tlv8, TlvType};
use serde_json::{Value as Json, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::timeout;

const CODE: &str = "518-08-582";
const MOTION_SENSOR: HapType = HapType::apple(0x85);
const MOTION_DETECTED: HapType = HapType::apple(0x22);

async fn start(
    max_connections: usize,
) -> (
    Server,
    u16,
    watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    start_with(ServerOptions {
        max_connections,
        ..ServerOptions::default()
    })
    .await
}

async fn start_with(
    opts: ServerOptions,
) -> (
    Server,
    u16,
    watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let acc = Accessory::new(1)
        .service(
            Service::new(HapType::apple(0x3E)).characteristic(Characteristic::new(
                HapType::apple(0x14),
                Format::Bool,
                Perms::PW,
            )),
        )
        .service(
            Service::new(MOTION_SENSOR).characteristic(Characteristic::new(
                MOTION_DETECTED,
                Format::Bool,
                Perms::PR | Perms::EV,
            )),
        );
    let core = Core::open(
        CoreConfig {
            name: "Driver Test".into(),
            model: "test".into(),
            category: CATEGORY_IP_CAMERA,
            setup_code: Some(SetupCode::parse(CODE).unwrap()),
            firmware_revision: "1.0.0".into(),
        },
        Arc::new(MemoryStore::new()),
        vec![acc],
        &mut rand::rng(),
    )
    .unwrap();
    let server = Server::new(core);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = watch::channel(false);
    let s = server.clone();
    let task = tokio::spawn(async move { s.serve(listener, opts, rx).await.unwrap() });
    (server, port, tx, task)
}

#[tokio::test]
async fn events_removal_limit_and_shutdown_over_tcp() {
    let (server, port, stop, task) = start(3).await;
    let admin = ControllerIdentity::generate(&mut rand::rng());
    let acc = pair(port, &admin, CODE).await;
    let mut a = verify(port, &admin, &acc).await;
    let motion = server
        .lock()
        .database()
        .find(1, MOTION_SENSOR, "", MOTION_DETECTED)
        .unwrap();

    // Subscribe, then the application sets MotionDetected: an EVENT arrives unprompted.
    let sub = json!({"characteristics": [{"aid": 1, "iid": motion.iid, "ev": true}]}).to_string();
    let (start_line, _) = a.request("PUT", "/characteristics", sub.as_bytes()).await;
    assert_eq!(start_line, "HTTP/1.1 204 No Content");
    assert!(server.set_value(motion, Value::Bool(true)));
    let (start_line, body) = a.next().await.expect("event");
    assert_eq!(start_line, "EVENT/1.0 200 OK");
    let ev: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        ev,
        json!({"characteristics": [{"aid": 1, "iid": motion.iid, "value": 1}]})
    );

    // A second (regular) controller; the admin removes it and its connection is closed.
    let user = ControllerIdentity::generate(&mut rand::rng());
    let mut add = Tlv8::new();
    add.push_u8(TlvType::STATE, 1)
        .push_u8(TlvType::METHOD, 3)
        .push(TlvType::IDENTIFIER, user.pairing_id.as_bytes())
        .push(TlvType::PUBLIC_KEY, &user.public_key())
        .push_u8(TlvType::PERMISSIONS, 0);
    let (_, r) = a.request("POST", "/pairings", &add.encode()).await;
    assert_eq!(Tlv8::decode(&r).unwrap().get(TlvType::ERROR), None);
    let mut u = verify(port, &user, &acc).await;
    let (start_line, _) = u.request("GET", "/accessories", b"").await;
    assert_eq!(start_line, "HTTP/1.1 200 OK");

    // Limit 3: a and u are open; one more fits; the next one takes the slot of that idle
    // unverified connection (verified sessions are never evicted).
    let mut third = Client::connect(port).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fourth = Client::connect(port).await;
    assert!(
        third.next().await.is_none(),
        "over the limit → the idle unverified one goes"
    );
    let (start_line, _) = fourth.request("GET", "/accessories", b"").await;
    assert!(
        start_line.starts_with("HTTP/1.1 470"),
        "the newcomer is served: {start_line}"
    );

    let mut remove = Tlv8::new();
    remove
        .push_u8(TlvType::STATE, 1)
        .push_u8(TlvType::METHOD, 4)
        .push(TlvType::IDENTIFIER, user.pairing_id.as_bytes());
    let (_, r) = a.request("POST", "/pairings", &remove.encode()).await;
    assert_eq!(Tlv8::decode(&r).unwrap().get(TlvType::ERROR), None);
    assert!(
        u.next().await.is_none(),
        "removed controller's session is closed"
    );
    let (start_line, _) = a.request("GET", "/accessories", b"").await;
    assert_eq!(start_line, "HTTP/1.1 200 OK", "the admin's session stays");

    // Shutdown closes every connection and ends serve().
    stop.send(true).unwrap();
    timeout(WAIT, task).await.expect("serve returns").unwrap();
    assert!(a.next().await.is_none());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "listener closed"
    );
}

/// The pairing error of a pair-setup reply, if any.
fn pairing_error(body: &[u8]) -> Option<u8> {
    Tlv8::decode(body)
        .unwrap()
        .get(TlvType::ERROR)
        .and_then(|e| e.first().copied())
}

#[tokio::test]
async fn idle_unverified_connections_are_closed_and_release_pair_setup() {
    let (_server, port, stop, task) = start_with(ServerOptions {
        unverified_idle_timeout: Duration::from_millis(400),
        ..ServerOptions::default()
    })
    .await;
    // A controller starts pair-setup and goes quiet at M2: another one is told Busy meanwhile.
    let id = ControllerIdentity::generate(&mut rand::rng());
    let mut quiet = Client::connect(port).await;
    let (_, m2) = quiet
        .request(
            "POST",
            "/pair-setup",
            &SetupClient::new(id.clone(), CODE).m1(),
        )
        .await;
    assert_eq!(pairing_error(&m2), None, "M2 with salt");
    let mut other = Client::connect(port).await;
    let (_, busy) = other
        .request(
            "POST",
            "/pair-setup",
            &SetupClient::new(id.clone(), CODE).m1(),
        )
        .await;
    assert_eq!(
        pairing_error(&busy),
        Some(7),
        "Busy while another pair-setup runs"
    );

    // A connection that never sends anything, and the quiet one, are closed by the server.
    let mut silent = Client::connect(port).await;
    assert!(silent.next().await.is_none(), "silent connection closed");
    assert!(
        quiet.next().await.is_none(),
        "quiet pair-setup connection closed"
    );

    // Pair-setup is free again, and a verified session outlives the idle timeout.
    let acc = pair(port, &id, CODE).await;
    let mut verified = verify(port, &id, &acc).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (start_line, _) = verified.request("GET", "/accessories", b"").await;
    assert_eq!(start_line, "HTTP/1.1 200 OK");
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn a_full_server_evicts_idle_unverified_connections_for_a_paired_controller() {
    let (_server, port, stop, task) = start(3).await;
    let admin = ControllerIdentity::generate(&mut rand::rng());
    let acc = pair(port, &admin, CODE).await;

    // An unverified connection that has spoken, then silent ones fill the slots.
    let other = ControllerIdentity::generate(&mut rand::rng());
    let mut setup = Client::connect(port).await;
    let (_, m2) = setup
        .request("POST", "/pair-setup", &SetupClient::new(other, CODE).m1())
        .await;
    assert_eq!(pairing_error(&m2), Some(6), "already paired: Unavailable");
    let mut silent_a = Client::connect(port).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _silent_b = Client::connect(port).await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    // The paired controller still gets in: the longest-idle unverified connection goes.
    let mut admin_session = verify(port, &admin, &acc).await;
    let (start_line, _) = admin_session.request("GET", "/accessories", b"").await;
    assert_eq!(start_line, "HTTP/1.1 200 OK");
    assert!(
        silent_a.next().await.is_none(),
        "a silent connection made room"
    );

    // Three verified sessions: a further connection is the one refused.
    let mut v2 = verify(port, &admin, &acc).await;
    let mut v3 = verify(port, &admin, &acc).await;
    let mut fourth = Client::connect(port).await;
    assert!(fourth.next().await.is_none(), "full of verified sessions");
    for v in [&mut admin_session, &mut v2, &mut v3] {
        let (start_line, _) = v.request("GET", "/accessories", b"").await;
        assert_eq!(
            start_line, "HTTP/1.1 200 OK",
            "verified sessions are never evicted"
        );
    }
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn eviction_spares_a_pair_setup_in_progress() {
    let (_server, port, stop, task) = start(2).await;
    let id = ControllerIdentity::generate(&mut rand::rng());
    let mut rng = rand::rng();
    let mut client = SetupClient::new(id.clone(), CODE);
    let mut setup = Client::connect(port).await;
    let (_, m2) = setup.request("POST", "/pair-setup", &client.m1()).await;
    assert_eq!(pairing_error(&m2), None);
    let mut silent = Client::connect(port).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Full: the newcomer evicts the silent connection, not the pair-setup.
    let _newcomer = Client::connect(port).await;
    assert!(silent.next().await.is_none(), "the silent connection went");
    let m3 = client.handle_m2(&m2, &mut rng).unwrap();
    let (_, m4) = setup.request("POST", "/pair-setup", &m3).await;
    let m5 = client.handle_m4(&m4).unwrap();
    let (_, m6) = setup.request("POST", "/pair-setup", &m5).await;
    assert!(client.handle_m6(&m6).is_ok(), "pair-setup completed");
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// A raw TCP connection to the server from the loopback address `from`.
async fn connect_from(from: [u8; 4], port: u16) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

/// Whether the server answers an unauthenticated GET on `s` (470, as HAP says) rather than
/// closing it.
async fn served(s: &mut TcpStream) -> bool {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    if s.write_all(b"GET /accessories HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 64];
    match timeout(Duration::from_secs(2), s.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => buf[..n].starts_with(b"HTTP/1.1 470"),
        _ => false,
    }
}

#[tokio::test]
async fn one_host_gets_its_share_of_the_connections_and_another_host_is_still_served() {
    let (_server, port, _stop, _task) = start_with(ServerOptions {
        max_connections_per_host: 3,
        ..ServerOptions::default()
    })
    .await;
    let mut mine = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from([127, 0, 0, 1], port).await;
        assert!(
            served(&mut s).await,
            "a connection within the share was refused"
        );
        mine.push(s);
    }
    // The fourth from the same host is closed at once.
    let mut fourth = connect_from([127, 0, 0, 1], port).await;
    assert!(!served(&mut fourth).await, "a host got more than its share");
    // Another host is served, though the first holds its whole share.
    let mut other = connect_from([127, 0, 0, 2], port).await;
    assert!(served(&mut other).await, "another host was refused");
    // A closed connection gives the share back.
    drop(mine.pop());
    let t = Instant::now();
    loop {
        let mut again = connect_from([127, 0, 0, 1], port).await;
        if served(&mut again).await {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the share was not given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
