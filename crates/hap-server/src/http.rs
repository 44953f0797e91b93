//! HTTP/1.1 as spoken by HAP controllers (protocol notes §1.1, §1.9, §1.11).
//!
//! [`parse_request`] is a pure, incremental parser over a byte buffer: it returns `Ok(None)`
//! until a whole request (head and `Content-Length` body) is buffered. Limits bound the head
//! and body so a peer cannot make us buffer without end; every violation is an [`HttpError`]
//! that maps to a clean status code, never a panic. [`Response`] and [`write_event`] write the
//! replies and `EVENT/1.0` notifications.

use thiserror::Error;

/// `Content-Type` of HAP JSON bodies (§1.9).
pub const CONTENT_TYPE_HAP_JSON: &str = "application/hap+json";
/// `Content-Type` of pairing TLV8 bodies (§1.4).
pub const CONTENT_TYPE_PAIRING_TLV8: &str = "application/pairing+tlv8";

/// Most headers a request may carry. Controllers send about five.
pub const MAX_HEADERS: usize = 32;

/// Bounds applied while parsing a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request line plus headers, in bytes.
    pub max_head_bytes: usize,
    /// Largest body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    /// 8 KiB of head, 64 KiB of body: the largest HAP bodies are multi-characteristic writes of
    /// a few kilobytes of base64 TLV8.
    fn default() -> Self {
        Self {
            max_head_bytes: 8 * 1024,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// Why a request could not be parsed. The connection cannot be resynchronised afterwards, so
/// the server answers with [`HttpError::status`] and closes it.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum HttpError {
    /// Request line or headers are not valid HTTP/1.1.
    #[error("malformed request head: {0}")]
    Malformed(&'static str),
    /// More than [`MAX_HEADERS`] headers, or a head longer than [`Limits::max_head_bytes`].
    #[error("request head too large")]
    HeadTooLarge,
    /// `Content-Length` above [`Limits::max_body_bytes`].
    #[error("request body of {0} bytes too large")]
    BodyTooLarge(u64),
}

impl HttpError {
    /// The HTTP status code to answer with: 413 for an oversized body, otherwise 400.
    pub fn status(&self) -> u16 {
        match self {
            Self::BodyTooLarge(_) => 413,
            Self::Malformed(_) | Self::HeadTooLarge => 400,
        }
    }
}

/// A complete request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Method, e.g. `GET`, `PUT`, `POST` (as sent; compare case-sensitively per RFC 9110).
    pub method: String,
    /// Path without the query, lower-cased (HAP-NodeJS matches paths case-insensitively).
    pub path: String,
    /// Raw query string after `?`, if any.
    pub query: Option<String>,
    /// `Content-Type` header value, if any.
    pub content_type: Option<String>,
    /// The body (`Content-Length` bytes; empty without that header).
    pub body: Vec<u8>,
}

impl Request {
    /// Decoded query parameters in order (`+` is a space, `%XX` escapes decoded).
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        let Some(query) = self.query.as_deref() else {
            return Vec::new();
        };
        query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect()
    }

    /// The first value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(v) = hex {
                    out.push(v);
                    i += 3;
                    continue;
                }
                out.push(b);
            }
            b'+' => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses one request from the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, or the request and the number of bytes it
/// used. Chunked transfer coding is refused (HAP controllers always send `Content-Length`).
///
/// # Errors
/// [`HttpError`] when the head is malformed or a limit is exceeded.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<(Request, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_head_bytes {
                return Err(HttpError::HeadTooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(e) => return Err(HttpError::Malformed(http_error_label(e))),
    };
    if head_len > limits.max_head_bytes {
        return Err(HttpError::HeadTooLarge);
    }
    let method = req.method.ok_or(HttpError::Malformed("method"))?.to_owned();
    let target = req.path.ok_or(HttpError::Malformed("path"))?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (target, None),
    };
    let mut content_length: Option<u64> = None;
    let mut content_type = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(HttpError::Malformed("content-length"))?;
            if content_length.is_some_and(|old| old != v) {
                return Err(HttpError::Malformed("conflicting content-length"));
            }
            content_length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::Malformed("transfer-encoding not supported"));
        } else if h.name.eq_ignore_ascii_case("content-type") {
            content_type = std::str::from_utf8(h.value)
                .ok()
                .map(|s| s.trim().to_owned());
        }
    }
    let body_len = content_length.unwrap_or(0);
    if body_len > limits.max_body_bytes as u64 {
        return Err(HttpError::BodyTooLarge(body_len));
    }
    // Fits in usize: bounded by max_body_bytes above.
    let body_len = usize::try_from(body_len).map_err(|_| HttpError::BodyTooLarge(body_len))?;
    let Some(body) = buf.get(head_len..head_len + body_len) else {
        return Ok(None);
    };
    let request = Request {
        method,
        path: path.to_ascii_lowercase(),
        query,
        content_type,
        body: body.to_vec(),
    };
    Ok(Some((request, head_len + body_len)))
}

