//! Learning that a HAP session is gone without polling: `Core::on_close` hooks (in memory) and
//! `Server::closed` (over loopback TCP). They must fire when the socket closes, when the
//! controller's pairing is removed (§1.8), when serving stops, and at once for a connection
//! that is already gone.
#![allow(clippy::indexing_slicing)] // tests: a panic is a failed check

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use common::{Client, WAIT, pair, verify};
use hap_server::core::{CATEGORY_IP_CAMERA, CloseHook};
use hap_server::http::Request;
use hap_server::pairing::SharedSecret;
use hap_server::pairing::controller::{AccessoryPairing, ControllerIdentity};
use hap_server::setup::SetupCode;
use hap_server::store::MemoryStore;
use hap_server::{
    Accessory, CharId, Characteristic, ConnectionId, Core, CoreConfig, Format, HapType, Perms,
    Server, ServerOptions, Service, Value,
};
use hap_tlv::{Tlv8, TlvType};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::timeout;

const CODE: &str = "203-51-874";
const NAME: HapType = HapType::apple(0x23);

/// The accessory: Name reads through a handler that records which connection asked, so the
/// TCP tests learn the server-side id of their own connection.
fn accessory(last_reader: Arc<Mutex<Option<ConnectionId>>>) -> Accessory {
    Accessory::new(1).service(
        Service::new(HapType::apple(0x3E))
            .characteristic(Characteristic::new(
                HapType::apple(0x14),
                Format::Bool,
                Perms::PW,
            ))
            .characteristic(
                Characteristic::new(NAME, Format::String, Perms::PR).on_read(move |ctx| {
                    *last_reader.lock().unwrap() = Some(ctx.connection_id);
                    Ok(Value::String("Close Test".into()))
                }),
            ),
    )
}

fn core(last_reader: Arc<Mutex<Option<ConnectionId>>>) -> Core {
    Core::open(
        CoreConfig {
            name: "Close Test".into(),
            model: "test".into(),
            category: CATEGORY_IP_CAMERA,
            setup_code: Some(SetupCode::parse(CODE).unwrap()),
            firmware_revision: "1.0.0".into(),
        },
        Arc::new(MemoryStore::new()),
        vec![accessory(last_reader)],
        &mut rand::rng(),
    )
    .unwrap()
}

/// A hook that counts its runs.
fn counting_hook() -> (Arc<AtomicUsize>, CloseHook) {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    (
        runs,
        Box::new(move || {
            r.fetch_add(1, Ordering::SeqCst);
        }),
    )
}

fn runs(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}

/// A controller paired through the application path, and a connection verified as it. The
/// shared secret is arbitrary: these tests never encrypt.
fn paired_session(core: &mut Core, admin: bool) -> (ControllerIdentity, ConnectionId) {
    let id = ControllerIdentity::generate(&mut rand::rng());
    core.add_controller_pairing(&id.pairing_id, id.public_key(), admin)
        .unwrap();
    let conn = core.open_connection();
    let pairing = core.find_pairing(&id.pairing_id).unwrap();
    core.mark_verified(conn, &pairing, SharedSecret::from_bytes([7; 32]));
    (id, conn)
}

fn remove_pairing_request(controller: &ControllerIdentity) -> Request {
    let mut t = Tlv8::new();
    t.push_u8(TlvType::STATE, 1)
        .push_u8(TlvType::METHOD, 4)
        .push(TlvType::IDENTIFIER, controller.pairing_id.as_bytes());
    Request {
        method: "POST".into(),
        path: "/pairings".into(),
        query: None,
        content_type: Some("application/pairing+tlv8".into()),
        body: t.encode(),
    }
}

// ---- Core (sans-IO) ----------------------------------------------------------------------

#[test]
fn hook_runs_once_when_the_connection_closes() {
    let mut core = core(Arc::default());
    let conn = core.open_connection();
    let (count, hook) = counting_hook();
    core.on_close(conn, hook);
    assert_eq!(runs(&count), 0, "open connection: not yet");
    core.close_connection(conn);
    assert_eq!(runs(&count), 1);
    core.close_connection(conn);
    assert_eq!(runs(&count), 1, "a second close does not run it again");
}

