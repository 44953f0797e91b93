//! Byte-stream sources: HTTP(S), TCP, files, stdin and child commands, all through
//! [`ByteIngest`] (regular moov-based MP4 files through [`crate::mp4file`]). Files are paced in real time by their timestamps by default; live
//! streams arrive at the camera's pace. A child command is run by `sh -c` with its stdout
//! piped; when it exits the session ends with its status and last stderr lines, and the
//! [`crate::ReconnectingSource`] restarts it with backoff (never a hot loop).

use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::TryStreamExt;
use recorder::MediaUnit;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::Error;
use crate::camera::{Connector, MediaSession, StreamParams};
use crate::ingest::{ByteFormat, ByteIngest};
use crate::mp4file::PlainMp4;
use crate::spec::{ByteStreamOptions, SourceSpec};

/// Bytes read per call.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Bytes of a child's stderr kept for the error message.
const STDERR_TAIL_BYTES: usize = 2048;

/// Opens byte-stream sessions for an `http(s)`, `tcp`, file, `-` or `exec:` [`SourceSpec`].
#[derive(Debug)]
pub struct ByteConnector {
    spec: SourceSpec,
    options: ByteStreamOptions,
    camera: String,
    http: Option<reqwest::Client>,
}

impl ByteConnector {
    /// A connector for a byte-stream spec.
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] if `spec` is not a byte-stream source; [`Error::Unsupported`]
    /// if the HTTP client cannot be built.
    pub fn new(spec: SourceSpec, connect_timeout: Duration) -> Result<Self, Error> {
        let camera = spec.to_string();
        let options = spec.byte_options().ok_or_else(|| Error::InvalidSpec {
            input: camera.clone(),
            reason: "not a byte-stream source".into(),
        })?;
        let http = match &spec {
            SourceSpec::Http { .. } => Some(
                reqwest::Client::builder()
                    .connect_timeout(connect_timeout)
                    .build()
                    .map_err(|e| Error::Unsupported {
                        camera: camera.clone(),
                        detail: format!("HTTP client: {e}"),
                    })?,
            ),
            _ => None,
        };
        Ok(Self {
            spec,
            options,
            camera,
            http,
        })
    }

    async fn open_reader(
        &self,
    ) -> Result<(Reader, Option<Child>, Arc<Mutex<String>>, &'static str), Error> {
        let camera = || self.camera.clone();
        let tail = Arc::new(Mutex::new(String::new()));
        match &self.spec {
            SourceSpec::Tcp { host, port, .. } => {
                let s = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| Error::Connect {
                        camera: camera(),
                        detail: e.to_string(),
                    })?;
                Ok((Box::pin(s), None, tail, "TCP"))
            }
            SourceSpec::File { path, .. } => {
                let f = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| Error::Connect {
                        camera: camera(),
                        detail: e.to_string(),
                    })?;
                Ok((Box::pin(f), None, tail, "file"))
            }
            SourceSpec::Stdin { .. } => Ok((Box::pin(tokio::io::stdin()), None, tail, "stdin")),
            SourceSpec::Exec { command, .. } => {
                let mut child = Command::new("sh")
                    .arg("-c")
                    .arg(command)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| Error::Connect {
                        camera: camera(),
                        detail: format!("cannot start sh: {e}"),
                    })?;
                let stdout = child.stdout.take().ok_or_else(|| Error::Connect {
                    camera: camera(),
                    detail: "no stdout pipe".into(),
                })?;
                if let Some(stderr) = child.stderr.take() {
                    let tail = tail.clone();
                    tokio::spawn(async move {
                        let mut lines = tokio::io::BufReader::new(stderr).lines();
                        while let Ok(Some(line)) = lines.next_line().await {
                            tracing::debug!(target: "source::exec", "{line}");
                            if let Ok(mut t) = tail.lock() {
                                t.push_str(&line);
                                t.push('\n');
                                if t.len() > STDERR_TAIL_BYTES {
                                    let cut = t.len() - STDERR_TAIL_BYTES;
                                    let cut = (cut..t.len())
                                        .find(|&i| t.is_char_boundary(i))
                                        .unwrap_or(t.len());
                                    t.drain(..cut);
                                }
                            }
                        }
                    });
                }
                Ok((Box::pin(stdout), Some(child), tail, "child stdout"))
            }
            SourceSpec::Http { url, .. } => {
                let client = self.http.as_ref().ok_or_else(|| Error::Unsupported {
                    camera: camera(),
                    detail: "no HTTP client".into(),
                })?;
                let mut bare = url.clone();
                let user = bare.username().to_owned();
                let password = bare.password().map(percent_decode);
                let _ = bare.set_username("");
                let _ = bare.set_password(None);
                let mut req = client.get(bare);
                if !user.is_empty() {
                    req = req.basic_auth(percent_decode(&user), password);
                }
                let resp = req.send().await.map_err(|e| Error::Connect {
                    camera: camera(),
                    detail: error_chain(&e),
                })?;
                let status = resp.status();
                if status == reqwest::StatusCode::UNAUTHORIZED
                    || status == reqwest::StatusCode::FORBIDDEN
                {
                    return Err(Error::Auth {
                        camera: camera(),
                        status: status.as_u16(),
                    });
                }
                if !status.is_success() {
                    return Err(Error::Connect {
                        camera: camera(),
                        detail: format!("HTTP status {status}"),
                    });
                }
                let ctype = resp
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if ctype.starts_with("multipart/x-mixed-replace") || ctype.starts_with("image/jpeg")
                {
                    return Err(Error::UnsupportedCodec {
                        camera: camera(),
                        found: "MJPEG".into(),
                    });
                }
                let body = resp.bytes_stream().map_err(std::io::Error::other);
                Ok((
                    Box::pin(tokio_util::io::StreamReader::new(body)),
                    None,
                    tail,
                    if url.scheme() == "https" {
                        "HTTPS"
                    } else {
                        "HTTP"
                    },
                ))
            }
            _ => Err(Error::InvalidSpec {
                input: camera(),
                reason: "not a byte-stream source".into(),
            }),
        }
    }
}

