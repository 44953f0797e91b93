//! The tokio side of live view: a camera's [`LiveView`] (its feed, its RTP services and the
//! task that starts streams) and one task per stream that owns the UDP socket and drives a
//! [`LiveSession`]. Everything the stream decides is in the session; this file only moves
//! datagrams and time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use hap_server::Server;
use recorder::{LiveFeed, LiveReader, LiveUnit, ReaderError};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::audio::{AudioEvent, AudioSession};
use super::opus_feed::{OpusFeed, OpusSubscription};
use super::service::{StartOrder, StreamService};
use super::session::{LiveEnd, LiveEvent, LiveSession};
use super::transcode::OpusTarget;

/// How long a START waits for the camera's first IDR (a source still connecting).
pub const FIRST_IDR_WAIT: Duration = Duration::from_secs(10);
/// Largest datagram we read from the controller (RTCP is small; anything larger is dropped).
const RECV_BUFFER_BYTES: usize = 2048;
/// Consecutive send errors after which the stream ends (the controller's network is gone).
const MAX_SEND_ERRORS: u32 = 50;

/// Called when a service's StreamingStatus may have changed (the camera re-sends 120).
pub type StatusHook = Arc<dyn Fn() + Send + Sync>;

/// One live-view stream as it ended (or failed to start), for the camera's history.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRecord {
    /// Where the video went (the viewer's address).
    pub viewer: std::net::SocketAddr,
    /// Size asked for: width, height, fps.
    pub requested: Option<(u16, u16, u8)>,
    /// Served from the `live_source` sub-stream.
    pub sub_stream: bool,
    /// When the START came.
    pub started: std::time::SystemTime,
    /// START → end.
    pub duration: Duration,
    /// START → first packet, when one was sent.
    pub first_frame: Option<Duration>,
    /// RTP packets sent.
    pub packets: u64,
    /// Datagram bytes sent.
    pub bytes: u64,
    /// Why it ended.
    pub end: LiveEnd,
    /// It never started (no keyframe, socket failure).
    pub failed_to_start: bool,
    /// What became of the audio, in words ("Opus 16 kHz, 20 ms: 1500 packets", or why none).
    pub audio: String,
}

/// Told of every [`LiveRecord`].
pub type SessionHook = Arc<dyn Fn(LiveRecord) + Send + Sync>;

/// A camera's live view: the feed every viewer reads, its RTP services, and where 117 START
/// hands streams to be run.
pub struct LiveView {
    /// The GOP in progress and the readers (fed by `camera::Feeder`).
    pub feed: LiveFeed,
    /// The camera's `live_source` (its sub-stream), for small or remote requests
    /// ([`StartOrder::wants_sub_stream`]); `None` when not configured.
    pub sub_feed: Option<LiveFeed>,
    /// One per CameraRTPStreamManagement service.
    pub services: Vec<Arc<StreamService>>,
    /// Live audio is on for this camera (`audio = true`); it is sent when the source has it
    /// and the viewer asks for Opus.
    pub audio: bool,
    /// The Microphone service's Mute: while set, viewers get no audio.
    pub muted: Arc<std::sync::atomic::AtomicBool>,
    /// One shared transcoder per target that some viewer is taking (D22).
    opus_feeds: std::sync::Mutex<std::collections::HashMap<OpusTarget, std::sync::Weak<OpusFeed>>>,
    starts: mpsc::UnboundedSender<Request>,
    starts_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Request>>>,
}

/// What the HAP handlers hand to the task of [`LiveView::run`].
enum Request {
    /// 117 START.
    Start(Box<StartOrder>),
    /// A 118 prepared service `service` for HAP connection `connection_id`: free it when that
    /// connection closes before a START (HAP-NodeJS does the same).
    Prepared {
        service: usize,
        connection_id: hap_server::ConnectionId,
    },
}

impl std::fmt::Debug for LiveView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveView")
            .field("services", &self.services.len())
            .field("feed", &self.feed)
            .finish_non_exhaustive()
    }
}