#[test]
fn hook_runs_when_the_controllers_pairing_is_removed() {
    let mut core = core(Arc::default());
    let (_admin, a) = paired_session(&mut core, true);
    let (user, u) = paired_session(&mut core, false);
    let (a_runs, hook) = counting_hook();
    core.on_close(a, hook);
    let (u_runs, hook) = counting_hook();
    core.on_close(u, hook);

    core.remove_controller_pairing(&user.pairing_id).unwrap();
    assert_eq!(runs(&u_runs), 1, "removed controller's session: hook ran");
    assert!(core.close_requested(u));
    assert_eq!(runs(&a_runs), 0, "the admin's session stays open");
    assert!(!core.close_requested(a));

    // The driver closes the socket afterwards: the hook does not run twice.
    core.close_connection(u);
    assert_eq!(runs(&u_runs), 1);
}

#[test]
fn requester_removing_its_own_pairing_runs_its_hook_and_closes() {
    let mut core = core(Arc::default());
    let (_keeper, _k) = paired_session(&mut core, true);
    let (admin, a) = paired_session(&mut core, true);
    let (count, hook) = counting_hook();
    core.on_close(a, hook);
    let (_response, close) =
        core.handle_request(a, &remove_pairing_request(&admin), Instant::now());
    assert!(close, "the requester closes after its reply (§1.8)");
    assert_eq!(runs(&count), 1);
    assert!(core.close_requested(a));
}

#[test]
fn downgrading_the_last_admin_unpairs_and_runs_every_hook() {
    let mut core = core(Arc::default());
    let (admin, a) = paired_session(&mut core, true);
    let (_user, u) = paired_session(&mut core, false);
    let (a_runs, hook) = counting_hook();
    core.on_close(a, hook);
    let (u_runs, hook) = counting_hook();
    core.on_close(u, hook);

    // Add Pairing with the admin's own id and key, permissions 0: no admin is left, so every
    // pairing goes (ADK) and no session may stay.
    core.add_controller_pairing(&admin.pairing_id, admin.public_key(), false)
        .unwrap();
    assert!(!core.is_paired());
    assert_eq!((runs(&a_runs), runs(&u_runs)), (1, 1));
    assert!(core.close_requested(a) && core.close_requested(u));
}

#[test]
fn hook_on_a_gone_or_closing_connection_runs_at_once() {
    let mut core = core(Arc::default());
    let (count, hook) = counting_hook();
    core.on_close(9_999, hook);
    assert_eq!(runs(&count), 1, "unknown connection");

    let conn = core.open_connection();
    core.close_connection(conn);
    let (count, hook) = counting_hook();
    core.on_close(conn, hook);
    assert_eq!(runs(&count), 1, "closed connection");

    let (_admin, _a) = paired_session(&mut core, true);
    let (user, u) = paired_session(&mut core, false);
    core.remove_controller_pairing(&user.pairing_id).unwrap();
    let (count, hook) = counting_hook();
    core.on_close(u, hook);
    assert_eq!(runs(&count), 1, "connection asked to close");
}

// ---- Server (tokio driver, loopback TCP) --------------------------------------------------

/// A verified session and the server's id for it (learnt through the Name read handler).
async fn session(
    r: &Running,
    id: &ControllerIdentity,
    acc: &AccessoryPairing,
) -> (Client, ConnectionId) {
    let mut c = verify(r.port, id, acc).await;
    *r.last_reader.lock().unwrap() = None;
    let path = format!("/characteristics?id=1.{}", r.name.iid);
    let (start_line, _) = c.request("GET", &path, b"").await;
    assert_eq!(start_line, "HTTP/1.1 200 OK");
    let conn = r
        .last_reader
        .lock()
        .unwrap()
        .expect("read handler saw the session");
    (c, conn)
}

struct Running {
    server: Server,
    port: u16,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    last_reader: Arc<Mutex<Option<ConnectionId>>>,
    name: CharId,
}

async fn start() -> Running {
    let last_reader = Arc::new(Mutex::new(None));
    let server = Server::new(core(last_reader.clone()));
    let name = server
        .lock()
        .database()
        .find(1, HapType::apple(0x3E), "", NAME)
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, rx) = watch::channel(false);
    let s = server.clone();
    let task = tokio::spawn(async move {
        s.serve(listener, ServerOptions::default(), rx)
            .await
            .unwrap()
    });
    Running {
        server,
        port,
        stop,
        task,
        last_reader,
        name,
    }
}