fn http_error_label(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "header name",
        httparse::Error::HeaderValue => "header value",
        httparse::Error::NewLine => "new line",
        httparse::Error::Status => "status",
        httparse::Error::Token => "token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "version",
    }
}

/// Reason phrase for the status codes HAP uses (§1.10).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        207 => "Multi-Status",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        470 => "Connection Authorization Required",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// An HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`, omitted when `None`.
    pub content_type: Option<&'static str>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// A response without a body (e.g. 204).
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            content_type: None,
            body: Vec::new(),
        }
    }

    /// An `application/hap+json` response.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: Some(CONTENT_TYPE_HAP_JSON),
            body: value.to_string().into_bytes(),
        }
    }

    /// `{"status": code}` with the given HTTP status, the shape of HAP error replies (§1.9).
    pub fn status_json(status: u16, hap: crate::HapStatus) -> Self {
        Self::json(status, &serde_json::json!({ "status": hap.code() }))
    }

    /// An `application/pairing+tlv8` response with HTTP 200.
    pub fn tlv8(body: Vec<u8>) -> Self {
        Self {
            status: 200,
            content_type: Some(CONTENT_TYPE_PAIRING_TLV8),
            body,
        }
    }

    /// Appends the serialized response to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\n",
            self.status,
            reason_phrase(self.status)
        );
        if let Some(ct) = self.content_type {
            let _ = write!(out, "Content-Type: {ct}\r\n");
        }
        if self.status != 204 {
            let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
        }
        out.extend_from_slice(b"\r\n");
        if self.status != 204 {
            out.extend_from_slice(&self.body);
        }
    }
}

