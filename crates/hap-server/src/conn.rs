//! One HAP connection as a pure state machine: socket bytes in, socket bytes out.
//!
//! ```text
//!  plaintext HTTP ──pair-verify M4 (sent in plaintext)──► encrypted frames (§1.7)
//!        │                                                   │
//!        └── /pair-setup, /pair-verify, /identify;           └── every endpoint; EVENT/1.0
//!            anything else → 470
//! ```
//!
//! The tokio driver owns the socket and calls [`Connection::handle_input`] with what it read,
//! then [`Connection::poll_events`] (events go out after responses, §1.11).

use std::time::Instant;

use bytes::BytesMut;
use tracing::debug;

use crate::context::ConnectionId;
use crate::core::Core;
use crate::http::{self, HttpError, Limits, Request, Response};
use crate::pairing::{PairVerify, VerifyOutcome};
use crate::session::SessionCipher;

/// Bytes to send, and whether to close the connection after sending them.
#[derive(Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Output {
    /// Bytes for the socket (already encrypted once the session is verified).
    pub bytes: Vec<u8>,
    /// Close after writing `bytes` (bad frame, unparsable HTTP, own pairing removed).
    pub close: bool,
}

/// Per-connection state.
pub struct Connection {
    id: ConnectionId,
    raw: BytesMut,
    plain: Vec<u8>,
    verify: PairVerify,
    cipher: Option<SessionCipher>,
    limits: Limits,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("encrypted", &self.cipher.is_some())
            .finish_non_exhaustive()
    }
}

enum Next {
    Request(Request),
    NeedMore,
    BadHttp(HttpError),
    BadFrame,
}

impl Connection {
    /// Registers a new connection with `core`.
    pub fn new(core: &mut Core, limits: Limits) -> Self {
        Self {
            id: core.open_connection(),
            raw: BytesMut::new(),
            plain: Vec::new(),
            verify: PairVerify::new(),
            cipher: None,
            limits,
        }
    }

    /// This connection's id.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Whether the session is encrypted (pair-verify completed).
    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// Feeds bytes read from the socket; answers every complete request in them.
    pub fn handle_input(
        &mut self,
        core: &mut Core,
        data: &[u8],
        now: Instant,
        rng: &mut impl rand::CryptoRng,
    ) -> Output {
        self.raw.extend_from_slice(data);
        let mut out = Output::default();
        loop {
            match self.next_request() {
                Next::NeedMore => break,
                Next::BadFrame => {
                    // §1.7: any decryption failure closes the connection, with no reply.
                    debug!(conn = self.id, "bad encrypted frame; closing");
                    out.close = true;
                    break;
                }
                Next::BadHttp(e) => {
                    debug!(conn = self.id, error = %e, "bad HTTP request; closing");
                    let resp = Response::status_json(
                        e.status(),
                        crate::HapStatus::INVALID_VALUE_IN_REQUEST,
                    );
                    self.emit_response(&resp, &mut out.bytes);
                    out.close = true;
                    break;
                }
                Next::Request(req) => {
                    if self.answer(core, &req, now, rng, &mut out.bytes) {
                        out.close = true;
                        break;
                    }
                }
            }
        }
        out
    }

    fn next_request(&mut self) -> Next {
        let buf: &mut Vec<u8> = match &mut self.cipher {
            Some(cipher) => {
                loop {
                    let before = self.raw.len();
                    if cipher.decrypt(&mut self.raw, &mut self.plain).is_err() {
                        return Next::BadFrame;
                    }
                    if self.raw.len() == before || self.raw.is_empty() {
                        break;
                    }
                }
                &mut self.plain
            }
            None => {
                // Plaintext phase: parse straight from the socket buffer.
                return match http::parse_request(&self.raw, &self.limits) {
                    Ok(Some((req, used))) => {
                        let _ = self.raw.split_to(used);
                        Next::Request(req)
                    }
                    Ok(None) => Next::NeedMore,
                    Err(e) => Next::BadHttp(e),
                };
            }
        };
        match http::parse_request(buf, &self.limits) {
            Ok(Some((req, used))) => {
                buf.drain(..used);
                Next::Request(req)
            }
            Ok(None) => Next::NeedMore,
            Err(e) => Next::BadHttp(e),
        }
    }

    /// Answers one request; returns whether to close afterwards.
    fn answer(
        &mut self,
        core: &mut Core,
        req: &Request,
        now: Instant,
        rng: &mut impl rand::CryptoRng,
        out: &mut Vec<u8>,
    ) -> bool {
        match req.path.as_str() {
            "/pair-setup" | "/pair-verify" if req.method != "POST" => {
                self.emit_response(&Response::empty(405), out);
                false
            }
            "/pair-setup" => {
                let reply = core.pair_setup(self.id, &req.body, now, rng);
                self.emit_response(&Response::tlv8(reply), out);
                false
            }
            "/pair-verify" => {
                if self.cipher.is_some() {
                    // A second verify inside an encrypted session is not part of HAP.
                    self.emit_response(&Response::empty(400), out);
                    return false;
                }
                let lookup = |id: &str| core.find_pairing(id);
                match self.verify.handle(&req.body, core.identity(), &lookup, rng) {
                    VerifyOutcome::Reply(r) => {
                        self.emit_response(&Response::tlv8(r), out);
                    }
                    VerifyOutcome::Verified {
                        reply,
                        controller,
                        shared_secret,
                    } => {
                        // M4 goes out in plaintext; everything after it is encrypted (§1.6).
                        Response::tlv8(reply).write_to(out);
                        self.cipher = Some(SessionCipher::accessory(&shared_secret));
                        core.mark_verified(self.id, &controller, shared_secret);
                    }
                }
                false
            }
            _ => {
                let (resp, close) = core.handle_request(self.id, req, now);
                self.emit_response(&resp, out);
                close
            }
        }
    }

    fn emit_response(&mut self, resp: &Response, out: &mut Vec<u8>) {
        let mut plain = Vec::with_capacity(resp.body.len() + 128);
        resp.write_to(&mut plain);
        self.emit(&plain, out);
    }

    fn emit(&mut self, plain: &[u8], out: &mut Vec<u8>) {
        match &mut self.cipher {
            Some(c) => c.encrypt(plain, out),
            None => out.extend_from_slice(plain),
        }
    }

    /// Queued `EVENT/1.0` notifications that are due at `now`, ready for the socket.
    pub fn poll_events(&mut self, core: &mut Core, now: Instant) -> Vec<u8> {
        let mut out = Vec::new();
        if self.cipher.is_none() {
            return out;
        }
        if let Some(body) = core.take_events(self.id, now) {
            let mut plain = Vec::new();
            http::write_event(&body, &mut plain);
            self.emit(&plain, &mut out);
        }
        out
    }

    /// Unregisters the connection from `core`.
    pub fn close(self, core: &mut Core) {
        core.close_connection(self.id);
    }
}
