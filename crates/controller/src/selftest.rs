//! `hksv-bridge selftest`: plays the home hub against a running camera over the real wire path
//! (HAP pairing, characteristics, SetupDataStreamTransport, HDS) and answers "why is there no
//! clip?" step by step.
//!
//! An unpaired camera is paired with its setup code and unpaired again afterwards. A camera
//! paired with the user's Home gets a temporary admin pairing through the bridge API
//! (`POST /api/cameras/{name}/selftest-pairing`), every characteristic we change is restored,
//! and the temporary pairing is deleted.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use hap_server::pairing::controller::{AccessoryPairing, ControllerIdentity};
use serde_json::{Value as Json, json};

use crate::checker::{self, CheckReport};
use crate::hap::{HapClient, pair_setup};
use crate::hds_client::{HdsClient, StopWhen};
use crate::hksv::{self, HksvIds};
use crate::keys::PairingKeys;
use crate::live::{self as live_req, LiveIds, Viewer, ViewerReport};

/// Header with the bridge run's selftest secret (the bridge's `selftest.secret` file).
pub const SELFTEST_SECRET_HEADER: &str = "x-hksv-selftest-secret";

/// What `selftest` needs to know.
#[derive(Clone)]
pub struct SelftestOptions {
    /// The camera's HAP address (host + the camera's port, or the bridge's port in bridge
    /// mode: the camera is then found by its accessory Name).
    pub hap_addr: SocketAddr,
    /// Setup code, used when the camera is unpaired.
    pub setup_code: Option<String>,
    /// Bridge API base URL, e.g. `http://127.0.0.1:8280`.
    pub api_base: String,
    /// Bearer token of the API, when one is configured.
    pub api_token: Option<String>,
    /// The bridge run's selftest secret (its `selftest.secret` file, readable by the bridge's
    /// user only); needed for a temporary pairing with a paired camera.
    pub selftest_secret: Option<String>,
    /// Camera name as in the config (used in API URLs).
    pub camera_name: String,
    /// Where `clip.mp4` and the segments go.
    pub out_dir: PathBuf,
    /// Bound of every network step; the recording may take up to 3× this.
    pub timeout: Duration,
}

impl fmt::Debug for SelftestOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelftestOptions")
            .field("hap_addr", &self.hap_addr)
            .field("api_base", &self.api_base)
            .field("camera_name", &self.camera_name)
            .field("out_dir", &self.out_dir)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// One step of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What was attempted.
    pub name: String,
    /// Whether it worked.
    pub ok: bool,
    /// What happened.
    pub detail: String,
    /// What to check when it failed.
    pub hint: Option<String>,
}

/// The result of a selftest run; `Display` prints the step-by-step report.
#[derive(Debug, Clone, Default)]
pub struct SelftestReport {
    /// Every step, in order.
    pub steps: Vec<Step>,
    /// The recording check, if a recording was received.
    pub check: Option<CheckReport>,
    /// Path of `clip.mp4`, if written.
    pub clip: Option<PathBuf>,
}

impl SelftestReport {
    /// Every step worked and the recording passed every check.
    pub fn passed(&self) -> bool {
        self.steps.iter().all(|s| s.ok) && self.check.as_ref().is_some_and(CheckReport::passed)
    }

    fn ok(&mut self, name: &str, detail: impl Into<String>) {
        self.steps.push(Step {
            name: name.into(),
            ok: true,
            detail: detail.into(),
            hint: None,
        });
    }

    fn fail(&mut self, name: &str, detail: impl Into<String>, hint: &str) {
        self.steps.push(Step {
            name: name.into(),
            ok: false,
            detail: detail.into(),
            hint: Some(hint.into()),
        });
    }
}

impl fmt::Display for SelftestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.steps.iter().enumerate() {
            let tag = if s.ok { "ok  " } else { "FAIL" };
            writeln!(f, "{:>2}. [{tag}] {}: {}", i + 1, s.name, s.detail)?;
            if let Some(h) = &s.hint {
                writeln!(f, "           → check: {h}")?;
            }
        }
        if let Some(c) = &self.check {
            writeln!(f, "recording check:")?;
            write!(f, "{c}")?;
        }
        if let Some(p) = &self.clip {
            writeln!(f, "clip: {}", p.display())?;
        }
        writeln!(
            f,
            "result: {}",
            if self.passed() {
                "PASS — HomeKit can record this camera"
            } else {
                "FAIL — see the first failed step above"
            }
        )
    }
}

