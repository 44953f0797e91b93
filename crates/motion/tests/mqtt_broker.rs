//! MQTT input against a real mosquitto broker started on loopback, fed by mosquitto_pub.
#![allow(missing_docs, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use motion::{
    DebounceConfig, FrigateConfig, MotionError, MotionHub, MotionSource, MqttConfig, MqttStatus,
    PlainTopic,
};
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

/// Bounded wait for a condition on a watch channel.
async fn wait_for<T: Clone>(
    rx: &mut watch::Receiver<T>,
    what: &str,
    within: Duration,
    f: impl Fn(&T) -> bool,
) -> T {
    match timeout(within, rx.wait_for(|v| f(v))).await {
        Ok(Ok(v)) => v.clone(),
        Ok(Err(_)) => panic!("{what}: channel closed"),
        Err(_) => panic!(
            "{what}: not within {within:?} (last: {})",
            std::any::type_name::<T>()
        ),
    }
}

fn frigate_event(kind: &str, id: &str, camera: &str, label: &str) -> String {
    // Shape of Frigate's `frigate/events` messages (before/after objects; extra fields ignored).
    format!(
        r#"{{"type":"{kind}","before":{{"id":"{id}","camera":"{camera}","label":"{label}","false_positive":true}},"after":{{"id":"{id}","camera":"{camera}","label":"{label}","sub_label":null,"top_score":0.84,"score":0.81,"false_positive":false,"stationary":false,"current_zones":["driveway"],"entered_zones":["driveway"],"has_clip":true,"has_snapshot":true,"start_time":1700000000.5,"end_time":null,"box":[1,2,3,4]}}}}"#
    )
}

const MIN_ON: Duration = Duration::from_millis(1500);

fn setup(port: u16) -> (MotionHub, MqttConfig) {
    let debounce = DebounceConfig {
        min_on_ms: MIN_ON.as_millis() as u64,
        hold_ms: 200,
        level_max_ms: 60_000,
    };
    let hub = MotionHub::new([
        ("Front", debounce.clone()),
        ("probe", debounce.clone()),
        ("porch", debounce),
    ])
    .unwrap();
    let config = MqttConfig {
        port,
        client_id: format!("motion-test-{}", std::process::id()),
        reconnect_min_ms: 100,
        reconnect_max_ms: 400,
        topics: vec![
            PlainTopic {
                topic: "test/probe/motion".into(),
                camera: "probe".into(),
            },
            PlainTopic {
                topic: "sensors/+/porch".into(),
                camera: "porch".into(),
            },
        ],
        frigate: Some(FrigateConfig {
            cameras: BTreeMap::from([("front_door".to_owned(), "Front".to_owned())]),
            ..FrigateConfig::default()
        }),
        ..MqttConfig::default()
    };
    (hub, config)
}

