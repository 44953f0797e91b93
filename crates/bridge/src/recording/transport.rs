//! [`DataStreamTransport`]: one camera's DataStreamManagement endpoint. It answers
//! SetupDataStreamTransport (131) writes by preparing an HDS session keyed from the HAP session
//! (protocol notes §3.6, §4.1), and holds what the camera's HDS connections share: the prepared
//! sessions, the listener port, the recording slot and a count of live connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use hap_server::{ConnectionId, HapStatus};
use hap_tlv::hksv::{SetupDataStreamRequest, SetupDataStreamResponse};
use hds::{PreparedSession, PreparedSessions};
use rand::Rng as _;

use super::slot::RecordingSlot;

/// One camera's HDS endpoint (see the module docs). Shared by the 131 handler and every HDS
/// connection of the camera.
#[derive(Debug)]
pub struct DataStreamTransport {
    port: u16,
    prepared: Mutex<PreparedSessions<ConnectionId>>,
    /// The 131 read value: the last response without the salt (§3.6).
    last_response: Mutex<Vec<u8>>,
    slot: RecordingSlot,
    connections: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DataStreamTransport {
    /// An endpoint whose HDS listener is on `port`.
    pub fn new(port: u16) -> Self {
        Self {
            port,
            prepared: Mutex::new(PreparedSessions::new()),
            last_response: Mutex::new(Vec::new()),
            slot: RecordingSlot::new(),
            connections: AtomicUsize::new(0),
        }
    }

    /// The HDS listener port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A SetupDataStreamTransport write from HAP connection `connection`, whose pair-verify
    /// shared secret is `shared_secret`: prepares the HDS session (expiring stale ones) and
    /// returns the write response (status 0, our port and salt).
    ///
    /// # Errors
    /// [`HapStatus::INVALID_VALUE_IN_REQUEST`] for a request that does not decode.
    pub fn setup(
        &self,
        now: Instant,
        request: &[u8],
        shared_secret: &[u8; 32],
        connection: ConnectionId,
    ) -> Result<Vec<u8>, HapStatus> {
        let req = SetupDataStreamRequest::decode(request).map_err(|e| {
            tracing::debug!(error = %e, "bad SetupDataStreamTransport write");
            HapStatus::INVALID_VALUE_IN_REQUEST
        })?;
        let mut salt = [0u8; 32];
        rand::rng().fill_bytes(&mut salt);
        let session = PreparedSession::new(shared_secret, &req.controller_salt, &salt, now);
        {
            let mut prepared = lock(&self.prepared);
            prepared.handle_timeout(now);
            prepared.insert(session, connection);
        }
        let mut resp = SetupDataStreamResponse {
            status: 0,
            port: Some(self.port),
            accessory_salt: Some(salt),
        };
        let reply = resp.encode();
        resp.accessory_salt = None;
        *lock(&self.last_response) = resp.encode();
        Ok(reply)
    }

    /// The 131 read value: the last response, without its salt.
    pub fn last_response(&self) -> Vec<u8> {
        lock(&self.last_response).clone()
    }

    /// The prepared sessions (to identify a new connection against).
    pub fn prepared(&self) -> MutexGuard<'_, PreparedSessions<ConnectionId>> {
        lock(&self.prepared)
    }

    /// Prepared sessions still waiting for their TCP connection at `now`.
    pub fn prepared_len(&self, now: Instant) -> usize {
        let mut prepared = lock(&self.prepared);
        // Expired ones would otherwise count until the next 131 write or HDS connection.
        prepared.handle_timeout(now);
        prepared.len()
    }

    /// The camera's recording slot.
    pub fn slot(&self) -> &RecordingSlot {
        &self.slot
    }

    /// Whether a recording stream runs (or is waiting for its init segment, or ending).
    pub fn is_recording(&self) -> bool {
        self.slot.is_taken()
    }

    /// Live HDS connections.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Counts a connection until the guard drops.
    pub(crate) fn count_connection(self: &std::sync::Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::SeqCst);
        ConnectionGuard(self.clone())
    }
}

/// Counts one live HDS connection.
#[derive(Debug)]
pub(crate) struct ConnectionGuard(std::sync::Arc<DataStreamTransport>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_setup_write_is_invalid_value_and_prepares_nothing() {
        let t = DataStreamTransport::new(4321);
        let now = Instant::now();
        assert_eq!(
            t.setup(now, &[0xff, 0x05, 1], &[7; 32], 1),
            Err(HapStatus::INVALID_VALUE_IN_REQUEST)
        );
        assert_eq!(t.prepared_len(now), 0);
        assert!(t.last_response().is_empty());
    }

    #[test]
    fn setup_prepares_a_session_and_the_read_value_has_no_salt() {
        let t = DataStreamTransport::new(4321);
        let now = Instant::now();
        let req = SetupDataStreamRequest {
            controller_salt: [9; 32],
        };
        let reply = t.setup(now, &req.encode(), &[7; 32], 1).unwrap();
        let reply = SetupDataStreamResponse::decode(&reply).unwrap();
        assert_eq!((reply.status, reply.port), (0, Some(4321)));
        assert!(reply.accessory_salt.is_some());
        let read = SetupDataStreamResponse::decode(&t.last_response()).unwrap();
        assert_eq!((read.port, read.accessory_salt), (Some(4321), None));
        assert_eq!(t.prepared_len(now), 1);
    }
}