/// A tiny client for the bridge API.
struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    selftest_secret: Option<String>,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Json>,
    ) -> Result<(u16, Json), String> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(s) = &self.selftest_secret
            && path.ends_with("/selftest-pairing")
        {
            req = req.header(SELFTEST_SECRET_HEADER, s);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| format!("{url}: {e}"))?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Json::String(text)),
        ))
    }
}

fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

enum Mode {
    /// We paired with the setup code; unpair at the end.
    Own,
    /// A temporary pairing via the API; restore and DELETE at the end.
    Temporary,
}

/// Runs the selftest. Failures of the camera are reported in the returned report;
/// `Err` only for unusable options.
///
/// # Errors
/// When the HTTP client cannot be built.
pub async fn run(opts: SelftestOptions) -> anyhow::Result<SelftestReport> {
    let mut rep = SelftestReport::default();
    let api = Api {
        http: reqwest::Client::builder().timeout(opts.timeout).build()?,
        base: opts.api_base.clone(),
        token: opts.api_token.clone(),
        selftest_secret: opts.selftest_secret.clone(),
    };
    let cam_path = format!("/api/cameras/{}", path_segment(&opts.camera_name));

    // 1. The bridge API knows the camera.
    let paired = match api.call(reqwest::Method::GET, "/api/cameras", None).await {
        Ok((200, list)) => {
            let cam = list
                .as_array()
                .and_then(|a| a.iter().find(|c| c["name"] == json!(opts.camera_name)));
            match cam {
                Some(c) => {
                    let paired = c["paired"].as_bool().unwrap_or(false);
                    rep.ok(
                        "bridge API",
                        format!("camera {:?} found (paired: {paired})", opts.camera_name),
                    );
                    paired
                }
                None => {
                    rep.fail(
                        "bridge API",
                        format!("no camera named {:?}: {list}", opts.camera_name),
                        "the camera name in hksv-bridge.toml ([[cameras]] name)",
                    );
                    return Ok(rep);
                }
            }
        }
        Ok((status, body)) => {
            rep.fail(
                "bridge API",
                format!("GET /api/cameras → {status} {body}"),
                "the API token (HKSV_API_TOKEN / [api] token)",
            );
            return Ok(rep);
        }
        Err(e) => {
            rep.fail(
                "bridge API",
                e,
                "is hksv-bridge running? [api] listen address",
            );
            return Ok(rep);
        }
    };

    // 2. A pairing to work with.
    let identity = ControllerIdentity::generate(&mut rand::rng());
    let (keys, mode) = if paired {
        let body = json!({"controller_id": identity.pairing_id, "ltpk": hex::encode(identity.public_key())});
        match api
            .call(
                reqwest::Method::POST,
                &format!("{cam_path}/selftest-pairing"),
                Some(body),
            )
            .await
        {
            Ok((200..=299, reply)) => {
                let id = reply
                    .get("accessory_pairing_id")
                    .or_else(|| reply.get("pairing_id"))
                    .and_then(Json::as_str);
                let ltpk = reply
                    .get("accessory_ltpk")
                    .or_else(|| reply.get("ltpk"))
                    .and_then(Json::as_str)
                    .and_then(|h| hex::decode(h).ok())
                    .and_then(|v| <[u8; 32]>::try_from(v).ok());
                let (Some(id), Some(ltpk)) = (id, ltpk) else {
                    rep.fail(
                        "temporary pairing",
                        format!("reply lacks accessory_pairing_id/accessory_ltpk: {reply}"),
                        "bridge and selftest versions match",
                    );
                    return Ok(rep);
                };
                rep.ok(
                    "temporary pairing",
                    "temporary admin pairing added through the API",
                );
                (
                    PairingKeys {
                        identity,
                        accessory: AccessoryPairing {
                            pairing_id: id.to_owned(),
                            ltpk,
                        },
                    },
                    Mode::Temporary,
                )
            }
            Ok((status, body)) => {
                rep.fail(
                    "temporary pairing",
                    format!("{status} {body}"),
                    "run selftest on the bridge host (loopback only) with the API token",
                );
                return Ok(rep);
            }
            Err(e) => {
                rep.fail("temporary pairing", e, "the bridge API");
                return Ok(rep);
            }
        }
    } else {
        let Some(code) = opts.setup_code.as_deref() else {
            rep.fail(
                "pair-setup",
                "camera is unpaired and no setup code was given",
                "`hksv-bridge pair-info` shows the setup code",
            );
            return Ok(rep);
        };
        match pair_setup(opts.hap_addr, &identity, code, opts.timeout).await {
            Ok(k) => {
                // Listed as temporary with the bridge too, so that an interrupted selftest
                // does not leave the camera paired to nobody's Home (the bridge removes it
                // after a while or at its next start). Best effort: older bridges lack it.
                let body = json!({"controller_id": k.identity.pairing_id, "ltpk": hex::encode(k.identity.public_key())});
                let listed = api
                    .call(
                        reqwest::Method::POST,
                        &format!("{cam_path}/selftest-pairing"),
                        Some(body),
                    )
                    .await
                    .is_ok_and(|(s, _)| (200..=299).contains(&s));
                rep.ok(
                    "pair-setup",
                    format!(
                        "paired with accessory {}{}",
                        k.accessory.pairing_id,
                        if listed {
                            " (listed as temporary with the bridge)"
                        } else {
                            ""
                        }
                    ),
                );
                (k, Mode::Own)
            }
            Err(e) => {
                rep.fail(
                    "pair-setup",
                    e.to_string(),
                    "the setup code, the camera's HAP port, a firewall",
                );
                return Ok(rep);
            }
        }
    };

    let outcome = drive(&opts, &api, &keys, &mut rep).await;
    // Cleanup always runs.
    match mode {
        Mode::Own => match HapClient::connect(opts.hap_addr, &keys, opts.timeout).await {
            Ok(mut hap) => match hap.remove_pairing(&keys.identity.pairing_id).await {
                Ok(()) => {
                    // Unlist it; the pairing itself is already gone.
                    let _ = api
                        .call(
                            reqwest::Method::DELETE,
                            &format!("{cam_path}/selftest-pairing"),
                            Some(json!({"controller_id": keys.identity.pairing_id})),
                        )
                        .await;
                    rep.ok(
                        "unpair",
                        "selftest pairing removed; camera is unpaired again",
                    );
                }
                Err(e) => rep.fail(
                    "unpair",
                    e.to_string(),
                    "`hksv-bridge reset` forgets the pairing",
                ),
            },
            Err(e) => rep.fail(
                "unpair",
                e.to_string(),
                "`hksv-bridge reset` forgets the pairing",
            ),
        },
        Mode::Temporary => {
            let r = api
                .call(
                    reqwest::Method::DELETE,
                    &format!("{cam_path}/selftest-pairing"),
                    Some(json!({"controller_id": keys.identity.pairing_id})),
                )
                .await;
            match r {
                Ok((200..=299, _)) => rep.ok("remove temporary pairing", "deleted"),
                Ok((s, b)) => rep.fail(
                    "remove temporary pairing",
                    format!("{s} {b}"),
                    "the bridge removes it within 5 minutes or at its next start",
                ),
                Err(e) => rep.fail(
                    "remove temporary pairing",
                    e,
                    "the bridge removes it within 5 minutes or at its next start",
                ),
            }
        }
    }
    let _ = outcome;
    Ok(rep)
}

