//! HTTP API (axum): camera list, motion triggers, doorbell presses, and the temporary pairing
//! that `selftest` uses.
//!
//! | method | path | body | answer |
//! | --- | --- | --- | --- |
//! | GET | `/api/cameras` | | `[{"name","motion","recording","paired","port","aid","prebuffer_ms","state","last_error","since"}]` |
//! | POST | `/api/cameras/{name}/motion` | `{"detected": bool}` | `{"detected": bool}` (after debounce) |
//! | POST | `/api/cameras/{name}/ring` | | `{"rang": true}`; 409 when not a doorbell |
//! | GET | `/api/cameras/{name}` | | the camera in detail ([`crate::camera::detail::CameraDetail`]) |
//! | GET | `/api/cameras/{name}/snapshot.jpg?width=W&height=H` | | JPEG of the latest keyframe (default 640 wide, 16:9; 16–3840 px); 500 before the first keyframe |
//! | GET | `/api/cameras/{name}/events?before=ID&limit=N` | | the recording history, newest first ([`crate::camera::history::HistoryEntry`]; `limit` 1–200, default 50) |
//! | GET | `/api/cameras/{name}/live-sessions?limit=N` | | live-view sessions, newest first ([`crate::camera::history::LiveEntry`]) |
//! | GET | `/healthz` | | `{"status": "ok"}`; no token needed |
//! | GET | `/`, `/status.js` | | the status page (static; asks for the token when one is set) |
//! | GET | `/api/cameras/{name}/setup-qr.svg` | | the setup QR code while unpaired; 404 once paired |
//! | GET | `/metrics` | | OpenMetrics text ([`crate::metrics`]) |
//! | POST | `/api/cameras/{name}/selftest-pairing` | `{"controller_id", "ltpk": hex}` | `{"controller_id", "accessory_pairing_id", "accessory_ltpk"}` |
//! | DELETE | `/api/cameras/{name}/selftest-pairing` | `{"controller_id"}` | `{"removed": true}` |
//!
//! Names are percent-decoded path segments (`Front%20Door`). Errors are JSON
//! `{"error": "…"}`: 400 bad body, 401 token missing or wrong, 403 selftest-pairing from a
//! non-loopback peer, 404 unknown camera or path, 409 not a doorbell, 413 body over
//! [`MAX_BODY_BYTES`], 500 the camera failed. When a token is configured every call needs
//! `Authorization: Bearer <token>`.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, ExtensionRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use motion::{MotionError, MotionHub, MotionSource};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::watch;
use tracing::{info, warn};

/// Largest request body accepted; the bodies are tiny JSON objects.
pub const MAX_BODY_BYTES: usize = 4096;
/// Longest `controller_id` accepted (HAP pairing identifiers are 36-character UUIDs).
pub const MAX_CONTROLLER_ID_BYTES: usize = 64;

/// What the API needs from the running cameras (implemented in `app.rs`; tests use a double).
pub trait CameraDirectory: Send + Sync + 'static {
    /// Every camera, in configuration order.
    fn list(&self) -> Vec<CameraSummary>;
    /// Presses the doorbell of `name`.
    ///
    /// # Errors
    /// [`ApiError::UnknownCamera`], [`ApiError::NotADoorbell`].
    fn ring(&self, name: &str) -> Result<(), ApiError>;
    /// Adds an admin pairing for `controller_id` with Ed25519 key `ltpk` to camera `name`,
    /// until [`remove_temporary_pairing`](Self::remove_temporary_pairing).
    ///
    /// # Errors
    /// [`ApiError::UnknownCamera`], or [`ApiError::Failed`] (e.g. pairing store full).
    fn add_temporary_pairing(
        &self,
        name: &str,
        controller_id: &str,
        ltpk: [u8; 32],
    ) -> Result<(), ApiError>;
    /// Removes the pairing added by [`add_temporary_pairing`](Self::add_temporary_pairing).
    ///
    /// # Errors
    /// [`ApiError::UnknownCamera`], [`ApiError::Failed`].
    fn remove_temporary_pairing(&self, name: &str, controller_id: &str) -> Result<(), ApiError>;
    /// Camera `name`'s recording history, newest first: up to `limit` entries with an id below
    /// `before`. The default says there is none.
    ///
    /// # Errors
    /// [`ApiError::UnknownCamera`].
    fn events(
        &self,
        name: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<crate::camera::history::HistoryEntry>, ApiError> {
        let _ = (before, limit);
        Err(ApiError::UnknownCamera(name.to_owned()))
    }
    /// Camera `name`'s live-view sessions, newest first, at most `limit`. The default knows no
    /// camera.
    ///
    /// # Errors
    /// [`ApiError::UnknownCamera`].
    fn live_sessions(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Vec<crate::camera::history::LiveEntry>, ApiError> {
        let _ = limit;
        Err(ApiError::UnknownCamera(name.to_owned()))
    }
    /// Camera `name` in detail ([`crate::camera::detail::CameraDetail`], as JSON). The
    /// default knows no camera.
    ///
    /// # Errors
    /// [`ApiError::UnknownCamera`].
    fn detail(&self, name: &str) -> Result<serde_json::Value, ApiError> {
        Err(ApiError::UnknownCamera(name.to_owned()))
    }
    /// A JPEG of camera `name`'s latest keyframe at `width`×`height` pixels (blocking: decodes
    /// and encodes). The default has none.
    ///
    /// # Errors
    /// [`ApiError::UnknownCamera`]; [`ApiError::Failed`] when no keyframe can be decoded yet.
    fn snapshot(&self, name: &str, width: u32, height: u32) -> Result<Vec<u8>, ApiError> {
        let _ = (width, height);
        Err(ApiError::UnknownCamera(name.to_owned()))
    }
    /// Every camera's figures for `/metrics`. The default lists none.
    fn metrics(&self) -> Vec<crate::metrics::CameraMetrics> {
        Vec::new()
    }
    /// The accessory's pairing ID and long-term public key, which the selftest controller
    /// needs to pair-verify with the temporary pairing. Added to the contract; the default
    /// says it is not available, and the POST answer then lacks these fields.
    ///
    /// # Errors
    /// [`ApiError::UnknownCamera`], [`ApiError::Failed`].
    fn accessory_identity(&self, name: &str) -> Result<AccessoryIdentityInfo, ApiError> {
        Err(ApiError::Failed(format!(
            "accessory identity of {name:?} is not available"
        )))
    }
}

/// One camera as `GET /api/cameras` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CameraSummary {
    /// Configured name.
    pub name: String,
    /// MotionDetected right now.
    pub motion: bool,
    /// A recording stream to a hub is open.
    pub recording: bool,
    /// At least one controller is paired.
    pub paired: bool,
    /// The HAP port it is reached on (the bridge's in bridge mode).
    pub port: u16,
    /// Its accessory instance ID on that port: 1 in accessory mode, 2 and up in bridge mode.
    pub aid: u64,
    /// Media held in the camera's prebuffer ring (sum of the stored fragments' durations);
    /// 0 before the first init segment. A hub records a warm camera once this is ≥ the
    /// selected prebuffer length (HKSV §3.1: ≥ 4000 ms).
    pub prebuffer_ms: u64,
    /// What the source is doing: `starting` (not connected yet), `streaming`, `retrying`
    /// (down, reconnecting with backoff) or `failed` (not retried).
    pub state: &'static str,
    /// The source's last error (credentials redacted); `null` until it first fails. Kept after
    /// recovery, so a flapping camera shows why.
    pub last_error: Option<String>,
    /// When `state` was entered: RFC 3339, UTC, whole seconds (`2026-12-07T21:04:05Z`).
    pub since: String,
}

