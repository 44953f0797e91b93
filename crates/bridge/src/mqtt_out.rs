//! The bridge's state and events over MQTT (where `[mqtt]` is configured and `publish` is on),
//! for Home Assistant and Node-RED. Topics, under `<prefix>` (`publish_prefix`, default
//! `hksv-bridge`) and the camera's [`slug`]:
//!
//! | topic | payload | retained |
//! | --- | --- | --- |
//! | `<prefix>/status` | `online`; `offline` as the last will | yes |
//! | `<prefix>/<slug>/motion` | `ON` / `OFF` | yes |
//! | `<prefix>/<slug>/recording` | `ON` / `OFF` (a hub's recording stream is open) | yes |
//! | `<prefix>/<slug>/source` | `starting` / `streaming` / `retrying` / `failed` | yes |
//! | `<prefix>/<slug>/event` | the history entry (JSON, as `GET …/events`) each time its outcome changes: `recording` (started), then `recorded` / `failed` / `no recording` / `refused` | no |
//! | `<discovery>/binary_sensor/hksv_<slug>_{motion,recording}/config` | Home Assistant discovery | yes |
//!
//! Motion is published as it changes (the motion hub's watch); recording, source and events
//! are read every [`POLL`], a thin driver at the edge that reaches into no camera.

use std::collections::HashMap;
use std::time::Duration;

use motion::{MotionHub, MqttPublisher};
use serde_json::json;
use tokio::sync::watch;

use crate::camera::Camera;
use crate::config::slug;

/// How often recording state, source state and the history are looked at.
pub const POLL: Duration = Duration::from_millis(500);

fn on_off(b: bool) -> &'static str {
    if b { "ON" } else { "OFF" }
}

/// Home Assistant discovery for one camera's two binary sensors.
fn discovery(p: &MqttPublisher, camera: &Camera) {
    if p.discovery_prefix().is_empty() {
        return;
    }
    let s = slug(camera.name());
    // Discovery ids must be [a-zA-Z0-9_-]; the slug may hold any letter.
    let id: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let prefix = p.prefix();
    let device = json!({
        "identifiers": [format!("hksv_bridge_{id}")],
        "name": camera.name(),
        "manufacturer": "hksv-bridge",
        "model": "HomeKit Secure Video camera",
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    for (what, name, class) in [
        ("motion", "Motion", Some("motion")),
        ("recording", "Recording to HomeKit", None),
    ] {
        let mut config = json!({
            "name": name,
            "unique_id": format!("hksv_bridge_{id}_{what}"),
            "object_id": format!("hksv_{id}_{what}"),
            "state_topic": format!("{prefix}/{s}/{what}"),
            "payload_on": "ON",
            "payload_off": "OFF",
            "availability_topic": format!("{prefix}/status"),
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
        });
        if let (Some(class), Some(obj)) = (class, config.as_object_mut()) {
            obj.insert("device_class".into(), json!(class));
        }
        p.publish(
            format!(
                "{}/binary_sensor/hksv_{id}_{what}/config",
                p.discovery_prefix()
            ),
            config.to_string(),
            true,
        );
    }
}

/// What was last published for a camera.
#[derive(Debug, Default)]
struct Seen {
    recording: Option<bool>,
    source: Option<&'static str>,
    /// Newest history entry: (id, outcome).
    event: Option<(u64, String)>,
}

fn publish_changes(p: &MqttPublisher, camera: &Camera, seen: &mut Seen) {
    let s = slug(camera.name());
    let prefix = p.prefix();
    let recording = camera.is_recording();
    if seen.recording != Some(recording) {
        seen.recording = Some(recording);
        p.publish(format!("{prefix}/{s}/recording"), on_off(recording), true);
    }
    let source = camera.source_status().state.as_str();
    if seen.source != Some(source) {
        seen.source = Some(source);
        p.publish(format!("{prefix}/{s}/source"), source, true);
    }
    if let Some(entry) = camera.history(None, 1).into_iter().next() {
        let key = (entry.id, entry.outcome.clone());
        // Not at start: only what happens while we run (the history is there for the past).
        match &seen.event {
            None => seen.event = Some(key),
            Some(k) if *k == key => {}
            Some(_) => {
                seen.event = Some(key);
                if let Ok(body) = serde_json::to_string(&entry) {
                    p.publish(format!("{prefix}/{s}/event"), body, false);
                }
            }
        }
    } else if seen.event.is_none() {
        seen.event = Some((0, String::new()));
    }
}

/// Publishes every camera's state and events until `stop`: motion from one task per camera
/// as it changes, the rest from this loop every [`POLL`].
pub async fn run(
    p: MqttPublisher,
    cameras: Vec<Camera>,
    hub: MotionHub,
    mut stop: watch::Receiver<bool>,
) {
    let mut motion_tasks = tokio::task::JoinSet::new();
    for c in &cameras {
        discovery(&p, c);
        if let Ok(rx) = hub.subscribe(c.name()) {
            motion_tasks.spawn(publish_motion(p.clone(), slug(c.name()), rx, stop.clone()));
        }
    }
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        for c in &cameras {
            publish_changes(&p, c, seen.entry(c.name().to_owned()).or_default());
        }
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
    }
    motion_tasks.shutdown().await;
}

async fn publish_motion(
    p: MqttPublisher,
    s: String,
    mut rx: watch::Receiver<motion::MotionStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last = None;
    loop {
        let detected = rx.borrow_and_update().detected;
        if last != Some(detected) {
            last = Some(detected);
            p.publish(format!("{}/{s}/motion", p.prefix()), on_off(detected), true);
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = stop.changed() => return,
        }
    }
}
