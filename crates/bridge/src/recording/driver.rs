//! The tokio driver of [`RecordingSession`]s: one HDS listener per camera, one task per TCP
//! connection. It moves bytes between the socket and the session, feeds it the camera's
//! conditions, motion, ring fragments and `now`, and sleeps until the session's deadline. All
//! decisions are the session's.
//!
//! A connection ends with the HAP session that prepared it ([`hap_server::Server::closed`]:
//! socket closed, controller removed), and TCP keep-alive ends it when the hub vanished
//! without closing anything (power cut, Wi-Fi drop), so the camera's one recording slot is
//! never held by a dead hub.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hap_server::{ConnectionId, Server};
use hds::Connection;
use motion::{MotionHub, MotionStatus};
use recorder::{ClipFragment, PrebufferRing, ReaderError, RingReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::session::{Conditions, LocalClose, RecordingEvent, RecordingSession, SessionOptions};
use super::transport::DataStreamTransport;

/// Keep-alive on HDS sockets: after this much silence the kernel probes the hub...
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// ...every this often...
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// ...and closes the socket after this many unanswered probes: a vanished hub is noticed
/// about 60 s after its last packet (keep-alive is off by default, so never; the kernel's
/// default timings would take 2 h 11 min).
const KEEPALIVE_RETRIES: u32 = 3;
/// Data left unacknowledged this long closes the socket (`TCP_USER_TIMEOUT`): keep-alive only
/// probes an idle socket, and a recording in flight is not idle. Without it a hub that
/// vanishes mid-recording is noticed after ~15 min of retransmissions (`tcp_retries2`).
#[cfg(any(target_os = "linux", target_os = "android"))]
const UNACKED_TIMEOUT: Duration = Duration::from_secs(60);
/// Encrypted frames are written in batches of at least this many bytes.
const WRITE_BATCH_BYTES: usize = 1 << 20;
/// Most HDS connections one camera serves at once (a hub keeps one; a few more cover
/// reconnects). Further connections are closed at once.
pub const MAX_CONNECTIONS: usize = 8;

/// Applies the keep-alive settings above to an accepted HDS socket.
fn set_keepalive(stream: &TcpStream) -> std::io::Result<()> {
    let sock = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    sock.set_tcp_keepalive(&keepalive)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    sock.set_tcp_user_timeout(Some(UNACKED_TIMEOUT))?;
    Ok(())
}

/// Reports a camera's recording events (logs, history); called from the connection tasks.
pub type EventSink = Arc<dyn Fn(&RecordingEvent) + Send + Sync>;

/// What one camera's HDS connections need.
#[derive(Clone)]
pub struct DriverContext {
    /// The camera's name (logs, the motion hub key).
    pub camera: String,
    /// Prepared sessions, slot and connection count.
    pub transport: Arc<DataStreamTransport>,
    /// The camera's prebuffer ring.
    pub ring: PrebufferRing,
    /// Fixed settings.
    pub options: SessionOptions,
    /// The camera's current conditions; every change is applied to running sessions.
    pub conditions: watch::Receiver<Conditions>,
    /// Motion, by camera name.
    pub motion: MotionHub,
    /// The HAP server the camera is reached through (to learn when a HAP session closes).
    pub server: Server,
    /// Where events go besides the log.
    pub events: Option<EventSink>,
}

/// Accepts HDS connections until shutdown.
pub async fn accept_loop(
    listener: TcpListener,
    ctx: DriverContext,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut accept_errors = hap_server::AcceptBackoff::default();
    let mut refusals = hap_server::RateLimited::default();
    loop {
        tokio::select! {
            acc = listener.accept() => match acc {
                Ok((stream, peer)) => {
                    accept_errors.succeeded();
                    if ctx.transport.connections() >= MAX_CONNECTIONS {
                        if let Some(suppressed) = refusals.allow(now()) {
                            warn!(camera = %ctx.camera, %peer, suppressed, "too many HDS connections: closing new ones");
                        }
                        continue;
                    }
                    debug!(camera = %ctx.camera, %peer, "HDS connection");
                    tokio::spawn(connection_task(stream, ctx.clone(), shutdown.clone()));
                }
                Err(e) => tokio::time::sleep(accept_errors.failed("HDS", &e)).await,
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Completes when the HAP session that prepared this HDS connection is gone.
type HapClosed = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Waits for the HAP session's end; never completes before the connection is identified.
async fn hap_session_closed(closed: &mut Option<HapClosed>) {
    match closed {
        Some(f) => f.as_mut().await,
        None => std::future::pending().await,
    }
}

async fn next_fragment(reader: Option<&mut RingReader>) -> Result<ClipFragment, ReaderError> {
    match reader {
        Some(r) => poll_fn(|cx| r.poll_next(cx)).await,
        None => std::future::pending().await,
    }
}

async fn motion_changed(rx: &mut Option<watch::Receiver<MotionStatus>>) -> bool {
    match rx {
        Some(r) => {
            if r.changed().await.is_err() {
                *rx = None;
                return std::future::pending().await;
            }
            r.borrow_and_update().detected
        }
        None => std::future::pending().await,
    }
}

async fn conditions_changed(rx: &mut watch::Receiver<Conditions>) -> Conditions {
    match rx.changed().await {
        Ok(()) => *rx.borrow_and_update(),
        // The camera is gone; shutdown follows.
        Err(_) => std::future::pending().await,
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn log_event(camera: &str, ev: &RecordingEvent) {
    match ev {
        RecordingEvent::Opened {
            stream_id,
            prebuffer_ms,
            prebuffer_fragments,
            audio,
        } => info!(
            camera,
            stream_id, prebuffer_ms, prebuffer_fragments, audio, "recording stream opened"
        ),
        RecordingEvent::WaitingForInit { stream_id } => {
            info!(
                camera,
                stream_id, "no init segment yet: waiting for the source"
            );
        }
        RecordingEvent::Refused { stream_id, reason } => {
            info!(camera, stream_id, ?reason, "dataSend/open refused");
        }
        RecordingEvent::Ended {
            stream_id,
            why,
            fragments,
            bytes,
        } => info!(
            camera,
            stream_id,
            ?why,
            fragments,
            bytes,
            "recording stream ended"
        ),
        RecordingEvent::ConnectionClosed(why) => debug!(camera, ?why, "HDS connection closed"),
    }
}

async fn connection_task(
    mut stream: TcpStream,
    mut ctx: DriverContext,
    mut shutdown: watch::Receiver<bool>,
) {
    let _counted = ctx.transport.count_connection();
    let _ = stream.set_nodelay(true);
    if let Err(e) = set_keepalive(&stream) {
        debug!(error = %e, "HDS keep-alive not set");
    }
    let mut session = RecordingSession::new(
        Connection::accept(now()),
        ctx.ring.clone(),
        ctx.transport.slot().clone(),
        ctx.options,
    );
    session.set_conditions(now(), *ctx.conditions.borrow_and_update());
    let mut motion_rx = ctx.motion.subscribe(&ctx.camera).ok();
    if let Some(rx) = &mut motion_rx {
        session.set_motion(rx.borrow_and_update().detected);
    }
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = Vec::new();
    let mut hap_conn: Option<ConnectionId> = None;
    let mut hap_closed: Option<HapClosed> = None;
    loop {
        let mut write_failed = false;
        while session.poll_transmit(&mut out) {
            if out.len() >= WRITE_BATCH_BYTES {
                write_failed |= stream.write_all(&out).await.is_err();
                out.clear();
            }
        }
        if !out.is_empty() {
            write_failed |= stream.write_all(&out).await.is_err();
            out.clear();
        }
        if write_failed {
            session.close(now(), LocalClose::SocketClosed);
        }
        while let Some(ev) = session.poll_event() {
            log_event(&ctx.camera, &ev);
            if let Some(sink) = &ctx.events {
                sink(&ev);
            }
        }
        if session.is_closed() {
            break;
        }
        let timer = session
            .poll_timeout()
            .unwrap_or_else(|| now() + Duration::from_secs(3600));
        tokio::select! {
            n = stream.read_buf(&mut buf) => match n {
                Ok(0) | Err(_) => session.close(now(), LocalClose::SocketClosed),
                Ok(_) if hap_conn.is_none() => {
                    let r = {
                        let mut prepared = ctx.transport.prepared();
                        session.identify(now(), &mut buf, &mut prepared)
                    };
                    match r {
                        Ok(Some(tag)) => {
                            hap_conn = Some(tag);
                            hap_closed = Some(Box::pin(ctx.server.closed(tag)));
                            if !session.is_closed()
                                && let Err(e) = session.handle_incoming(now(), &mut buf) {
                                debug!(error = %e, "HDS connection error");
                            }
                        }
                        Ok(None) => {}
                        Err(e) => debug!(error = %e, "HDS identification failed"),
                    }
                }
                Ok(_) => {
                    if let Err(e) = session.handle_incoming(now(), &mut buf) {
                        debug!(error = %e, "HDS connection error");
                    }
                }
            },
            frag = next_fragment(session.fragment_reader()) => session.handle_fragment(now(), frag),
            c = conditions_changed(&mut ctx.conditions) => session.set_conditions(now(), c),
            detected = motion_changed(&mut motion_rx) => session.set_motion(detected),
            _ = tokio::time::sleep_until(timer.into()) => session.handle_timeout(now()),
            () = hap_session_closed(&mut hap_closed) => {
                debug!(?hap_conn, "HAP session closed: closing its HDS connection");
                // A completed future must not be polled again.
                hap_closed = None;
                session.close(now(), LocalClose::HapSessionClosed);
            }
            _ = shutdown.changed() => session.close(now(), LocalClose::Shutdown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel reports back what `set_keepalive` asked for on a real loopback socket.
    #[tokio::test]
    async fn accepted_sockets_get_keepalive_and_user_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let sock = socket2::SockRef::from(&stream);
        assert!(!sock.keepalive().unwrap(), "off before");
        set_keepalive(&stream).unwrap();
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(sock.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), KEEPALIVE_RETRIES);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        assert_eq!(sock.tcp_user_timeout().unwrap(), Some(UNACKED_TIMEOUT));
    }
}