/// The accessory side of a pairing: what a controller verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessoryIdentityInfo {
    /// Accessory pairing ID (`XX:XX:XX:XX:XX:XX`).
    pub pairing_id: String,
    /// Ed25519 long-term public key.
    pub ltpk: [u8; 32],
}

/// Why a camera operation failed; each maps to one status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// No camera of that name → 404.
    UnknownCamera(String),
    /// The camera has no doorbell → 409.
    NotADoorbell(String),
    /// Anything else → 500, with the message.
    Failed(String),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownCamera(n) => write!(f, "unknown camera {n:?}"),
            Self::NotADoorbell(n) => write!(f, "camera {n:?} is not a doorbell"),
            Self::Failed(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for ApiError {}

impl From<MotionError> for ApiError {
    fn from(e: MotionError) -> Self {
        match e {
            MotionError::UnknownCamera { camera } => Self::UnknownCamera(camera),
            other => Self::Failed(other.to_string()),
        }
    }
}

fn error_response(status: StatusCode, message: impl fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": message.to_string() }))).into_response()
}

/// A refused request: status and message (kept small; becomes [`error_response`]).
struct Reject(StatusCode, String);

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        error_response(self.0, self.1)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::UnknownCamera(_) => StatusCode::NOT_FOUND,
            Self::NotADoorbell(_) => StatusCode::CONFLICT,
            Self::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error_response(status, self)
    }
}

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct ApiState {
    /// Where motion triggers go.
    pub motion: MotionHub,
    /// Bearer token every call must carry, when set. Not printed by `Debug`.
    pub token: Option<String>,
    /// The running cameras.
    pub cameras: Arc<dyn CameraDirectory>,
    /// The secret the selftest-pairing routes require in [`SELFTEST_SECRET_HEADER`]: written
    /// at start to [`SELFTEST_SECRET_FILE`] (0600) in the state root, which only the bridge's
    /// user can read. `None`: those routes answer 403. Not printed by `Debug`.
    pub selftest_secret: Option<String>,
}

/// File in the state root holding this run's selftest secret (hex, 0600).
pub const SELFTEST_SECRET_FILE: &str = "selftest.secret";
/// Header carrying it (the selftest client sends it).
pub const SELFTEST_SECRET_HEADER: &str = controller::selftest::SELFTEST_SECRET_HEADER;

impl fmt::Debug for ApiState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiState")
            .field("motion", &self.motion)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field(
                "selftest_secret",
                &self.selftest_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// Equal in time independent of where the first difference is (the length still shows).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    // The page and its script are static (they read everything through the API with the
    // token); liveness says nothing.
    let open = matches!(
        req.uri().path(),
        "/healthz" | "/" | "/status.js" | "/favicon.ico"
    );
    if let Some(token) = state.token.as_ref().filter(|_| !open) {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let ok = given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()));
        if !ok {
            let mut resp = error_response(
                StatusCode::UNAUTHORIZED,
                "missing or wrong token: send Authorization: Bearer <token>",
            );
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return resp;
        }
    }
    next.run(req).await
}

/// Whether `host` (a `Host` header value) names this machine by address: an IP literal (with
/// or without a port) or `localhost`. A name resolved by DNS could be an attacker's domain
/// rebound to our address (DNS rebinding).
fn is_address_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest
            .split_once(']')
            .is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok());
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.parse::<u16>().is_ok())
            .map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// What a browser sends and curl, `selftest` or a home automation does not: a web page may not
/// drive the API. A request with an `Origin` other than the API's own (`http://<Host>`), or
/// marked cross-site by `Sec-Fetch-Site`, is refused (403); without a token, so is a `Host`
/// that is not an address (DNS rebinding). Runs before the token check, so a browser that
/// holds no token learns nothing either way.
async fn refuse_browsers(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin = headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("?"));
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"));
    let foreign_origin = origin.is_some_and(|o| o != format!("http://{host}"));
    if foreign_origin || cross_site {
        return error_response(
            StatusCode::FORBIDDEN,
            "cross-origin requests are refused: call the API from a program, not a web page",
        );
    }
    if state.token.is_none() && !host.is_empty() && !is_address_host(host) {
        return error_response(
            StatusCode::FORBIDDEN,
            "Host must be an IP address or localhost (set [api] token to use a host name)",
        );
    }
    next.run(req).await
}

