//! HomeKit Accessory Protocol over IP, accessory side.
//!
//! `pairing` (pair-setup M1–M6, pair-verify M1–M4) and `session` (the ChaCha20-Poly1305
//! frame codec) are pure; the tokio driver owns the sockets.
#![forbid(unsafe_code)]

pub mod pairing;
pub mod session;
