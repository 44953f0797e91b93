//! The HDS listener and the recording flow (protocol-notes §4.1, §4.4, §4.9, §5.3, §5.4).
//!
//! One listener per camera, on the HAP bind address and an ephemeral port, open for the
//! camera's lifetime (HAP-NodeJS closes it when idle; keeping it is simpler and the port is
//! re-sent in every SetupDataStreamTransport response). Each TCP connection gets a task that
//! identifies it against the prepared sessions, answers hello, and serves `dataSend` streams
//! from a prebuffer ring reader. Every resource of a stream lives in [`ActiveStream`], so any
//! exit path (close, ack, socket loss, HAP session closed, shutdown) releases it by drop.
//!
//! A connection ends with the HAP session that prepared it ([`hap_server::Server::closed`]:
//! socket closed, controller removed), and TCP keep-alive ends it when the hub vanished
//! without closing anything (power cut, Wi-Fi drop), so the camera's one recording slot is
//! never held by a dead hub.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hap_server::ConnectionId;
use hds::{Connection, Event, Reason, SegmentKind};
use recorder::{ClipFragment, ReaderError, ReaderOptions, RingReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::{Shared, lock, now, supported};

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

/// Completes when the HAP session that prepared this HDS connection is gone.
type HapClosed = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Waits for the HAP session's end; never completes before the connection is identified.
async fn hap_session_closed(closed: &mut Option<HapClosed>) {
    match closed {
        Some(f) => f.as_mut().await,
        None => std::future::pending().await,
    }
}

struct TaskGuard(Arc<Shared>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.hds_tasks.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Holds the camera's one-recording slot.
struct RecordingSlot(Arc<Shared>);

impl Drop for RecordingSlot {
    fn drop(&mut self) {
        self.0.recording.store(false, Ordering::SeqCst);
    }
}

struct ActiveStream {
    id: i64,
    reader: RingReader,
    /// Send the next fragment with endOfStream (motion ended).
    end_after_next: bool,
    /// endOfStream was queued; wait for the hub's ack/close (hds handles the 12 s timeout).
    ended: bool,
    deadline: Instant,
    _slot: RecordingSlot,
}

/// Accepts HDS connections until shutdown.
pub(super) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            acc = listener.accept() => match acc {
                Ok((stream, peer)) => {
                    debug!(%peer, "HDS connection");
                    shared.hds_tasks.fetch_add(1, Ordering::SeqCst);
                    let guard = TaskGuard(shared.clone());
                    tokio::spawn(connection_task(stream, guard, shutdown.clone()));
                }
                Err(e) => warn!(error = %e, "HDS accept failed"),
            },
            _ = shutdown.changed() => return,
        }
    }
}

async fn next_fragment(active: &mut Option<ActiveStream>) -> Result<ClipFragment, ReaderError> {
    match active {
        Some(a) if !a.ended => poll_fn(|cx| a.reader.poll_next(cx)).await,
        _ => std::future::pending().await,
    }
}

