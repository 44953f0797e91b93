//! A minimal HAP controller over loopback TCP for the driver tests: plaintext until
//! pair-verify, then the session cipher. `pair` and `verify` use the crate's own controller
//! state machines (checked against aiohomekit elsewhere).
#![allow(dead_code, clippy::indexing_slicing)] // each test file uses part of it

use std::time::Duration;

use bytes::BytesMut;
use hap_server::pairing::controller::{
    AccessoryPairing, ControllerIdentity, SetupClient, VerifyClient,
};
use hap_server::session::SessionCipher;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Longest wait for any reply.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// One TCP connection to the accessory.
pub(crate) struct Client {
    pub(crate) stream: TcpStream,
    pub(crate) cipher: Option<SessionCipher>,
    raw: BytesMut,
    plain: Vec<u8>,
}

/// (start line, body) of one message if complete.
fn take_msg(buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    let len: usize = head
        .split("\r\n")
        .filter_map(|l| l.split_once(": "))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    if buf.len() < end + 4 + len {
        return None;
    }
    let body = buf[end + 4..end + 4 + len].to_vec();
    let start = head.split("\r\n").next().unwrap().to_owned();
    buf.drain(..end + 4 + len);
    Some((start, body))
}

impl Client {
    /// Connects to `127.0.0.1:port`.
    pub(crate) async fn connect(port: u16) -> Self {
        Self {
            stream: TcpStream::connect(("127.0.0.1", port)).await.unwrap(),
            cipher: None,
            raw: BytesMut::new(),
            plain: Vec::new(),
        }
    }

    /// Next message (response or `EVENT/1.0`), or `None` on EOF.
    pub(crate) async fn next(&mut self) -> Option<(String, Vec<u8>)> {
        loop {
            if let Some(m) = take_msg(&mut self.plain) {
                return Some(m);
            }
            let mut buf = [0u8; 4096];
            let n = timeout(WAIT, self.stream.read(&mut buf))
                .await
                .expect("read timed out")
                .ok()?;
            if n == 0 {
                return None;
            }
            match &mut self.cipher {
                Some(c) => {
                    self.raw.extend_from_slice(&buf[..n]);
                    c.decrypt(&mut self.raw, &mut self.plain).unwrap();
                }
                None => self.plain.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Sends one request and returns the next message.
    pub(crate) async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> (String, Vec<u8>) {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        let wire = match &mut self.cipher {
            Some(c) => {
                let mut w = Vec::new();
                c.encrypt(&req, &mut w);
                w
            }
            None => req,
        };
        self.stream.write_all(&wire).await.unwrap();
        self.next().await.expect("response")
    }
}

/// Pair-setup M1–M6 with `code` on a fresh connection.
pub(crate) async fn pair(port: u16, id: &ControllerIdentity, code: &str) -> AccessoryPairing {
    let mut c = Client::connect(port).await;
    let mut s = SetupClient::new(id.clone(), code);
    let (_, m2) = c.request("POST", "/pair-setup", &s.m1()).await;
    let m3 = s.handle_m2(&m2, &mut rand::rng()).unwrap();
    let (_, m4) = c.request("POST", "/pair-setup", &m3).await;
    let m5 = s.handle_m4(&m4).unwrap();
    let (_, m6) = c.request("POST", "/pair-setup", &m5).await;
    s.handle_m6(&m6).unwrap()
}

/// Pair-verify M1–M4 on a fresh connection; the returned client is encrypted.
pub(crate) async fn verify(port: u16, id: &ControllerIdentity, acc: &AccessoryPairing) -> Client {
    let mut c = Client::connect(port).await;
    let mut v = VerifyClient::new(id.clone(), acc.clone(), &mut rand::rng());
    let m1 = v.m1().unwrap();
    let (_, m2) = c.request("POST", "/pair-verify", &m1).await;
    let m3 = v.handle_m2(&m2).unwrap();
    let (_, m4) = c.request("POST", "/pair-verify", &m3).await;
    c.cipher = Some(SessionCipher::controller(&v.handle_m4(&m4).unwrap()));
    c
}
