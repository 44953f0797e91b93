//! The tokio driver: accepts TCP connections and runs one task per connection around the pure
//! [`Connection`] state machine. Nothing here decides protocol behaviour.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::conn::Connection;
use crate::context::ConnectionId;
use crate::core::Core;
use crate::db::{CharId, Value};
use crate::http::Limits;
use crate::mdns::Advertiser;

/// Driver settings.
#[derive(Clone, Copy, Debug)]
pub struct ServerOptions {
    /// Most simultaneous connections. When full, the longest-idle connection that has not
    /// completed pair-verify is closed for a new one (`Core::evict_idle_unverified`); only
    /// when every connection is verified is the new one closed. Default 32 (a home has a few
    /// hubs and phones, each holding one or two).
    pub max_connections: usize,
    /// Most simultaneous connections from one IP address; more are closed at once. Default 8
    /// (a phone or hub holds one or two): one host on the LAN cannot take every slot, and
    /// eviction is left for the others' unverified connections.
    pub max_connections_per_host: usize,
    /// HTTP request limits.
    pub limits: Limits,
    /// A connection that has not completed pair-verify is closed after this long without a
    /// byte from its peer. Without it, idle unauthenticated connections could hold every
    /// connection slot, and a pair-setup left at M2 would answer every other controller Busy
    /// until its socket closed. Default 300 s: room for typing the setup code between M2 and
    /// M3. Our policy; HAP does not set one.
    pub unverified_idle_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_connections: 32,
            max_connections_per_host: 8,
            limits: Limits::default(),
            unverified_idle_timeout: Duration::from_secs(300),
        }
    }
}