fn percent_decode(s: &str) -> String {
    // Userinfo in a parsed Url stays percent-encoded; decode %XX sequences.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%'
            && let Some(hex) = b.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

type Reader = Pin<Box<dyn AsyncRead + Send>>;

/// Sleeps until each unit's time, measured from the first unit (real-time replay).
#[derive(Debug)]
struct Pacer {
    origin: Option<(i64, Instant)>,
    audio_rate_hz: u32,
}

impl Pacer {
    async fn wait(&mut self, unit: &MediaUnit) {
        if matches!(unit, MediaUnit::ParameterSets(_)) {
            return;
        }
        let t = unit.time_90k(self.audio_rate_hz);
        let (t0, start) = *self.origin.get_or_insert((t, Instant::now()));
        let ahead_90k = u64::try_from(t - t0).unwrap_or(0);
        tokio::time::sleep_until(start + Duration::from_micros(ahead_90k.saturating_mul(100) / 9))
            .await;
    }
}

/// One byte-stream session.
pub struct ByteSession {
    camera: String,
    reader: Reader,
    child: Option<Child>,
    stderr_tail: Arc<Mutex<String>>,
    ingest: ByteIngest,
    params: StreamParams,
    pacer: Option<Pacer>,
    /// A unit pulled but not yet due (kept across cancellation).
    pending: Option<MediaUnit>,
    /// A regular MP4 file, read by sample offsets instead of through `ingest`.
    plain: Option<PlainMp4>,
    buf: Vec<u8>,
    eof: bool,
}

impl std::fmt::Debug for ByteSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteSession")
            .field("camera", &self.camera)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl ByteSession {
    /// Reads one chunk into the ingest; false at end of stream.
    async fn fill(&mut self) -> Result<bool, Error> {
        let n = self
            .reader
            .read(&mut self.buf)
            .await
            .map_err(|e| Error::Stream {
                camera: self.camera.clone(),
                detail: format!("read: {e}"),
            })?;
        if n == 0 {
            self.ingest.finish();
            self.eof = true;
            return Ok(false);
        }
        self.ingest.push(self.buf.get(..n).unwrap_or_default())?;
        Ok(true)
    }

    async fn end_error(&mut self) -> Option<Error> {
        let child = self.child.as_mut()?;
        let status = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
            Ok(Ok(s)) => s.to_string(),
            _ => "still running after closing stdout".into(),
        };
        let tail = self
            .stderr_tail
            .lock()
            .map(|t| t.trim().to_owned())
            .unwrap_or_default();
        let detail = if tail.is_empty() {
            format!("the command exited ({status})")
        } else {
            format!("the command exited ({status}); stderr: {tail}")
        };
        Some(Error::Ended {
            camera: self.camera.clone(),
            detail,
        })
    }
}

