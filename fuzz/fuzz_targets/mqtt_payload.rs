//! MQTT payloads from the broker: `parse_plain_payload` and the Frigate event tracker on
//! arbitrary bytes. Never panics, and
//! - a plain payload means the same with ASCII whitespace around it (its docs: surrounding
//!   whitespace ignored), and the error text stays bounded (64 characters of the payload);
//! - the tracker only maps to configured cameras and only turns a camera off after it turned it
//!   on ("off when the last one ends": no off without a tracked object).
//!
//! Input: byte 0 picks the tracker config and the clock step; the rest is one plain payload and,
//! split at NUL bytes (never inside valid JSON), a sequence of Frigate events.
#![no_main]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use motion::mqtt::{FrigateConfig, FrigateTracker, PayloadError, parse_plain_payload};

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, rest)) = data.split_first() else {
        return;
    };

    let plain = parse_plain_payload(rest);
    if let Err(PayloadError::NotABoolean(shown)) = &plain {
        assert!(shown.chars().count() <= 64);
    }
    let mut padded = b" \t".to_vec();
    padded.extend_from_slice(rest);
    padded.extend_from_slice(b"\r\n ");
    assert_eq!(
        parse_plain_payload(&padded).ok(),
        plain.ok(),
        "whitespace changed the meaning"
    );

    let mut config = FrigateConfig::default();
    if knobs & 1 != 0 {
        config.labels.clear(); // every label counts
    }
    if knobs & 2 != 0 {
        config.cameras = BTreeMap::from([("front".to_owned(), "Front".to_owned())]);
    }
    config.ignore_stationary = knobs & 4 != 0;
    config.min_score = [0.0, 0.5, 0.7, 1.0][usize::from((knobs >> 3) & 3)];
    let step = Duration::from_secs(u64::from(knobs >> 5) * 100); // crosses the 600 s staleness
    let mapped = config.cameras.clone();
    let mut tracker = FrigateTracker::new(config);
    let mut now = Instant::now();
    let mut last: HashMap<String, bool> = HashMap::new();
    for event in rest.split(|&b| b == 0) {
        if let Ok(Some((camera, on))) = tracker.handle(now, event) {
            assert!(
                mapped.is_empty() || mapped.values().any(|c| *c == camera),
                "unmapped {camera:?}"
            );
            if !on {
                assert_eq!(
                    last.get(&camera),
                    Some(&true),
                    "off for {camera:?} that was not on"
                );
            }
            last.insert(camera, on);
        }
        now += step;
    }
});