/// Appends an `EVENT/1.0 200 OK` notification carrying the JSON `body` to `out` (§1.11).
pub fn write_event(body: &[u8], out: &mut Vec<u8>) {
    use std::io::Write as _;
    let _ = write!(
        out,
        "EVENT/1.0 200 OK\r\nContent-Type: {CONTENT_TYPE_HAP_JSON}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    out.extend_from_slice(body);
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // tests: a panic is a failed check
mod tests {
    use super::*;

    fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
        parse_request(buf, &Limits::default())
    }

    #[test]
    fn parses_get_with_query() {
        let raw = b"GET /characteristics?id=1.2,1.3&meta=1 HTTP/1.1\r\nHost: x\r\n\r\n";
        let (req, used) = parse(raw).unwrap().unwrap();
        assert_eq!(used, raw.len());
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/characteristics");
        assert_eq!(req.query_param("id").as_deref(), Some("1.2,1.3"));
        assert_eq!(req.query_param("meta").as_deref(), Some("1"));
        assert_eq!(req.query_param("ev"), None);
        assert!(req.body.is_empty());
    }

    #[test]
    fn percent_escapes_in_query_are_decoded() {
        let raw = b"GET /characteristics?id=1.2%2C1.3 HTTP/1.1\r\n\r\n";
        let (req, _) = parse(raw).unwrap().unwrap();
        assert_eq!(req.query_param("id").as_deref(), Some("1.2,1.3"));
        // A broken escape passes through unchanged.
        assert_eq!(percent_decode("a%zz"), "a%zz");
        assert_eq!(percent_decode("%4"), "%4");
    }

    #[test]
    fn body_is_incremental_at_every_split_point() {
        let raw = b"PUT /Characteristics HTTP/1.1\r\nContent-Type: application/hap+json\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n";
        let first_len = raw.len() - b"GET / HTTP/1.1\r\n\r\n".len();
        for split in 0..first_len {
            assert_eq!(parse(&raw[..split]).unwrap(), None, "split {split}");
        }
        let (req, used) = parse(raw).unwrap().unwrap();
        assert_eq!(used, first_len);
        assert_eq!(req.path, "/characteristics");
        assert_eq!(req.body, b"hello");
        assert_eq!(req.content_type.as_deref(), Some(CONTENT_TYPE_HAP_JSON));
        let (next, _) = parse(&raw[used..]).unwrap().unwrap();
        assert_eq!(next.method, "GET");
    }

    #[test]
    fn malformed_heads_are_400() {
        for raw in [
            &b"GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/9\r\n\r\n",
            b"\x00\x01\x02 garbage\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        ] {
            let err = parse(raw).unwrap_err();
            assert_eq!(err.status(), 400, "{err} for {raw:?}");
        }
    }

    #[test]
    fn limits_give_400_and_413() {
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many).unwrap_err(), HttpError::HeadTooLarge);

        let endless = vec![b'a'; 9000];
        let mut head = b"GET /".to_vec();
        head.extend_from_slice(&endless);
        assert_eq!(parse(&head).unwrap_err(), HttpError::HeadTooLarge);

        let big = b"PUT / HTTP/1.1\r\nContent-Length: 99999999999999\r\n\r\n";
        let err = parse(big).unwrap_err();
        assert_eq!(err.status(), 413);
    }

    #[test]
    fn responses_serialize() {
        let mut out = Vec::new();
        Response::json(200, &serde_json::json!({"a": 1})).write_to(&mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/hap+json\r\nContent-Length: 7\r\n\r\n{\"a\":1}"
        );
        out.clear();
        Response::empty(204).write_to(&mut out);
        assert_eq!(out, b"HTTP/1.1 204 No Content\r\n\r\n");
        out.clear();
        Response::status_json(470, crate::HapStatus::INSUFFICIENT_PRIVILEGES).write_to(&mut out);
        assert!(out.starts_with(b"HTTP/1.1 470 Connection Authorization Required\r\n"));
        assert!(out.ends_with(b"{\"status\":-70401}"));
        out.clear();
        write_event(b"{}", &mut out);
        assert_eq!(
            out,
            b"EVENT/1.0 200 OK\r\nContent-Type: application/hap+json\r\nContent-Length: 2\r\n\r\n{}"
        );
    }

    proptest::proptest! {
        /// Arbitrary bytes never panic, and a prefix either needs more bytes or gives the
        /// same answer as the whole input (TCP may split requests anywhere).
        #[test]
        fn arbitrary_input_and_split_delivery(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600), cut in 0usize..600) {
            let limits = Limits { max_head_bytes: 256, max_body_bytes: 128 };
            let whole = parse_request(&input, &limits);
            if let Ok(Some((req, used))) = &whole {
                proptest::prop_assert!(*used <= input.len());
                proptest::prop_assert!(req.body.len() <= 128);
            }
            let cut = cut.min(input.len());
            match parse_request(&input[..cut], &limits) {
                Ok(None) => {}
                Ok(Some(early)) => proptest::prop_assert_eq!(Ok(Some(early)), whole),
                Err(e) => proptest::prop_assert!(whole.is_err() || e == HttpError::HeadTooLarge),
            }
        }

        /// Well-formed requests split at any point parse to the same request.
        #[test]
        fn valid_requests_survive_any_split(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100), cut in 0usize..200) {
            let mut raw = format!("PUT /characteristics HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
            raw.extend_from_slice(&body);
            let (req, used) = parse(&raw).unwrap().unwrap();
            proptest::prop_assert_eq!(used, raw.len());
            proptest::prop_assert_eq!(&req.body, &body);
            let cut = cut.min(raw.len() - 1);
            proptest::prop_assert_eq!(parse(&raw[..cut]).unwrap(), None);
        }
    }
}