/// Everything between pairing and cleanup; returns early at the first failed step.
async fn drive(
    opts: &SelftestOptions,
    api: &Api,
    keys: &PairingKeys,
    rep: &mut SelftestReport,
) -> Option<()> {
    let mut hap = match HapClient::connect(opts.hap_addr, keys, opts.timeout).await {
        Ok(h) => {
            rep.ok("pair-verify", "encrypted HAP session established");
            h
        }
        Err(e) => {
            rep.fail(
                "pair-verify",
                e.to_string(),
                "the camera's HAP port; a stale pairing (hksv-bridge reset)",
            );
            return None;
        }
    };
    let db = hap.accessories().await.map_err(|e| e.to_string());
    let ids = match db
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|db| HksvIds::find_named(db, &opts.camera_name))
    {
        Ok(ids) => {
            rep.ok(
                "accessory database",
                "recording management, operating mode, data stream and motion sensor found",
            );
            ids
        }
        Err(e) => {
            rep.fail(
                "accessory database",
                e,
                "the bridge build (HKSV services missing)",
            );
            return None;
        }
    };
    // Remember what we change.
    let old_selected = hksv::read_selected(&mut hap, &ids).await;
    let old_recording = hap
        .read_one(ids.recording_active.0, ids.recording_active.1)
        .await
        .ok();
    let old_camera = hap
        .read_one(ids.camera_active.0, ids.camera_active.1)
        .await
        .ok();

    let result = record(opts, api, &mut hap, &ids, rep).await;
    // Live view needs HomeKitCameraActive = 1, which the recording step set.
    let live = match db.and_then(|db| LiveIds::find_named(&db, &opts.camera_name)) {
        Ok(live_ids) => live_view(&mut hap, &live_ids, rep).await,
        Err(e) => {
            rep.fail("live view", e, "the bridge build (live view missing)");
            None
        }
    };

    // Restore (only meaningful when the Home keeps the pairing; harmless otherwise).
    let mut restored = Vec::new();
    if let Some(sel) = old_selected.filter(|s| !s.is_empty())
        && hksv::write_selected(&mut hap, &ids, &sel).await.is_ok()
    {
        restored.push("selected configuration");
    }
    for (id, old, name) in [
        (ids.recording_active, old_recording, "recording Active"),
        (ids.camera_active, old_camera, "HomeKitCameraActive"),
    ] {
        if let Some(v) = old.and_then(|v| v.as_u64().or_else(|| v.as_bool().map(u64::from)))
            && hksv::write_flag(&mut hap, id, v != 0).await.is_ok()
        {
            restored.push(name);
        }
    }
    rep.ok(
        "restore",
        format!(
            "restored: {}",
            if restored.is_empty() {
                "nothing to restore".to_owned()
            } else {
                restored.join(", ")
            }
        ),
    );
    result.and(live)
}

