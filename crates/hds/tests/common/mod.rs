//! Shared test harness: an accessory `Connection` and a `Controller` joined in memory, on
//! virtual time (quinn-proto's `Pair` idea).
#![allow(dead_code, unreachable_pub, clippy::indexing_slicing, missing_docs)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hds::controller::{Controller, ControllerEvent};
use hds::{CameraState, Connection, Event, PreparedSession, PreparedSessions, SessionKeys};

pub const SECRET: [u8; 32] = [0x11; 32];
pub const CONTROLLER_SALT: [u8; 32] = [0x22; 32];
pub const ACCESSORY_SALT: [u8; 32] = [0x33; 32];

pub fn keys() -> SessionKeys {
    SessionKeys::derive(&SECRET, &CONTROLLER_SALT, &ACCESSORY_SALT)
}

pub fn camera_ok() -> CameraState {
    CameraState {
        recording_active: true,
        camera_active: true,
        configuration_selected: true,
        recording_elsewhere: false,
    }
}

pub fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

pub fn fixture(name: &str) -> Bytes {
    Bytes::from(std::fs::read(testdata(&format!("hksv-example/{name}"))).expect("fixture"))
}

/// The recording in order: init segment, then fragments 2, 3, 4.
pub fn recording() -> Vec<Bytes> {
    [
        "mediaInitialization.mp4",
        "sequence2.mp4",
        "sequence3.mp4",
        "sequence4.mp4",
    ]
    .iter()
    .map(|n| fixture(n))
    .collect()
}

pub struct Pair {
    pub now: Instant,
    pub accessory: Connection,
    pub controller: Controller,
    pub to_accessory: BytesMut,
    pub to_controller: BytesMut,
    pub accessory_events: Vec<Event>,
    pub controller_events: Vec<ControllerEvent>,
    pub accessory_error: Option<hds::Error>,
    pub controller_error: Option<hds::Error>,
    pub sessions: PreparedSessions<&'static str>,
    identified: bool,
}

impl Pair {
    /// Accessory accepted at `now`, one prepared session tagged "hap-1".
    pub fn new() -> Self {
        let now = Instant::now();
        let mut sessions = PreparedSessions::new();
        sessions.insert(
            PreparedSession::new(&SECRET, &CONTROLLER_SALT, &ACCESSORY_SALT, now),
            "hap-1",
        );
        let mut accessory = Connection::accept(now);
        accessory.set_camera_state(camera_ok());
        Self {
            now,
            accessory,
            controller: Controller::new(&keys()),
            to_accessory: BytesMut::new(),
            to_controller: BytesMut::new(),
            accessory_events: Vec::new(),
            controller_events: Vec::new(),
            accessory_error: None,
            controller_error: None,
            sessions,
            identified: false,
        }
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        if let Some(t) = self.accessory.poll_timeout()
            && t <= self.now
        {
            self.accessory.handle_timeout(self.now);
        }
        self.drive();
    }

    /// Move bytes both ways until both sides are quiet.
    pub fn drive(&mut self) {
        loop {
            let mut moved = false;
            let mut out = Vec::new();
            while self.controller.poll_transmit(&mut out) {}
            if !out.is_empty() {
                moved = true;
                self.to_accessory.extend_from_slice(&out);
            }
            if !self.to_accessory.is_empty() && !self.accessory.is_closed() {
                let r = if self.identified {
                    self.accessory
                        .handle_incoming(self.now, &mut self.to_accessory)
                } else {
                    match self.accessory.identify(
                        self.now,
                        &mut self.to_accessory,
                        &mut self.sessions,
                    ) {
                        Ok(Some(_)) => {
                            self.identified = true;
                            self.accessory
                                .handle_incoming(self.now, &mut self.to_accessory)
                        }
                        Ok(None) => Ok(()),
                        Err(e) => Err(e),
                    }
                };
                if let Err(e) = r {
                    self.accessory_error = Some(e);
                }
            }
            let mut out = Vec::new();
            while self.accessory.poll_transmit(&mut out) {}
            if !out.is_empty() {
                moved = true;
                self.to_controller.extend_from_slice(&out);
            }
            if !self.to_controller.is_empty()
                && !self.controller.is_closed()
                && let Err(e) = self.controller.handle_incoming(&mut self.to_controller)
            {
                self.controller_error = Some(e);
            }
            while let Some(e) = self.accessory.poll_event() {
                self.accessory_events.push(e);
            }
            while let Some(e) = self.controller.poll_event() {
                self.controller_events.push(e);
            }
            if !moved {
                break;
            }
        }
    }

    /// hello + open(stream_id), both answered.
    pub fn hello_and_open(&mut self, stream_id: i64) {
        self.controller.hello();
        self.drive();
        assert!(self.accessory_events.contains(&Event::HelloDone));
        assert!(self.controller_events.contains(&ControllerEvent::HelloDone));
        self.controller.open(stream_id);
        self.drive();
    }

    pub fn take_controller_events(&mut self) -> Vec<ControllerEvent> {
        std::mem::take(&mut self.controller_events)
    }

    pub fn take_accessory_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.accessory_events)
    }
}

pub fn hex(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(clean).expect("hex")
}
