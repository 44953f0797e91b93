//! The per-camera prebuffer ring: the last few complete fragments, shared with any number of
//! readers without copying media bytes.
//!
//! ```text
//!  Fragmenter ──push_init / push_fragment──► PrebufferRing ──► RingReader (one per clip)
//!                                            [f(n-2) f(n-1) f(n)]   init + f(k) … f(n), then live
//!                                             Arc<Fragment>, payload Bytes shared
//! ```
//!
//! A reader asks for "everything from T on": it gets the init segment, the stored fragments
//! from the one containing T (oldest first), then each new fragment as it completes. Every
//! reader's clip is rebased to start at 0: its first fragment has `mfhd` sequence 1 and `tfdt`
//! 0 on both tracks (fixture-analysis §4), so each reader gets a freshly written `moof` over the
//! shared `mdat` payload.
//!
//! Each reader also chooses its tracks ([`ReaderOptions`]): with audio off (the hub set
//! RecordingAudioActive = 0, protocol-notes §6.1) it gets an init segment without the audio
//! `trak` and fragments whose `moof` has no audio `traf` and whose `mdat` is a slice of the
//! shared payload holding only the video samples (they come first), still without copying.
//!
//! Memory is bounded twice: the ring keeps fragments covering at least
//! [`PrebufferConfig::keep`] and drops older ones, and also drops the oldest past
//! [`PrebufferConfig::max_bytes`]; each reader's queue holds at most
//! [`PrebufferConfig::reader_queue_len`] fragments beyond its initial backlog, and a reader
//! that falls further behind is dropped with [`ReaderError::Lagged`].
//!
//! Notification is std-only: [`RingReader::poll_next`] registers a `Waker`, so an async
//! runtime can wrap it (`std::future::poll_fn`) without this crate depending on one.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, ReaderError};
use crate::fmp4::{self, FragmentTiming};
use crate::fragmenter::{Fragment, FragmenterEvent, InitSegment};

/// How far short of a length fragments may fall and still count as that length, 90 kHz
/// (100 ms): a camera's fragments are often a frame short of the 4 s asked for (the demo clip:
/// 3999 ms), and counting them exactly kept 12 s for 8 s (issue 18).
pub const SLACK_90K: u64 = 9_000;

/// Ring settings. [`Default`]: keep 8 s, at most 16 MiB, readers may lag 8 fragments.
#[derive(Debug, Clone)]
pub struct PrebufferConfig {
    /// Keep complete fragments covering at least this long. HKSV selects a 4000 or 8000 ms
    /// prebuffer (protocol-notes §3.4); default 8 s covers both.
    pub keep: Duration,
    /// Drop the oldest fragments past this many bytes even if that shortens the prebuffer
    /// (at least one fragment is kept). Default 16 MiB (8 s at 2 Mbit/s is about 2 MB).
    pub max_bytes: usize,
    /// Live fragments a reader may have queued before it is dropped. Default 8 (32 s).
    pub reader_queue_len: usize,
}

impl Default for PrebufferConfig {
    fn default() -> Self {
        Self {
            keep: Duration::from_secs(8),
            max_bytes: 16 << 20,
            reader_queue_len: 8,
        }
    }
}

struct Slot {
    queue: VecDeque<Arc<Fragment>>,
    /// Queue length allowed right now (initial backlog + `reader_queue_len`).
    limit: usize,
    waker: Option<Waker>,
    /// Returned once the queue is drained (`InitChanged`, `Closed`), or at once (`Lagged`).
    end: Option<ReaderError>,
}

struct Shared {
    config: PrebufferConfig,
    init: Option<Arc<InitSegment>>,
    fragments: VecDeque<Arc<Fragment>>,
    bytes_held: usize,
    peak_bytes_held: usize,
    readers: HashMap<u64, Slot>,
    next_reader_id: u64,
    closed: bool,
}

fn fragment_bytes(f: &Fragment) -> usize {
    let samples = f.video.samples.len() + f.audio.as_ref().map_or(0, |a| a.samples.len());
    f.payload.len()
        + std::mem::size_of_val(f.payload.parts())
        + samples * std::mem::size_of::<fmp4::SampleInfo>()
        + std::mem::size_of::<Fragment>()
}

/// What one reader's clip contains. [`Default`]: audio on (the ring's tracks as stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderOptions {
    /// Keep the audio track when the ring's init segment has one. `false` gives a video-only
    /// clip: one `trak`/`trex` in the init segment, one `traf` per `moof`.
    pub audio: bool,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        Self { audio: true }
    }
}

/// The prebuffer ring; clone it to share between the writer and whoever opens readers.
#[derive(Clone)]
pub struct PrebufferRing {
    shared: Arc<Mutex<Shared>>,
}