async fn record(
    opts: &SelftestOptions,
    api: &Api,
    hap: &mut HapClient,
    ids: &HksvIds,
    rep: &mut SelftestReport,
) -> Option<()> {
    let supported = match hksv::read_supported(hap, ids).await {
        Ok(s) => {
            rep.ok(
                "supported configurations",
                format!(
                    "prebuffer {} ms, fragments {} ms, {} video / {} audio codec(s)",
                    s.prebuffer_ms,
                    s.fragment_length_ms,
                    s.video.len(),
                    s.audio.len()
                ),
            );
            s
        }
        Err(e) => {
            rep.fail(
                "supported configurations",
                e.to_string(),
                "the camera source: `hksv-bridge check <source>`",
            );
            return None;
        }
    };
    let selected = match supported.select() {
        Ok(s) => s,
        Err(e) => {
            rep.fail(
                "select configuration",
                e,
                "the camera source's resolution/codec",
            );
            return None;
        }
    };
    if let Err(e) = hksv::write_selected(hap, ids, &selected.encode()).await {
        rep.fail(
            "select configuration",
            e.to_string(),
            "the camera accepts its own advertised configuration",
        );
        return None;
    }
    rep.ok(
        "select configuration",
        format!(
            "{}x{}@{} H.264 {} {}{}",
            selected.width,
            selected.height,
            selected.fps,
            profile_name(selected.profile),
            level_name(selected.level),
            if supported.audio.is_empty() {
                "; no audio codec offered, so audio is not exercised"
            } else {
                ""
            }
        ),
    );
    for (id, name) in [
        (ids.camera_active, "HomeKitCameraActive"),
        (ids.recording_active, "recording Active"),
    ] {
        if let Err(e) = hksv::write_flag(hap, id, true).await {
            rep.fail(name, e.to_string(), "admin pairing; camera state");
            return None;
        }
    }
    rep.ok(
        "enable recording",
        "HomeKitCameraActive = 1, recording Active = 1",
    );
    let _ = hap.subscribe(&[ids.motion_detected], true).await;

    let (setup, keys) = match hksv::setup_data_stream(hap, ids).await {
        Ok((s, k)) if s.status == 0 => (s, k),
        Ok((s, _)) => {
            rep.fail(
                "data stream setup",
                format!("status {}", s.status),
                "another hub is recording (busy)",
            );
            return None;
        }
        Err(e) => {
            rep.fail(
                "data stream setup",
                e.to_string(),
                "the bridge log (HDS listener)",
            );
            return None;
        }
    };
    let hds_addr = SocketAddr::new(opts.hap_addr.ip(), setup.port);
    let mut hds = match HdsClient::connect(hds_addr, &keys, opts.timeout).await {
        Ok(c) => {
            rep.ok("HDS connect + hello", format!("port {}", setup.port));
            c
        }
        Err(e) => {
            rep.fail(
                "HDS connect + hello",
                e.to_string(),
                "a firewall between hub and bridge (HDS uses a second TCP port)",
            );
            return None;
        }
    };

    let (aid, iid) = ids.motion_detected;
    let detected = |v: &Json| v == &json!(true) || v == &json!(1);
    // HAP notifies changes only: motion already detected (the camera's own detector) sends
    // no event, so read it before the trigger.
    let already = hap.read_one(aid, iid).await.is_ok_and(|v| detected(&v));
    let motion = format!("/api/cameras/{}/motion", path_segment(&opts.camera_name));
    match api
        .call(
            reqwest::Method::POST,
            &motion,
            Some(json!({"detected": true})),
        )
        .await
    {
        Ok((200, _)) => rep.ok("trigger motion", "POST /motion {detected: true}"),
        Ok((s, b)) => {
            rep.fail(
                "trigger motion",
                format!("{s} {b}"),
                "the API token; the camera name",
            );
            return None;
        }
        Err(e) => {
            rep.fail("trigger motion", e, "the bridge API");
            return None;
        }
    }
    if already {
        rep.ok(
            "motion event",
            "MotionDetected was already 1 (the camera's detector); no change to notify",
        );
    } else {
        match hap.wait_for_event(aid, iid, opts.timeout, detected).await {
            Some(_) => rep.ok("motion event", "MotionDetected = 1 notified"),
            None => rep.fail(
                "motion event",
                "no MotionDetected event",
                "the motion configuration of the camera",
            ),
        }
    }

    let stop = StopWhen {
        max_fragments: 2,
        max_duration: opts.timeout * 3,
        stall: opts.timeout,
    };
    let rec = hds.record(1, stop).await;
    let _ = api
        .call(
            reqwest::Method::POST,
            &motion,
            Some(json!({"detected": false})),
        )
        .await;
    let report = checker::check(&rec, u64::from(selected.fragment_length_ms));
    let first = rec.open_to_first_chunk.map_or_else(
        || "no chunk".to_owned(),
        |d| format!("{:.1} ms to the first chunk", d.as_secs_f64() * 1000.0),
    );
    if rec.segments.len() > 1 {
        rep.ok(
            "recording",
            format!(
                "{} segment(s), {first}, end: {:?}",
                rec.segments.len(),
                rec.end
            ),
        );
    } else {
        rep.fail(
            "recording",
            format!("{} segment(s), end: {:?}", rec.segments.len(), rec.end),
            "the camera source delivers video (`hksv-bridge check`); keyframe interval ≤ 4 s",
        );
    }
    match checker::write_clip(&rec, &opts.out_dir) {
        Ok(p) => rep.clip = Some(p),
        Err(e) => rep.fail(
            "write clip",
            e.to_string(),
            "the --out directory is writable",
        ),
    }
    let passed = report.passed();
    rep.check = Some(report);
    passed.then_some(())
}