/// A running accessory server's shared handle. Cheap to clone.
#[derive(Clone)]
pub struct Server {
    core: Arc<Mutex<Core>>,
    advertiser: Arc<Mutex<Option<Advertiser>>>,
    /// One receiver per open connection, `true` once it is closed or asked to close; the
    /// sender lives in the connection's [`Core::on_close`] hook. Lock order: `core` first.
    closed: Arc<Mutex<HashMap<ConnectionId, watch::Receiver<bool>>>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

fn now() -> Instant {
    // tokio's clock, so tests with a paused clock see consistent time.
    tokio::time::Instant::now().into_std()
}

impl Server {
    /// Wraps `core`.
    pub fn new(core: Core) -> Self {
        Self {
            core: Arc::new(Mutex::new(core)),
            advertiser: Arc::new(Mutex::new(None)),
            closed: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn closed_signals(&self) -> MutexGuard<'_, HashMap<ConnectionId, watch::Receiver<bool>>> {
        self.closed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Completes once HAP connection `conn` is closed (socket gone, shutdown) or must close
    /// (its controller's pairing was removed, §1.8), and at once if `conn` is not an open
    /// connection of this server (already closed, or never accepted by [`Server::serve`]).
    ///
    /// The future does not borrow the server and costs one `watch` receiver: any number of
    /// tasks may wait on the same connection. HomeKit Data Stream uses it to drop a data
    /// stream together with the HAP session that set it up.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future unregisters nothing; a new call answers the same.
    pub fn closed(&self, conn: ConnectionId) -> impl Future<Output = ()> + Send + 'static {
        let signal = self.closed_signals().get(&conn).cloned();
        async move {
            if let Some(mut rx) = signal {
                // Err: the sender was dropped unfired, i.e. the `Core` is gone, and so is `conn`.
                let _ = rx.wait_for(|closed| *closed).await;
            }
        }
    }

    /// Locks the core. Do not hold the guard across an `.await`, and do not call back into the
    /// server from characteristic handlers (they already run under this lock).
    pub fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets a characteristic from the application and notifies subscribers.
    pub fn set_value(&self, id: CharId, value: Value) -> bool {
        let ok = self.lock().set_value(id, value, now());
        self.refresh_advertisement();
        ok
    }

    /// Starts advertising over mDNS on `port` and keeps the TXT record current.
    pub fn advertise(&self, port: u16) {
        let adv = Advertiser::new(port);
        {
            let mut core = self.lock();
            core.take_advertisement_changed();
            adv.publish(core.name(), &core.txt_record());
        }
        *self
            .advertiser
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(adv);
    }

    fn refresh_advertisement(&self) {
        let mut core = self.lock();
        if !core.take_advertisement_changed() {
            return;
        }
        let adv = self
            .advertiser
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(adv) = &*adv {
            adv.publish(core.name(), &core.txt_record());
        }
    }

    /// Accepts connections on `listener` until `shutdown` becomes `true`, then closes every
    /// connection and returns.
    ///
    /// # Cancel safety
    /// Dropping the future drops the listener; connection tasks are aborted with it.
    ///
    /// # Errors
    /// Never returns an error for a single failed connection; only if the listener fails.
    pub async fn serve(
        &self,
        listener: TcpListener,
        options: ServerOptions,
        mut shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let slots = Arc::new(Semaphore::new(options.max_connections));
        let mut tasks = JoinSet::new();
        let mut accept_errors = AcceptBackoff::default();
        let mut refusals = RateLimited::default();
        let mut host_refusals = RateLimited::default();
        let mut per_host: HashMap<std::net::IpAddr, usize> = HashMap::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => {
                            accept_errors.succeeded();
                            a
                        }
                        Err(e) => {
                            // Out of file descriptors and the like: no hot loop.
                            tokio::time::sleep(accept_errors.failed("HAP", &e)).await;
                            continue;
                        }
                    };
                    let host = peer.ip().to_canonical();
                    let open = per_host.get(&host).copied().unwrap_or(0);
                    if open >= options.max_connections_per_host.max(1) {
                        if let Some(suppressed) = host_refusals.allow(now()) {
                            warn!(%host, open, suppressed, "one host's connection share reached; closing its new connections");
                        }
                        continue;
                    }
                    let permit = match slots.clone().try_acquire_owned() {
                        Ok(p) => Some(p),
                        Err(_) => self.evict_for(&slots, &mut refusals, peer).await,
                    };
                    let Some(permit) = permit else {
                        continue;
                    };
                    *per_host.entry(host).or_default() += 1;
                    let server = self.clone();
                    let shutdown = shutdown.clone();
                    tasks.spawn(async move {
                        server.run_connection(stream, options, shutdown).await;
                        drop(permit);
                        host
                    });
                }
                _ = shutdown.changed() => break,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    // A panicked task's host keeps its count: no panics in shipped paths.
                    if let Ok(host) = done
                        && let Some(n) = per_host.get_mut(&host)
                    {
                        *n -= 1;
                        if *n == 0 {
                            per_host.remove(&host);
                        }
                    }
                }
            }
        }
        while tasks.join_next().await.is_some() {}
        if let Some(adv) = &*self
            .advertiser
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            adv.shutdown();
        }
        Ok(())
    }

    /// The server is full: evicts the longest-idle unverified connection and waits briefly for
    /// its slot. `None`: every connection is verified (or spared), the new one is closed.
    async fn evict_for(
        &self,
        slots: &Arc<Semaphore>,
        refusals: &mut RateLimited,
        peer: std::net::SocketAddr,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let victim = self.lock().evict_idle_unverified(now());
        if let Some(victim) = victim {
            debug!(%peer, evicted = victim, "connection limit reached: closing the longest-idle unverified connection");
            if let Ok(Ok(p)) =
                tokio::time::timeout(EVICTION_WAIT, slots.clone().acquire_owned()).await
            {
                return Some(p);
            }
        }
        if let Some(suppressed) = refusals.allow(now()) {
            warn!(%peer, suppressed, "connection limit reached (every connection verified); closing new connections");
        }
        None
    }

    async fn run_connection(
        &self,
        mut stream: TcpStream,
        options: ServerOptions,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let limits = options.limits;
        // HAP wants Nagle off (§1.1): responses and events are small and latency-bound.
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().ok();
        let local = stream.local_addr().ok();
        let wake = Arc::new(Notify::new());
        let (closed_tx, closed_rx) = watch::channel(false);
        let mut conn = {
            let mut core = self.lock();
            let conn = Connection::new(&mut core, limits);
            core.set_connection_addresses(conn.id(), local, peer);
            let w = wake.clone();
            core.set_waker(conn.id(), Arc::new(move || w.notify_one()));
            core.on_close(
                conn.id(),
                Box::new(move || {
                    closed_tx.send_replace(true);
                }),
            );
            self.closed_signals().insert(conn.id(), closed_rx);
            conn
        };
        let id = conn.id();
        // Closes the session in the core (firing `closed`) on every exit, including this
        // future being dropped when `serve` is cancelled.
        let _registered = Registered {
            server: self.clone(),
            id,
        };
        debug!(conn = id, ?peer, "connection opened");
        let mut buf = vec![0u8; 4096];
        loop {
            let (deadline, verified) = {
                let core = self.lock();
                (core.event_deadline(id), core.is_verified(id))
            };
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            // Restarts on every loop turn; an unverified peer only turns it by sending.
            let idle = async {
                if verified {
                    std::future::pending().await
                } else {
                    tokio::time::sleep(options.unverified_idle_timeout).await;
                }
            };
            let (out, close) = tokio::select! {
                read = stream.read(&mut buf) => {
                    let n = match read {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let mut core = self.lock();
                    core.touch(id, now());
                    let o = conn.handle_input(&mut core, buf.get(..n).unwrap_or_default(), now(), &mut rand::rng());
                    let mut out = o.bytes;
                    // Events go out after the response (§1.11).
                    out.extend(conn.poll_events(&mut core, now()));
                    (out, o.close)
                }
                () = wake.notified() => {
                    let mut core = self.lock();
                    if core.close_requested(id) {
                        break;
                    }
                    (conn.poll_events(&mut core, now()), false)
                }
                () = timer => (conn.poll_events(&mut self.lock(), now()), false),
                () = idle => {
                    debug!(conn = id, ?peer, "closing a connection idle before pair-verify");
                    break;
                }
                _ = shutdown.changed() => break,
            };
            self.refresh_advertisement();
            if !out.is_empty() && stream.write_all(&out).await.is_err() {
                break;
            }
            if close || self.lock().close_requested(id) {
                break;
            }
        }
        conn.close(&mut self.lock());
        self.refresh_advertisement();
        debug!(conn = id, ?peer, "connection closed");
    }
}

