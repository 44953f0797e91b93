//! MQTT (`rumqttc`): motion input from plain topics (`ON`/`OFF` and friends) and Frigate's
//! `frigate/events`; and out, the bridge's own state and events through [`MqttPublisher`]
//! (with `<prefix>/status` as the last will).
//!
//! Payload rules are pure ([`parse_plain_payload`], [`FrigateTracker`]); [`spawn_mqtt`] runs
//! the client on tokio. The client reconnects on broker loss with capped exponential backoff
//! and subscribes again after every CONNACK (we use clean sessions, so the broker forgets our
//! subscriptions when the connection drops). Malformed payloads are logged, counted and ignored.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::debounce::MotionSource;
use crate::error::MotionError;
use crate::hub::MotionHub;

/// A secret string (the broker password): never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// MQTT connection and subscriptions (embedded in the bridge's TOML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker host name or address. Default `"127.0.0.1"`.
    #[serde(default = "default_host")]
    pub host: String,
    /// Broker TCP port (plain MQTT, no TLS). Default 1883.
    #[serde(default = "default_port")]
    pub port: u16,
    /// MQTT client identifier; must be unique on the broker. Default `"hksv-bridge"`.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// User name, if the broker wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password (only with `username`). Never logged.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Keep-alive interval, at least 5 s. Default 30 s.
    #[serde(default = "default_keep_alive_secs")]
    pub keep_alive_secs: u16,
    /// First reconnect delay after the broker is lost. Default 500 ms.
    #[serde(default = "default_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    /// Reconnect delay cap (the delay doubles up to this). Default 30 000 ms.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// Plain topics, each mapped to a camera. Default none.
    #[serde(default)]
    pub topics: Vec<PlainTopic>,
    /// Frigate events. Default off.
    #[serde(default)]
    pub frigate: Option<FrigateConfig>,
    /// Publish the bridge's state and events (see [`MqttPublisher`]). Default `true`.
    #[serde(default = "default_true")]
    pub publish: bool,
    /// Prefix of every topic the bridge publishes: `<prefix>/status` (`online`/`offline`, the
    /// last will), `<prefix>/<camera slug>/…`. Default `"hksv-bridge"`.
    #[serde(default = "default_publish_prefix")]
    pub publish_prefix: String,
    /// Home Assistant MQTT discovery prefix; `""` turns discovery off. Default
    /// `"homeassistant"`.
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
}

fn default_publish_prefix() -> String {
    "hksv-bridge".to_owned()
}
fn default_discovery_prefix() -> String {
    "homeassistant".to_owned()
}

fn default_host() -> String {
    "127.0.0.1".to_owned()
}
fn default_port() -> u16 {
    1883
}
fn default_client_id() -> String {
    "hksv-bridge".to_owned()
}
fn default_keep_alive_secs() -> u16 {
    30
}
fn default_reconnect_min_ms() -> u64 {
    500
}
fn default_reconnect_max_ms() -> u64 {
    30_000
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            host: default_host(),
            port: default_port(),
            client_id: default_client_id(),
            username: None,
            password: None,
            keep_alive_secs: default_keep_alive_secs(),
            reconnect_min_ms: default_reconnect_min_ms(),
            reconnect_max_ms: default_reconnect_max_ms(),
            topics: Vec::new(),
            frigate: None,
            publish: default_true(),
            publish_prefix: default_publish_prefix(),
            discovery_prefix: default_discovery_prefix(),
        }
    }
}

/// A plain topic: payload `ON`/`OFF`, `true`/`false`, `1`/`0` (any case) or JSON
/// `{"detected": bool}`; a level source (on until its "off").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainTopic {
    /// Topic filter (MQTT wildcards `+` and `#` allowed).
    pub topic: String,
    /// Bridge camera it drives.
    pub camera: String,
}