impl LiveView {
    /// A live view with `services`, and a `sub_feed` when the camera has a `live_source`.
    pub fn new(
        feed: LiveFeed,
        sub_feed: Option<LiveFeed>,
        services: Vec<Arc<StreamService>>,
    ) -> Self {
        let (starts, rx) = mpsc::unbounded_channel();
        Self {
            feed,
            sub_feed,
            services,
            audio: true,
            muted: Arc::default(),
            opus_feeds: std::sync::Mutex::default(),
            starts,
            starts_rx: std::sync::Mutex::new(Some(rx)),
        }
    }

    /// Hands a START to the task of [`LiveView::run`].
    pub fn start(&self, order: StartOrder) {
        if self.starts.send(Request::Start(Box::new(order))).is_err() {
            // No task (shutting down): the order and its sockets are dropped.
            debug!("live view is not running");
        }
    }

    /// Tells the task of [`LiveView::run`] that a 118 prepared `service` for `connection_id`.
    pub fn prepared(&self, service: usize, connection_id: hap_server::ConnectionId) {
        let _ = self.starts.send(Request::Prepared {
            service,
            connection_id,
        });
    }

    /// The feed that serves `order`: the sub-stream when the request wants it and the
    /// sub-stream has a keyframe, else the main stream.
    pub fn feed_for(&self, order: &StartOrder) -> (&LiveFeed, bool) {
        match &self.sub_feed {
            Some(sub) if order.wants_sub_stream() && sub.gop_len().0 > 0 => (sub, true),
            _ => (&self.feed, false),
        }
    }

    /// A subscription to the camera's Opus feed for `target`, made on first use and shared by
    /// the viewers that ask for the same; `None` when the feed is closed or the target is not
    /// one HomeKit uses.
    pub fn opus_subscription(&self, target: OpusTarget) -> Option<OpusSubscription> {
        let mut feeds = self
            .opus_feeds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        feeds.retain(|_, f| f.strong_count() > 0);
        if let Some(f) = feeds.get(&target).and_then(std::sync::Weak::upgrade)
            && !f.is_ended()
        {
            return Some(f.subscribe());
        }
        let feed = Arc::new(OpusFeed::new(self.feed.audio_reader()?, target).ok()?);
        feeds.insert(target, Arc::downgrade(&feed));
        Some(feed.subscribe())
    }

    /// Streams running or prepared.
    pub fn viewers(&self) -> usize {
        self.services.iter().filter(|s| s.is_streaming()).count()
    }

    /// Runs the camera's streams until `shutdown`: each START becomes a stream task. Call
    /// once (later calls return at once).
    pub fn run(
        self: &Arc<Self>,
        camera: String,
        server: Server,
        on_status: StatusHook,
        on_session: SessionHook,
        shutdown: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let rx = self
            .starts_rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let view = Arc::clone(self);
        async move {
            let Some(mut rx) = rx else { return };
            let mut shutdown_rx = shutdown.clone();
            let mut tasks = JoinSet::new();
            let mut watchers: JoinSet<(usize, hap_server::ConnectionId)> = JoinSet::new();
            let mut watched = std::collections::HashSet::new();
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    request = rx.recv() => {
                        let order = match request {
                            None => break,
                            Some(Request::Start(order)) => *order,
                            Some(Request::Prepared { service, connection_id }) => {
                                let Some(svc) = view.services.get(service).cloned() else { continue };
                                // One watcher per (service, connection): bounded by the HAP
                                // server's connection cap.
                                if watched.insert((service, connection_id)) {
                                    let closed = server.closed(connection_id);
                                    let hook = on_status.clone();
                                    watchers.spawn(async move {
                                        closed.await;
                                        if svc.connection_closed(connection_id) {
                                            hook();
                                        }
                                        (service, connection_id)
                                    });
                                }
                                continue;
                            }
                        };
                        let Some(service) = view.services.get(order.service).cloned() else { continue };
                        let (feed, sub_stream) = view.feed_for(&order);
                        if order.wants_sub_stream() && view.sub_feed.is_some() && !sub_stream {
                            info!(camera = %camera, requested = ?order.requested, "live_source has no keyframe yet; serving the main stream");
                        }
                        let (audio, audio_note) = match &order.audio {
                            None => (None, "none: the viewer asked for no Opus"),
                            Some(_) if !view.audio => (None, "none: audio = false"),
                            Some(_) if !view.feed.has_audio() => (None, "none: the source has no audio"),
                            Some(a) => match view.opus_subscription(a.target) {
                                Some(s) => (Some(s), ""),
                                None => (None, "none: the audio feed could not start"),
                            },
                        };
                        tasks.spawn(stream_task(StreamContext {
                            camera: camera.clone(),
                            feed: feed.clone(),
                            audio,
                            audio_note,
                            muted: Arc::clone(&view.muted),
                            sub_stream,
                            service,
                            closed: Box::pin(server.closed(order.connection_id)),
                            on_status: on_status.clone(),
                            on_session: on_session.clone(),
                            shutdown: shutdown.clone(),
                            tally: Tally::default(),
                        }, order));
                    }
                    _ = tick.tick() => {
                        let now = tokio::time::Instant::now().into_std();
                        if view.services.iter().any(|s| s.expire(now)) {
                            on_status();
                        }
                    }
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                    Some(done) = watchers.join_next(), if !watchers.is_empty() => {
                        if let Ok(key) = done {
                            watched.remove(&key);
                        }
                    }
                    _ = shutdown_rx.changed() => break,
                }
            }
            for s in &view.services {
                s.stop(LiveEnd::Shutdown);
            }
            watchers.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }
}

