//! The accessory-wide state every connection shares: identity, pairings, the attribute
//! database, sessions and their event queues, and the request handlers (protocol notes §1.4,
//! §1.8–§1.11).
//!
//! Pure: no sockets, no clock reads (`now` is passed in). [`crate::conn::Connection`] feeds
//! requests in; the tokio driver holds the `Core` behind a mutex.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hap_tlv::{Method, PairingError, Tlv8, TlvType};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};
use thiserror::Error;
use tracing::{debug, info, warn};

use crate::context::{ConnectionContext, ConnectionId};
use crate::db::{Accessory, CharId, Characteristic, Database, Perms, Value};
use crate::http::{Request, Response};
use crate::iid::IidCache;
use crate::pairing::{
    AccessoryIdentity, PairSetup, Pairing, SetupContext, SetupOutcome, SharedSecret,
};
use crate::setup::{SetupCode, generate_setup_id, setup_hash, setup_uri};
use crate::status::HapStatus;
use crate::store::Store;

/// Store blob: identity, setup code/ID, configuration number, failed attempts.
const ACCESSORY_FILE: &str = "accessory.json";
/// Store blob: controller pairings.
const PAIRINGS_FILE: &str = "pairings.json";
/// Store blob: the IID cache.
const IIDS_FILE: &str = "iids.json";

/// Events of other characteristics are batched this long (HAP-NodeJS, §1.11).
pub const EVENT_BATCH: Duration = Duration::from_millis(250);
/// Most pairings kept (ADK default; beyond it Add Pairing answers MaxPeers).
pub const MAX_PAIRINGS: usize = 16;

/// Accessory category for the TXT record and setup URI (§1.2).
pub type Category = u8;
/// `ci` of an IP camera.
pub const CATEGORY_IP_CAMERA: Category = 17;
/// `ci` of a bridge.
pub const CATEGORY_BRIDGE: Category = 2;

/// Configuration of a [`Core`].
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Display name: the mDNS instance name.
    pub name: String,
    /// Model: the `md` TXT value.
    pub model: String,
    /// Accessory category (`ci`).
    pub category: Category,
    /// Setup code to use; `None` keeps the persisted one or generates one.
    pub setup_code: Option<SetupCode>,
    /// Firmware version: a change bumps `c#` like a database change (ADK
    /// `HAPHandleFirmwareUpdate`, §1.2).
    pub firmware_revision: String,
}