/// Frigate's event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrigateConfig {
    /// Events topic. Default `"frigate/events"` (Frigate's default `topic_prefix` + `/events`).
    #[serde(default = "default_frigate_topic")]
    pub topic: String,
    /// Object labels that count as motion (case-insensitive); empty means all. Default
    /// `["person"]`.
    #[serde(default = "default_labels")]
    pub labels: Vec<String>,
    /// Frigate camera name → bridge camera name. Empty: the names are the same. When not
    /// empty, events of unmapped Frigate cameras are ignored.
    #[serde(default)]
    pub cameras: BTreeMap<String, String>,
    /// Minimum object score (`after.top_score`, else `after.score`), 0–1. Default 0.
    #[serde(default)]
    pub min_score: f64,
    /// Ignore objects Frigate marks `stationary` (parked cars). Default `true`.
    #[serde(default = "default_true")]
    pub ignore_stationary: bool,
}

fn default_frigate_topic() -> String {
    "frigate/events".to_owned()
}
fn default_labels() -> Vec<String> {
    vec!["person".to_owned()]
}
fn default_true() -> bool {
    true
}

impl Default for FrigateConfig {
    fn default() -> Self {
        Self {
            topic: default_frigate_topic(),
            labels: default_labels(),
            cameras: BTreeMap::new(),
            min_score: 0.0,
            ignore_stationary: true,
        }
    }
}