struct StreamContext {
    camera: String,
    feed: LiveFeed,
    /// The main feed's audio as Opus for this viewer, when the camera sends it.
    audio: Option<OpusSubscription>,
    /// Why there is no audio, when there is none.
    audio_note: &'static str,
    muted: Arc<std::sync::atomic::AtomicBool>,
    sub_stream: bool,
    service: Arc<StreamService>,
    closed: Pin<Box<dyn Future<Output = ()> + Send>>,
    on_status: StatusHook,
    on_session: SessionHook,
    shutdown: watch::Receiver<bool>,
    tally: Tally,
}

/// What the session's events said, for its [`LiveRecord`].
#[derive(Debug, Default)]
struct Tally {
    first_frame: Option<Duration>,
    /// The audio's end, in words.
    audio: Option<String>,
    ended: Option<(LiveEnd, u64, u64)>,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The reader's next unit, or never when the session wants none.
fn next_unit(
    mut reader: Option<&mut LiveReader>,
) -> impl Future<Output = Result<Arc<LiveUnit>, ReaderError>> + '_ {
    std::future::poll_fn(move |cx| match reader {
        Some(ref mut r) => r.poll_next(cx),
        None => Poll::Pending,
    })
}

/// Longest audio waits in its reader when nothing else wakes the stream task (no video).
const AUDIO_BATCH: Duration = Duration::from_millis(60);

/// Sends the audio the feed has for the session (dropped while muted).
fn drain_audio(a: &mut AudioSession, video: &LiveSession, ctx: &StreamContext, now: Instant) {
    if !ctx.sub_stream {
        a.set_video_clock(video.source_clock());
    }
    a.pull(now, ctx.muted.load(std::sync::atomic::Ordering::Relaxed));
}