/// Why a [`Core`] could not be opened.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The store failed.
    #[error("state store: {0}")]
    Store(#[from] std::io::Error),
    /// A stored blob is corrupt.
    #[error("state file {file} is corrupt: {reason}")]
    Corrupt {
        /// Which blob.
        file: &'static str,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Serialize, Deserialize)]
struct AccessoryFile {
    pairing_id: String,
    /// Ed25519 secret key seed, base64.
    signing_key: String,
    setup_code: String,
    setup_id: String,
    config_number: u32,
    config_hash: String,
    failed_attempts: u32,
}

#[derive(Serialize, Deserialize)]
struct PairingRecord {
    controller_id: String,
    /// Ed25519 long-term public key, base64.
    ltpk: String,
    admin: bool,
}

/// What a `/resource` handler answers.
pub type ResourceHandler =
    Arc<dyn Fn(&ConnectionContext, &Json) -> Result<Option<Vec<u8>>, HapStatus> + Send + Sync>;

/// Called on `/identify` while unpaired.
pub type IdentifyHandler = Arc<dyn Fn() + Send + Sync>;

/// Wakes a connection's driver (new events or a close request).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Runs once when a connection is closed or asked to close; see [`Core::on_close`].
pub type CloseHook = Box<dyn FnOnce() + Send>;

/// Per-connection state that other connections can affect.
struct Session {
    verified: Option<VerifiedSession>,
    subscriptions: std::collections::HashSet<CharId>,
    /// Queued events in arrival order; one entry per characteristic (latest value wins).
    pending: Vec<(CharId, Json)>,
    pending_since: Option<Instant>,
    pending_immediate: bool,
    timed_write: Option<(u64, Instant)>,
    close_requested: bool,
    waker: Option<Waker>,
    /// Taken and run when the session is closed or asked to close.
    close_hooks: Vec<CloseHook>,
    /// Local and peer TCP addresses, when the driver set them.
    addresses: (Option<SocketAddr>, Option<SocketAddr>),
    /// When the peer last sent bytes ([`Core::touch`]); `None`: never.
    touched: Option<Instant>,
}

struct VerifiedSession {
    controller_id: String,
    shared_secret: Arc<SharedSecret>,
}

impl Session {
    fn new() -> Self {
        Self {
            verified: None,
            subscriptions: Default::default(),
            pending: Vec::new(),
            pending_since: None,
            pending_immediate: false,
            timed_write: None,
            close_requested: false,
            waker: None,
            close_hooks: Vec::new(),
            addresses: (None, None),
            touched: None,
        }
    }

    /// Marks the session for closing and runs its close hooks (once).
    fn request_close(&mut self) {
        self.close_requested = true;
        for hook in self.close_hooks.drain(..) {
            hook();
        }
    }

    fn wake(&self) {
        if let Some(w) = &self.waker {
            w();
        }
    }
}

/// The accessory server's shared state.
pub struct Core {
    config: CoreConfig,
    store: Arc<dyn Store>,
    identity: AccessoryIdentity,
    setup_code: SetupCode,
    setup_id: String,
    pairings: Vec<Pairing>,
    failed_attempts: u32,
    /// The last wrong-code count could not be written: pair-setup waits until it can be.
    attempts_unsaved: bool,
    /// No M1 is served before this (back-off after wrong setup codes; memory only).
    next_attempt_at: Option<Instant>,
    /// One "pair-setup refused" warning per interval.
    refused_log: crate::driver::RateLimited,
    config_number: u32,
    config_hash: String,
    pair_setup: PairSetup,
    db: Database,
    iids: IidCache,
    sessions: HashMap<ConnectionId, Session>,
    next_connection_id: ConnectionId,
    advertisement_changed: bool,
    resource_handler: Option<ResourceHandler>,
    identify_handler: Option<IdentifyHandler>,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("name", &self.config.name)
            .field("pairing_id", &self.identity.pairing_id)
            .field("pairings", &self.pairings.len())
            .field("config_number", &self.config_number)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

fn corrupt(file: &'static str, reason: impl fmt::Display) -> OpenError {
    OpenError::Corrupt {
        file,
        reason: reason.to_string(),
    }
}

impl Core {
    /// Loads (or creates on first start) the persisted state from `store` and builds the
    /// database from `accessories`. Bumps `c#` when the database structure differs from the
    /// last run (§1.2).
    ///
    /// # Errors
    /// [`OpenError`] when the store fails or holds corrupt data.
    pub fn open(
        config: CoreConfig,
        store: Arc<dyn Store>,
        accessories: Vec<Accessory>,
        rng: &mut impl rand::CryptoRng,
    ) -> Result<Self, OpenError> {
        Self::open_inner(config, store, Some(accessories), rng)
    }

    /// [`open`](Self::open) for tools that read the identity, setup code and pairings but
    /// serve no database (`pair-info`): `c#` and its hash stay as stored, so running the tool
    /// neither bumps `c#` nor logs a database change. Creates the identity on first start.
    ///
    /// # Errors
    /// See [`open`](Self::open).
    pub fn open_without_database(
        config: CoreConfig,
        store: Arc<dyn Store>,
        rng: &mut impl rand::CryptoRng,
    ) -> Result<Self, OpenError> {
        Self::open_inner(config, store, None, rng)
    }

    fn open_inner(
        config: CoreConfig,
        store: Arc<dyn Store>,
        accessories: Option<Vec<Accessory>>,
        rng: &mut impl rand::CryptoRng,
    ) -> Result<Self, OpenError> {
        let stored: Option<AccessoryFile> = match store.load(ACCESSORY_FILE)? {
            Some(b) => Some(serde_json::from_slice(&b).map_err(|e| corrupt(ACCESSORY_FILE, e))?),
            None => None,
        };
        let pairings = match store.load(PAIRINGS_FILE)? {
            Some(b) => {
                let recs: Vec<PairingRecord> =
                    serde_json::from_slice(&b).map_err(|e| corrupt(PAIRINGS_FILE, e))?;
                recs.into_iter()
                    .map(|r| {
                        let ltpk: [u8; 32] = BASE64
                            .decode(&r.ltpk)
                            .ok()
                            .and_then(|v| v.try_into().ok())
                            .ok_or_else(|| corrupt(PAIRINGS_FILE, "bad ltpk"))?;
                        Ok(Pairing {
                            controller_id: r.controller_id,
                            ltpk,
                            admin: r.admin,
                        })
                    })
                    .collect::<Result<Vec<_>, OpenError>>()?
            }
            None => Vec::new(),
        };
        let mut iids = match store.load(IIDS_FILE)? {
            Some(b) => IidCache::from_bytes(&b).map_err(|e| corrupt(IIDS_FILE, e))?,
            None => IidCache::default(),
        };
        let (identity, mut setup_code, setup_id, config_number, config_hash, failed_attempts) =
            match stored {
                Some(f) => {
                    let seed: [u8; 32] = BASE64
                        .decode(&f.signing_key)
                        .ok()
                        .and_then(|v| v.try_into().ok())
                        .ok_or_else(|| corrupt(ACCESSORY_FILE, "bad signing key"))?;
                    let identity = AccessoryIdentity {
                        pairing_id: f.pairing_id,
                        signing_key: ed25519_dalek::SigningKey::from_bytes(&seed),
                    };
                    let code =
                        SetupCode::parse(&f.setup_code).map_err(|e| corrupt(ACCESSORY_FILE, e))?;
                    (
                        identity,
                        code,
                        f.setup_id,
                        f.config_number,
                        f.config_hash,
                        f.failed_attempts,
                    )
                }
                None => (
                    AccessoryIdentity::generate(rng),
                    SetupCode::generate(rng),
                    generate_setup_id(rng),
                    0,
                    String::new(),
                    0,
                ),
            };
        if let Some(code) = &config.setup_code {
            setup_code = code.clone();
        }
        let serves = accessories.is_some();
        let mut db = Database::new();
        for a in accessories.into_iter().flatten() {
            db.add_accessory(a, &mut iids);
        }
        let mut core = Self {
            config,
            store,
            identity,
            setup_code,
            setup_id,
            pairings,
            failed_attempts,
            attempts_unsaved: false,
            next_attempt_at: None,
            refused_log: crate::driver::RateLimited::default(),
            config_number,
            config_hash,
            pair_setup: PairSetup::new(),
            db,
            iids,
            sessions: HashMap::new(),
            next_connection_id: 1,
            advertisement_changed: true,
            resource_handler: None,
            identify_handler: None,
        };
        if serves {
            core.refresh_config_number();
        }
        core.save_accessory_file()?;
        core.save_iids()?;
        if core.pairings.is_empty() && core.failed_attempts >= crate::pairing::MAX_FAILED_ATTEMPTS {
            warn!(
                attempts = core.failed_attempts,
                "pair-setup is locked after too many wrong setup codes; stop the bridge and run `hksv-bridge reset` to clear the count"
            );
        }
        Ok(core)
    }

    fn refresh_config_number(&mut self) {
        let hash = format!(
            "{}/{}",
            self.db.structure_hash(),
            self.config.firmware_revision
        );
        if hash != self.config_hash || self.config_number == 0 {
            // c# is 1..=65535 and wraps to 1 (§1.2).
            self.config_number = if self.config_number >= 65535 {
                1
            } else {
                self.config_number + 1
            };
            let first = self.config_hash.is_empty();
            self.config_hash = hash;
            self.advertisement_changed = true;
            if first {
                info!(config_number = self.config_number, "new accessory database");
            } else {
                info!(
                    config_number = self.config_number,
                    "accessory database changed"
                );
            }
        }
    }

    fn save_accessory_file(&self) -> std::io::Result<()> {
        let f = AccessoryFile {
            pairing_id: self.identity.pairing_id.clone(),
            signing_key: BASE64.encode(self.identity.signing_key.to_bytes()),
            setup_code: self.setup_code.as_str().to_owned(),
            setup_id: self.setup_id.clone(),
            config_number: self.config_number,
            config_hash: self.config_hash.clone(),
            failed_attempts: self.failed_attempts,
        };
        let bytes = serde_json::to_vec_pretty(&f).map_err(std::io::Error::other)?;
        self.store.save(ACCESSORY_FILE, &bytes)
    }

    fn save_pairings(&self) -> std::io::Result<()> {
        self.save_pairing_list(&self.pairings)
    }

    fn save_pairing_list(&self, pairings: &[Pairing]) -> std::io::Result<()> {
        let recs: Vec<PairingRecord> = pairings
            .iter()
            .map(|p| PairingRecord {
                controller_id: p.controller_id.clone(),
                ltpk: BASE64.encode(p.ltpk),
                admin: p.admin,
            })
            .collect();
        let bytes = serde_json::to_vec_pretty(&recs).map_err(std::io::Error::other)?;
        self.store.save(PAIRINGS_FILE, &bytes)
    }

    fn save_iids(&mut self) -> std::io::Result<()> {
        if self.iids.is_dirty() {
            self.store.save(IIDS_FILE, &self.iids.to_bytes())?;
            self.iids.mark_saved();
        }
        Ok(())
    }

    /// Adds or replaces an accessory at run time; bumps `c#` if the structure changed.
    ///
    /// # Errors
    /// When persisting the IID cache or `c#` fails.
    pub fn add_accessory(&mut self, accessory: Accessory) -> std::io::Result<()> {
        self.db.add_accessory(accessory, &mut self.iids);
        self.refresh_config_number();
        self.save_iids()?;
        self.save_accessory_file()
    }

    /// Sets the `/resource` (snapshot) handler.
    pub fn set_resource_handler(&mut self, h: ResourceHandler) {
        self.resource_handler = Some(h);
    }

    /// Sets the `/identify` handler.
    pub fn set_identify_handler(&mut self, h: IdentifyHandler) {
        self.identify_handler = Some(h);
    }

    /// The accessory pairing ID (`id` TXT value).
    pub fn pairing_id(&self) -> &str {
        &self.identity.pairing_id
    }

    /// The setup code.
    pub fn setup_code(&self) -> &SetupCode {
        &self.setup_code
    }

    /// The setup ID.
    pub fn setup_id(&self) -> &str {
        &self.setup_id
    }

    /// The `X-HM://` setup URI.
    pub fn setup_uri(&self) -> String {
        setup_uri(
            &self.setup_code,
            self.config.category,
            &self.setup_id,
            self.is_paired(),
        )
    }

    /// Whether any controller is paired.
    pub fn is_paired(&self) -> bool {
        !self.pairings.is_empty()
    }

    /// Current pairings.
    pub fn pairings(&self) -> &[Pairing] {
        &self.pairings
    }

    /// Failed pair-setup attempts so far (persisted; 100 → MaxTries).
    pub fn failed_attempts(&self) -> u32 {
        self.failed_attempts
    }

    /// Current configuration number `c#`.
    pub fn config_number(&self) -> u32 {
        self.config_number
    }

    /// The attribute database.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The display name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The `_hap._tcp` TXT record (§1.2).
    pub fn txt_record(&self) -> Vec<(&'static str, String)> {
        vec![
            ("c#", self.config_number.to_string()),
            ("ff", "0".to_owned()),
            ("id", self.identity.pairing_id.clone()),
            ("md", self.config.model.clone()),
            ("pv", "1.1".to_owned()),
            ("s#", "1".to_owned()),
            ("sf", if self.is_paired() { "0" } else { "1" }.to_owned()),
            ("ci", self.config.category.to_string()),
            ("sh", setup_hash(&self.setup_id, &self.identity.pairing_id)),
        ]
    }

    /// Whether the TXT record changed since the last call (sf flip, c# bump); clears the flag.
    pub fn take_advertisement_changed(&mut self) -> bool {
        std::mem::take(&mut self.advertisement_changed)
    }

    // ---- sessions -------------------------------------------------------------------------

    /// Registers a new connection and returns its id.
    pub fn open_connection(&mut self) -> ConnectionId {
        let id = self.next_connection_id;
        self.next_connection_id += 1;
        self.sessions.insert(id, Session::new());
        id
    }

    /// Records `conn`'s local and peer TCP addresses, which handlers see in their
    /// [`ConnectionContext`].
    pub fn set_connection_addresses(
        &mut self,
        conn: ConnectionId,
        local: Option<SocketAddr>,
        peer: Option<SocketAddr>,
    ) {
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.addresses = (local, peer);
        }
    }

    /// Sets the function that wakes `conn`'s driver when events are queued or a close is
    /// requested.
    pub fn set_waker(&mut self, conn: ConnectionId, waker: Waker) {
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.waker = Some(waker);
        }
    }

    /// Forgets `conn` (its subscriptions, any pair-setup it had in progress) and runs the
    /// close hooks that have not run yet. Closing an unknown or already closed `conn` does
    /// nothing.
    pub fn close_connection(&mut self, conn: ConnectionId) {
        if let Some(mut s) = self.sessions.remove(&conn) {
            s.request_close();
        }
        self.pair_setup.connection_closed(conn);
    }

    /// Whether `conn` must be closed (its controller was removed) or is already closed.
    pub fn close_requested(&self, conn: ConnectionId) -> bool {
        self.sessions.get(&conn).is_none_or(|s| s.close_requested)
    }

    /// Runs `hook` once, as soon as `conn` is closed ([`Core::close_connection`]) or asked to
    /// close (its controller's pairing was removed, §1.8), whichever comes first. If that has
    /// already happened, or `conn` is unknown, `hook` runs now, before `on_close` returns.
    ///
    /// This is how other parts of the accessory (HomeKit Data Stream, which a HAP session
    /// prepares) learn that the session is gone without polling [`Core::close_requested`].
    ///
    /// Hooks run inside the `Core` method that closes the session, so under whatever lock
    /// guards the `Core` (the driver's mutex): they must be short and must not call back into
    /// the `Core` or its [`crate::Server`]; signal a channel instead. A connection keeps its
    /// hooks until it closes, so register a bounded number per connection
    /// ([`crate::Server::closed`] registers one per connection and shares it).
    pub fn on_close(&mut self, conn: ConnectionId, hook: CloseHook) {
        match self.sessions.get_mut(&conn) {
            Some(s) if !s.close_requested => s.close_hooks.push(hook),
            _ => hook(),
        }
    }

    /// Records that `conn`'s peer sent bytes at `now` (for [`Core::evict_idle_unverified`]).
    pub fn touch(&mut self, conn: ConnectionId, now: Instant) {
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.touched = Some(now);
        }
    }

    /// Asks the longest-idle connection that has not completed pair-verify to close (its
    /// close hooks run, its driver is woken), so a full server can take a new connection:
    /// unauthenticated peers can never lock a paired controller out (HomeKitADK evicts the
    /// same way). A pair-setup in progress is spared until it is abandoned
    /// ([`crate::pairing::ABANDONED_AFTER`]). Returns the connection asked to close, `None`
    /// when every connection is verified or spared.
    pub fn evict_idle_unverified(&mut self, now: Instant) -> Option<ConnectionId> {
        let owner = self.pair_setup.in_progress();
        let abandoned = self.pair_setup.is_abandoned(now);
        let victim = self
            .sessions
            .iter()
            .filter(|(id, s)| {
                s.verified.is_none() && !s.close_requested && (owner != Some(**id) || abandoned)
            })
            // Never-spoken first, then the longest idle; the oldest connection on a tie.
            .min_by_key(|(id, s)| (s.touched, **id))
            .map(|(id, _)| *id)?;
        let s = self.sessions.get_mut(&victim)?;
        s.request_close();
        s.wake();
        Some(victim)
    }

    /// Number of open connections.
    pub fn connection_count(&self) -> usize {
        self.sessions.len()
    }

    fn context(&self, conn: ConnectionId) -> Option<ConnectionContext> {
        let session = self.sessions.get(&conn)?;
        let v = session.verified.as_ref()?;
        let admin = self
            .pairings
            .iter()
            .find(|p| p.controller_id == v.controller_id)
            .is_some_and(|p| p.admin);
        Some(
            ConnectionContext::new(
                conn,
                v.controller_id.clone(),
                admin,
                v.shared_secret.clone(),
            )
            .with_addresses(session.addresses.0, session.addresses.1),
        )
    }

    /// Whether `conn` completed pair-verify.
    pub fn is_verified(&self, conn: ConnectionId) -> bool {
        self.sessions
            .get(&conn)
            .is_some_and(|s| s.verified.is_some())
    }

    // ---- pairing --------------------------------------------------------------------------

    /// Handles a `/pair-setup` body at `now`; returns the TLV reply.
    ///
    /// Before the pairing state machine: an M1 is answered Busy while the back-off after
    /// wrong setup codes runs ([`attempt_backoff`]) and while the last wrong-code count could
    /// not be saved (a full disk must not turn into unlimited guesses across restarts).
    pub fn pair_setup(
        &mut self,
        conn: ConnectionId,
        body: &[u8],
        now: Instant,
        rng: &mut impl rand::CryptoRng,
    ) -> Vec<u8> {
        let is_m1 = Tlv8::decode(body)
            .ok()
            .and_then(|t| crate::pairing::state_of(&t))
            == Some(1);
        if is_m1 && self.pair_setup.in_progress().is_none() && self.pairings.is_empty() {
            if self.attempts_unsaved {
                match self.save_accessory_file() {
                    Ok(()) => self.attempts_unsaved = false,
                    Err(e) => {
                        if let Some(suppressed) = self.refused_log.allow(now) {
                            warn!(error = %e, suppressed, "pair-setup refused: the wrong-code count cannot be saved");
                        }
                        return pairing_error(2, PairingError::BUSY);
                    }
                }
            }
            if self.failed_attempts >= crate::pairing::MAX_FAILED_ATTEMPTS {
                if let Some(suppressed) = self.refused_log.allow(now) {
                    warn!(
                        attempts = self.failed_attempts,
                        suppressed,
                        "pair-setup refused: too many wrong setup codes; `hksv-bridge reset` clears the count"
                    );
                }
            } else if let Some(at) = self.next_attempt_at.filter(|at| now < *at) {
                if let Some(suppressed) = self.refused_log.allow(now) {
                    warn!(
                        attempts = self.failed_attempts,
                        retry_in_s = at.saturating_duration_since(now).as_secs(),
                        suppressed,
                        "pair-setup refused for now: back-off after wrong setup codes"
                    );
                }
                return pairing_error(2, PairingError::BUSY);
            }
        }
        let ctx = SetupContext {
            identity: &self.identity,
            setup_code: self.setup_code.as_str(),
            paired: !self.pairings.is_empty(),
            failed_attempts: self.failed_attempts,
        };
        match self.pair_setup.handle(conn, body, &ctx, now, rng) {
            SetupOutcome::Reply(r) => r,
            SetupOutcome::WrongCode(r) => {
                self.failed_attempts = self.failed_attempts.saturating_add(1);
                self.next_attempt_at = attempt_backoff(self.failed_attempts).map(|d| now + d);
                warn!(
                    attempts = self.failed_attempts,
                    "pair-setup: wrong setup code"
                );
                if let Err(e) = self.save_accessory_file() {
                    warn!(error = %e, "could not persist failed pair-setup attempts; pair-setup waits until it can");
                    self.attempts_unsaved = true;
                }
                r
            }
            SetupOutcome::Paired { reply, pairing } => {
                let id = pairing.controller_id.clone();
                self.pairings
                    .retain(|p| p.controller_id != pairing.controller_id);
                self.pairings.push(pairing);
                if let Err(e) = self.save_pairings() {
                    warn!(error = %e, "could not persist the new pairing; refusing it");
                    self.pairings.retain(|p| p.controller_id != id);
                    return pairing_error(6, PairingError::UNKNOWN);
                }
                info!(controller = %id, "paired");
                // A successful pairing clears the wrong-code count (it only guards brute force).
                self.failed_attempts = 0;
                self.next_attempt_at = None;
                if let Err(e) = self.save_accessory_file() {
                    warn!(error = %e, "could not persist the attempt counter");
                }
                self.advertisement_changed = true;
                reply
            }
        }
    }

    /// Looks up a pairing for pair-verify.
    pub fn find_pairing(&self, controller_id: &str) -> Option<Pairing> {
        self.pairings
            .iter()
            .find(|p| p.controller_id == controller_id)
            .cloned()
    }

    /// The accessory identity (for pair-verify).
    pub fn identity(&self) -> &AccessoryIdentity {
        &self.identity
    }

    /// Marks `conn` verified as `controller` with the pair-verify `shared_secret`.
    pub fn mark_verified(
        &mut self,
        conn: ConnectionId,
        controller: &Pairing,
        shared_secret: SharedSecret,
    ) {
        if let Some(s) = self.sessions.get_mut(&conn) {
            debug!(conn, controller = %controller.controller_id, "pair-verify complete");
            s.verified = Some(VerifiedSession {
                controller_id: controller.controller_id.clone(),
                shared_secret: Arc::new(shared_secret),
            });
        }
    }

    /// Handles `POST /pairings` (§1.8). Returns the TLV reply and whether the requesting
    /// connection must close after it (its own pairing was removed).
    fn pairings_request(&mut self, conn: ConnectionId, body: &[u8]) -> (Vec<u8>, bool) {
        let Some(ctx) = self.context(conn) else {
            return (pairing_error(2, PairingError::AUTHENTICATION), false);
        };
        let Ok(tlv) = Tlv8::decode(body) else {
            return (pairing_error(2, PairingError::UNKNOWN), false);
        };
        if tlv.get(TlvType::STATE) != Some(&[1][..]) {
            return (pairing_error(2, PairingError::UNKNOWN), false);
        }
        if !ctx.admin {
            debug!(controller = %ctx.controller_id, "non-admin /pairings request");
            return (pairing_error(2, PairingError::AUTHENTICATION), false);
        }
        let method = tlv.get(TlvType::METHOD).and_then(|m| m.first().copied());
        match method.map(Method) {
            Some(Method::ADD_PAIRING) => self.add_pairing(conn, &tlv),
            Some(Method::REMOVE_PAIRING) => self.remove_pairing(conn, &tlv),
            Some(Method::LIST_PAIRINGS) => (self.list_pairings(), false),
            _ => (pairing_error(2, PairingError::UNKNOWN), false),
        }
    }

    /// Adds (or updates) a pairing from the application, as an admin's Add Pairing would
    /// (§1.8): used for the bridge's temporary `selftest` pairing.
    ///
    /// # Errors
    /// An empty id, a different key for a known id, too many pairings, or a store failure.
    pub fn add_controller_pairing(
        &mut self,
        controller_id: &str,
        ltpk: [u8; 32],
        admin: bool,
    ) -> Result<(), &'static str> {
        let mut tlv = Tlv8::new();
        tlv.push(TlvType::IDENTIFIER, controller_id.as_bytes())
            .push(TlvType::PUBLIC_KEY, &ltpk)
            .push_u8(TlvType::PERMISSIONS, u8::from(admin));
        let (reply, _) = self.add_pairing(ConnectionId::MAX, &tlv);
        self.advertisement_changed = true;
        if reply == state2() {
            Ok(())
        } else {
            Err("pairing refused (bad id, key mismatch, too many pairings or store failure)")
        }
    }

    /// Removes a pairing from the application; its sessions are closed (§1.8).
    ///
    /// # Errors
    /// A store failure.
    pub fn remove_controller_pairing(&mut self, controller_id: &str) -> Result<(), &'static str> {
        let mut tlv = Tlv8::new();
        tlv.push(TlvType::IDENTIFIER, controller_id.as_bytes());
        // No request connection: every affected session is asked to close.
        let (reply, _) = self.remove_pairing(ConnectionId::MAX, &tlv);
        self.advertisement_changed = true;
        if reply == state2() {
            Ok(())
        } else {
            Err("could not persist pairings")
        }
    }

    /// Add Pairing (§1.8). Returns the TLV reply and whether `requester` must close after it
    /// (a downgrade left no admin, so every pairing went). The new list is written before it
    /// takes effect: a failed write changes nothing and answers an error.
    fn add_pairing(&mut self, requester: ConnectionId, tlv: &Tlv8) -> (Vec<u8>, bool) {
        let id = tlv
            .get(TlvType::IDENTIFIER)
            .and_then(|b| std::str::from_utf8(b).ok())
            .filter(|s| !s.is_empty() && s.len() <= crate::pairing::MAX_PAIRING_ID_BYTES);
        let ltpk: Option<[u8; 32]> = tlv.get(TlvType::PUBLIC_KEY).and_then(|b| b.try_into().ok());
        // ADK: permissions is one byte, 0 or 1.
        let perms = match tlv.get(TlvType::PERMISSIONS) {
            Some([p @ (0 | 1)]) => Some(*p == 1),
            _ => None,
        };
        let (Some(id), Some(ltpk), Some(admin)) = (id, ltpk, perms) else {
            return (pairing_error(2, PairingError::UNKNOWN), false);
        };
        let mut next = self.pairings.clone();
        if let Some(existing) = next.iter_mut().find(|p| p.controller_id == id) {
            if existing.ltpk != ltpk {
                return (pairing_error(2, PairingError::UNKNOWN), false);
            }
            existing.admin = admin;
        } else {
            if next.len() >= MAX_PAIRINGS {
                return (pairing_error(2, PairingError::MAX_PEERS), false);
            }
            next.push(Pairing {
                controller_id: id.to_owned(),
                ltpk,
                admin,
            });
        }
        // A downgrade can leave no admin (ADK); then no pairing may stay.
        drop_all_if_no_admin(&mut next);
        if let Err(e) = self.save_pairing_list(&next) {
            warn!(error = %e, controller = %id, "could not persist pairings; Add Pairing refused, nothing changed");
            return (pairing_error(2, PairingError::UNKNOWN), false);
        }
        info!(controller = %id, admin, "pairing added");
        self.set_pairings(next);
        let close_requester = self.close_unpaired_sessions(requester);
        (state2(), close_requester)
    }

    /// Remove Pairing (§1.8), written before it takes effect like [`Self::add_pairing`].
    fn remove_pairing(&mut self, conn: ConnectionId, tlv: &Tlv8) -> (Vec<u8>, bool) {
        let Some(id) = tlv
            .get(TlvType::IDENTIFIER)
            .and_then(|b| std::str::from_utf8(b).ok())
        else {
            return (pairing_error(2, PairingError::UNKNOWN), false);
        };
        let mut next = self.pairings.clone();
        next.retain(|p| p.controller_id != id);
        if next.len() == self.pairings.len() {
            // Not paired: nothing to write (ADK answers success).
            return (state2(), false);
        }
        drop_all_if_no_admin(&mut next);
        if let Err(e) = self.save_pairing_list(&next) {
            warn!(error = %e, controller = %id, "could not persist pairings; Remove Pairing refused, nothing changed");
            return (pairing_error(2, PairingError::UNKNOWN), false);
        }
        info!(controller = %id, "pairing removed");
        self.set_pairings(next);
        let close_self = self.close_unpaired_sessions(conn);
        (state2(), close_self)
    }

    fn set_pairings(&mut self, pairings: Vec<Pairing>) {
        if pairings.is_empty() != self.pairings.is_empty() {
            self.advertisement_changed = true;
        }
        self.pairings = pairings;
    }

    /// Asks every session whose controller is no longer paired to close (§1.8) and runs its
    /// close hooks. `requester` (the connection whose request removed the pairing) is not
    /// woken: it answers first and then closes; returns whether it is among them.
    fn close_unpaired_sessions(&mut self, requester: ConnectionId) -> bool {
        let mut close_requester = false;
        let pairings = &self.pairings;
        for (&cid, s) in &mut self.sessions {
            let gone = s
                .verified
                .as_ref()
                .is_some_and(|v| !pairings.iter().any(|p| p.controller_id == v.controller_id));
            if !gone {
                continue;
            }
            if cid == requester {
                close_requester = true;
            } else if !s.close_requested {
                s.wake();
            }
            s.request_close();
        }
        close_requester
    }

    fn list_pairings(&self) -> Vec<u8> {
        let mut tlv = Tlv8::new();
        tlv.push_u8(TlvType::STATE, 2);
        for (i, p) in self.pairings.iter().enumerate() {
            if i > 0 {
                tlv.push_separator(TlvType::SEPARATOR);
            }
            tlv.push(TlvType::IDENTIFIER, p.controller_id.as_bytes())
                .push(TlvType::PUBLIC_KEY, &p.ltpk)
                .push_u8(TlvType::PERMISSIONS, u8::from(p.admin));
        }
        tlv.encode()
    }

    // ---- requests -------------------------------------------------------------------------

    /// Answers one request that is not pair-setup/pair-verify. The result says whether to
    /// close the connection after sending the response.
    pub fn handle_request(
        &mut self,
        conn: ConnectionId,
        req: &Request,
        now: Instant,
    ) -> (Response, bool) {
        let path = req.path.as_str();
        let method = req.method.as_str();
        if path == "/identify" {
            if method != "POST" {
                return (Response::empty(405), false);
            }
            if self.is_paired() {
                return (
                    Response::status_json(400, HapStatus::INSUFFICIENT_PRIVILEGES),
                    false,
                );
            }
            if let Some(h) = &self.identify_handler {
                h();
            }
            return (Response::empty(204), false);
        }
        let known = matches!(
            path,
            "/accessories" | "/characteristics" | "/prepare" | "/pairings" | "/resource"
        );
        if !known {
            return (
                Response::status_json(404, HapStatus::RESOURCE_DOES_NOT_EXIST),
                false,
            );
        }
        let Some(ctx) = self.context(conn) else {
            return (
                Response::status_json(470, HapStatus::INSUFFICIENT_PRIVILEGES),
                false,
            );
        };
        match (method, path) {
            ("GET", "/accessories") => (self.get_accessories(&ctx), false),
            ("GET", "/characteristics") => (self.get_characteristics(&ctx, req), false),
            ("PUT", "/characteristics") => (self.put_characteristics(&ctx, &req.body, now), false),
            ("PUT", "/prepare") => (self.prepare(conn, &req.body, now), false),
            ("POST", "/pairings") => {
                let (body, close) = self.pairings_request(conn, &req.body);
                (Response::tlv8(body), close)
            }
            ("POST", "/resource") => (self.resource(&ctx, &req.body), false),
            _ => (Response::empty(405), false),
        }
    }

    fn read_value(&self, ctx: &ConnectionContext, c: &Characteristic) -> Result<Value, HapStatus> {
        match c.read_handler() {
            Some(h) => h(ctx),
            None => Ok(c.stored_value().clone()),
        }
    }

    fn get_accessories(&self, ctx: &ConnectionContext) -> Response {
        let json = self.db.to_json(|_, c| {
            self.read_value(ctx, c)
                .unwrap_or_else(|_| c.stored_value().clone())
        });
        Response::json(200, &json)
    }

    fn get_characteristics(&self, ctx: &ConnectionContext, req: &Request) -> Response {
        let invalid = || Response::status_json(400, HapStatus::INVALID_VALUE_IN_REQUEST);
        let Some(ids) = req.query_param("id") else {
            return invalid();
        };
        let mut list = Vec::new();
        for part in ids.split(',') {
            let parsed = part.split_once('.').and_then(|(a, i)| {
                Some(CharId {
                    aid: a.parse().ok()?,
                    iid: i.parse().ok()?,
                })
            });
            match parsed {
                Some(id) => list.push(id),
                None => return invalid(),
            }
        }
        let mut seen = std::collections::HashSet::new();
        if !list.iter().all(|id| seen.insert(*id)) {
            return Response::status_json(422, HapStatus::INVALID_VALUE_IN_REQUEST);
        }
        let flag = |name: &str| {
            req.query_param(name)
                .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
        };
        let (meta, perms, ty, ev) = (flag("meta"), flag("perms"), flag("type"), flag("ev"));
        let subs = self
            .sessions
            .get(&ctx.connection_id)
            .map(|s| &s.subscriptions);
        let mut any_error = false;
        let mut entries = Vec::with_capacity(list.len());
        for id in list {
            let mut obj = Map::new();
            obj.insert("aid".into(), json!(id.aid));
            obj.insert("iid".into(), json!(id.iid));
            let result = match self.db.get(id) {
                None => Err(HapStatus::INVALID_VALUE_IN_REQUEST),
                Some(c) if !c.perms().contains(Perms::PR) => {
                    Err(HapStatus::WRITE_ONLY_CHARACTERISTIC)
                }
                Some(c) => self.read_value(ctx, c).map(|v| (c, v)),
            };
            match result {
                Ok((c, v)) => {
                    obj.insert("value".into(), v.to_json(c.format()));
                    if meta {
                        c.write_meta(&mut obj);
                    }
                    if perms {
                        obj.insert("perms".into(), json!(c.perms().names()));
                    }
                    if ty {
                        obj.insert("type".into(), json!(c.ty().short_string()));
                    }
                    if ev {
                        let on = subs.is_some_and(|s| s.contains(&id));
                        obj.insert("ev".into(), json!(on));
                    }
                    obj.insert("status".into(), json!(0));
                }
                Err(s) => {
                    any_error = true;
                    obj.insert("status".into(), json!(s.code()));
                }
            }
            entries.push(obj);
        }
        if !any_error {
            // 200: no per-entry status (§1.9).
            for e in &mut entries {
                e.remove("status");
            }
        }
        let status = if any_error { 207 } else { 200 };
        Response::json(status, &json!({ "characteristics": entries }))
    }

    fn put_characteristics(
        &mut self,
        ctx: &ConnectionContext,
        body: &[u8],
        now: Instant,
    ) -> Response {
        let invalid = || Response::status_json(400, HapStatus::INVALID_VALUE_IN_REQUEST);
        let Ok(Json::Object(root)) = serde_json::from_slice::<Json>(body) else {
            return invalid();
        };
        let Some(Json::Array(writes)) = root.get("characteristics") else {
            return invalid();
        };
        let conn = ctx.connection_id;
        // Timed write (§1.9 `/prepare`): a pid must match an unexpired prepare on this
        // connection; the prepare is consumed either way.
        let timed_ok = match root.get("pid") {
            None => None,
            Some(pid) => {
                let prepared = self
                    .sessions
                    .get_mut(&conn)
                    .and_then(|s| s.timed_write.take());
                Some(matches!(
                    (pid.as_u64(), prepared),
                    (Some(p), Some((q, deadline))) if p == q && now <= deadline
                ))
            }
        };
        let mut any_error = false;
        let mut any_value = false;
        let mut entries = Vec::with_capacity(writes.len());
        for w in writes {
            let aid = w.get("aid").and_then(Json::as_u64);
            let iid = w.get("iid").and_then(Json::as_u64);
            let mut obj = Map::new();
            obj.insert("aid".into(), aid.map_or(Json::Null, |v| json!(v)));
            obj.insert("iid".into(), iid.map_or(Json::Null, |v| json!(v)));
            let result = match (aid, iid) {
                (Some(aid), Some(iid)) => {
                    self.write_one(ctx, CharId { aid, iid }, w, timed_ok, now)
                }
                _ => Err(HapStatus::INVALID_VALUE_IN_REQUEST),
            };
            match result {
                Ok(Some((v, format))) => {
                    any_value = true;
                    obj.insert("status".into(), json!(0));
                    obj.insert("value".into(), v.to_json(format));
                }
                Ok(None) => {
                    obj.insert("status".into(), json!(0));
                }
                Err(s) => {
                    any_error = true;
                    obj.insert("status".into(), json!(s.code()));
                }
            }
            entries.push(Json::Object(obj));
        }
        if !any_error && !any_value {
            return Response::empty(204);
        }
        Response::json(207, &json!({ "characteristics": entries }))
    }

    /// One entry of a `PUT /characteristics`. Returns the write-response value, if any.
    fn write_one(
        &mut self,
        ctx: &ConnectionContext,
        id: CharId,
        w: &Json,
        timed_ok: Option<bool>,
        now: Instant,
    ) -> Result<Option<(Value, crate::db::Format)>, HapStatus> {
        let invalid = HapStatus::INVALID_VALUE_IN_REQUEST;
        let c = self.db.get(id).ok_or(invalid)?;
        let ev = w.get("ev");
        let value = w.get("value");
        if ev.is_none() && value.is_none() {
            return Err(invalid);
        }
        if timed_ok == Some(false) {
            return Err(invalid);
        }
        let mut response = None;
        if let Some(ev) = ev {
            let on = match ev {
                Json::Bool(b) => *b,
                Json::Number(n) => n.as_u64() == Some(1),
                _ => return Err(invalid),
            };
            if !c.perms().contains(Perms::EV) {
                return Err(HapStatus::NOTIFICATION_NOT_SUPPORTED);
            }
            if let Some(s) = self.sessions.get_mut(&ctx.connection_id) {
                if on {
                    s.subscriptions.insert(id);
                } else {
                    s.subscriptions.remove(&id);
                }
            }
        }
        if let Some(json) = value {
            let c = self.db.get(id).ok_or(invalid)?;
            if !c.perms().contains(Perms::PW) {
                return Err(HapStatus::READ_ONLY_CHARACTERISTIC);
            }
            if c.is_admin_write() && !ctx.admin {
                return Err(HapStatus::INSUFFICIENT_PRIVILEGES);
            }
            if c.perms().contains(Perms::TW) && timed_ok != Some(true) {
                return Err(invalid);
            }
            let v = c.coerce(json)?;
            let format = c.format();
            let handler_reply = match c.write_handler() {
                Some(h) => h(ctx, &v)?,
                None => None,
            };
            let wants_response = w
                .get("r")
                .is_some_and(|r| r.as_bool() == Some(true) || r.as_u64() == Some(1));
            if wants_response {
                response = Some((handler_reply.unwrap_or_else(|| v.clone()), format));
            }
            self.store_and_notify(id, v, Some(ctx.connection_id), now);
        }
        Ok(response)
    }

    fn prepare(&mut self, conn: ConnectionId, body: &[u8], now: Instant) -> Response {
        let parsed = serde_json::from_slice::<Json>(body)
            .ok()
            .and_then(|j| Some((j.get("ttl")?.as_u64()?, j.get("pid")?.as_u64()?)));
        let Some((ttl_ms, pid)) = parsed else {
            return Response::status_json(400, HapStatus::INVALID_VALUE_IN_REQUEST);
        };
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.timed_write = Some((pid, now + Duration::from_millis(ttl_ms.min(3_600_000))));
        }
        Response::json(200, &json!({ "status": 0 }))
    }

    fn resource(&self, ctx: &ConnectionContext, body: &[u8]) -> Response {
        let Ok(json) = serde_json::from_slice::<Json>(body) else {
            return Response::status_json(400, HapStatus::INVALID_VALUE_IN_REQUEST);
        };
        let Some(h) = &self.resource_handler else {
            return Response::status_json(404, HapStatus::RESOURCE_DOES_NOT_EXIST);
        };
        match h(ctx, &json) {
            Ok(Some(jpeg)) => Response {
                status: 200,
                content_type: Some("image/jpeg"),
                body: jpeg,
            },
            Ok(None) => Response::status_json(404, HapStatus::RESOURCE_DOES_NOT_EXIST),
            Err(s) => Response::status_json(207, s),
        }
    }

    // ---- values and events ----------------------------------------------------------------

    /// Sets a characteristic's value from the application (e.g. motion) and queues an event
    /// for every subscribed connection. Returns `false` if `id` does not exist.
    pub fn set_value(&mut self, id: CharId, value: Value, now: Instant) -> bool {
        if self.db.get(id).is_none() {
            return false;
        }
        self.store_and_notify(id, value, None, now);
        true
    }

    /// The stored value of `id`.
    pub fn value(&self, id: CharId) -> Option<&Value> {
        self.db.get(id).map(Characteristic::stored_value)
    }

    fn store_and_notify(
        &mut self,
        id: CharId,
        value: Value,
        exclude: Option<ConnectionId>,
        now: Instant,
    ) {
        let Some(c) = self.db.get_mut(id) else {
            return;
        };
        let json = value.to_json(c.format());
        let immediate = c.has_immediate_events();
        if !c.set_stored_value(value) {
            return;
        }
        for (&cid, s) in &mut self.sessions {
            if Some(cid) == exclude || s.verified.is_none() || !s.subscriptions.contains(&id) {
                continue;
            }
            match s.pending.iter_mut().find(|(k, _)| *k == id) {
                Some(slot) => slot.1 = json.clone(),
                None => s.pending.push((id, json.clone())),
            }
            s.pending_since.get_or_insert(now);
            s.pending_immediate |= immediate;
            s.wake();
        }
    }

    /// When `conn`'s queued events are due (immediately for MotionDetected and similar,
    /// otherwise [`EVENT_BATCH`] after the first one), or `None` if nothing is queued.
    pub fn event_deadline(&self, conn: ConnectionId) -> Option<Instant> {
        let s = self.sessions.get(&conn)?;
        let since = s.pending_since?;
        Some(if s.pending_immediate {
            since
        } else {
            since + EVENT_BATCH
        })
    }

    /// Takes `conn`'s queued events as an `EVENT/1.0` JSON body if they are due at `now`.
    pub fn take_events(&mut self, conn: ConnectionId, now: Instant) -> Option<Vec<u8>> {
        let due = self.event_deadline(conn)?;
        if now < due {
            return None;
        }
        let s = self.sessions.get_mut(&conn)?;
        let events: Vec<Json> = s
            .pending
            .drain(..)
            .map(|(id, v)| json!({"aid": id.aid, "iid": id.iid, "value": v}))
            .collect();
        s.pending_since = None;
        s.pending_immediate = false;
        Some(
            json!({ "characteristics": events })
                .to_string()
                .into_bytes(),
        )
    }
}