impl MqttConfig {
    /// Checks the topics and that every mapped camera is known to `hub`.
    ///
    /// # Errors
    /// [`MotionError::InvalidConfig`] for a bad topic filter or timing;
    /// [`MotionError::UnknownCamera`] for a mapping to a camera the hub does not have.
    pub fn validate(&self, hub: &MotionHub) -> Result<(), MotionError> {
        let bad = |what: String| Err(MotionError::InvalidConfig(format!("mqtt: {what}")));
        if self.topics.is_empty() && self.frigate.is_none() && !self.publish {
            return bad(
                "no topics, no frigate section and publish = false: nothing to do".to_owned(),
            );
        }
        if self.publish
            && (self.publish_prefix.is_empty() || !rumqttc::valid_topic(&self.publish_prefix))
        {
            return bad(format!("invalid publish_prefix {:?}", self.publish_prefix));
        }
        if !self.discovery_prefix.is_empty() && !rumqttc::valid_topic(&self.discovery_prefix) {
            return bad(format!(
                "invalid discovery_prefix {:?}",
                self.discovery_prefix
            ));
        }
        if self.reconnect_min_ms == 0 || self.reconnect_max_ms < self.reconnect_min_ms {
            return bad("need 0 < reconnect_min_ms <= reconnect_max_ms".to_owned());
        }
        if self.password.is_some() && self.username.is_none() {
            return bad("password without username".to_owned());
        }
        for t in &self.topics {
            if !rumqttc::valid_filter(&t.topic) {
                return bad(format!("invalid topic filter {:?}", t.topic));
            }
            if !hub.contains(&t.camera) {
                return Err(MotionError::UnknownCamera {
                    camera: t.camera.clone(),
                });
            }
        }
        if let Some(f) = &self.frigate {
            if !rumqttc::valid_filter(&f.topic) {
                return bad(format!("invalid frigate topic {:?}", f.topic));
            }
            if !(0.0..=1.0).contains(&f.min_score) {
                return bad(format!(
                    "frigate min_score {} is not within 0–1",
                    f.min_score
                ));
            }
            if let Some(camera) = f.cameras.values().find(|c| !hub.contains(c)) {
                return Err(MotionError::UnknownCamera {
                    camera: camera.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Why a payload was ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// A plain payload that is none of the accepted spellings.
    #[error("not ON/OFF, true/false, 1/0 or {{\"detected\": bool}}: {0:?}")]
    NotABoolean(String),
    /// A Frigate event that is not JSON of the expected shape.
    #[error("malformed frigate event: {0}")]
    Frigate(String),
}

/// Parses a plain motion payload: `ON`/`OFF`, `true`/`false`, `1`/`0` (any case, surrounding
/// whitespace ignored) or JSON `{"detected": bool}`.
///
/// # Errors
/// [`PayloadError::NotABoolean`] with (the start of) the payload.
pub fn parse_plain_payload(payload: &[u8]) -> Result<bool, PayloadError> {
    let text = std::str::from_utf8(payload)
        .map(str::trim)
        .unwrap_or_default();
    match text.to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => return Ok(true),
        "off" | "false" | "0" => return Ok(false),
        _ => {}
    }
    #[derive(Deserialize)]
    struct Detected {
        detected: bool,
    }
    serde_json::from_slice::<Detected>(payload)
        .map(|d| d.detected)
        .map_err(|_| {
            let shown: String = String::from_utf8_lossy(payload).chars().take(64).collect();
            PayloadError::NotABoolean(shown)
        })
}

/// The parts of a Frigate event we read (`frigate/events`: `type` is `new`, `update` or `end`;
/// `before`/`after` describe the tracked object). Unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct FrigateEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    before: Option<FrigateObject>,
    after: Option<FrigateObject>,
}

#[derive(Debug, Deserialize)]
struct FrigateObject {
    #[serde(default)]
    id: Option<String>,
    camera: String,
    label: String,
    #[serde(default)]
    false_positive: bool,
    #[serde(default)]
    stationary: bool,
    #[serde(default)]
    score: Option<f64>,
    #[serde(default)]
    top_score: Option<f64>,
}

/// Tracked objects older than this without an update are forgotten (a lost `end` message).
const FRIGATE_STALE: Duration = Duration::from_secs(600);
/// Objects tracked per camera at most (bounds memory if `end` messages are lost).
const FRIGATE_MAX_OBJECTS: usize = 64;

/// Turns Frigate events into per-camera motion: on while at least one relevant object is
/// tracked, off when the last one ends, turns stationary or is marked a false positive.
#[derive(Debug)]
pub struct FrigateTracker {
    config: FrigateConfig,
    /// Bridge camera → object id → last update.
    active: HashMap<String, HashMap<String, Instant>>,
}

impl FrigateTracker {
    /// A tracker with no objects.
    pub fn new(config: FrigateConfig) -> Self {
        Self {
            config,
            active: HashMap::new(),
        }
    }

    /// Handles one event. Returns the bridge camera and what to trigger, or `None` when the
    /// event does not change anything (filtered label, unmapped camera, …).
    ///
    /// # Errors
    /// [`PayloadError::Frigate`] for payloads that are not a Frigate event.
    pub fn handle(
        &mut self,
        now: Instant,
        payload: &[u8],
    ) -> Result<Option<(String, bool)>, PayloadError> {
        let event: FrigateEvent =
            serde_json::from_slice(payload).map_err(|e| PayloadError::Frigate(e.to_string()))?;
        let Some(obj) = event.after.as_ref().or(event.before.as_ref()) else {
            return Err(PayloadError::Frigate(
                "no `after` or `before` object".to_owned(),
            ));
        };
        let Some(camera) = self.map_camera(&obj.camera) else {
            tracing::debug!(
                frigate_camera = obj.camera,
                "frigate event for an unmapped camera ignored"
            );
            return Ok(None);
        };
        let id = obj
            .id
            .clone()
            .or_else(|| event.before.as_ref().and_then(|b| b.id.clone()))
            .unwrap_or_default();
        let relevant = match event.kind.as_str() {
            "new" | "update" => self.is_relevant(obj),
            "end" => false,
            other => {
                return Err(PayloadError::Frigate(format!(
                    "unknown event type {other:?}"
                )));
            }
        };

        let objects = self.active.entry(camera.clone()).or_default();
        objects.retain(|_, seen| now.saturating_duration_since(*seen) < FRIGATE_STALE);
        if relevant {
            if objects.len() < FRIGATE_MAX_OBJECTS || objects.contains_key(&id) {
                objects.insert(id, now);
            }
            // Every relevant update refreshes the level source's timeout.
            return Ok(Some((camera, true)));
        }
        let was_tracked = objects.remove(&id).is_some();
        Ok((was_tracked && objects.is_empty()).then_some((camera, false)))
    }

    fn map_camera(&self, frigate_camera: &str) -> Option<String> {
        if self.config.cameras.is_empty() {
            Some(frigate_camera.to_owned())
        } else {
            self.config.cameras.get(frigate_camera).cloned()
        }
    }

    fn is_relevant(&self, obj: &FrigateObject) -> bool {
        let label_ok = self.config.labels.is_empty()
            || self
                .config
                .labels
                .iter()
                .any(|l| l.eq_ignore_ascii_case(&obj.label));
        let score = obj.top_score.or(obj.score).unwrap_or(1.0);
        label_ok
            && !obj.false_positive
            && score >= self.config.min_score
            && !(self.config.ignore_stationary && obj.stationary)
    }
}

/// Connection state of the MQTT client, for health checks and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MqttStatus {
    /// Connected to the broker (CONNACK received, no error since).
    pub connected: bool,
    /// Our subscriptions are acknowledged on the current connection.
    pub subscribed: bool,
    /// Successful connections so far (2 or more means it reconnected).
    pub connections: u64,
    /// Messages that triggered a camera.
    pub applied_messages: u64,
    /// Messages ignored as malformed or for unknown cameras.
    pub ignored_messages: u64,
}

/// The running MQTT client; dropping it disconnects.
#[derive(Debug)]
pub struct MqttHandle {
    task: JoinHandle<()>,
    publisher_task: Option<JoinHandle<()>>,
    status: watch::Receiver<MqttStatus>,
    publisher: Option<MqttPublisher>,
}

impl MqttHandle {
    /// Connection state; changes on every (re)connect, subscribe and handled message.
    pub fn status(&self) -> watch::Receiver<MqttStatus> {
        self.status.clone()
    }

    /// Where the bridge's own messages go; `None` with `publish = false`.
    pub fn publisher(&self) -> Option<MqttPublisher> {
        self.publisher.clone()
    }
}

impl Drop for MqttHandle {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(t) = &self.publisher_task {
            t.abort();
        }
    }
}

/// Messages the bridge queued and not yet handed to the client; more are dropped (counted in
/// the log at debug) rather than blocking the camera tasks.
const PUBLISH_QUEUE: usize = 256;

/// One outgoing message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outgoing {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

/// Publishes the bridge's messages (QoS 1). Retained messages are also kept and sent again
/// after every reconnect, with `<prefix>/status = online` (the broker may have lost them, and
/// the last will said `offline`).
#[derive(Debug, Clone)]
pub struct MqttPublisher {
    tx: tokio::sync::mpsc::Sender<Outgoing>,
    prefix: String,
    discovery_prefix: String,
}

impl MqttPublisher {
    /// The topic prefix (`publish_prefix`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Home Assistant discovery prefix; empty when discovery is off.
    pub fn discovery_prefix(&self) -> &str {
        &self.discovery_prefix
    }

