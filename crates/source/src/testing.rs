//! The simulated twin of a camera: a [`Connector`] that plays scripted sessions, for tests
//! of the reconnect logic and of consumers, on tokio's paused clock or in real time.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use recorder::MediaUnit;

use crate::Error;
use crate::camera::{Connector, MediaSession, StreamParams};

/// One step of a scripted session.
#[derive(Debug, Clone)]
pub enum SimStep {
    /// Wait, then deliver the unit.
    Unit(Duration, MediaUnit),
    /// Fail the session with this error.
    Fail(Error),
    /// Never deliver anything again (a camera that stops sending).
    Hang,
}

/// What one connect attempt does.
#[derive(Debug, Clone)]
pub enum SimConnect {
    /// Connect, then play these steps; the session ends cleanly after the last one.
    Session(StreamParams, Vec<SimStep>),
    /// The connect fails.
    Fail(Error),
    /// The connect never answers.
    Hang,
}

/// A scripted [`Connector`]. After the script runs out, every connect fails with
/// [`Error::Connect`].
#[derive(Debug, Clone)]
pub struct SimConnector {
    script: VecDeque<SimConnect>,
    connects: Arc<AtomicU32>,
}

impl SimConnector {
    /// A connector that plays `script`, one entry per connect attempt.
    pub fn new(script: Vec<SimConnect>) -> Self {
        Self {
            script: script.into(),
            connects: Arc::default(),
        }
    }

    /// A shared counter of connect attempts.
    pub fn connect_counter(&self) -> Arc<AtomicU32> {
        self.connects.clone()
    }
}

/// A scripted session.
#[derive(Debug)]
pub struct SimSession {
    params: StreamParams,
    steps: VecDeque<SimStep>,
}

impl Connector for SimConnector {
    type Session = SimSession;

    fn camera(&self) -> String {
        "sim:".into()
    }

    async fn connect(&mut self) -> Result<SimSession, Error> {
        self.connects.fetch_add(1, Ordering::Relaxed);
        match self.script.pop_front() {
            Some(SimConnect::Session(params, steps)) => Ok(SimSession {
                params,
                steps: steps.into(),
            }),
            Some(SimConnect::Fail(e)) => Err(e),
            Some(SimConnect::Hang) => std::future::pending().await,
            None => Err(Error::Connect {
                camera: "sim:".into(),
                detail: "script exhausted".into(),
            }),
        }
    }
}

impl MediaSession for SimSession {
    fn params(&self) -> &StreamParams {
        &self.params
    }

    async fn next_unit(&mut self) -> Result<Option<MediaUnit>, Error> {
        match self.steps.pop_front() {
            None => Ok(None),
            Some(SimStep::Unit(wait, unit)) => {
                tokio::time::sleep(wait).await;
                Ok(Some(unit))
            }
            Some(SimStep::Fail(e)) => Err(e),
            Some(SimStep::Hang) => {
                self.steps.push_front(SimStep::Hang);
                std::future::pending().await
            }
        }
    }
}