/// Receives on `socket` when there is one, else never.
async fn recv_opt(
    socket: Option<&UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, std::net::SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// Waits up to [`FIRST_IDR_WAIT`] for the feed's first IDR.
async fn first_reader(
    feed: &LiveFeed,
    stop: &mut watch::Receiver<Option<LiveEnd>>,
) -> Option<LiveReader> {
    let deadline = tokio::time::Instant::now() + FIRST_IDR_WAIT;
    loop {
        if let Some(r) = feed.reader() {
            return Some(r);
        }
        if tokio::time::Instant::now() >= deadline || stop.borrow().is_some() {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stream_task(mut ctx: StreamContext, mut order: StartOrder) {
    let service_index = order.service;
    let generation = order.generation;
    let started_at = std::time::SystemTime::now();
    let started = now();
    let end = run_stream(&mut ctx, &mut order).await;
    if let Err(why) = &end {
        info!(camera = %ctx.camera, service = service_index, ?why, "live view did not start");
    }
    let (why, packets, bytes) = match (&end, ctx.tally.ended) {
        (Err(why), _) => (*why, 0, 0),
        (Ok(()), Some(e)) => e,
        (Ok(()), None) => (LiveEnd::Stopped, 0, 0),
    };
    (ctx.on_session)(LiveRecord {
        viewer: order.destination,
        requested: order.requested,
        sub_stream: ctx.sub_stream,
        started: started_at,
        duration: now().saturating_duration_since(started),
        first_frame: ctx.tally.first_frame,
        packets,
        bytes,
        end: why,
        failed_to_start: end.is_err(),
        audio: ctx
            .tally
            .audio
            .take()
            .unwrap_or_else(|| ctx.audio_note.to_owned()),
    });
    // Dropping `order` closes both sockets.
    drop(order);
    ctx.service.stream_ended(generation);
    // The control task re-sends StreamingStatus only if it changed.
    (ctx.on_status)();
}

async fn run_stream(ctx: &mut StreamContext, order: &mut StartOrder) -> Result<(), LiveEnd> {
    let started = now();
    let Some(reader) = first_reader(&ctx.feed, &mut order.stop).await else {
        return Err(LiveEnd::SourceGone);
    };
    let std_socket = order
        .video_socket
        .try_clone()
        .map_err(|_| LiveEnd::SocketFailed)?;
    let socket = UdpSocket::from_std(std_socket).map_err(|_| LiveEnd::SocketFailed)?;
    // Audio and video share one start and one wall clock, so their sender reports agree.
    let session_start = now();
    let mut session =
        LiveSession::new(session_start, order.params.clone(), reader).map_err(|e| {
            warn!(camera = %ctx.camera, error = %e, "live view refused");
            LiveEnd::SocketFailed
        })?;
    info!(
        camera = %ctx.camera,
        service = order.service,
        destination = %order.destination,
        requested = ?order.requested,
        sub_stream = ctx.sub_stream,
        mtu = order.params.mtu,
        "live view started"
    );
    let destination = order.destination;
    let mut audio = start_audio(ctx, order, session_start);
    let audio_destination = order.audio_destination;
    let mut out = Vec::with_capacity(order.params.mtu);
    let mut rbuf = vec![0u8; RECV_BUFFER_BYTES];
    let mut abuf = vec![0u8; RECV_BUFFER_BYTES];
    let mut send_errors = 0u32;
    let mut audio_drained = now();
    loop {
        if let Some((a, socket)) = audio.as_mut() {
            // Audio rides on the task's other wakeups (each video frame) and a fallback timer:
            // its own 15-50 units a second would each wake it once more (D22).
            let t = now();
            drain_audio(a, &session, ctx, t);
            audio_drained = t;
            while a.poll_transmit(&mut out) {
                // Audio send errors are the video's too; the video loop below counts them.
                let _ = socket.send_to(&out, audio_destination).await;
            }
            while let Some(ev) = a.poll_event() {
                match ev {
                    AudioEvent::Started => {
                        info!(camera = %ctx.camera, service = order.service, rate_hz = a.params().target.sample_rate_hz, packet_time_ms = a.params().target.packet_time_ms, "live audio: first Opus packet sent")
                    }
                    AudioEvent::Dropped { reason } => {
                        warn!(camera = %ctx.camera, service = order.service, %reason, "live audio stopped; the video goes on")
                    }
                }
            }
        }
        while session.poll_transmit(&mut out) {
            match socket.send_to(&out, destination).await {
                Ok(_) => send_errors = 0,
                Err(e) => {
                    send_errors += 1;
                    debug!(error = %e, "live view send failed");
                    if send_errors >= MAX_SEND_ERRORS {
                        session.stop(now(), LiveEnd::SocketFailed);
                    }
                }
            }
        }
        while let Some(ev) = session.poll_event() {
            log_event(&ctx.camera, order.service, started, &ev);
            match ev {
                LiveEvent::FirstFrame { .. } => {
                    ctx.tally.first_frame = Some(now().saturating_duration_since(started));
                }
                LiveEvent::Ended {
                    why,
                    packets,
                    bytes,
                    ..
                } => ctx.tally.ended = Some((why, packets, bytes)),
                LiveEvent::CaughtUp { .. } => {}
            }
        }
        if session.is_ended() {
            if let Some((a, _)) = audio.as_mut() {
                a.stop();
                let t = a.params().target;
                let sent = format!(
                    "Opus {} kHz, {} ms: {} packets",
                    t.sample_rate_hz / 1000,
                    t.packet_time_ms,
                    a.packets
                );
                ctx.tally.audio = Some(match &a.dropped {
                    Some(why) => format!("{sent}, then stopped: {why}"),
                    None => sent,
                });
            }
            return Ok(());
        }
        let timer = session
            .poll_timeout()
            .unwrap_or_else(|| now() + Duration::from_secs(3600));
        let audio_timer = audio.as_ref().and_then(|(a, _)| {
            let drain = a.has_reader().then_some(audio_drained + AUDIO_BATCH);
            a.poll_timeout().into_iter().chain(drain).min()
        });
        let timer = audio_timer.map_or(timer, |t| t.min(timer));
        let audio_socket = audio.as_ref().map(|(_, s)| s);
        tokio::select! {
            r = recv_opt(audio_socket, &mut abuf) => {
                if let (Ok((n, _)), Some((a, _))) = (r, audio.as_mut())
                    && let Some(d) = abuf.get_mut(..n)
                {
                    a.handle_datagram(d);
                }
            }
            r = socket.recv_from(&mut rbuf) => {
                if let Ok((n, _from)) = r
                    && let Some(d) = rbuf.get_mut(..n)
                {
                    // Source addresses are not trusted: only an authenticated SRTCP packet counts.
                    session.handle_datagram(now(), d);
                }
            }
            u = next_unit(session.live_reader()) => session.handle_unit(now(), u),
            _ = tokio::time::sleep_until(timer.into()) => {
                let t = now();
                session.handle_timeout(t);
                if let Some((a, _)) = audio.as_mut() {
                    if !ctx.sub_stream {
                        a.set_video_clock(session.source_clock());
                    }
                    a.handle_timeout(t);
                }
            }
            r = order.stop.changed() => {
                let why = if r.is_ok() { (*order.stop.borrow()).unwrap_or(LiveEnd::Stopped) } else { LiveEnd::Stopped };
                session.stop(now(), why);
            }
            () = &mut ctx.closed => session.stop(now(), LiveEnd::HapSessionClosed),
            _ = ctx.shutdown.changed() => session.stop(now(), LiveEnd::Shutdown),
        }
    }
}

/// The viewer's audio session and socket, when the camera sends audio and the viewer asked
/// for Opus; failures leave the stream video-only with a warning.
fn start_audio(
    ctx: &mut StreamContext,
    order: &StartOrder,
    started: Instant,
) -> Option<(AudioSession, UdpSocket)> {
    let sub = ctx.audio.take()?;
    let mut params = order.audio.clone()?;
    params.wall_clock_at_start = order.params.wall_clock_at_start;
    let socket = order
        .audio_socket
        .try_clone()
        .ok()
        .and_then(|s| UdpSocket::from_std(s).ok());
    let Some(socket) = socket else {
        warn!(camera = %ctx.camera, "live audio: no socket; video only");
        return None;
    };
    Some((AudioSession::new(started, params, sub), socket))
}

fn log_event(camera: &str, service: usize, started: Instant, ev: &LiveEvent) {
    match ev {
        LiveEvent::FirstFrame {
            latency,
            backlog_units,
        } => {
            let since_start = now().saturating_duration_since(started);
            info!(
                camera,
                service,
                latency_ms = since_start.max(*latency).as_millis() as u64,
                backlog_units,
                "live view: first frame sent"
            );
        }
        LiveEvent::CaughtUp { after, units } => {
            debug!(
                camera,
                service,
                after_ms = after.as_millis() as u64,
                units,
                "live view caught up with the camera"
            );
        }
        LiveEvent::Ended {
            why,
            packets,
            bytes,
            units,
            duration,
        } => info!(
            camera,
            service,
            ?why,
            packets,
            bytes,
            units,
            duration_s = duration.as_secs_f32(),
            "live view ended"
        ),
    }
}