impl MediaSession for ByteSession {
    fn params(&self) -> &StreamParams {
        &self.params
    }

    async fn next_unit(&mut self) -> Result<Option<MediaUnit>, Error> {
        loop {
            if self.pending.is_none() {
                self.pending = match self.plain.as_mut() {
                    Some(p) => match p.next_unit().await? {
                        Some(u) => Some(u),
                        None => return Ok(None),
                    },
                    None => self.ingest.pull(),
                };
            }
            if let Some(unit) = &self.pending {
                if let Some(p) = self.pacer.as_mut() {
                    p.wait(unit).await;
                }
                return Ok(self.pending.take());
            }
            if self.eof {
                return match self.end_error().await {
                    Some(e) => Err(e),
                    None => Ok(None),
                };
            }
            self.fill().await?;
        }
    }
}

impl Connector for ByteConnector {
    type Session = ByteSession;

    fn camera(&self) -> String {
        self.camera.clone()
    }

    async fn connect(&mut self) -> Result<ByteSession, Error> {
        let realtime = self
            .options
            .realtime
            .unwrap_or(matches!(self.spec, SourceSpec::File { .. }));
        if let SourceSpec::File { path, .. } = &self.spec
            && let Some(plain) = PlainMp4::open(path, &self.camera).await?
        {
            let audio = plain.audio_config().cloned();
            return Ok(ByteSession {
                camera: self.camera.clone(),
                reader: Box::pin(tokio::io::empty()),
                child: None,
                stderr_tail: Arc::default(),
                ingest: ByteIngest::new(self.camera.clone(), self.options.fps),
                pacer: realtime.then(|| Pacer {
                    origin: None,
                    audio_rate_hz: audio.as_ref().map_or(1, |a| a.sample_rate_hz),
                }),
                params: StreamParams {
                    parameter_sets: None,
                    audio,
                    ignored_audio: None,
                    transport: "MP4 file".into(),
                },
                pending: None,
                plain: Some(plain),
                buf: Vec::new(),
                eof: false,
            });
        }
        let (reader, child, stderr_tail, carrier) = self.open_reader().await?;
        let mut s = ByteSession {
            camera: self.camera.clone(),
            reader,
            child,
            stderr_tail,
            ingest: ByteIngest::new(self.camera.clone(), self.options.fps),
            params: StreamParams::default(),
            pacer: None,
            pending: None,
            plain: None,
            buf: vec![0; READ_CHUNK_BYTES],
            eof: false,
        };
        // Read until the format (and, for fMP4, the init segment) is known.
        while !s.ingest.is_ready() {
            if !s.fill().await? {
                return Err(match s.end_error().await {
                    Some(e) => e,
                    None => Error::Ended {
                        camera: self.camera.clone(),
                        detail: "the stream ended before any video".into(),
                    },
                });
            }
        }
        let audio = s.ingest.audio_config().cloned();
        let format = match s.ingest.format() {
            Some(ByteFormat::Fmp4) => "fMP4",
            _ => "Annex B H.264",
        };
        s.pacer = realtime.then(|| Pacer {
            origin: None,
            audio_rate_hz: audio.as_ref().map_or(1, |a| a.sample_rate_hz),
        });
        s.params = StreamParams {
            parameter_sets: None,
            audio,
            ignored_audio: None,
            transport: format!("{format} over {carrier}"),
        };
        Ok(s)
    }
}
