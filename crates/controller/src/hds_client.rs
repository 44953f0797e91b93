//! The hub's HDS connection over TCP: drives [`hds::controller::Controller`] (hello,
//! `dataSend/open`, chunk reassembly, ack on endOfStream, close) with deadlines.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hds::controller::{Controller, ControllerEvent};
use hds::message::ChunkMeta;
use hds::{HdsStatus, Reason, SegmentKind, SessionKeys};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Why the HDS connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HdsClientError {
    /// TCP failure.
    #[error("HDS connection: {0}")]
    Io(#[from] std::io::Error),
    /// Nothing arrived within the deadline.
    #[error("HDS: no {0} within the deadline")]
    Timeout(&'static str),
    /// The accessory closed the TCP connection.
    #[error("accessory closed the HDS connection")]
    Closed,
    /// Framing, decryption or an accessory protocol violation.
    #[error("HDS protocol: {0}")]
    Protocol(#[from] hds::Error),
}

/// One received `data` chunk's metadata (the bytes live in the reassembled segments).
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkInfo {
    /// Metadata as sent.
    pub meta: ChunkMeta,
    /// Chunk payload size, bytes.
    pub len_bytes: usize,
    /// When it arrived.
    pub at: Instant,
}

/// One reassembled segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Init segment or fragment.
    pub kind: SegmentKind,
    /// dataSequenceNumber.
    pub data_sequence_number: i64,
    /// Bytes.
    pub data: Bytes,
    /// The accessory ended the stream with it.
    pub end_of_stream: bool,
}

/// How a recording stream ended.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RecordingEnd {
    /// Last chunk carried `endOfStream: true`; we acked.
    EndOfStream,
    /// We closed it (limit reached).
    ClosedByHub,
    /// The accessory sent `dataSend/close` with this reason.
    ClosedByAccessory(Reason),
    /// `dataSend/open` was refused.
    Rejected {
        /// Header status.
        status: HdsStatus,
        /// Body status.
        reason: Reason,
    },
    /// No chunk for too long.
    Stalled,
    /// The connection failed.
    ConnectionLost(String),
}

/// When the hub stops a recording by itself (a real hub closes when the event is over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopWhen {
    /// Close after this many fragments (init segment not counted).
    pub max_fragments: usize,
    /// Close after this long.
    pub max_duration: Duration,
    /// Give up when no chunk arrives for this long.
    pub stall: Duration,
}

impl Default for StopWhen {
    fn default() -> Self {
        Self {
            max_fragments: 3,
            max_duration: Duration::from_secs(30),
            stall: Duration::from_secs(10),
        }
    }
}

/// Everything received on one recording stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    /// Stream id we chose.
    pub stream_id: i64,
    /// Time from sending `dataSend/open` to the first chunk.
    pub open_to_first_chunk: Option<Duration>,
    /// Every chunk, in order.
    pub chunks: Vec<ChunkInfo>,
    /// Every complete segment, in order.
    pub segments: Vec<Segment>,
    /// How it ended.
    pub end: RecordingEnd,
}

/// A connected, hello'd HDS session.
#[derive(Debug)]
pub struct HdsClient {
    stream: TcpStream,
    ctl: Controller,
    buf: BytesMut,
    pending: VecDeque<ControllerEvent>,
}

impl HdsClient {
    /// Connects to the accessory's HDS port and completes `control/hello`.
    ///
    /// # Errors
    /// Connect failure, timeout, or a refused hello.
    pub async fn connect(
        addr: SocketAddr,
        keys: &SessionKeys,
        deadline: Duration,
    ) -> Result<Self, HdsClientError> {
        let stream = timeout(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| HdsClientError::Timeout("connect"))??;
        let _ = stream.set_nodelay(true);
        let mut c = Self {
            stream,
            ctl: Controller::new(keys),
            buf: BytesMut::new(),
            pending: VecDeque::new(),
        };
        c.ctl.hello();
        c.flush().await?;
        loop {
            match c.next_event(deadline).await? {
                ControllerEvent::HelloDone => return Ok(c),
                other => c.pending.push_back(other),
            }
        }
    }

    async fn flush(&mut self) -> Result<(), HdsClientError> {
        let mut out = Vec::new();
        while self.ctl.poll_transmit(&mut out) {}
        if !out.is_empty() {
            self.stream.write_all(&out).await?;
        }
        Ok(())
    }