/// HAP's H.264 profile value (HKSV §2.3: 0 Constrained Baseline, 1 Main, 2 High) by name.
fn profile_name(p: u8) -> String {
    match p {
        0 => "Constrained Baseline".into(),
        1 => "Main".into(),
        2 => "High".into(),
        other => format!("profile {other}"),
    }
}

/// HAP's H.264 level value (0 = 3.1, 1 = 3.2, 2 = 4.0) by name.
fn level_name(l: u8) -> String {
    match l {
        0 => "level 3.1".into(),
        1 => "level 3.2".into(),
        2 => "level 4.0".into(),
        other => format!("level value {other}"),
    }
}

/// How long the live-view step watches.
const LIVE_VIEW_FOR: Duration = Duration::from_secs(3);
/// RTCP interval of the step's receiver reports (iOS: 0.5 s).
const RECEIVER_REPORT_EVERY: Duration = Duration::from_millis(500);

/// Plays the iPhone opening the camera: 118 with a fresh key, 117 START, 3 s of SRTP
/// received, decrypted, reassembled and decoded, then 117 END.
async fn live_view(hap: &mut HapClient, ids: &LiveIds, rep: &mut SelftestReport) -> Option<()> {
    const NAME: &str = "live view";
    const HINT_UDP: &str = "a firewall dropping UDP between the bridge and this host; the camera source delivers H.264 (`hksv-bridge check`)";
    let socket = match tokio::net::UdpSocket::bind((hap.local().ip(), 0)).await {
        Ok(s) => s,
        Err(e) => {
            rep.fail(
                NAME,
                format!("UDP bind: {e}"),
                "free UDP ports on this host",
            );
            return None;
        }
    };
    let port = socket.local_addr().map(|a| a.port()).unwrap_or_default();
    let mut secret = [0u8; 30];
    rand::fill(&mut secret[..]);
    let (key, salt) = secret.split_at(16);
    let master = match rtp::MasterKey::new(key, salt) {
        Ok(m) => m,
        Err(e) => {
            rep.fail(NAME, format!("SRTP key: {e}"), "the selftest build");
            return None;
        }
    };
    let session: [u8; 16] = rand::random();
    let answer = async {
        let req = live_req::setup_endpoints_request_at(session, hap.local().ip(), port, key, salt);
        hksv::write_tlv(hap, ids.setup_endpoints, &req).await?;
        let b = hksv::read_tlv(hap, ids.setup_endpoints).await?;
        hap_tlv::rtp::SetupEndpointsResponse::decode(&b)
            .map_err(|e| crate::hap::HapError::Malformed(e.to_string()))
    }
    .await;
    let answer = match answer {
        Ok(a) if a.status == hap_tlv::rtp::SetupEndpointsStatus::Success => a,
        Ok(a) => {
            rep.fail(
                NAME,
                format!("SetupEndpoints answered {:?}", a.status),
                "another viewer is watching (busy); HomeKitCameraActive",
            );
            return None;
        }
        Err(e) => {
            rep.fail(
                NAME,
                format!("SetupEndpoints: {e}"),
                "the bridge log (live view)",
            );
            return None;
        }
    };
    let accessory_rtcp = answer
        .accessory_address
        .as_ref()
        .and_then(|a| Some(SocketAddr::new(a.address.parse().ok()?, a.video_rtp_port)));
    let start = std::time::Instant::now();
    let select = |c| live_req::selected_stream_request(session, c, Some(1378));
    if let Err(e) = hksv::write_tlv(
        hap,
        ids.selected,
        &select(hap_tlv::rtp::SessionCommand::Start),
    )
    .await
    {
        rep.fail(NAME, format!("START: {e}"), "the bridge log (live view)");
        return None;
    }
    let mut viewer = Viewer::new(&master, rand::random::<u32>() >> 1);
    let mut buf = vec![0u8; 2048];
    let mut next_rr = RECEIVER_REPORT_EVERY;
    loop {
        let at = start.elapsed();
        if at >= LIVE_VIEW_FOR {
            break;
        }
        let wake = next_rr.min(LIVE_VIEW_FOR) - at.min(next_rr.min(LIVE_VIEW_FOR));
        if let Ok(Ok(n)) = tokio::time::timeout(wake, socket.recv(&mut buf)).await
            && let Some(datagram) = buf.get_mut(..n)
        {
            viewer.on_datagram(datagram, start.elapsed());
        }
        if start.elapsed() >= next_rr {
            next_rr += RECEIVER_REPORT_EVERY;
            if let Some(to) = accessory_rtcp {
                let rr = viewer.receiver_report(start.elapsed());
                let _ = socket.send_to(&rr, to).await;
            }
        }
    }
    let _ = hksv::write_tlv(
        hap,
        ids.selected,
        &select(hap_tlv::rtp::SessionCommand::End),
    )
    .await;
    let seen = match tokio::task::spawn_blocking(move || viewer.finish()).await {
        Ok(seen) => seen,
        Err(e) => {
            rep.fail(
                NAME,
                format!("decoding failed: {e}"),
                "the selftest build (openh264)",
            );
            return None;
        }
    };
    match live_verdict(&seen, answer.video_ssrc) {
        Ok(detail) => {
            rep.ok(NAME, detail);
            Some(())
        }
        Err(detail) => {
            rep.fail(NAME, detail, HINT_UDP);
            None
        }
    }
}