    /// Queues `payload` on `topic`; never waits (a full queue drops the message).
    pub fn publish(&self, topic: String, payload: impl Into<Vec<u8>>, retain: bool) {
        let msg = Outgoing {
            topic,
            payload: payload.into(),
            retain,
        };
        if let Err(e) = self.tx.try_send(msg) {
            tracing::debug!(error = %e, "mqtt publish queue full; message dropped");
        }
    }
}

/// Hands queued messages to the client while connected, and replays the retained ones (and
/// `online`) after each (re)connect.
async fn publish_task(
    client: AsyncClient,
    prefix: String,
    mut rx: tokio::sync::mpsc::Receiver<Outgoing>,
    mut status: watch::Receiver<MqttStatus>,
) {
    let mut retained: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    retained.insert(format!("{prefix}/status"), b"online".to_vec());
    let mut seen_connections = 0u64;
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { return };
                if msg.retain {
                    retained.insert(msg.topic.clone(), msg.payload.clone());
                }
                if status.borrow().connected {
                    let _ = client
                        .publish(msg.topic, QoS::AtLeastOnce, msg.retain, msg.payload)
                        .await;
                }
            }
            r = status.changed() => {
                if r.is_err() {
                    return;
                }
                let s = *status.borrow_and_update();
                if s.connected && s.connections > seen_connections {
                    seen_connections = s.connections;
                    for (topic, payload) in &retained {
                        let _ = client
                            .publish(topic.clone(), QoS::AtLeastOnce, true, payload.clone())
                            .await;
                    }
                }
            }
        }
    }
}

/// Largest MQTT packet accepted. Frigate events are a few KiB; a larger packet would make
/// `rumqttc` drop the connection, so allow plenty.
const MAX_PACKET_BYTES: usize = 1 << 20;