    /// The next controller event, reading from the socket as needed.
    ///
    /// # Errors
    /// Timeout, EOF, or a protocol error (which closes the controller).
    pub async fn next_event(&mut self, wait: Duration) -> Result<ControllerEvent, HdsClientError> {
        let end = tokio::time::Instant::now() + wait;
        loop {
            if let Some(e) = self.pending.pop_front().or_else(|| self.ctl.poll_event()) {
                return Ok(e);
            }
            let mut tmp = [0u8; 64 * 1024];
            let n = tokio::time::timeout_at(end, self.stream.read(&mut tmp))
                .await
                .map_err(|_| HdsClientError::Timeout("message"))??;
            if n == 0 {
                return Err(HdsClientError::Closed);
            }
            self.buf.extend_from_slice(tmp.get(..n).unwrap_or_default());
            self.ctl.handle_incoming(&mut self.buf)?;
            // The controller may queue frames (none today, but keep the socket in sync).
            self.flush().await?;
        }
    }

    /// Sends `dataSend/open` for `stream_id` (events are read by [`HdsClient::next_event`]).
    ///
    /// # Errors
    /// Write failure.
    pub async fn send_open(&mut self, stream_id: i64) -> Result<(), HdsClientError> {
        self.ctl.open(stream_id);
        self.flush().await
    }

    /// Sends `dataSend/close` with `reason`.
    ///
    /// # Errors
    /// Write failure.
    pub async fn close_stream(
        &mut self,
        stream_id: i64,
        reason: Reason,
    ) -> Result<(), HdsClientError> {
        self.ctl.close_stream(stream_id, reason);
        self.flush().await
    }

    /// Opens `stream_id` and receives until endOfStream, an accessory close, or `stop`.
    /// Never hangs longer than `stop.max_duration + stop.stall`.
    pub async fn record(&mut self, stream_id: i64, stop: StopWhen) -> Recording {
        let mut rec = Recording {
            stream_id,
            open_to_first_chunk: None,
            chunks: Vec::new(),
            segments: Vec::new(),
            end: RecordingEnd::Stalled,
        };
        let opened_at = Instant::now();
        if let Err(e) = self.send_open(stream_id).await {
            rec.end = RecordingEnd::ConnectionLost(e.to_string());
            return rec;
        }
        let hard_end = opened_at + stop.max_duration;
        loop {
            let left = hard_end.saturating_duration_since(Instant::now());
            let fragments = rec
                .segments
                .iter()
                .filter(|s| s.kind == SegmentKind::MediaFragment)
                .count();
            if left.is_zero() || fragments >= stop.max_fragments {
                rec.end = match self.close_stream(stream_id, Reason::NORMAL).await {
                    Ok(()) => RecordingEnd::ClosedByHub,
                    Err(e) => RecordingEnd::ConnectionLost(e.to_string()),
                };
                return rec;
            }
            let ev = match self.next_event(left.min(stop.stall)).await {
                Ok(ev) => ev,
                Err(HdsClientError::Timeout(_)) if !left.is_zero() && left > stop.stall => {
                    rec.end = RecordingEnd::Stalled;
                    let _ = self.close_stream(stream_id, Reason::TIMEOUT).await;
                    return rec;
                }
                Err(HdsClientError::Timeout(_)) => continue,
                Err(e) => {
                    rec.end = RecordingEnd::ConnectionLost(e.to_string());
                    return rec;
                }
            };
            match ev {
                ControllerEvent::OpenRejected {
                    stream_id: id,
                    status,
                    reason,
                } if id == stream_id => {
                    rec.end = RecordingEnd::Rejected { status, reason };
                    return rec;
                }
                ControllerEvent::Chunk { meta, data } if meta.stream_id == stream_id => {
                    let now = Instant::now();
                    rec.open_to_first_chunk
                        .get_or_insert_with(|| now.duration_since(opened_at));
                    rec.chunks.push(ChunkInfo {
                        meta,
                        len_bytes: data.len(),
                        at: now,
                    });
                }
                ControllerEvent::Segment {
                    stream_id: id,
                    kind,
                    data_sequence_number,
                    data,
                    end_of_stream,
                } if id == stream_id => {
                    rec.segments.push(Segment {
                        kind,
                        data_sequence_number,
                        data,
                        end_of_stream,
                    });
                    if end_of_stream {
                        self.ctl.ack(stream_id);
                        rec.end = match self.flush().await {
                            Ok(()) => RecordingEnd::EndOfStream,
                            Err(e) => RecordingEnd::ConnectionLost(e.to_string()),
                        };
                        return rec;
                    }
                }
                ControllerEvent::StreamClosed {
                    stream_id: id,
                    reason,
                } if id == stream_id => {
                    rec.end = RecordingEnd::ClosedByAccessory(reason);
                    return rec;
                }
                ControllerEvent::ConnectionClosed { why } => {
                    rec.end = RecordingEnd::ConnectionLost(why.to_string());
                    return rec;
                }
                _ => {}
            }
        }
    }
}