/// Parses a JSON body ourselves so every malformed body is a 400 with a JSON error, whatever
/// the Content-Type (`curl -d` sends a form type).
fn parse_body<T: DeserializeOwned>(body: &Result<Bytes, BytesRejection>) -> Result<T, Reject> {
    let body = body
        .as_ref()
        .map_err(|e| Reject(e.status(), e.body_text()))?;
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Reject(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))?;
    // serde would also read a struct from an array (`[true]`): only objects are bodies.
    if !value.is_object() {
        return Err(Reject(
            StatusCode::BAD_REQUEST,
            "bad JSON body: expected an object such as {\"detected\": true}".to_owned(),
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| Reject(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MotionBody {
    detected: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddPairingBody {
    controller_id: String,
    ltpk: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemovePairingBody {
    controller_id: String,
}

fn decode_hex_32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *slot = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_controller_id(id: &str) -> Result<(), Reject> {
    if id.is_empty() || id.len() > MAX_CONTROLLER_ID_BYTES || id.chars().any(char::is_control) {
        return Err(Reject(
            StatusCode::BAD_REQUEST,
            format!("controller_id must be 1–{MAX_CONTROLLER_ID_BYTES} printable bytes"),
        ));
    }
    Ok(())
}

async fn list_cameras(State(state): State<ApiState>) -> Response {
    axum::Json(state.cameras.list()).into_response()
}

async fn set_motion(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Response> {
    let body: MotionBody = parse_body(&body).map_err(reject)?;
    let status = state
        .motion
        .trigger(&name, body.detected, MotionSource::Http)
        .map_err(|e| reject(ApiError::from(e)))?;
    let reply = if body.detected == status.detected {
        json!({ "detected": status.detected })
    } else {
        // Only an off can be held: motion turns off once no source is active and min_on_ms
        // has passed since it turned on (motion::debounce); it then does so by itself.
        json!({
            "detected": status.detected,
            "held_by_debounce": true,
            "note": "motion stays on while another source is active or until min_on_ms after it turned on; it then turns off by itself",
        })
    };
    Ok(axum::Json(reply).into_response())
}

/// Entries in one `events` page at most (and the default).
pub const MAX_EVENTS_PAGE: usize = 200;
const DEFAULT_EVENTS_PAGE: usize = 50;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    before: Option<u64>,
    limit: Option<usize>,
}

async fn camera_events(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    query: Result<axum::extract::Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(q)) = query else {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!("query: before=<entry id>&limit=<1–{MAX_EVENTS_PAGE}>"),
        );
    };
    let limit = q
        .limit
        .unwrap_or(DEFAULT_EVENTS_PAGE)
        .clamp(1, MAX_EVENTS_PAGE);
    match state.cameras.events(&name, q.before, limit) {
        Ok(events) => axum::Json(events).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn camera_detail(State(state): State<ApiState>, Path(name): Path<String>) -> Response {
    match state.cameras.detail(&name) {
        Ok(d) => axum::Json(d).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotQuery {
    width: Option<u32>,
    height: Option<u32>,
}

/// Largest snapshot edge served, pixels.
pub const MAX_SNAPSHOT_EDGE_PX: u32 = 3840;

async fn camera_snapshot(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    query: Result<axum::extract::Query<SnapshotQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(q)) = query else {
        return error_response(StatusCode::BAD_REQUEST, "query: width=<px>&height=<px>");
    };
    let width = q.width.unwrap_or(640);
    let height = q.height.unwrap_or(width * 9 / 16);
    if !(16..=MAX_SNAPSHOT_EDGE_PX).contains(&width)
        || !(16..=MAX_SNAPSHOT_EDGE_PX).contains(&height)
    {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!("width and height must be 16–{MAX_SNAPSHOT_EDGE_PX} pixels"),
        );
    }
    let cameras = state.cameras.clone();
    match tokio::task::spawn_blocking(move || cameras.snapshot(&name, width, height)).await {
        Ok(Ok(jpeg)) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            jpeg,
        )
            .into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(_) => error_response(StatusCode::INTERNAL_SERVER_ERROR, "snapshot task failed"),
    }
}

/// The status page's security headers: only our own script, styles inline, images from us
/// or blob URLs, no framing.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The status page (`status/index.html`): static; it reads everything through the API.
async fn status_page() -> Response {
    page(
        "text/html; charset=utf-8",
        include_str!("status/index.html"),
    )
}

async fn status_script() -> Response {
    page(
        "text/javascript; charset=utf-8",
        include_str!("status/status.js"),
    )
}

/// The setup QR code as SVG, only while the camera is unpaired (404 once paired: the code is
/// then of no use to anyone on the page).
async fn setup_qr(State(state): State<ApiState>, Path(name): Path<String>) -> Response {
    let detail = match state.cameras.detail(&name) {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let Some(uri) = detail.get("setup_uri").and_then(serde_json::Value::as_str) else {
        return error_response(
            StatusCode::NOT_FOUND,
            "the camera is paired; no setup code to show",
        );
    };
    match crate::qr::svg(uri) {
        Some(svg) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        None => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot render the QR code",
        ),
    }
}

/// Prometheus scrape target ([`crate::metrics`]).
async fn metrics(State(state): State<ApiState>) -> Response {
    let cameras = state.cameras.metrics();
    match crate::metrics::encode(cameras, crate::metrics::ProcessMetrics::read()) {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => error_response(StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed"),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitQuery {
    limit: Option<usize>,
}

async fn camera_live_sessions(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    query: Result<axum::extract::Query<LimitQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(q)) = query else {
        return error_response(StatusCode::BAD_REQUEST, "query: limit=<1–50>");
    };
    let limit = q.limit.unwrap_or(crate::camera::history::MAX_LIVE_ENTRIES);
    match state.cameras.live_sessions(&name, limit.max(1)) {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Liveness for supervisors and container health checks: no token needed, says nothing else.
async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

async fn ring(State(state): State<ApiState>, Path(name): Path<String>) -> Response {
    match state.cameras.ring(&name) {
        Ok(()) => axum::Json(json!({ "rang": true })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Only a process on this machine may add an admin pairing, token or not.
fn require_loopback(peer: Option<ConnectInfo<SocketAddr>>) -> Result<(), Reject> {
    match peer {
        Some(ConnectInfo(peer)) if peer.ip().to_canonical().is_loopback() => Ok(()),
        _ => Err(Reject(
            StatusCode::FORBIDDEN,
            "selftest-pairing is only accepted from loopback (run selftest on the bridge host)"
                .to_owned(),
        )),
    }
}

/// Only the bridge's own user may add an admin pairing: loopback is not enough (every local
/// user and every local web page reaches it), so the caller must present this run's secret,
/// which sits in a 0600 file of the state root.
fn require_selftest_secret(state: &ApiState, headers: &header::HeaderMap) -> Result<(), Reject> {
    let given = headers
        .get(SELFTEST_SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match &state.selftest_secret {
        Some(secret) if constant_time_eq(given.as_bytes(), secret.as_bytes()) => Ok(()),
        _ => Err(Reject(
            StatusCode::FORBIDDEN,
            format!(
                "selftest-pairing needs this run's secret ({SELFTEST_SECRET_FILE} in the state directory, readable by the bridge's user): run `hksv-bridge selftest` as that user"
            ),
        )),
    }
}

/// The checks both selftest-pairing routes make before touching the directory.
fn pairing_request<T: DeserializeOwned + HasControllerId>(
    state: &ApiState,
    headers: &header::HeaderMap,
    peer: Result<ConnectInfo<SocketAddr>, ExtensionRejection>,
    body: &Result<Bytes, BytesRejection>,
) -> Result<T, Reject> {
    require_loopback(peer.ok())?;
    require_selftest_secret(state, headers)?;
    let body: T = parse_body(body)?;
    check_controller_id(body.controller_id())?;
    Ok(body)
}

trait HasControllerId {
    fn controller_id(&self) -> &str;
}

impl HasControllerId for AddPairingBody {
    fn controller_id(&self) -> &str {
        &self.controller_id
    }
}

impl HasControllerId for RemovePairingBody {
    fn controller_id(&self) -> &str {
        &self.controller_id
    }
}

async fn add_pairing(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    headers: header::HeaderMap,
    peer: Result<ConnectInfo<SocketAddr>, ExtensionRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Response> {
    let body: AddPairingBody = pairing_request(&state, &headers, peer, &body).map_err(reject)?;
    let ltpk = decode_hex_32(&body.ltpk)
        .ok_or_else(|| error_response(StatusCode::BAD_REQUEST, "ltpk must be 64 hex digits"))?;
    state
        .cameras
        .add_temporary_pairing(&name, &body.controller_id, ltpk)
        .map_err(reject)?;
    info!(camera = %name, controller_id = %body.controller_id, "temporary admin pairing added");
    let reply = match state.cameras.accessory_identity(&name) {
        Ok(id) => json!({
            "controller_id": body.controller_id,
            "accessory_pairing_id": id.pairing_id,
            "accessory_ltpk": hex(&id.ltpk),
        }),
        Err(e) => {
            warn!(camera = %name, error = %e, "accessory identity not available");
            json!({ "controller_id": body.controller_id })
        }
    };
    Ok(axum::Json(reply).into_response())
}

async fn remove_pairing(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    headers: header::HeaderMap,
    peer: Result<ConnectInfo<SocketAddr>, ExtensionRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Response> {
    let body: RemovePairingBody = pairing_request(&state, &headers, peer, &body).map_err(reject)?;
    state
        .cameras
        .remove_temporary_pairing(&name, &body.controller_id)
        .map_err(reject)?;
    info!(camera = %name, controller_id = %body.controller_id, "temporary pairing removed");
    Ok(axum::Json(json!({ "removed": true })).into_response())
}

fn reject(r: impl IntoResponse) -> Response {
    r.into_response()
}

async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed for this endpoint; see docs/config.md (HTTP API)",
    )
}

async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "no such endpoint; see docs/config.md (HTTP API)",
    )
}

/// The API routes, with the token check and the body limit applied. Connection info
/// (`ConnectInfo<SocketAddr>`) must be provided by the server (see [`serve`]) for the
/// selftest-pairing routes; without it they answer 403.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/cameras", get(list_cameras))
        .route("/api/cameras/{name}/motion", post(set_motion))
        .route("/api/cameras/{name}/ring", post(ring))
        .route("/api/cameras/{name}", get(camera_detail))
        .route("/api/cameras/{name}/snapshot.jpg", get(camera_snapshot))
        .route("/api/cameras/{name}/events", get(camera_events))
        .route(
            "/api/cameras/{name}/live-sessions",
            get(camera_live_sessions),
        )
        .route("/api/cameras/{name}/setup-qr.svg", get(setup_qr))
        .route("/", get(status_page))
        .route("/status.js", get(status_script))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(
            "/api/cameras/{name}/selftest-pairing",
            post(add_pairing).delete(remove_pairing),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_browsers,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves the API on `listen` until `shutdown` becomes `true`, then finishes the requests in
/// flight and returns.
///
/// Cancel safety: dropping the future closes the listener and every open connection.
///
/// # Errors
/// When `listen` cannot be bound, or the server fails.
pub async fn serve(
    listen: SocketAddr,
    state: ApiState,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the HTTP API on {listen}"))?;
    serve_on(listener, state, shutdown).await
}

/// [`serve`] on a listener bound by the caller (who can then print its real port).
///
/// # Errors
/// The listener's address cannot be read, or the server fails.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: ApiState,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listen = listener.local_addr()?;
    if !listen.ip().is_loopback() && state.token.is_none() {
        warn!(%listen, "HTTP API reachable from the network without a token: set [api] token");
    }
    info!(listen = %listener.local_addr()?, "HTTP API ready");
    let app = router(state).layer(middleware::from_fn(request_deadline));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let per_peer: PeerCounts = Arc::default();
    let mut accept_errors = hap_server::AcceptBackoff::default();
    let mut refusals = hap_server::RateLimited::default();
    let mut connections = tokio::task::JoinSet::new();
    let for_connections = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => {
                        accept_errors.succeeded();
                        a
                    }
                    Err(e) => {
                        tokio::time::sleep(accept_errors.failed("HTTP API", &e)).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    if let Some(suppressed) = refusals.allow(std::time::Instant::now()) {
                        warn!(%peer, suppressed, max = MAX_CONNECTIONS, "HTTP API connection limit reached; closing new connections");
                    }
                    continue;
                };
                let Some(share) = PeerShare::take(&per_peer, peer.ip()) else {
                    if let Some(suppressed) = refusals.allow(std::time::Instant::now()) {
                        warn!(%peer, suppressed, max = MAX_CONNECTIONS_PER_PEER, "HTTP API: one host holds its share of connections; closing its new ones");
                    }
                    continue;
                };
                let permit = (permit, share);
                let service = hyper_util::service::TowerToHyperService::new(
                    app.clone().layer(axum::Extension(ConnectInfo(peer))),
                );
                connections.spawn(serve_connection(stream, service, for_connections.clone(), permit));
            }
            () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Requests in flight finish (each is bounded by REQUEST_TIMEOUT).
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Most simultaneous API connections; further ones are closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Most simultaneous API connections from one IP address: one host on the LAN (or a page in
/// a browser) cannot take every slot.
pub const MAX_CONNECTIONS_PER_PEER: usize = 16;

type PeerCounts = Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>;

/// One connection's place in its peer's share; given back on drop.
struct PeerShare {
    counts: PeerCounts,
    ip: std::net::IpAddr,
}

impl PeerShare {
    fn take(counts: &PeerCounts, ip: std::net::IpAddr) -> Option<Self> {
        let ip = ip.to_canonical();
        let mut map = counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(ip).or_insert(0);
        if *n >= MAX_CONNECTIONS_PER_PEER {
            return None;
        }
        *n += 1;
        Some(Self {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for PeerShare {
    fn drop(&mut self) {
        let mut map = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}
/// A request's head must arrive within this (slowloris).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A request (its body included) must be read and answered within this: 408 otherwise.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is closed after this long, idle keep-alive or not.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// hyper's read buffer per connection (heads are small; bodies are capped at
/// [`MAX_BODY_BYTES`]).
const READ_BUFFER_BYTES: usize = 16 * 1024;

async fn request_deadline(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => error_response(
            StatusCode::REQUEST_TIMEOUT,
            "the request was not complete in time",
        ),
    }
}

async fn serve_connection<S>(
    stream: tokio::net::TcpStream,
    service: S,
    mut shutdown: watch::Receiver<bool>,
    _permit: (tokio::sync::OwnedSemaphorePermit, PeerShare),
) where
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(READ_BUFFER_BYTES);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(conn);
    let deadline = tokio::time::sleep(CONNECTION_LIFETIME);
    tokio::pin!(deadline);
    let mut closing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            () = &mut deadline => {
                if closing {
                    // A peer that does not let the last answer go: drop the socket.
                    return;
                }
                conn.as_mut().graceful_shutdown();
                closing = true;
                deadline.as_mut().reset(tokio::time::Instant::now() + REQUEST_TIMEOUT * 2);
            }
            () = async { let _ = shutdown.wait_for(|stop| *stop).await; }, if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
                deadline.as_mut().reset(tokio::time::Instant::now() + REQUEST_TIMEOUT * 2);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use axum::body::Body;
    use axum::extract::connect_info::MockConnectInfo;
    use axum::http::Request as HttpRequest;
    use motion::DebounceConfig;
    use serde_json::Value as Json;
    use tower::ServiceExt as _;

    /// Records the calls; "Porch" is a doorbell, "Garage" is not.
    #[derive(Default)]
    struct Double {
        calls: Mutex<Vec<String>>,
    }

    impl CameraDirectory for Double {
        fn list(&self) -> Vec<CameraSummary> {
            ["Porch", "Garage"]
                .iter()
                .zip([51826, 51827])
                .map(|(n, port)| CameraSummary {
                    name: (*n).into(),
                    motion: false,
                    recording: false,
                    paired: *n == "Porch",
                    port,
                    aid: 1,
                    prebuffer_ms: if *n == "Porch" { 8000 } else { 0 },
                    state: if *n == "Porch" {
                        "streaming"
                    } else {
                        "retrying"
                    },
                    last_error: (*n == "Garage").then(|| "connection refused".into()),
                    since: "2026-12-07T21:04:05Z".into(),
                })
                .collect()
        }
        fn ring(&self, name: &str) -> Result<(), ApiError> {
            match name {
                "Porch" => {
                    self.calls.lock().unwrap().push(format!("ring {name}"));
                    Ok(())
                }
                "Garage" => Err(ApiError::NotADoorbell(name.into())),
                _ => Err(ApiError::UnknownCamera(name.into())),
            }
        }
        fn add_temporary_pairing(
            &self,
            name: &str,
            controller_id: &str,
            ltpk: [u8; 32],
        ) -> Result<(), ApiError> {
            if name != "Porch" {
                return Err(ApiError::UnknownCamera(name.into()));
            }
            self.calls
                .lock()
                .unwrap()
                .push(format!("add {name} {controller_id} {}", hex(&ltpk)));
            Ok(())
        }
        fn remove_temporary_pairing(
            &self,
            name: &str,
            controller_id: &str,
        ) -> Result<(), ApiError> {
            if name != "Porch" {
                return Err(ApiError::UnknownCamera(name.into()));
            }
            self.calls
                .lock()
                .unwrap()
                .push(format!("remove {name} {controller_id}"));
            Ok(())
        }
        fn accessory_identity(&self, _name: &str) -> Result<AccessoryIdentityInfo, ApiError> {
            Ok(AccessoryIdentityInfo {
                pairing_id: "AA:BB:CC:DD:EE:FF".into(),
                ltpk: [7; 32],
            })
        }
    }

    fn state(token: Option<&str>) -> (ApiState, Arc<Double>) {
        let double = Arc::new(Double::default());
        let hub = MotionHub::new([
            ("Porch", DebounceConfig::default()),
            ("Garage", DebounceConfig::default()),
        ])
        .unwrap();
        let s = ApiState {
            motion: hub,
            token: token.map(str::to_owned),
            cameras: double.clone(),
            selftest_secret: Some(SECRET.to_owned()),
        };
        (s, double)
    }

    const SECRET: &str = "0123456789abcdef";

    /// A request as `selftest` sends it (with the run's secret), plus `token`.
    async fn call(
        app: &Router,
        method: &str,
        uri: &str,
        body: &str,
        token: Option<&str>,
        peer: [u8; 4],
    ) -> (StatusCode, Json) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![(SELFTEST_SECRET_HEADER, SECRET)];
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        call_with(app, method, uri, body, &headers, peer).await
    }

    /// A request with exactly `headers`.
    async fn call_with(
        app: &Router,
        method: &str,
        uri: &str,
        body: &str,
        headers: &[(&str, &str)],
        peer: [u8; 4],
    ) -> (StatusCode, Json) {
        let mut req = HttpRequest::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let app = app
            .clone()
            .layer(MockConnectInfo(SocketAddr::from((peer, 40000))));
        let resp = app
            .oneshot(req.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let json = if bytes.is_empty() {
            Json::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}: {bytes:?}"))
        };
        (status, json)
    }

    const LO: [u8; 4] = [127, 0, 0, 1];
    const LAN: [u8; 4] = [192, 168, 1, 5];

    #[tokio::test]
    async fn selftest_pairing_needs_the_runs_secret_even_from_loopback() {
        let (s, double) = state(None);
        let app = router(s);
        let body = json!({"controller_id": "ctl", "ltpk": "11".repeat(32)}).to_string();
        for headers in [
            vec![],
            vec![(SELFTEST_SECRET_HEADER, "wrong")],
            vec![(SELFTEST_SECRET_HEADER, "0123456789abcdeF")],
        ] {
            let (st, j) = call_with(
                &app,
                "POST",
                "/api/cameras/Porch/selftest-pairing",
                &body,
                &headers,
                LO,
            )
            .await;
            assert_eq!(st, StatusCode::FORBIDDEN, "{headers:?}: {j}");
            assert!(j["error"].as_str().unwrap().contains(SELFTEST_SECRET_FILE));
        }
        assert!(
            double.calls.lock().unwrap().is_empty(),
            "nothing reached the cameras"
        );
        let (st, _) = call(
            &app,
            "POST",
            "/api/cameras/Porch/selftest-pairing",
            &body,
            None,
            LO,
        )
        .await;
        assert_eq!(st, StatusCode::OK);
        // A bridge that could not write the secret refuses the route.
        let (mut s, _) = state(None);
        s.selftest_secret = None;
        let (st, _) = call(
            &router(s),
            "POST",
            "/api/cameras/Porch/selftest-pairing",
            &body,
            None,
            LO,
        )
        .await;
        assert_eq!(st, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn web_pages_cannot_drive_the_api() {
        let (s, double) = state(None);
        let app = router(s.clone());
        let motion = r#"{"detected":true}"#;
        let uri = "/api/cameras/Porch/motion";
        // A cross-origin form post (text/plain, no preflight) and a fetch marked cross-site.
        for headers in [
            vec![
                ("origin", "http://evil.example"),
                ("host", "127.0.0.1:8280"),
            ],
            vec![("origin", "null"), ("host", "127.0.0.1:8280")],
            vec![("sec-fetch-site", "cross-site"), ("host", "127.0.0.1:8280")],
            // DNS rebinding: the page's own origin, but a host name that is not ours.
            vec![
                ("origin", "http://evil.example:8280"),
                ("host", "evil.example:8280"),
            ],
            vec![("host", "evil.example:8280")],
        ] {
            let (st, j) = call_with(&app, "POST", uri, motion, &headers, LO).await;
            assert_eq!(st, StatusCode::FORBIDDEN, "{headers:?}: {j}");
            let (st, _) = call_with(
                &app,
                "POST",
                "/api/cameras/Porch/selftest-pairing",
                "{}",
                &headers,
                LO,
            )
            .await;
            assert_eq!(st, StatusCode::FORBIDDEN, "{headers:?}");
        }
        assert!(!s.motion.status("Porch").unwrap().detected);
        assert!(double.calls.lock().unwrap().is_empty());
        // Programs: no Origin, an address or localhost as Host; a same-origin page is allowed.
        for headers in [
            vec![("host", "127.0.0.1:8280")],
            vec![("host", "localhost:8280")],
            vec![("host", "[::1]:8280")],
            vec![
                ("origin", "http://127.0.0.1:8280"),
                ("host", "127.0.0.1:8280"),
            ],
            vec![],
        ] {
            let (st, j) = call_with(&app, "POST", uri, motion, &headers, LO).await;
            assert_eq!(st, StatusCode::OK, "{headers:?}: {j}");
        }
        // With a token, host names are fine (the page cannot know the token).
        let (s, _) = state(Some("t0k3n"));
        let (st, _) = call_with(
            &router(s),
            "POST",
            uri,
            motion,
            &[
                ("host", "bridge.lan:8280"),
                ("authorization", "Bearer t0k3n"),
            ],
            LAN,
        )
        .await;
        assert_eq!(st, StatusCode::OK);
    }

    #[tokio::test]
    async fn an_off_held_by_the_debounce_says_so() {
        let (s, _) = state(None);
        let app = router(s.clone());
        let uri = "/api/cameras/Porch/motion";
        let (_, on) = call(&app, "POST", uri, r#"{"detected":true}"#, None, LO).await;
        assert_eq!(on, json!({"detected": true}));
        // Within min_on_ms (10 s by default) the off is held.
        let (st, off) = call(&app, "POST", uri, r#"{"detected":false}"#, None, LO).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(off["detected"], json!(true));
        assert_eq!(off["held_by_debounce"], json!(true), "{off}");
        assert!(off["note"].as_str().unwrap().contains("min_on_ms"));
    }

    #[tokio::test]
    async fn healthz_needs_no_token_and_events_are_checked() {
        let (s, _) = state(Some("sekrit"));
        let app = router(s);
        let (st, j) = call(&app, "GET", "/healthz", "", None, LO).await;
        assert_eq!((st, &j["status"]), (StatusCode::OK, &json!("ok")));
        // Everything else still needs it.
        let (st, _) = call(&app, "GET", "/api/cameras/Porch/events", "", None, LO).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        let tok = Some("sekrit");
        let (st, j) = call(
            &app,
            "GET",
            "/api/cameras/Porch/events?limit=x",
            "",
            tok,
            LO,
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{j}");
        let (st, j) = call(
            &app,
            "GET",
            "/api/cameras/Porch/events?bogus=1",
            "",
            tok,
            LO,
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{j}");
        // The double has no history: the trait's default answers 404.
        let (st, _) = call(&app, "GET", "/api/cameras/Nope/events", "", tok, LO).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_wrong_method_is_a_json_405() {
        let (s, _) = state(None);
        let (st, j) = call(&router(s), "GET", "/api/cameras/Porch/motion", "", None, LO).await;
        assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
        assert!(j["error"].as_str().unwrap().contains("method"), "{j}");
    }

    #[tokio::test]
    async fn a_body_must_be_a_json_object() {
        let (s, _) = state(None);
        let app = router(s.clone());
        for body in ["[true]", "true", "\"detected\"", "[]"] {
            let (st, j) = call(&app, "POST", "/api/cameras/Porch/motion", body, None, LO).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {j}");
        }
        assert!(!s.motion.status("Porch").unwrap().detected);
    }

    #[tokio::test]
    async fn motion_on_and_off_reach_the_hub() {
        let (s, _) = state(None);
        let mut porch = s.motion.subscribe("Porch").unwrap();
        let app = router(s.clone());
        let (st, j) = call(
            &app,
            "POST",
            "/api/cameras/Porch/motion",
            r#"{"detected": true}"#,
            None,
            LAN,
        )
        .await;
        assert_eq!((st, j), (StatusCode::OK, json!({"detected": true})));
        assert!(porch.has_changed().unwrap());
        let now = *porch.borrow_and_update();
        assert!(now.detected && now.source == Some(MotionSource::Http));
        assert!(!s.motion.status("Garage").unwrap().detected, "only Porch");
        // "Off" is accepted; the hub's debounce (min on-time) decides when it really ends.
        let (st, j) = call(
            &app,
            "POST",
            "/api/cameras/Porch/motion",
            r#"{"detected": false}"#,
            None,
            LAN,
        )
        .await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(
            j["detected"],
            json!(s.motion.status("Porch").unwrap().detected)
        );
    }

    #[tokio::test]
    async fn percent_encoded_names_are_decoded() {
        let (s, _) = state(None);
        let hub = MotionHub::new([("Front Door", DebounceConfig::default())]).unwrap();
        let app = router(ApiState {
            motion: hub.clone(),
            ..s
        });
        let (st, _) = call(
            &app,
            "POST",
            "/api/cameras/Front%20Door/motion",
            r#"{"detected":true}"#,
            None,
            LAN,
        )
        .await;
        assert_eq!(st, StatusCode::OK);
        assert!(hub.status("Front Door").unwrap().detected);
    }

    #[tokio::test]
    async fn unknown_camera_bad_json_and_unknown_path() {
        let (s, _) = state(None);
        let app = router(s);
        let (st, j) = call(
            &app,
            "POST",
            "/api/cameras/x/motion",
            r#"{"detected": true}"#,
            None,
            LAN,
        )
        .await;
        assert_eq!(
            (st, j),
            (
                StatusCode::NOT_FOUND,
                json!({"error": "unknown camera \"x\""})
            )
        );
        for bad in [
            "",
            "{",
            r#"{"detected": "yes"}"#,
            r#"{"detected": true, "extra": 1}"#,
            "[]",
        ] {
            let (st, j) = call(&app, "POST", "/api/cameras/Porch/motion", bad, None, LAN).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}");
            assert!(
                j["error"].as_str().unwrap().starts_with("bad JSON body"),
                "{j}"
            );
        }
        let (st, j) = call(&app, "GET", "/api/nothing", "", None, LAN).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        assert!(j["error"].is_string());
        let big = format!(
            r#"{{"detected": true, "pad": "{}"}}"#,
            "x".repeat(MAX_BODY_BYTES)
        );
        let (st, j) = call(&app, "POST", "/api/cameras/Porch/motion", &big, None, LAN).await;
        assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(j["error"].as_str().unwrap().contains("limit"), "{j}");
    }

    #[tokio::test]
    async fn token_missing_or_wrong_is_401_and_right_is_200() {
        let (s, _) = state(Some("s3cret"));
        let app = router(s);
        for token in [None, Some("wrong"), Some("s3cre"), Some("s3cret2")] {
            let (st, j) = call(&app, "GET", "/api/cameras", "", token, LO).await;
            assert_eq!(st, StatusCode::UNAUTHORIZED, "{token:?}");
            assert!(j["error"].as_str().unwrap().contains("token"));
            let (st, _) = call(
                &app,
                "POST",
                "/api/cameras/Porch/motion",
                r#"{"detected":true}"#,
                token,
                LO,
            )
            .await;
            assert_eq!(st, StatusCode::UNAUTHORIZED);
        }
        let (st, _) = call(&app, "GET", "/api/cameras", "", Some("s3cret"), LO).await;
        assert_eq!(st, StatusCode::OK);
        // The token check comes before the loopback-only route.
        let body = format!(r#"{{"controller_id":"c","ltpk":"{}"}}"#, "00".repeat(32));
        let (st, _) = call(
            &app,
            "POST",
            "/api/cameras/Porch/selftest-pairing",
            &body,
            None,
            LO,
        )
        .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        let (st, _) = call(
            &app,
            "POST",
            "/api/cameras/Porch/selftest-pairing",
            &body,
            Some("s3cret"),
            LO,
        )
        .await;
        assert_eq!(st, StatusCode::OK);
    }

    #[tokio::test]
    async fn lists_the_directorys_cameras() {
        let (s, double) = state(None);
        let (st, j) = call(&router(s), "GET", "/api/cameras", "", None, LAN).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(j, serde_json::to_value(double.list()).unwrap());
        assert_eq!(j[0]["name"], "Porch");
        assert_eq!(j[1]["port"], 51827);
        assert_eq!(j[0]["paired"], true);
        assert_eq!(j[0]["prebuffer_ms"], 8000);
        assert_eq!(j[1]["prebuffer_ms"], 0);
    }

    #[tokio::test]
    async fn ring_doorbell_not_a_doorbell_unknown() {
        let (s, double) = state(None);
        let app = router(s);
        assert_eq!(
            call(&app, "POST", "/api/cameras/Porch/ring", "", None, LAN)
                .await
                .0,
            StatusCode::OK
        );
        assert_eq!(
            call(&app, "POST", "/api/cameras/Garage/ring", "", None, LAN)
                .await
                .0,
            StatusCode::CONFLICT
        );
        assert_eq!(
            call(&app, "POST", "/api/cameras/Nope/ring", "", None, LAN)
                .await
                .0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(*double.calls.lock().unwrap(), ["ring Porch"]);
    }

    #[tokio::test]
    async fn selftest_pairing_from_loopback_reaches_the_directory() {
        let (s, double) = state(None);
        let app = router(s);
        let ltpk = "ab".repeat(32);
        let body = format!(r#"{{"controller_id":"C0FFEE","ltpk":"{ltpk}"}}"#);
        let (st, j) = call(
            &app,
            "POST",
            "/api/cameras/Porch/selftest-pairing",
            &body,
            None,
            LO,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{j}");
        assert_eq!(j["accessory_pairing_id"], "AA:BB:CC:DD:EE:FF");
        assert_eq!(j["accessory_ltpk"], "07".repeat(32));
        let (st, _) = call(
            &app,
            "DELETE",
            "/api/cameras/Porch/selftest-pairing",
            r#"{"controller_id":"C0FFEE"}"#,
            None,
            LO,
        )
        .await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(
            *double.calls.lock().unwrap(),
            [
                format!("add Porch C0FFEE {ltpk}"),
                "remove Porch C0FFEE".to_owned()
            ]
        );

        // Not from loopback: refused before the directory is called.
        let (st, _) = call(
            &app,
            "POST",
            "/api/cameras/Porch/selftest-pairing",
            &body,
            None,
            LAN,
        )
        .await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        let (st, _) = call(
            &app,
            "DELETE",
            "/api/cameras/Porch/selftest-pairing",
            r#"{"controller_id":"C0FFEE"}"#,
            None,
            LAN,
        )
        .await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        // Bad keys and ids, unknown camera.
        for bad in [
            r#"{"controller_id":"C","ltpk":"abcd"}"#.to_owned(),
            format!(r#"{{"controller_id":"C","ltpk":"{}"}}"#, "zz".repeat(32)),
            format!(r#"{{"controller_id":"","ltpk":"{ltpk}"}}"#),
        ] {
            let (st, _) = call(
                &app,
                "POST",
                "/api/cameras/Porch/selftest-pairing",
                &bad,
                None,
                LO,
            )
            .await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}");
        }
        let (st, _) = call(
            &app,
            "POST",
            "/api/cameras/Nope/selftest-pairing",
            &body,
            None,
            LO,
        )
        .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        assert_eq!(double.calls.lock().unwrap().len(), 2);
    }

    /// Reads until the server closes, at most `within` (virtual time); whether it closed.
    async fn closed_within(
        sock: &mut tokio::net::TcpStream,
        within: std::time::Duration,
    ) -> (bool, String) {
        use tokio::io::AsyncReadExt as _;
        let mut got = Vec::new();
        let r = tokio::time::timeout(within, sock.read_to_end(&mut got)).await;
        (r.is_ok(), String::from_utf8_lossy(&got).into_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn slow_requests_time_out_and_connections_are_capped() {
        use tokio::io::AsyncWriteExt as _;
        let (s, _) = state(None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve_on(listener, s, stop_rx));

        // Slowloris: half a request head. Closed once HEADER_READ_TIMEOUT has passed.
        let mut head = tokio::net::TcpStream::connect(addr).await.unwrap();
        head.write_all(b"POST /api/cameras/Porch/motion HTTP/1.1\r\nhost: 127.0.0.1\r\n")
            .await
            .unwrap();
        let t = tokio::time::Instant::now();
        let (closed, _) = closed_within(&mut head, HEADER_READ_TIMEOUT * 2).await;
        assert!(closed, "a half-sent head is not kept");
        assert!(t.elapsed() >= HEADER_READ_TIMEOUT);

        // A body that never completes: 408 after REQUEST_TIMEOUT.
        let mut body = tokio::net::TcpStream::connect(addr).await.unwrap();
        body.write_all(
            b"POST /api/cameras/Porch/motion HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 17\r\n\r\n{\"det",
        )
        .await
        .unwrap();
        let (closed, reply) = closed_within(&mut body, REQUEST_TIMEOUT * 3).await;
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
        let _ = closed;

        // One host gets MAX_CONNECTIONS_PER_PEER; its next one is closed, another host's is not.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS_PER_PEER {
            idle.push(connect_from([127, 0, 0, 2], addr).await);
        }
        let mut greedy = connect_from([127, 0, 0, 2], addr).await;
        let (closed, reply) = closed_within(&mut greedy, std::time::Duration::from_secs(1)).await;
        assert!(
            closed && reply.is_empty(),
            "over the peer's share: {reply:?}"
        );
        let mut other = connect_from([127, 0, 0, 3], addr).await;
        other
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let (_, reply) = closed_within(&mut other, std::time::Duration::from_secs(5)).await;
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "another host is served: {reply}"
        );
        // MAX_CONNECTIONS idle connections from several hosts: the next one is closed at once.
        for i in MAX_CONNECTIONS_PER_PEER..MAX_CONNECTIONS {
            let host = 4 + u8::try_from(i / MAX_CONNECTIONS_PER_PEER).unwrap();
            idle.push(connect_from([127, 0, 0, host], addr).await);
        }
        let mut extra = connect_from([127, 0, 0, 20], addr).await;
        let (closed, reply) = closed_within(&mut extra, std::time::Duration::from_secs(1)).await;
        assert!(closed && reply.is_empty(), "over the cap: {reply:?}");
        // Idle connections do not live forever: after CONNECTION_LIFETIME there is room.
        tokio::time::sleep(CONNECTION_LIFETIME + REQUEST_TIMEOUT * 3).await;
        let (closed, _) = closed_within(&mut idle[0], std::time::Duration::from_secs(1)).await;
        assert!(closed, "idle connection closed at its lifetime");
        drop(idle);
        stop_tx.send(true).unwrap();
        server.await.unwrap().unwrap();
    }

    /// A connection from loopback address `ip` (Linux routes all of 127/8 to lo).
    async fn connect_from(ip: [u8; 4], to: SocketAddr) -> tokio::net::TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((ip, 0))).unwrap();
        socket.connect(to).await.unwrap()
    }

    #[tokio::test]
    async fn serve_on_loopback_and_shut_down() {
        let (s, _) = state(None);
        let hub = s.motion.clone();
        // Find a free port, then serve there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = SocketAddr::from((LO, port));
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve(listen, s, stop_rx));
        // A raw HTTP/1.1 request from a real socket: ConnectInfo is the loopback peer.
        let body = r#"{"detected":true}"#;
        let req = format!(
            "POST /api/cameras/Garage/motion HTTP/1.1\r\nhost: {listen}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut reply = String::new();
        for _ in 0..50 {
            if let Ok(mut sock) = tokio::net::TcpStream::connect(listen).await {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                sock.write_all(req.as_bytes()).await.unwrap();
                sock.read_to_string(&mut reply).await.unwrap();
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(hub.status("Garage").unwrap().detected);
        stop_tx.send(true).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("graceful shutdown")
            .unwrap()
            .unwrap();
        // A second server on a taken port fails with a message naming it.
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (_tx, rx) = watch::channel(false);
        let e = serve(busy.local_addr().unwrap(), state(None).0, rx)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("binding the HTTP API"), "{e}");
    }

    #[tokio::test]
    async fn constant_time_eq_and_hex() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"abc", b"ab"));
        assert_eq!(decode_hex_32(&hex(&[0xA5; 32])), Some([0xA5; 32]));
        assert_eq!(decode_hex_32(&"AB".repeat(32)), Some([0xAB; 32]));
        assert_eq!(decode_hex_32("ab"), None);
        assert_eq!(decode_hex_32(&"é".repeat(32)), None);
        let (s, _) = state(Some("tok-123"));
        assert!(!format!("{s:?}").contains("tok-123"));
    }
}
