//! HomeKit Accessory Protocol over IP, accessory side.
//!
//! ```text
//!  TCP ─► driver (tokio, one task per connection)
//!          │ bytes
//!          ▼
//!        conn::Connection ── plaintext HTTP ─► pair-setup / pair-verify (pairing)
//!          │ after verify: session::SessionCipher frames ─► http ─► core::Core
//!          ▼                                                      │ db (accessories,
//!        EVENT/1.0 ◄── queued per connection, coalesced ◄─────────┘ services, handlers)
//! ```
//!
//! `pairing` (pair-setup M1–M6, pair-verify M1–M4), `session` (the ChaCha20-Poly1305 frame
//! codec), [`http`], [`db`], [`core`] and [`conn`] are pure; [`driver`] owns the sockets and
//! [`mdns`] the multicast responder. State persists through a [`store::Store`].
//! It knows nothing about cameras: `bridge` defines services and answers writes in handlers.
//! Tasks tied to a HAP session (HomeKit Data Stream) await [`Server::closed`] (built on
//! [`Core::on_close`]) to learn that the session closed or its controller was removed.
#![forbid(unsafe_code)]

pub mod conn;
pub mod context;
pub mod core;
pub mod db;
pub mod driver;
pub mod http;
pub mod iid;
pub mod mdns;
pub mod pairing;
pub mod session;
pub mod setup;
pub mod status;
pub mod store;

pub use crate::context::{ConnectionContext, ConnectionId};
pub use crate::core::{Core, CoreConfig};
pub use crate::db::{
    Accessory, CharId, Characteristic, Database, Format, HapType, Perms, Service, Value,
};
pub use crate::driver::{AcceptBackoff, RateLimited, Server, ServerOptions, WARN_INTERVAL};
pub use crate::status::HapStatus;
