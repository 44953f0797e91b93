//! HAP over IP, controller side: pair-setup and pair-verify on plaintext HTTP, then HTTP/1.1 in
//! ChaCha20-Poly1305 session frames (protocol-notes §1.5–§1.11), with `EVENT/1.0` notifications
//! separated from responses by a reader task.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use hap_server::pairing::controller::{
    AccessoryPairing, ControllerError, ControllerIdentity, SetupClient, VerifyClient,
};
use hap_server::session::SessionCipher;
use hap_tlv::{Tlv8, TlvType};
use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::keys::PairingKeys;
use crate::model::AccessoryDb;

/// Largest HTTP head or body we buffer from the accessory (a big `/accessories` is ~30 KB;
/// a snapshot JPEG can be a few MB).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Why a HAP operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HapError {
    /// TCP connect, read or write failed.
    #[error("HAP connection: {0}")]
    Io(#[from] std::io::Error),
    /// No answer within the deadline.
    #[error("HAP {0} timed out")]
    Timeout(&'static str),
    /// The accessory closed the connection.
    #[error("accessory closed the HAP connection")]
    Closed,
    /// The accessory's pairing reply was rejected.
    #[error("pairing: {0}")]
    Pairing(#[from] ControllerError),
    /// A malformed HTTP message or encrypted frame.
    #[error("malformed reply: {0}")]
    Malformed(String),
    /// An HTTP status other than the one the operation needs.
    #[error("HTTP {status} for {what}: {body}")]
    Http {
        /// What was requested.
        what: String,
        /// HTTP status code.
        status: u16,
        /// The body as text.
        body: String,
    },
}

/// One HTTP response from the accessory.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Headers as (name, value).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// The body parsed as JSON (`Null` if empty or not JSON).
    pub fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap_or(Json::Null)
    }

    /// A header value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One characteristic value from an `EVENT/1.0` notification.
#[derive(Debug, Clone, PartialEq)]
pub struct EventValue {
    /// Accessory instance id.
    pub aid: u64,
    /// Characteristic instance id.
    pub iid: u64,
    /// The new value as sent (JSON).
    pub value: Json,
}

/// One entry of a `/characteristics` reply.
#[derive(Debug, Clone, PartialEq)]
pub struct CharResult {
    /// Accessory instance id.
    pub aid: u64,
    /// Characteristic instance id.
    pub iid: u64,
    /// HAP status (0 = success; §1.10).
    pub status: i64,
    /// Value, when read or returned as a write-response.
    pub value: Option<Json>,
}

/// One entry of a `PUT /characteristics` body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CharWrite {
    /// Accessory instance id.
    pub aid: u64,
    /// Characteristic instance id.
    pub iid: u64,
    /// Value to write (`None`: only `ev`).
    pub value: Option<Json>,
    /// Subscribe (`true`) or unsubscribe (`false`) to events.
    pub ev: Option<bool>,
    /// Ask for a write-response (`"r": true`).
    pub response: bool,
}

impl CharWrite {
    /// A plain value write.
    pub fn value(aid: u64, iid: u64, value: Json) -> Self {
        Self {
            aid,
            iid,
            value: Some(value),
            ..Self::default()
        }
    }

    fn to_json(&self) -> Json {
        let mut o = serde_json::Map::new();
        o.insert("aid".into(), json!(self.aid));
        o.insert("iid".into(), json!(self.iid));
        if let Some(v) = &self.value {
            o.insert("value".into(), v.clone());
        }
        if let Some(ev) = self.ev {
            o.insert("ev".into(), json!(ev));
        }
        if self.response {
            o.insert("r".into(), json!(true));
        }
        Json::Object(o)
    }
}

/// One entry of a List Pairings reply (§1.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingEntry {
    /// Controller pairing ID.
    pub controller_id: String,
    /// Controller LTPK.
    pub ltpk: Vec<u8>,
    /// Admin permission.
    pub admin: bool,
}