async fn subscribed(status: &mut watch::Receiver<MqttStatus>, connections: u64) {
    wait_for(status, "mqtt subscribed", Duration::from_secs(15), |s| {
        s.subscribed && s.connections >= connections
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frigate_events_drive_debounced_motion_and_survive_a_broker_restart() {
    let mut broker = common::Broker::start();
    let (hub, config) = setup(broker.port);
    let mqtt = motion::spawn_mqtt(config, hub.clone()).unwrap();
    let mut status = mqtt.status();
    subscribed(&mut status, 1).await;

    let mut front = hub.subscribe("Front").unwrap();
    let mut probe = hub.subscribe("probe").unwrap();

    // A car: filtered by the default label list (person). The probe message published after it
    // proves the car event was delivered and handled first (one broker, one connection, in order).
    broker.publish(
        "frigate/events",
        &frigate_event("new", "car-1", "front_door", "car"),
    );
    broker.publish("test/probe/motion", "ON");
    wait_for(&mut probe, "probe on", Duration::from_secs(5), |s| {
        s.detected
    })
    .await;
    assert!(
        !front.borrow().detected,
        "a car must not trigger with labels = [person]"
    );

    // A person: on.
    broker.publish(
        "frigate/events",
        &frigate_event("new", "person-1", "front_door", "person"),
    );
    let on = wait_for(&mut front, "front on", Duration::from_secs(5), |s| {
        s.detected
    })
    .await;
    assert_eq!(on.source, Some(MotionSource::Frigate));
    let on_at = Instant::from_std(on.changed_at);

    // The object ends at once: off only after min_on.
    broker.publish(
        "frigate/events",
        &frigate_event("end", "person-1", "front_door", "person"),
    );
    let off = wait_for(&mut front, "front off", Duration::from_secs(5), |s| {
        !s.detected
    })
    .await;
    let on_for = Instant::from_std(off.changed_at) - on_at;
    assert!(
        on_for >= MIN_ON,
        "motion was on for {on_for:?}, less than min_on"
    );
    assert!(
        on_for < MIN_ON + Duration::from_millis(700),
        "off came late: {on_for:?}"
    );

    // The broker goes away and comes back on the same port.
    broker.stop();
    wait_for(
        &mut status,
        "mqtt notices the loss",
        Duration::from_secs(10),
        |s| !s.connected,
    )
    .await;
    broker.restart();
    subscribed(&mut status, 2).await;

    // A publish after the restart reaches us: the subscription was renewed.
    broker.publish(
        "frigate/events",
        &frigate_event("new", "person-2", "front_door", "person"),
    );
    let again = wait_for(
        &mut front,
        "front on after restart",
        Duration::from_secs(5),
        |s| s.detected,
    )
    .await;
    assert_eq!(again.changes, 3);
    assert!(status.borrow().connections >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_topics_and_malformed_payloads() {
    let broker = common::Broker::start();
    let (hub, config) = setup(broker.port);
    let mqtt = motion::spawn_mqtt(config, hub.clone()).unwrap();
    let mut status = mqtt.status();
    subscribed(&mut status, 1).await;
    let mut porch = hub.subscribe("porch").unwrap();
    let mut probe = hub.subscribe("probe").unwrap();

    // Malformed payloads, each ignored and counted; then a probe shows they were all handled.
    broker.publish("sensors/zigbee/porch", "maybe");
    broker.publish("sensors/zigbee/porch", r#"{"detected":"yes"}"#);
    broker.publish("frigate/events", "{not json");
    broker.publish(
        "frigate/events",
        r#"{"type":"new","after":{"camera":"front_door"}}"#,
    );
    // An unmapped Frigate camera: not an error, just nothing to do.
    broker.publish(
        "frigate/events",
        &frigate_event("new", "x", "backyard", "person"),
    );
    broker.publish("test/probe/motion", r#"{"detected": true}"#);
    wait_for(&mut probe, "probe on", Duration::from_secs(5), |s| {
        s.detected
    })
    .await;
    // The hub is triggered before the MQTT task counts the message: wait for the count.
    let s = wait_for(&mut status, "probe counted", Duration::from_secs(5), |s| {
        s.applied_messages >= 1
    })
    .await;
    assert_eq!(s.ignored_messages, 5, "{s:?}");
    assert_eq!(s.applied_messages, 1, "{s:?}");
    assert!(!porch.borrow().detected);
    assert!(!hub.status("Front").unwrap().detected);

    // Wildcard topic, level semantics: ON holds past hold_ms until OFF, then min_on applies.
    broker.publish("sensors/zigbee/porch", "ON");
    let on = wait_for(&mut porch, "porch on", Duration::from_secs(5), |s| {
        s.detected
    })
    .await;
    assert_eq!(on.source, Some(MotionSource::Mqtt));
    tokio::time::sleep(MIN_ON + Duration::from_millis(300)).await;
    assert!(porch.borrow().detected, "a level source stays on until OFF");
    broker.publish("sensors/zigbee/porch", "off");
    let off = wait_for(&mut porch, "porch off", Duration::from_secs(5), |s| {
        !s.detected
    })
    .await;
    assert!(
        Instant::from_std(off.changed_at) - Instant::from_std(on.changed_at)
            >= MIN_ON + Duration::from_millis(300)
    );
}

#[tokio::test]
async fn config_naming_an_unknown_camera_is_rejected() {
    let (hub, mut config) = setup(1);
    config.topics.push(PlainTopic {
        topic: "a/b".into(),
        camera: "garage".into(),
    });
    let err = motion::spawn_mqtt(config, hub.clone()).unwrap_err();
    assert!(
        matches!(&err, MotionError::UnknownCamera { camera } if camera == "garage"),
        "{err}"
    );

    let (_, mut config) = setup(1);
    config.topics.push(PlainTopic {
        topic: "a/#/b".into(),
        camera: "porch".into(),
    });
    assert!(matches!(
        motion::spawn_mqtt(config, hub).unwrap_err(),
        MotionError::InvalidConfig(_)
    ));
}