/// Polls `fut` once: whether it completed without waiting.
fn ready_now(fut: impl Future<Output = ()>) -> bool {
    let fut = pin!(fut);
    fut.poll(&mut Context::from_waker(Waker::noop())).is_ready()
}

/// Asserts `fut` does not complete within a short wait.
async fn assert_pending(fut: impl Future<Output = ()>, what: &str) {
    assert!(
        timeout(Duration::from_millis(200), fut).await.is_err(),
        "{what}: completed while the connection is open"
    );
}

#[tokio::test]
async fn closed_completes_when_the_socket_closes_and_at_once_afterwards() {
    let r = start().await;
    let admin = ControllerIdentity::generate(&mut rand::rng());
    let acc = pair(r.port, &admin, CODE).await;
    let (client, id) = session(&r, &admin, &acc).await;

    let closed = r.server.closed(id);
    let second = r.server.closed(id);
    assert_pending(r.server.closed(id), "open session").await;
    drop(client);
    timeout(WAIT, closed)
        .await
        .expect("closed() did not complete after the socket closed");
    timeout(WAIT, second)
        .await
        .expect("every waiter on the connection completes");

    // Already closed, or never a connection of this server: ready on the first poll.
    assert!(ready_now(r.server.closed(id)), "closed connection");
    assert!(
        ready_now(r.server.closed(u64::MAX - 1)),
        "unknown connection"
    );

    r.stop.send(true).unwrap();
    timeout(WAIT, r.task).await.unwrap().unwrap();
}

#[tokio::test]
async fn closed_completes_when_the_controllers_pairing_is_removed() {
    let r = start().await;
    let admin = ControllerIdentity::generate(&mut rand::rng());
    let acc = pair(r.port, &admin, CODE).await;
    let (mut a, a_id) = session(&r, &admin, &acc).await;

    let user = ControllerIdentity::generate(&mut rand::rng());
    let mut add = Tlv8::new();
    add.push_u8(TlvType::STATE, 1)
        .push_u8(TlvType::METHOD, 3)
        .push(TlvType::IDENTIFIER, user.pairing_id.as_bytes())
        .push(TlvType::PUBLIC_KEY, &user.public_key())
        .push_u8(TlvType::PERMISSIONS, 0);
    let (_, reply) = a.request("POST", "/pairings", &add.encode()).await;
    assert_eq!(Tlv8::decode(&reply).unwrap().get(TlvType::ERROR), None);
    let (mut u, u_id) = session(&r, &user, &acc).await;
    assert_ne!(a_id, u_id);

    let user_closed = r.server.closed(u_id);
    let admin_closed = r.server.closed(a_id);
    let (_, reply) = a
        .request("POST", "/pairings", &remove_pairing_request(&user).body)
        .await;
    assert_eq!(Tlv8::decode(&reply).unwrap().get(TlvType::ERROR), None);
    timeout(WAIT, user_closed)
        .await
        .expect("closed() did not complete after the pairing was removed");
    assert!(
        u.next().await.is_none(),
        "the removed controller's socket closes"
    );
    assert_pending(admin_closed, "the admin's session").await;

    r.stop.send(true).unwrap();
    timeout(WAIT, r.task).await.unwrap().unwrap();
}

#[tokio::test]
async fn closed_completes_on_shutdown_and_when_serving_is_cancelled() {
    let r = start().await;
    let admin = ControllerIdentity::generate(&mut rand::rng());
    let acc = pair(r.port, &admin, CODE).await;
    let (_a, a_id) = session(&r, &admin, &acc).await;
    let closed = r.server.closed(a_id);
    r.stop.send(true).unwrap();
    timeout(WAIT, closed)
        .await
        .expect("closed() did not complete on shutdown");
    timeout(WAIT, r.task).await.unwrap().unwrap();

    // Aborting `serve` drops the connection tasks: their sessions still close.
    let r = start().await;
    let acc = pair(r.port, &admin, CODE).await;
    let (_b, b_id) = session(&r, &admin, &acc).await;
    let closed = r.server.closed(b_id);
    r.task.abort();
    timeout(WAIT, closed)
        .await
        .expect("closed() did not complete after serve was cancelled");
    assert!(r.server.lock().close_requested(b_id));
    assert_eq!(r.server.lock().connection_count(), 0);
}
