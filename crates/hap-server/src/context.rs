//! What a characteristic handler learns about the connection that called it.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::pairing::SharedSecret;

/// Identifies one TCP connection for the lifetime of the server process.
pub type ConnectionId = u64;

/// The verified HAP session a read or write arrived on.
///
/// `Debug` never prints the shared secret.
#[derive(Clone)]
pub struct ConnectionContext {
    /// The connection the request arrived on.
    pub connection_id: ConnectionId,
    /// Pairing identifier of the controller that pair-verified this session.
    pub controller_id: String,
    /// Whether that controller is an admin (§1.8).
    pub admin: bool,
    /// Our end of the TCP connection, when the driver knows it: live view binds its UDP
    /// sockets on this address (same interface and IP family as the controller reached).
    pub local_addr: Option<SocketAddr>,
    /// The controller's end of the TCP connection, when known.
    pub peer_addr: Option<SocketAddr>,
    shared_secret: Arc<SharedSecret>,
}

impl ConnectionContext {
    /// A context for a session verified with `shared_secret`.
    pub fn new(
        connection_id: ConnectionId,
        controller_id: String,
        admin: bool,
        shared_secret: Arc<SharedSecret>,
    ) -> Self {
        Self {
            connection_id,
            controller_id,
            admin,
            local_addr: None,
            peer_addr: None,
            shared_secret,
        }
    }

    /// The same context with the TCP connection's addresses.
    pub fn with_addresses(mut self, local: Option<SocketAddr>, peer: Option<SocketAddr>) -> Self {
        self.local_addr = local;
        self.peer_addr = peer;
        self
    }

    /// The X25519 shared secret of this session's pair-verify: the input key material for the
    /// HomeKit Data Stream keys (protocol notes §4.2, §7). Never log it.
    pub fn shared_secret(&self) -> &SharedSecret {
        &self.shared_secret
    }
}

impl fmt::Debug for ConnectionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionContext")
            .field("connection_id", &self.connection_id)
            .field("controller_id", &self.controller_id)
            .field("admin", &self.admin)
            .field("local_addr", &self.local_addr)
            .field("peer_addr", &self.peer_addr)
            .field("shared_secret", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_shared_secret() {
        let ctx = ConnectionContext::new(
            7,
            "C1".into(),
            true,
            Arc::new(SharedSecret::from_bytes([0xAB; 32])),
        );
        let s = format!("{ctx:?}");
        assert!(s.contains("<redacted>") && s.contains("C1"), "{s}");
        assert!(
            !s.to_lowercase().contains("ab, ") && !s.contains("171"),
            "{s}"
        );
        assert_eq!(ctx.shared_secret().as_bytes(), &[0xAB; 32]);
    }
}