/// `State=<state>, Error=<e>`.
/// A pairing list with no admin left keeps no pairing (HomeKitADK: the last admin's removal
/// or downgrade unpairs the accessory).
fn drop_all_if_no_admin(pairings: &mut Vec<Pairing>) {
    if !pairings.is_empty() && !pairings.iter().any(|p| p.admin) {
        info!("last admin removed: removing all pairings");
        pairings.clear();
    }
}

/// Wrong setup codes after which pair-setup starts to wait between attempts.
pub const FREE_ATTEMPTS: u32 = 3;
/// Longest wait between two pair-setup attempts.
pub const MAX_ATTEMPT_BACKOFF: Duration = Duration::from_secs(3600);

/// How long M1 waits after the `failed`-th wrong setup code: nothing for the first
/// [`FREE_ATTEMPTS`] (typos), then 1 s doubling up to [`MAX_ATTEMPT_BACKOFF`]. The 100
/// guesses that reach MaxTries then take about 85 hours instead of 6 seconds, so a neighbour
/// cannot lock a camera out in passing (the count itself is persisted; the back-off restarts
/// with the bridge, which a LAN peer cannot do).
pub fn attempt_backoff(failed: u32) -> Option<Duration> {
    let n = failed.checked_sub(FREE_ATTEMPTS + 1)?;
    let secs = 1u64.checked_shl(n.min(63)).unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_ATTEMPT_BACKOFF))
}

/// Resets the persisted wrong-setup-code count in `store` (`hksv-bridge reset`), keeping the
/// accessory's identity and setup code. Returns the count it cleared (0: nothing to do).
///
/// # Errors
/// The accessory file cannot be read, parsed or written.
pub fn clear_failed_attempts(store: &dyn Store) -> std::io::Result<u32> {
    let Some(bytes) = store.load(ACCESSORY_FILE)? else {
        return Ok(0);
    };
    let mut f: AccessoryFile = serde_json::from_slice(&bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let cleared = std::mem::take(&mut f.failed_attempts);
    if cleared > 0 {
        let bytes = serde_json::to_vec_pretty(&f)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        store.save(ACCESSORY_FILE, &bytes)?;
    }
    Ok(cleared)
}

fn pairing_error(state: u8, e: PairingError) -> Vec<u8> {
    let mut t = Tlv8::new();
    t.push_u8(TlvType::STATE, state)
        .push_u8(TlvType::ERROR, e.0);
    t.encode()
}

fn state2() -> Vec<u8> {
    let mut t = Tlv8::new();
    t.push_u8(TlvType::STATE, 2);
    t.encode()
}