impl std::fmt::Debug for PrebufferRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = lock(&self.shared);
        f.debug_struct("PrebufferRing")
            .field("fragments", &s.fragments.len())
            .field("bytes_held", &s.bytes_held)
            .field("readers", &s.readers.len())
            .finish_non_exhaustive()
    }
}

/// Locks, ignoring poisoning: the shared state stays consistent because no code path panics
/// while holding the lock.
fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PrebufferRing {
    /// An empty ring.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `keep` is zero, `max_bytes` is zero or `reader_queue_len`
    /// is zero.
    pub fn new(config: PrebufferConfig) -> Result<Self, Error> {
        if config.keep.is_zero() || config.max_bytes == 0 || config.reader_queue_len == 0 {
            return Err(Error::InvalidConfig(
                "prebuffer keep, max_bytes and reader_queue_len must be non-zero",
            ));
        }
        Ok(Self {
            shared: Arc::new(Mutex::new(Shared {
                config,
                init: None,
                fragments: VecDeque::new(),
                bytes_held: 0,
                peak_bytes_held: 0,
                readers: HashMap::new(),
                next_reader_id: 0,
                closed: false,
            })),
        })
    }

    /// Feeds a fragmenter event to the ring.
    pub fn push_event(&self, event: FragmenterEvent) {
        match event {
            FragmenterEvent::Init(init) => self.push_init(init),
            FragmenterEvent::Fragment(f) => self.push_fragment(f),
        }
    }

    /// Starts a new generation: stored fragments are dropped, and open readers end with
    /// [`ReaderError::InitChanged`] once they have drained what they had queued.
    pub fn push_init(&self, init: InitSegment) {
        let wakers = {
            let mut s = lock(&self.shared);
            s.init = Some(Arc::new(init));
            s.fragments.clear();
            s.bytes_held = 0;
            s.readers
                .values_mut()
                .filter_map(|slot| {
                    slot.end.get_or_insert(ReaderError::InitChanged);
                    slot.waker.take()
                })
                .collect::<Vec<_>>()
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Stores a complete fragment, hands it to every reader, and prunes old fragments.
    /// Ignored before the first init segment.
    pub fn push_fragment(&self, fragment: Fragment) {
        let fragment = Arc::new(fragment);
        let mut wakers = Vec::new();
        {
            let mut s = lock(&self.shared);
            if s.init.is_none() || s.closed {
                return;
            }
            for slot in s.readers.values_mut() {
                if slot.end.is_some() {
                    continue;
                }
                if slot.queue.len() >= slot.limit {
                    slot.queue.clear();
                    slot.end = Some(ReaderError::Lagged {
                        queue_len: slot.limit,
                    });
                } else {
                    slot.queue.push_back(Arc::clone(&fragment));
                }
                wakers.extend(slot.waker.take());
            }
            s.bytes_held += fragment_bytes(&fragment);
            s.fragments.push_back(fragment);
            let keep_90k = u64::try_from(s.config.keep.as_millis() * 90).unwrap_or(u64::MAX);
            loop {
                let newer_90k: u64 = s.fragments.iter().skip(1).map(|f| f.duration_90k()).sum();
                let over_bytes = s.bytes_held > s.config.max_bytes;
                if s.fragments.len() > 1 && (newer_90k + SLACK_90K >= keep_90k || over_bytes) {
                    if let Some(old) = s.fragments.pop_front() {
                        s.bytes_held -= fragment_bytes(&old);
                    }
                } else {
                    break;
                }
            }
            s.peak_bytes_held = s.peak_bytes_held.max(s.bytes_held);
        }
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Ends the ring (the source stopped): readers end with [`ReaderError::Closed`] after
    /// draining their queues.
    pub fn close(&self) {
        let wakers = {
            let mut s = lock(&self.shared);
            s.closed = true;
            s.readers
                .values_mut()
                .filter_map(|slot| {
                    slot.end.get_or_insert(ReaderError::Closed);
                    slot.waker.take()
                })
                .collect::<Vec<_>>()
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Bytes held by stored fragments (payloads plus sample tables). Readers' queues share
    /// these fragments and add nothing.
    pub fn bytes_held(&self) -> usize {
        lock(&self.shared).bytes_held
    }

    /// The largest [`Self::bytes_held`] seen since creation.
    pub fn peak_bytes_held(&self) -> usize {
        lock(&self.shared).peak_bytes_held
    }

    /// Time covered by stored fragments.
    pub fn buffered(&self) -> Duration {
        let s = lock(&self.shared);
        Duration::from_micros(s.fragments.iter().map(|f| f.duration_90k()).sum::<u64>() * 100 / 9)
    }

    /// Number of open readers.
    pub fn reader_count(&self) -> usize {
        lock(&self.shared).readers.len()
    }

    /// A reader whose clip starts at least `prebuffer` (less [`SLACK_90K`]) before the end of
    /// the newest stored fragment (or at the oldest stored fragment if the ring holds less). `None` before the
    /// first init segment or after [`Self::close`].
    pub fn reader(&self, prebuffer: Duration) -> Option<RingReader> {
        self.reader_with(prebuffer, ReaderOptions::default())
    }

    /// [`Self::reader`] with a choice of tracks.
    pub fn reader_with(&self, prebuffer: Duration, options: ReaderOptions) -> Option<RingReader> {
        let end = {
            let s = lock(&self.shared);
            s.fragments
                .back()
                .map_or(0, |f| f.start_90k() + f.duration_90k())
        };
        let back_90k = u64::try_from(prebuffer.as_millis() * 90)
            .unwrap_or(u64::MAX)
            .saturating_sub(SLACK_90K);
        self.reader_from_with(end.saturating_sub(back_90k), options)
    }

    /// A reader whose clip starts with the stored fragment containing `start_90k` (the
    /// generation's timeline), or the oldest one if `start_90k` is older.
    pub fn reader_from(&self, start_90k: u64) -> Option<RingReader> {
        self.reader_from_with(start_90k, ReaderOptions::default())
    }

    /// [`Self::reader_from`] with a choice of tracks.
    pub fn reader_from_with(&self, start_90k: u64, options: ReaderOptions) -> Option<RingReader> {
        let mut s = lock(&self.shared);
        if s.closed {
            return None;
        }
        let init = s.init.clone()?;
        let first = s
            .fragments
            .iter()
            .rposition(|f| f.start_90k() <= start_90k)
            .unwrap_or(0);
        let queue: VecDeque<Arc<Fragment>> = s.fragments.iter().skip(first).cloned().collect();
        let id = s.next_reader_id;
        s.next_reader_id += 1;
        let limit = queue.len() + s.config.reader_queue_len;
        s.readers.insert(
            id,
            Slot {
                queue,
                limit,
                waker: None,
                end: None,
            },
        );
        drop(s);
        let audio = options.audio && init.config.audio.is_some();
        let init_bytes = if options.audio || init.config.audio.is_none() {
            init.bytes.clone()
        } else {
            // About 1 KiB of boxes, written once per clip; the media is never copied.
            fmp4::write_init_segment(&fmp4::InitConfig {
                video: init.config.video.clone(),
                audio: None,
            })
        };
        Some(RingReader {
            shared: Arc::clone(&self.shared),
            id,
            init_bytes,
            audio,
            strip_audio: !options.audio,
            next_sequence: 1,
            base: None,
        })
    }
}

/// One clip's view of the ring. Dropping it unregisters it.
pub struct RingReader {
    shared: Arc<Mutex<Shared>>,
    id: u64,
    /// The ring's init segment, or its video-only rewrite.
    init_bytes: Bytes,
    /// The clip carries an audio track (the init segment has one and the reader wants it).
    audio: bool,
    /// Drop each fragment's audio `traf` and samples (audio off); otherwise pass as stored.
    strip_audio: bool,
    next_sequence: u32,
    /// (video, audio) base decode times subtracted from every fragment of this clip.
    base: Option<(u64, u64)>,
}

impl std::fmt::Debug for RingReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingReader")
            .field("id", &self.id)
            .field("audio", &self.audio)
            .field("next_sequence", &self.next_sequence)
            .finish_non_exhaustive()
    }
}

impl Drop for RingReader {
    fn drop(&mut self) {
        lock(&self.shared).readers.remove(&self.id);
    }
}

impl RingReader {
    /// The init segment this clip's fragments belong to (`ftyp` + `moov`); without the audio
    /// `trak` when this reader has audio off.
    pub fn init_segment(&self) -> Bytes {
        self.init_bytes.clone()
    }

    /// Whether this clip carries the audio track.
    pub fn has_audio(&self) -> bool {
        self.audio
    }

    /// The next fragment if one is ready, `Ok(None)` if none is yet.
    ///
    /// # Errors
    /// [`ReaderError::Lagged`] at once when the reader fell behind; [`ReaderError::InitChanged`]
    /// or [`ReaderError::Closed`] after the queued fragments were returned.
    pub fn try_next(&mut self) -> Result<Option<ClipFragment>, ReaderError> {
        let frag = {
            let mut s = lock(&self.shared);
            let Some(slot) = s.readers.get_mut(&self.id) else {
                return Err(ReaderError::Closed);
            };
            match (slot.queue.pop_front(), slot.end) {
                (_, Some(e @ ReaderError::Lagged { .. })) => return Err(e),
                (Some(f), _) => f,
                (None, Some(e)) => return Err(e),
                (None, None) => return Ok(None),
            }
        };
        Ok(Some(self.rebase(&frag)))
    }

    /// Async-friendly [`Self::try_next`]: registers `cx`'s waker when nothing is ready.
    ///
    /// # Cancel safety
    /// Nothing is lost if the caller stops polling: fragments stay queued (up to the bound).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<ClipFragment, ReaderError>> {
        match self.try_next() {
            Ok(Some(f)) => Poll::Ready(Ok(f)),
            Err(e) => Poll::Ready(Err(e)),
            Ok(None) => {
                let mut s = lock(&self.shared);
                let Some(slot) = s.readers.get_mut(&self.id) else {
                    return Poll::Ready(Err(ReaderError::Closed));
                };
                if slot.queue.is_empty() && slot.end.is_none() {
                    slot.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                drop(s);
                match self.try_next() {
                    Ok(Some(f)) => Poll::Ready(Ok(f)),
                    Err(e) => Poll::Ready(Err(e)),
                    Ok(None) => Poll::Pending,
                }
            }
        }
    }

    fn rebase(&mut self, frag: &Fragment) -> ClipFragment {
        let (bv, ba) = *self.base.get_or_insert((
            frag.video.base_decode_time,
            frag.audio.as_ref().map_or(0, |a| a.base_decode_time),
        ));
        let timing = FragmentTiming {
            sequence_number: self.next_sequence,
            video_decode_time: frag.video.base_decode_time.saturating_sub(bv),
            audio_decode_time: frag
                .audio
                .as_ref()
                .map_or(0, |a| a.base_decode_time.saturating_sub(ba)),
        };
        self.next_sequence = self.next_sequence.wrapping_add(1);
        let (header, payload) = if !self.strip_audio || frag.audio.is_none() {
            (
                fmp4::write_fragment_header(frag, &timing),
                frag.payload.clone(),
            )
        } else {
            // Video samples lead the payload, so the video-only mdat is a prefix of it.
            (
                fmp4::write_video_only_fragment_header(frag, &timing),
                fmp4::Payload::from_parts(frag.payload.prefix(fmp4::video_payload_bytes(frag))),
            )
        };
        ClipFragment {
            sequence_number: timing.sequence_number,
            duration_90k: frag.duration_90k(),
            header: Bytes::from(header),
            payload,
        }
    }
}

/// A fragment as one reader sees it: a fresh `moof` + `mdat` header, then the shared payload.
#[derive(Debug, Clone)]
pub struct ClipFragment {
    /// `mfhd` sequence_number (1 for the clip's first fragment).
    pub sequence_number: u32,
    /// Video duration, 90 kHz.
    pub duration_90k: u64,
    header: Bytes,
    payload: fmp4::Payload,
}

impl ClipFragment {
    /// Total bytes (`moof` + `mdat`).
    pub fn len(&self) -> usize {
        self.header.len() + self.payload.len()
    }

    /// Never true: a fragment has at least a `moof`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fragment as parts: the `moof` + `mdat` header, then the payload's parts shared with
    /// the ring and other readers (cheap `Bytes` clones, nothing copied). Hand them to a
    /// multi-part sender so the payload is copied only where it is finally written out.
    pub fn parts(&self) -> Vec<Bytes> {
        std::iter::once(self.header.clone())
            .chain(self.payload.parts().iter().cloned())
            .collect()
    }

    /// The fragment as one contiguous buffer: copies the whole fragment, payload included. The
    /// HDS send path uses [`parts`](Self::parts) instead; this is for callers that need one slice.
    pub fn to_bytes(&self) -> Bytes {
        let mut v = Vec::with_capacity(self.len());
        v.extend_from_slice(&self.header);
        for p in self.payload.parts() {
            v.extend_from_slice(p);
        }
        Bytes::from(v)
    }

    /// Splits the fragment into chunks of `chunk_bytes` (the last may be shorter), as HDS
    /// `dataSend` sends them (262144 bytes in the fixture, §2), each in one buffer: a chunk
    /// within one part is a slice of it, one spanning parts is copied. The HDS send path uses
    /// [`parts`](Self::parts) and copies only into its frames; this is for one-slice callers.
    /// A `chunk_bytes` of 0 is treated as 1.
    pub fn chunks(&self, chunk_bytes: usize) -> Vec<Bytes> {
        let chunk = chunk_bytes.max(1);
        let (h, total) = (self.header.len(), self.len());
        let mut out = Vec::with_capacity(total.div_ceil(chunk));
        let mut a = 0;
        while a < total {
            let b = (a + chunk).min(total);
            let mut pieces = Vec::new();
            if a < h {
                pieces.push(self.header.slice(a..b.min(h)));
            }
            if b > h {
                pieces.extend(self.payload.range(a.saturating_sub(h), b - h));
            }
            out.push(match pieces.as_slice() {
                [one] => one.clone(),
                _ => {
                    let mut v = Vec::with_capacity(b - a);
                    for p in &pieces {
                        v.extend_from_slice(p);
                    }
                    Bytes::from(v)
                }
            });
            a = b;
        }
        out
    }
}