/// Whether what the viewer saw is a live view a Home app would show.
fn live_verdict(seen: &ViewerReport, ssrc: Option<u32>) -> Result<String, String> {
    let ms =
        |d: Option<Duration>| d.map_or_else(|| "-".into(), |d| format!("{} ms", d.as_millis()));
    let facts = format!(
        "{} packets, {} refused, {} access units, {} pictures decoded, first picture after {}",
        seen.rtp_packets,
        seen.rejected,
        seen.access_units,
        seen.pictures,
        ms(seen.first_picture)
    );
    if seen.rtp_packets == 0 {
        return Err(format!("no video arrived in {} s", LIVE_VIEW_FOR.as_secs()));
    }
    if seen.rejected > 0 {
        return Err(format!("SRTP refused packets: {facts}"));
    }
    if ssrc.is_none_or(|s| seen.ssrcs.iter().ne([s].iter())) {
        return Err(format!(
            "SSRC {:?} instead of {ssrc:?} from SetupEndpoints",
            seen.ssrcs
        ));
    }
    if !seen.first_unit_nal_types.starts_with(&[7, 8]) || !seen.first_unit_nal_types.contains(&5) {
        return Err(format!(
            "the stream does not start with SPS, PPS and an IDR (NAL types {:?})",
            seen.first_unit_nal_types
        ));
    }
    if seen.pictures == 0 || seen.decode_errors > 0 {
        return Err(format!("{} decode errors: {facts}", seen.decode_errors));
    }
    if seen.sender_reports == 0 {
        return Err(format!("no RTCP sender report: {facts}"));
    }
    let size = seen
        .size
        .map_or_else(String::new, |(w, h)| format!("{w}x{h} H.264, "));
    Ok(format!("{size}{facts}; video only (audio is not sent yet)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_bridge_api_fails_the_first_step_with_a_hint() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let dir = std::env::temp_dir();
        let rep = run(SelftestOptions {
            hap_addr: SocketAddr::from(([127, 0, 0, 1], port)),
            setup_code: Some("031-45-154".into()),
            api_base: format!("http://127.0.0.1:{port}"),
            api_token: Some("secret-token".into()),
            selftest_secret: Some("selftest-secret".into()),
            camera_name: "Front Door".into(),
            out_dir: dir,
            timeout: Duration::from_secs(2),
        })
        .await
        .expect("report");
        assert!(!rep.passed());
        assert_eq!(rep.steps.len(), 1);
        let text = rep.to_string();
        assert!(
            text.contains("bridge API") && text.contains("is hksv-bridge running"),
            "{text}"
        );
        assert!(!text.contains("secret-token") && !text.contains("selftest-secret"));
        assert_eq!(path_segment("Front Door/1"), "Front%20Door%2F1");
        assert_eq!(
            (profile_name(2), level_name(2)),
            ("High".to_owned(), "level 4.0".to_owned())
        );
    }
}