/// How long a new connection waits for the slot of the connection evicted for it.
const EVICTION_WAIT: Duration = Duration::from_millis(500);
/// Shortest and longest pause after a failed `accept`.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));
/// At most one warning per this interval for a repeated condition (accept errors, refusals).
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Lets one warning through per [`WARN_INTERVAL`] and counts the rest, so a flood cannot turn
/// into a log flood.
#[derive(Debug, Default)]
pub struct RateLimited {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    /// `Some(suppressed since the last warning)` when a warning may be logged at `now`.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < WARN_INTERVAL)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Back-off after failed `accept` calls (out of file descriptors, …): 10 ms doubling to 1 s,
/// reset by a success; warnings rate-limited. Without it the accept loop spins at full CPU.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    delay: Option<Duration>,
    log: RateLimited,
}

impl AcceptBackoff {
    /// An accept succeeded.
    pub fn succeeded(&mut self) {
        self.delay = None;
    }

    /// An accept on the `what` listener failed with `error`: returns how long to pause.
    pub fn failed(&mut self, what: &str, error: &std::io::Error) -> Duration {
        let d = self
            .delay
            .map_or(ACCEPT_BACKOFF.0, |d| (d * 2).min(ACCEPT_BACKOFF.1));
        self.delay = Some(d);
        if let Some(suppressed) = self.log.allow(now()) {
            warn!(listener = what, %error, suppressed, pause_ms = d.as_millis() as u64, "accept failed");
        }
        d
    }
}

/// Unregisters a connection from the core and from [`Server::closed`] when dropped.
struct Registered {
    server: Server,
    id: ConnectionId,
}

impl Drop for Registered {
    fn drop(&mut self) {
        // Idempotent: a normal exit already closed the session through `Connection::close`.
        self.server.lock().close_connection(self.id);
        self.server.closed_signals().remove(&self.id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_interval_and_the_rest_counted() {
        let mut log = RateLimited::default();
        let t0 = Instant::now();
        assert_eq!(log.allow(t0), Some(0));
        for i in 1..=99 {
            assert_eq!(log.allow(t0 + Duration::from_millis(i * 10)), None);
        }
        assert_eq!(
            log.allow(t0 + WARN_INTERVAL),
            Some(99),
            "the suppressed count is reported"
        );
        assert_eq!(log.allow(t0 + WARN_INTERVAL + Duration::from_secs(1)), None);
    }

    #[test]
    fn accept_errors_back_off_from_10_ms_to_1_s_and_reset_on_success() {
        let mut b = AcceptBackoff::default();
        let e = std::io::Error::from_raw_os_error(24); // EMFILE
        let waits: Vec<Duration> = (0..10).map(|_| b.failed("test", &e)).collect();
        assert_eq!(waits[0], Duration::from_millis(10));
        assert_eq!(waits[1], Duration::from_millis(20));
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*waits.last().unwrap(), Duration::from_secs(1));
        // 1,000 failures cost at least ~16 minutes of pauses, not a hot loop.
        let total: Duration = (0..1000).map(|_| b.failed("test", &e)).sum();
        assert!(total >= Duration::from_secs(990), "{total:?}");
        b.succeeded();
        assert_eq!(b.failed("test", &e), Duration::from_millis(10));
    }
}