/// Validates `config` and starts the client on the current tokio runtime.
///
/// # Errors
/// See [`MqttConfig::validate`].
pub fn spawn_mqtt(config: MqttConfig, hub: MotionHub) -> Result<MqttHandle, MotionError> {
    config.validate(&hub)?;
    let (tx, status) = watch::channel(MqttStatus::default());
    let (client, eventloop) = client_for(&config);
    let (publisher, publisher_task) = if config.publish {
        let (ptx, prx) = tokio::sync::mpsc::channel(PUBLISH_QUEUE);
        let task = tokio::spawn(publish_task(
            client.clone(),
            config.publish_prefix.clone(),
            prx,
            status.clone(),
        ));
        let publisher = MqttPublisher {
            tx: ptx,
            prefix: config.publish_prefix.clone(),
            discovery_prefix: config.discovery_prefix.clone(),
        };
        (Some(publisher), Some(task))
    } else {
        (None, None)
    };
    let task = tokio::spawn(run(config, hub, tx, client, eventloop));
    Ok(MqttHandle {
        task,
        publisher_task,
        status,
        publisher,
    })
}

fn client_for(config: &MqttConfig) -> (AsyncClient, rumqttc::EventLoop) {
    let mut options = MqttOptions::new(config.client_id.clone(), config.host.clone(), config.port);
    options.set_keep_alive(Duration::from_secs(u64::from(
        config.keep_alive_secs.max(5),
    )));
    options.set_clean_session(true);
    options.set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    if let Some(user) = &config.username {
        let password = config
            .password
            .as_ref()
            .map(|p| p.0.clone())
            .unwrap_or_default();
        options.set_credentials(user.clone(), password);
    }
    if config.publish {
        options.set_last_will(rumqttc::LastWill::new(
            format!("{}/status", config.publish_prefix),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
    }
    AsyncClient::new(options, 64)
}

async fn run(
    config: MqttConfig,
    hub: MotionHub,
    status: watch::Sender<MqttStatus>,
    client: AsyncClient,
    mut eventloop: rumqttc::EventLoop,
) {
    let mut filters: Vec<String> = config.topics.iter().map(|t| t.topic.clone()).collect();
    if let Some(f) = &config.frigate {
        filters.push(f.topic.clone());
    }
    filters.sort();
    filters.dedup();
    let mut frigate = config.frigate.clone().map(FrigateTracker::new);
    let min_backoff = Duration::from_millis(config.reconnect_min_ms);
    let max_backoff = Duration::from_millis(config.reconnect_max_ms);
    let mut backoff = min_backoff;

    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = min_backoff;
                tracing::info!(host = config.host, port = config.port, "mqtt connected");
                status.send_modify(|s| {
                    s.connected = true;
                    s.subscribed = false;
                    s.connections += 1;
                });
                // try_*: the request channel is drained by this very loop, so never await here.
                let subs = filters
                    .iter()
                    .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                if !filters.is_empty()
                    && let Err(e) = client.try_subscribe_many(subs)
                {
                    tracing::warn!(error = %e, "mqtt subscribe could not be queued");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => status.send_modify(|s| s.subscribed = true),
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let applied = dispatch(
                    &config,
                    frigate.as_mut(),
                    &hub,
                    &publish.topic,
                    &publish.payload,
                );
                status.send_modify(|s| {
                    if applied {
                        s.applied_messages += 1;
                    } else {
                        s.ignored_messages += 1;
                    }
                });
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "mqtt connection lost");
                status.send_modify(|s| {
                    s.connected = false;
                    s.subscribed = false;
                });
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}

/// Routes one message; returns whether it triggered a camera.
fn dispatch(
    config: &MqttConfig,
    frigate: Option<&mut FrigateTracker>,
    hub: &MotionHub,
    topic: &str,
    payload: &[u8],
) -> bool {
    let mut applied = false;
    if let Some(tracker) = frigate.filter(|t| rumqttc::matches(topic, &t.config.topic)) {
        match tracker.handle(Instant::now(), payload) {
            Ok(Some((camera, detected))) => {
                applied |= trigger(hub, &camera, detected, MotionSource::Frigate, topic)
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(topic, error = %e, "mqtt message ignored"),
        }
    }
    for t in config
        .topics
        .iter()
        .filter(|t| rumqttc::matches(topic, &t.topic))
    {
        match parse_plain_payload(payload) {
            Ok(detected) => applied |= trigger(hub, &t.camera, detected, MotionSource::Mqtt, topic),
            Err(e) => tracing::warn!(topic, error = %e, "mqtt message ignored"),
        }
    }
    applied
}

fn trigger(
    hub: &MotionHub,
    camera: &str,
    detected: bool,
    source: MotionSource,
    topic: &str,
) -> bool {
    match hub.trigger(camera, detected, source) {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(topic, error = %e, "mqtt message for an unknown camera ignored");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_payload_spellings() {
        for on in ["ON", "on", " true\n", "1", "TRUE", r#"{"detected": true}"#] {
            assert_eq!(parse_plain_payload(on.as_bytes()), Ok(true), "{on:?}");
        }
        for off in [
            "OFF",
            "Off",
            "false",
            "0",
            r#"{"detected":false,"extra":1}"#,
        ] {
            assert_eq!(parse_plain_payload(off.as_bytes()), Ok(false), "{off:?}");
        }
    }

    #[test]
    fn malformed_plain_payloads_are_errors() {
        for bad in [
            &b""[..],
            b"maybe",
            b"2",
            b"{\"detected\":\"yes\"}",
            b"{\"motion\":true}",
            b"\xff\xfe",
            b"{",
        ] {
            assert!(parse_plain_payload(bad).is_err(), "{bad:?}");
        }
        let long = vec![b'x'; 1000];
        let PayloadError::NotABoolean(shown) = parse_plain_payload(&long).unwrap_err() else {
            panic!()
        };
        assert_eq!(shown.len(), 64, "error text is bounded");
    }

    fn event(kind: &str, id: &str, camera: &str, label: &str) -> String {
        format!(
            r#"{{"type":"{kind}","before":{{"id":"{id}","camera":"{camera}","label":"{label}"}},
               "after":{{"id":"{id}","camera":"{camera}","label":"{label}","score":0.8,"top_score":0.9,
               "false_positive":false,"stationary":false,"current_zones":[]}}}}"#
        )
    }

    #[test]
    fn frigate_new_update_end_with_two_objects() {
        let mut t = FrigateTracker::new(FrigateConfig::default());
        let now = Instant::now();
        let on = Some(("front".to_owned(), true));
        assert_eq!(
            t.handle(now, event("new", "a", "front", "person").as_bytes())
                .unwrap(),
            on
        );
        assert_eq!(
            t.handle(now, event("new", "b", "front", "person").as_bytes())
                .unwrap(),
            on
        );
        assert_eq!(
            t.handle(now, event("update", "a", "front", "person").as_bytes())
                .unwrap(),
            on
        );
        // One of two objects ends: still on (no trigger).
        assert_eq!(
            t.handle(now, event("end", "a", "front", "person").as_bytes())
                .unwrap(),
            None
        );
        assert_eq!(
            t.handle(now, event("end", "b", "front", "person").as_bytes())
                .unwrap(),
            Some(("front".to_owned(), false))
        );
        // An end for an object we never tracked changes nothing.
        assert_eq!(
            t.handle(now, event("end", "zzz", "front", "person").as_bytes())
                .unwrap(),
            None
        );
    }

    #[test]
    fn frigate_filters_labels_false_positives_stationary_and_score() {
        let config = FrigateConfig {
            min_score: 0.95,
            ..FrigateConfig::default()
        };
        let mut t = FrigateTracker::new(config);
        let now = Instant::now();
        assert_eq!(
            t.handle(now, event("new", "c", "front", "car").as_bytes())
                .unwrap(),
            None
        );
        assert_eq!(
            t.handle(now, event("new", "p", "front", "person").as_bytes())
                .unwrap(),
            None,
            "score 0.9 < 0.95"
        );

        let mut t = FrigateTracker::new(FrigateConfig::default());
        assert_eq!(
            t.handle(now, event("new", "c", "front", "car").as_bytes())
                .unwrap(),
            None
        );
        assert!(
            t.handle(now, event("new", "p", "front", "Person").as_bytes())
                .unwrap()
                .is_some(),
            "case-insensitive"
        );
        // The tracked object turns out to be a false positive: off.
        let fp = event("update", "p", "front", "person")
            .replace(r#""false_positive":false"#, r#""false_positive":true"#);
        // replace() on the string form keeps the payload otherwise identical.
        assert_eq!(
            t.handle(now, fp.as_bytes()).unwrap(),
            Some(("front".to_owned(), false))
        );
        t.handle(now, event("new", "q", "front", "person").as_bytes())
            .unwrap();
        let parked = event("update", "q", "front", "person")
            .replace(r#""stationary":false"#, r#""stationary":true"#);
        assert_eq!(
            t.handle(now, parked.as_bytes()).unwrap(),
            Some(("front".to_owned(), false))
        );
    }

    #[test]
    fn frigate_camera_mapping() {
        let config = FrigateConfig {
            cameras: BTreeMap::from([("front_door".to_owned(), "Front".to_owned())]),
            ..FrigateConfig::default()
        };
        let mut t = FrigateTracker::new(config);
        let now = Instant::now();
        assert_eq!(
            t.handle(now, event("new", "a", "front_door", "person").as_bytes())
                .unwrap(),
            Some(("Front".to_owned(), true))
        );
        assert_eq!(
            t.handle(now, event("new", "b", "garage", "person").as_bytes())
                .unwrap(),
            None,
            "unmapped"
        );
    }

    #[test]
    fn frigate_malformed_events_are_errors() {
        let mut t = FrigateTracker::new(FrigateConfig::default());
        let now = Instant::now();
        for bad in [
            &b"not json"[..],
            b"{}",
            br#"{"type":"new"}"#,
            br#"{"type":"explode","after":{"camera":"a","label":"person"}}"#,
            br#"{"type":"new","after":{"camera":5,"label":"person"}}"#,
            br#"[1,2,3]"#,
        ] {
            assert!(
                t.handle(now, bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn frigate_forgets_objects_whose_end_was_lost() {
        let mut t = FrigateTracker::new(FrigateConfig::default());
        let t0 = Instant::now();
        t.handle(t0, event("new", "lost", "front", "person").as_bytes())
            .unwrap();
        t.handle(
            t0 + Duration::from_secs(700),
            event("new", "b", "front", "person").as_bytes(),
        )
        .unwrap();
        // "lost" was pruned as stale, so b's end is the last one: off.
        let off = t
            .handle(
                t0 + Duration::from_secs(701),
                event("end", "b", "front", "person").as_bytes(),
            )
            .unwrap();
        assert_eq!(off, Some(("front".to_owned(), false)));
    }

    #[tokio::test]
    async fn validation_names_the_problem() {
        let hub = MotionHub::new([("cam", crate::DebounceConfig::default())]).unwrap();
        let plain = vec![PlainTopic {
            topic: "a/b".into(),
            camera: "cam".into(),
        }];
        let ok = MqttConfig {
            topics: plain.clone(),
            ..MqttConfig::default()
        };
        ok.validate(&hub).unwrap();
        // Publishing alone is something to do.
        MqttConfig::default().validate(&hub).unwrap();
        let cases = [
            (
                MqttConfig {
                    publish: false,
                    ..MqttConfig::default()
                },
                "nothing to do",
            ),
            (
                MqttConfig {
                    publish_prefix: "a/#".into(),
                    ..ok.clone()
                },
                "invalid publish_prefix",
            ),
            (
                MqttConfig {
                    reconnect_min_ms: 0,
                    ..ok.clone()
                },
                "reconnect",
            ),
            (
                MqttConfig {
                    reconnect_min_ms: 900,
                    reconnect_max_ms: 800,
                    ..ok.clone()
                },
                "reconnect",
            ),
            (
                MqttConfig {
                    password: Some(Secret("p".into())),
                    ..ok.clone()
                },
                "password without username",
            ),
            (
                MqttConfig {
                    frigate: Some(FrigateConfig {
                        min_score: 1.5,
                        ..FrigateConfig::default()
                    }),
                    ..ok.clone()
                },
                "min_score",
            ),
            (
                MqttConfig {
                    frigate: Some(FrigateConfig {
                        topic: "a/#/b".into(),
                        ..FrigateConfig::default()
                    }),
                    ..ok.clone()
                },
                "invalid frigate topic",
            ),
        ];
        for (config, expected) in cases {
            let err = config.validate(&hub).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
        }
    }

    #[test]
    fn password_is_not_in_debug_output() {
        let c = MqttConfig {
            username: Some("u".into()),
            password: Some(Secret("hunter2".into())),
            ..MqttConfig::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