async fn motion_changed(rx: &mut Option<watch::Receiver<motion::MotionStatus>>) -> bool {
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

async fn connection_task(
    mut stream: TcpStream,
    guard: TaskGuard,
    mut shutdown: watch::Receiver<bool>,
) {
    let shared = guard.0.clone();
    let _ = stream.set_nodelay(true);
    if let Err(e) = set_keepalive(&stream) {
        debug!(error = %e, "HDS keep-alive not set");
    }
    let mut conn = Connection::accept(now());
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = Vec::new();
    let mut hap_conn: Option<ConnectionId> = None;
    let mut hap_closed: Option<HapClosed> = None;
    let mut active: Option<ActiveStream> = None;
    let mut pending: Option<PendingOpen> = None;
    let mut changes = shared.changes.subscribe();
    let mut motion_rx = shared.motion.subscribe(&shared.options.name).ok();
    loop {
        conn.set_camera_state(shared.hds_state());
        while let Some(ev) = conn.poll_event() {
            handle_event(
                &shared,
                &mut conn,
                &mut active,
                &mut pending,
                &motion_rx,
                ev,
            );
        }
        while conn.poll_transmit(&mut out) {
            if out.len() >= 1 << 20 && stream.write_all(&out).await.is_err() {
                conn.close();
            }
            if out.len() >= 1 << 20 {
                out.clear();
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                conn.close();
            }
            out.clear();
        }
        if conn.is_closed() {
            while let Some(ev) = conn.poll_event() {
                handle_event(
                    &shared,
                    &mut conn,
                    &mut active,
                    &mut pending,
                    &motion_rx,
                    ev,
                );
            }
            break;
        }
        let timer = [
            conn.poll_timeout(),
            active.as_ref().filter(|a| !a.ended).map(|a| a.deadline),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or_else(|| now() + Duration::from_secs(3600));
        tokio::select! {
            n = stream.read_buf(&mut buf) => {
                match n {
                    Ok(0) | Err(_) => { debug!("HDS socket closed"); conn.close(); }
                    Ok(_) => {
                        let t = now();
                        if hap_conn.is_none() {
                            let r = {
                                let mut prepared = lock(&shared.prepared);
                                conn.identify(t, &mut buf, &mut prepared)
                            };
                            match r {
                                Ok(Some(tag)) => {
                                    hap_conn = Some(tag);
                                    // No server: the accessory is shutting down; treat the
                                    // session as gone.
                                    hap_closed = Some(match shared.server.get() {
                                        Some(server) => Box::pin(server.closed(tag)),
                                        None => Box::pin(std::future::ready(())),
                                    });
                                }
                                Ok(None) => {}
                                Err(e) => debug!(error = %e, "HDS identification failed"),
                            }
                        }
                        if hap_conn.is_some() && !conn.is_closed() {
                            conn.set_camera_state(shared.hds_state());
                            if let Err(e) = conn.handle_incoming(t, &mut buf) {
                                debug!(error = %e, "HDS connection error");
                            }
                        }
                    }
                }
            }
            frag = next_fragment(&mut active) => {
                send_fragment(&mut conn, &mut active, frag);
            }
            _ = changes.changed() => {
                let camera_active = shared.state().camera_active;
                if let Some(a) = &active && !camera_active {
                    info!(stream_id = a.id, "HomeKitCameraActive = 0: closing the recording (reason 1)");
                    let _ = conn.close_stream(a.id, Reason::NOT_ALLOWED);
                }
            }
            detected = motion_changed(&mut motion_rx) => {
                if let Some(a) = &mut active {
                    a.end_after_next = !detected;
                }
            }
            _ = tokio::time::sleep_until(timer.into()) => {
                let t = now();
                conn.handle_timeout(t);
                if let Some(a) = &active && !a.ended && t >= a.deadline {
                    info!(stream_id = a.id, "max_recording_s reached: closing (reason 3)");
                    let _ = conn.close_stream(a.id, Reason::CANCELLED);
                }
            }
            () = retry_pause(pending.is_some()) => {
                if let Some(p) = pending.take() {
                    let detected = motion_rx.as_ref().is_some_and(|r| r.borrow().detected);
                    let give_up = now() >= p.give_up_at;
                    let (stream_id, give_up_at) = (p.stream_id, p.give_up_at);
                    match open_stream(&shared, &mut conn, stream_id, detected, give_up, Some(p.slot)) {
                        Ok(a) => active = a,
                        Err(NotReady(slot)) => pending = Some(PendingOpen { stream_id, give_up_at, slot }),
                    }
                }
            }
            () = hap_session_closed(&mut hap_closed) => {
                debug!(?hap_conn, "HAP session closed: closing its HDS connection");
                // Completed futures must not be polled again.
                hap_closed = None;
                conn.close();
            }
            _ = shutdown.changed() => conn.close(),
        }
    }
    drop(active);
    drop(guard);
}

fn send_fragment(
    conn: &mut Connection,
    active: &mut Option<ActiveStream>,
    frag: Result<ClipFragment, ReaderError>,
) {
    let Some(a) = active.as_mut() else { return };
    match frag {
        Ok(f) => {
            let eos = a.end_after_next;
            match conn.send_segment(now(), a.id, SegmentKind::MediaFragment, f.to_bytes(), eos) {
                Ok(()) => a.ended = eos,
                Err(e) => {
                    debug!(error = %e, "fragment not sent; stream gone");
                    *active = None;
                }
            }
        }
        Err(e) => {
            warn!(error = %e, "prebuffer reader ended: closing the recording (reason 5)");
            let _ = conn.close_stream(a.id, Reason::UNEXPECTED_FAILURE);
        }
    }
}

/// How long a `dataSend/open` waits for the camera's first init segment (a source still
/// starting: the fragmenter emits it with the first fragment, a few seconds in) before it is
/// closed with reason 5: one 4 s fragment plus margin, under a hub's stall timeout. A hub
/// that opens right after the bridge starts still gets its recording.
const INIT_WAIT: Duration = Duration::from_secs(6);
/// Retry period of a waiting open.
const INIT_RETRY: Duration = Duration::from_millis(100);

/// A `dataSend/open` waiting for the first init segment; it holds the camera's recording
/// slot, so another hub's open meanwhile is busy.
struct PendingOpen {
    stream_id: i64,
    give_up_at: Instant,
    slot: RecordingSlot,
}

/// The ring has no init segment yet; gives the recording slot back to the caller.
struct NotReady(RecordingSlot);

async fn retry_pause(waiting: bool) {
    if waiting {
        tokio::time::sleep(INIT_RETRY).await;
    } else {
        std::future::pending::<()>().await;
    }
}

fn handle_event(
    shared: &Arc<Shared>,
    conn: &mut Connection,
    active: &mut Option<ActiveStream>,
    pending: &mut Option<PendingOpen>,
    motion_rx: &Option<watch::Receiver<motion::MotionStatus>>,
    ev: Event,
) {
    match ev {
        Event::HelloDone => debug!("HDS hello done"),
        Event::StreamOpened { stream_id } => {
            let detected = motion_rx.as_ref().is_some_and(|r| r.borrow().detected);
            match open_stream(shared, conn, stream_id, detected, false, None) {
                Ok(a) => *active = a,
                Err(NotReady(slot)) => {
                    info!(stream_id, "no init segment yet: waiting for the source");
                    *pending = Some(PendingOpen {
                        stream_id,
                        give_up_at: now() + INIT_WAIT,
                        slot,
                    });
                }
            }
        }
        Event::OpenRejected { stream_id, reason } => {
            info!(stream_id, ?reason, "dataSend/open refused");
        }
        Event::AckReceived { stream_id } | Event::StreamClosed { stream_id, .. }
            if active.as_ref().is_some_and(|a| a.id == stream_id) =>
        {
            info!(stream_id, "recording stream finished");
            *active = None;
        }
        Event::StreamClosed { stream_id, .. }
            if pending.as_ref().is_some_and(|p| p.stream_id == stream_id) =>
        {
            *pending = None;
        }
        Event::ConnectionClosed { why } => {
            debug!(?why, "HDS connection closed");
            *active = None;
            *pending = None;
        }
        _ => {}
    }
}

/// Starts a stream: one per camera (else busy), init segment then the prebuffer at once.
/// Without an init segment yet: [`NotReady`], unless `give_up` (then reason 5).
fn open_stream(
    shared: &Arc<Shared>,
    conn: &mut Connection,
    stream_id: i64,
    motion: bool,
    give_up: bool,
    slot: Option<RecordingSlot>,
) -> Result<Option<ActiveStream>, NotReady> {
    let slot = match slot {
        Some(s) => s,
        None => {
            if shared
                .recording
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                let _ = conn.close_stream(stream_id, Reason::BUSY);
                return Ok(None);
            }
            RecordingSlot(shared.clone())
        }
    };
    let (selected, audio_active) = {
        let state = shared.state();
        (state.selected_configuration(), state.recording_audio_active)
    };
    let Some(sel) = selected else {
        let _ = conn.close_stream(stream_id, Reason::INVALID_CONFIGURATION);
        return Ok(None);
    };
    let facts = lock(&shared.facts).clone();
    let diffs = supported::differences(&sel, facts.as_ref());
    let prebuffer = Duration::from_millis(u64::from(sel.prebuffer_ms));
    // Audio only when the camera is configured for it, the hub wants it (RecordingAudioActive,
    // protocol-notes §6.1) and selected it (209 item 3); the reader adds "the source has AAC".
    let audio = ReaderOptions {
        audio: shared.options.audio && audio_active && sel.audio.is_some(),
    };
    let Some(mut reader) = shared.ring.reader_with(prebuffer, audio) else {
        if !give_up {
            return Err(NotReady(slot));
        }
        warn!(
            stream_id,
            "no init segment yet: closing the recording (reason 5)"
        );
        let _ = conn.close_stream(stream_id, Reason::UNEXPECTED_FAILURE);
        return Ok(None);
    };
    debug!(
        stream_id,
        audio = reader.has_audio(),
        audio_configured = shared.options.audio,
        recording_audio_active = audio_active,
        audio_selected = sel.audio.is_some(),
        "recording audio decision (the source's AAC is required too)"
    );
    info!(
        stream_id,
        prebuffer_ms = sel.prebuffer_ms,
        audio = reader.has_audio(),
        ?diffs,
        "recording stream opened"
    );
    if conn
        .send_segment(
            now(),
            stream_id,
            SegmentKind::MediaInitialization,
            reader.init_segment(),
            false,
        )
        .is_err()
    {
        return Ok(None);
    }
    let mut a = ActiveStream {
        id: stream_id,
        reader: {
            // Placeholder replaced below; keeps `reader` usable for the backlog first.
            let mut backlog = Vec::new();
            while let Ok(Some(f)) = reader.try_next() {
                backlog.push(f);
            }
            for f in backlog {
                if conn
                    .send_segment(
                        now(),
                        stream_id,
                        SegmentKind::MediaFragment,
                        f.to_bytes(),
                        false,
                    )
                    .is_err()
                {
                    return Ok(None);
                }
            }
            reader
        },
        end_after_next: !motion,
        ended: false,
        deadline: now() + Duration::from_secs(u64::from(shared.options.max_recording_s.max(1))),
        _slot: slot,
    };
    a.ended = false;
    Ok(Some(a))
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