/// An HTTP message taken off the front of a buffer: (start line, headers, body).
type RawMessage = (String, Vec<(String, String)>, Vec<u8>);

/// Takes one complete HTTP message off `buf` (responses have a Content-Length; HAP never
/// uses chunked encoding).
fn take_message(buf: &mut Vec<u8>) -> Result<Option<RawMessage>, HapError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_MESSAGE_BYTES {
            return Err(HapError::Malformed("HTTP head too long".into()));
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(buf.get(..end).unwrap_or_default()).into_owned();
    let mut lines = head.split("\r\n");
    let start = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len = match headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        Some((_, v)) => v
            .parse::<usize>()
            .map_err(|_| HapError::Malformed(format!("Content-Length {v:?}")))?,
        None => 0,
    };
    if len > MAX_MESSAGE_BYTES {
        return Err(HapError::Malformed(format!("body of {len} bytes")));
    }
    let total = end + 4 + len;
    if buf.len() < total {
        return Ok(None);
    }
    let body = buf.get(end + 4..total).unwrap_or_default().to_vec();
    buf.drain(..total);
    Ok(Some((start, headers, body)))
}

fn parse_status(start: &str) -> Result<u16, HapError> {
    start
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| HapError::Malformed(format!("status line {start:?}")))
}

fn request_bytes(method: &str, path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: hksv\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// A plaintext HTTP exchange (pair-setup / pair-verify) with a deadline.
struct Plain {
    stream: TcpStream,
    buf: Vec<u8>,
    deadline: Duration,
}

impl Plain {
    async fn post(&mut self, path: &str, body: &[u8]) -> Result<Vec<u8>, HapError> {
        let req = request_bytes("POST", path, "application/pairing+tlv8", body);
        self.stream.write_all(&req).await?;
        loop {
            if let Some((start, _, body)) = take_message(&mut self.buf)? {
                let status = parse_status(&start)?;
                if status != 200 {
                    return Err(HapError::Http {
                        what: path.into(),
                        status,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                }
                return Ok(body);
            }
            let mut tmp = [0u8; 4096];
            let n = timeout(self.deadline, self.stream.read(&mut tmp))
                .await
                .map_err(|_| HapError::Timeout("pairing"))??;
            if n == 0 {
                return Err(HapError::Closed);
            }
            self.buf.extend_from_slice(tmp.get(..n).unwrap_or_default());
        }
    }
}

/// Pair-setup M1–M6 with `setup_code` (`"XXX-XX-XXX"`) on a new connection.
///
/// # Errors
/// [`HapError::Pairing`] (e.g. wrong setup code, already paired), I/O or timeout.
pub async fn pair_setup(
    addr: SocketAddr,
    identity: &ControllerIdentity,
    setup_code: &str,
    deadline: Duration,
) -> Result<PairingKeys, HapError> {
    let stream = timeout(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| HapError::Timeout("connect"))??;
    let _ = stream.set_nodelay(true);
    let mut c = Plain {
        stream,
        buf: Vec::new(),
        deadline,
    };
    let mut s = SetupClient::new(identity.clone(), setup_code);
    let m2 = c.post("/pair-setup", &s.m1()).await?;
    let m3 = s.handle_m2(&m2, &mut rand::rng())?;
    let m4 = c.post("/pair-setup", &m3).await?;
    let m5 = s.handle_m4(&m4)?;
    let m6 = c.post("/pair-setup", &m5).await?;
    let accessory: AccessoryPairing = s.handle_m6(&m6)?;
    Ok(PairingKeys {
        identity: identity.clone(),
        accessory,
    })
}

enum Incoming {
    Response(Response),
    Failed(String),
}

/// A verified, encrypted HAP connection (one controller session).
pub struct HapClient {
    writer: OwnedWriteHalf,
    encrypt: SessionCipher,
    responses: mpsc::UnboundedReceiver<Incoming>,
    events: mpsc::UnboundedReceiver<Vec<EventValue>>,
    reader: JoinHandle<()>,
    shared_secret: [u8; 32],
    peer: SocketAddr,
    local: SocketAddr,
    deadline: Duration,
}

impl core::fmt::Debug for HapClient {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HapClient")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Drop for HapClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn parse_event(body: &[u8]) -> Vec<EventValue> {
    let json: Json = serde_json::from_slice(body).unwrap_or(Json::Null);
    json.get("characteristics")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| {
                    Some(EventValue {
                        aid: c.get("aid")?.as_u64()?,
                        iid: c.get("iid")?.as_u64()?,
                        value: c.get("value").cloned().unwrap_or(Json::Null),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn parse_results(json: &Json) -> Vec<CharResult> {
    json.get("characteristics")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| {
                    Some(CharResult {
                        aid: c.get("aid")?.as_u64()?,
                        iid: c.get("iid")?.as_u64()?,
                        status: c.get("status").and_then(Json::as_i64).unwrap_or(0),
                        value: c.get("value").cloned(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

impl HapClient {
    /// Connects and runs pair-verify M1–M4 with saved `keys`; every later request is
    /// encrypted. `deadline` bounds each step and each later request.
    ///
    /// # Errors
    /// [`HapError::Pairing`] when the accessory does not know us (e.g. pairing removed).
    pub async fn connect(
        addr: SocketAddr,
        keys: &PairingKeys,
        deadline: Duration,
    ) -> Result<Self, HapError> {
        let stream = timeout(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| HapError::Timeout("connect"))??;
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr()?;
        let mut c = Plain {
            stream,
            buf: Vec::new(),
            deadline,
        };
        let mut v = VerifyClient::new(
            keys.identity.clone(),
            keys.accessory.clone(),
            &mut rand::rng(),
        );
        let m2 = c.post("/pair-verify", &v.m1()?).await?;
        let m3 = v.handle_m2(&m2)?;
        let m4 = c.post("/pair-verify", &m3).await?;
        let shared = v.handle_m4(&m4)?;
        // Two ciphers with the same keys: each direction only uses its own key and counter.
        let encrypt = SessionCipher::controller(&shared);
        let mut decrypt = SessionCipher::controller(&shared);
        let leftover = std::mem::take(&mut c.buf);
        let (mut rd, writer) = c.stream.into_split();
        let (resp_tx, responses) = mpsc::unbounded_channel();
        let (ev_tx, events) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut raw = BytesMut::from(leftover.as_slice());
            let mut plain = Vec::new();
            let mut tmp = vec![0u8; 16 * 1024];
            loop {
                if let Err(e) = decrypt.decrypt(&mut raw, &mut plain) {
                    let _ = resp_tx.send(Incoming::Failed(e.to_string()));
                    return;
                }
                loop {
                    match take_message(&mut plain) {
                        Ok(Some((start, headers, body))) => {
                            if start.starts_with("EVENT/") {
                                let _ = ev_tx.send(parse_event(&body));
                            } else {
                                let msg = match parse_status(&start) {
                                    Ok(status) => Incoming::Response(Response {
                                        status,
                                        headers,
                                        body,
                                    }),
                                    Err(e) => Incoming::Failed(e.to_string()),
                                };
                                let _ = resp_tx.send(msg);
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let _ = resp_tx.send(Incoming::Failed(e.to_string()));
                            return;
                        }
                    }
                }
                match rd.read(&mut tmp).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => raw.extend_from_slice(tmp.get(..n).unwrap_or_default()),
                }
            }
        });
        Ok(Self {
            writer,
            encrypt,
            responses,
            events,
            reader,
            shared_secret: *shared.as_bytes(),
            peer: addr,
            local,
            deadline,
        })
    }

    /// The accessory's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Our end of the connection (the address the accessory sees us at).
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// HDS session keys for this HAP session (§4.2: IKM = this pair-verify's shared secret).
    pub fn hds_keys(
        &self,
        controller_salt: &[u8; 32],
        accessory_salt: &[u8; 32],
    ) -> hds::SessionKeys {
        hds::SessionKeys::derive(&self.shared_secret, controller_salt, accessory_salt)
    }

    /// Sends one request and waits for its response (events arriving meanwhile are queued).
    ///
    /// # Errors
    /// I/O, timeout, a closed connection or a malformed reply.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<Response, HapError> {
        let req = request_bytes(method, path, content_type, body);
        let mut wire = Vec::new();
        self.encrypt.encrypt(&req, &mut wire);
        self.writer.write_all(&wire).await?;
        match timeout(self.deadline, self.responses.recv()).await {
            Err(_) => Err(HapError::Timeout("request")),
            Ok(None) => Err(HapError::Closed),
            Ok(Some(Incoming::Failed(e))) => Err(HapError::Malformed(e)),
            Ok(Some(Incoming::Response(r))) => Ok(r),
        }
    }

    async fn json_request(
        &mut self,
        method: &str,
        path: &str,
        body: &Json,
    ) -> Result<Response, HapError> {
        let b = body.to_string();
        self.request(method, path, "application/hap+json", b.as_bytes())
            .await
    }

    /// `GET /accessories`, parsed.
    ///
    /// # Errors
    /// Non-200 status or a body that is not the accessory database.
    pub async fn accessories(&mut self) -> Result<AccessoryDb, HapError> {
        let r = self
            .request("GET", "/accessories", "application/hap+json", b"")
            .await?;
        if r.status != 200 {
            return Err(http_error("/accessories", &r));
        }
        AccessoryDb::from_json(&r.json()).map_err(HapError::Malformed)
    }

    /// `GET /characteristics?id=aid.iid,…` (200 or 207; every entry is returned with its
    /// status).
    ///
    /// # Errors
    /// Any other HTTP status.
    pub async fn read(&mut self, ids: &[(u64, u64)]) -> Result<Vec<CharResult>, HapError> {
        let list: Vec<String> = ids.iter().map(|(a, i)| format!("{a}.{i}")).collect();
        let path = format!("/characteristics?id={}", list.join(","));
        let r = self
            .request("GET", &path, "application/hap+json", b"")
            .await?;
        if r.status != 200 && r.status != 207 {
            return Err(http_error(&path, &r));
        }
        Ok(parse_results(&r.json()))
    }

    /// Reads one characteristic's value.
    ///
    /// # Errors
    /// As [`HapClient::read`], plus a non-zero entry status.
    pub async fn read_one(&mut self, aid: u64, iid: u64) -> Result<Json, HapError> {
        let r = self.read(&[(aid, iid)]).await?;
        match r.into_iter().next() {
            Some(CharResult {
                status: 0,
                value: Some(v),
                ..
            }) => Ok(v),
            other => Err(HapError::Http {
                what: format!("read {aid}.{iid}"),
                status: 207,
                body: format!("{other:?}"),
            }),
        }
    }

    /// `PUT /characteristics` (with `pid` for a timed write). 204 → every entry status 0 and
    /// no values; 207 → the per-entry statuses and write-response values.
    ///
    /// # Errors
    /// Any other HTTP status.
    pub async fn write(
        &mut self,
        writes: &[CharWrite],
        pid: Option<u64>,
    ) -> Result<Vec<CharResult>, HapError> {
        let mut body =
            json!({"characteristics": writes.iter().map(CharWrite::to_json).collect::<Vec<_>>()});
        if let (Some(pid), Some(o)) = (pid, body.as_object_mut()) {
            o.insert("pid".into(), json!(pid));
        }
        let r = self.json_request("PUT", "/characteristics", &body).await?;
        match r.status {
            204 => Ok(writes
                .iter()
                .map(|w| CharResult {
                    aid: w.aid,
                    iid: w.iid,
                    status: 0,
                    value: None,
                })
                .collect()),
            207 => Ok(parse_results(&r.json())),
            _ => Err(http_error("PUT /characteristics", &r)),
        }
    }

    /// Writes one value and fails unless its status is 0; returns the write-response value
    /// if one came back.
    ///
    /// # Errors
    /// As [`HapClient::write`], plus [`HapError::Http`] with the entry's HAP status.
    pub async fn write_one(&mut self, w: CharWrite) -> Result<Option<Json>, HapError> {
        let (aid, iid) = (w.aid, w.iid);
        let r = self.write(&[w], None).await?;
        match r.into_iter().find(|c| c.aid == aid && c.iid == iid) {
            Some(CharResult {
                status: 0, value, ..
            }) => Ok(value),
            other => Err(HapError::Http {
                what: format!("write {aid}.{iid}"),
                status: 207,
                body: format!("{other:?}"),
            }),
        }
    }

    /// Subscribes (or unsubscribes) to events of the given characteristics.
    ///
    /// # Errors
    /// As [`HapClient::write`].
    pub async fn subscribe(
        &mut self,
        ids: &[(u64, u64)],
        on: bool,
    ) -> Result<Vec<CharResult>, HapError> {
        let writes: Vec<CharWrite> = ids
            .iter()
            .map(|&(aid, iid)| CharWrite {
                aid,
                iid,
                ev: Some(on),
                ..CharWrite::default()
            })
            .collect();
        self.write(&writes, None).await
    }

    /// `PUT /prepare {ttl, pid}`; returns the body's `status` (0 = prepared).
    ///
    /// # Errors
    /// A non-200 HTTP status.
    pub async fn prepare(&mut self, ttl_ms: u64, pid: u64) -> Result<i64, HapError> {
        let r = self
            .json_request("PUT", "/prepare", &json!({"ttl": ttl_ms, "pid": pid}))
            .await?;
        if r.status != 200 {
            return Err(http_error("/prepare", &r));
        }
        Ok(r.json().get("status").and_then(Json::as_i64).unwrap_or(-1))
    }

    /// A timed write: `/prepare` with a random pid, then `PUT /characteristics` with it.
    ///
    /// # Errors
    /// As [`HapClient::prepare`] and [`HapClient::write`]; a refused prepare is
    /// [`HapError::Http`].
    pub async fn timed_write(
        &mut self,
        writes: &[CharWrite],
        ttl_ms: u64,
    ) -> Result<Vec<CharResult>, HapError> {
        let pid = rand::random::<u32>().into();
        let status = self.prepare(ttl_ms, pid).await?;
        if status != 0 {
            return Err(HapError::Http {
                what: "/prepare".into(),
                status: 200,
                body: format!("status {status}"),
            });
        }
        self.write(writes, Some(pid)).await
    }

    async fn pairings(&mut self, tlv: &Tlv8) -> Result<Tlv8, HapError> {
        let r = self
            .request(
                "POST",
                "/pairings",
                "application/pairing+tlv8",
                &tlv.encode(),
            )
            .await?;
        if r.status != 200 {
            return Err(http_error("/pairings", &r));
        }
        let reply = Tlv8::decode(&r.body).map_err(|e| HapError::Malformed(e.to_string()))?;
        if let Some(code) = reply.get(TlvType::ERROR) {
            return Err(HapError::Http {
                what: "/pairings".into(),
                status: 200,
                body: format!("pairing error {code:?}"),
            });
        }
        Ok(reply)
    }

    /// Add Pairing (Method 3; needs an admin session).
    ///
    /// # Errors
    /// [`HapError::Http`] with the pairing error code.
    pub async fn add_pairing(
        &mut self,
        controller_id: &str,
        ltpk: &[u8; 32],
        admin: bool,
    ) -> Result<(), HapError> {
        let mut t = Tlv8::new();
        t.push_u8(TlvType::STATE, 1)
            .push_u8(TlvType::METHOD, 3)
            .push(TlvType::IDENTIFIER, controller_id.as_bytes())
            .push(TlvType::PUBLIC_KEY, ltpk)
            .push_u8(TlvType(0x0B), u8::from(admin));
        self.pairings(&t).await.map(drop)
    }

    /// Remove Pairing (Method 4). Removing ourselves ends this session on the accessory side.
    ///
    /// # Errors
    /// [`HapError::Http`] with the pairing error code.
    pub async fn remove_pairing(&mut self, controller_id: &str) -> Result<(), HapError> {
        let mut t = Tlv8::new();
        t.push_u8(TlvType::STATE, 1)
            .push_u8(TlvType::METHOD, 4)
            .push(TlvType::IDENTIFIER, controller_id.as_bytes());
        self.pairings(&t).await.map(drop)
    }

    /// List Pairings (Method 5).
    ///
    /// # Errors
    /// [`HapError::Http`] with the pairing error code.
    pub async fn list_pairings(&mut self) -> Result<Vec<PairingEntry>, HapError> {
        let mut t = Tlv8::new();
        t.push_u8(TlvType::STATE, 1).push_u8(TlvType::METHOD, 5);
        let reply = self.pairings(&t).await?;
        Ok(reply
            .split_lists(TlvType(0xFF))
            .iter()
            .filter_map(|p| {
                Some(PairingEntry {
                    controller_id: String::from_utf8_lossy(p.get(TlvType::IDENTIFIER)?)
                        .into_owned(),
                    ltpk: p.get(TlvType::PUBLIC_KEY)?.to_vec(),
                    admin: p.get(TlvType(0x0B)).and_then(|v| v.first()) == Some(&1),
                })
            })
            .collect())
    }

    /// `POST /resource` (snapshot request); the raw response.
    ///
    /// # Errors
    /// I/O or timeout.
    pub async fn resource(&mut self, body: &Json) -> Result<Response, HapError> {
        self.json_request("POST", "/resource", body).await
    }

    /// Waits at most `wait` for the accessory to close this session; `true` if it did.
    /// Responses still queued are discarded.
    pub async fn closed(&mut self, wait: Duration) -> bool {
        timeout(wait, async {
            while self.responses.recv().await.is_some() {}
        })
        .await
        .is_ok()
    }

    /// The next `EVENT/1.0` notification, waiting at most `wait`.
    pub async fn next_event(&mut self, wait: Duration) -> Option<Vec<EventValue>> {
        timeout(wait, self.events.recv()).await.ok().flatten()
    }

    /// Waits until an event sets `(aid, iid)` to a value for which `pred` holds.
    pub async fn wait_for_event(
        &mut self,
        aid: u64,
        iid: u64,
        wait: Duration,
        pred: impl Fn(&Json) -> bool,
    ) -> Option<Json> {
        let end = tokio::time::Instant::now() + wait;
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            let evs = timeout(left, self.events.recv()).await.ok().flatten()?;
            if let Some(e) = evs
                .into_iter()
                .find(|e| e.aid == aid && e.iid == iid && pred(&e.value))
            {
                return Some(e.value);
            }
        }
    }
}

fn http_error(what: &str, r: &Response) -> HapError {
    HapError::Http {
        what: what.into(),
        status: r.status,
        body: String::from_utf8_lossy(&r.body).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_message_waits_for_the_whole_body_and_keeps_the_rest() {
        let mut buf = b"EVENT/1.0 200 OK\r\nContent-Length: 5\r\n\r\nabc".to_vec();
        assert!(take_message(&mut buf).expect("ok").is_none());
        buf.extend_from_slice(b"deHTTP/1.1 204 No Content\r\n\r\n");
        let (start, _, body) = take_message(&mut buf).expect("ok").expect("message");
        assert_eq!(start, "EVENT/1.0 200 OK");
        assert_eq!(body, b"abcde");
        let (start, _, body) = take_message(&mut buf).expect("ok").expect("message");
        assert_eq!(parse_status(&start).expect("status"), 204);
        assert!(body.is_empty() && buf.is_empty());
    }

    #[test]
    fn bad_content_length_is_an_error_not_a_panic() {
        let mut buf = b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n".to_vec();
        assert!(take_message(&mut buf).is_err());
        let mut buf = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n".to_vec();
        assert!(take_message(&mut buf).is_err());
    }
}
