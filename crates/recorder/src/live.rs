//! The live-view feed: the camera's access units since its newest IDR, and a reader per viewer
//! that starts there and then follows live.
//!
//! The prebuffer ring only holds finished fragments (4 s each), so a viewer starting from it
//! would see a picture up to a fragment late and then wait for the next fragment. This feed
//! keeps the group of pictures in progress (the newest IDR and every access unit after it),
//! so a viewer gets a decodable picture at once and then each access unit as it arrives. The
//! units are shared ([`Bytes`] and [`Arc`]); nothing is copied per viewer.
//!
//! ```text
//!  Feeder ─► LiveFeed::push ─► GOP (newest IDR ..= now) ─► LiveReader (one per viewer)
//!                                       └── each reader's bounded queue ──┘
//! ```
//!
//! Audio goes to [`AudioReader`]s: each raw AAC access unit (ADTS split into its frames) with
//! its AudioSpecificConfig, from the moment the reader starts (audio needs no backlog: a viewer
//! hears from now on). A reader that falls behind loses its audio only.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use crate::aac::{self, AudioSpecificConfig};
use crate::error::ReaderError;
use crate::h264;
use crate::input::{H264Framing, MediaUnit, ParameterSets};

/// Bounds of a [`LiveFeed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveFeedConfig {
    /// Most bytes of one group of pictures kept; a longer GOP is dropped and the feed waits
    /// for the next IDR (new viewers then wait too). Default 16 MiB (a 30 s GOP at 4 Mbit/s).
    pub max_gop_bytes: usize,
    /// Access units a reader may fall behind, beyond the GOP it started with, before it is
    /// dropped with [`ReaderError::Lagged`]. Default 300 (10 s at 30 fps).
    pub reader_queue_units: usize,
    /// AAC access units an [`AudioReader`] may have queued before it is dropped with
    /// [`ReaderError::Lagged`]. Default 250 (16 s of 1024-sample frames at 16 kHz).
    pub audio_queue_units: usize,
}

impl Default for LiveFeedConfig {
    fn default() -> Self {
        Self {
            max_gop_bytes: 16 << 20,
            reader_queue_units: 300,
            audio_queue_units: 250,
        }
    }
}

/// One video access unit as the feed shares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveUnit {
    /// Presentation time, 90 kHz, on the source's clock.
    pub pts_90k: i64,
    /// Decode time, 90 kHz (equal to `pts_90k` without B-frames).
    pub dts_90k: i64,
    /// The NAL units, framed as `framing` says.
    pub data: Bytes,
    /// How `data` is framed.
    pub framing: H264Framing,
    /// The unit holds an IDR slice.
    pub is_idr: bool,
}

/// One raw AAC access unit for live audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveAudio {
    /// Presentation time of its first sample, in `config.sample_rate_hz` ticks, on the
    /// source's clock (the same clock as the video's 90 kHz times).
    pub pts_samples: i64,
    /// One raw AAC access unit (no ADTS header).
    pub data: Bytes,
    /// The stream's AudioSpecificConfig (from ADTS headers or the source's SDP/`esds`); a
    /// change means the stream changed (e.g. its sample rate).
    pub config: Arc<AudioSpecificConfig>,
}

/// An audio reader's queue; it is drained without a waker ([`AudioReader::try_next`]).
struct AudioSlot {
    queue: VecDeque<LiveAudio>,
    end: Option<ReaderError>,
}

struct Slot {
    queue: VecDeque<Arc<LiveUnit>>,
    limit: usize,
    waker: Option<Waker>,
    end: Option<ReaderError>,
}

#[derive(Default)]
struct Inner {
    config: LiveFeedConfig,
    parameter_sets: Option<ParameterSets>,
    gop: Vec<Arc<LiveUnit>>,
    gop_bytes: usize,
    readers: HashMap<u64, Slot>,
    next_reader_id: u64,
    closed: bool,
    audio_config: Option<Arc<AudioSpecificConfig>>,
    audio_seen: bool,
    audio_readers: HashMap<u64, AudioSlot>,
}

/// What a reader's queue yields next: a lag at once, else the queued units, then the end;
/// `None` while nothing is queued.
fn next_in<T>(queue: &mut VecDeque<T>, end: Option<ReaderError>) -> Option<Result<T, ReaderError>> {
    match (end, queue.pop_front()) {
        (Some(e @ ReaderError::Lagged { .. }), _) => Some(Err(e)),
        (_, Some(u)) => Some(Ok(u)),
        (Some(e), None) => Some(Err(e)),
        (None, None) => None,
    }
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A camera's live-view feed. Cloning shares it.
#[derive(Clone, Default)]
pub struct LiveFeed {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for LiveFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = lock(&self.inner);
        f.debug_struct("LiveFeed")
            .field("gop_units", &s.gop.len())
            .field("gop_bytes", &s.gop_bytes)
            .field("readers", &s.readers.len())
            .finish_non_exhaustive()
    }
}

impl LiveFeed {
    /// An empty feed.
    pub fn new(config: LiveFeedConfig) -> Self {
        let inner = Inner {
            config,
            ..Inner::default()
        };
        Self {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    /// Takes one unit from the source: parameter sets are kept for readers, video joins the
    /// GOP (an IDR starts a new one; units before the first IDR are dropped) and every
    /// reader's queue; audio goes to the audio readers.
    pub fn push(&self, unit: &MediaUnit) {
        let v = match unit {
            MediaUnit::ParameterSets(ps) => {
                lock(&self.inner).parameter_sets = Some(ps.clone());
                return;
            }
            MediaUnit::Video(v) => v,
            MediaUnit::Audio(a) => {
                self.push_audio(a.pts_samples, &a.data);
                return;
            }
        };
        let is_idr = h264::contains_idr(&v.data, v.framing);
        let unit = Arc::new(LiveUnit {
            pts_90k: v.pts_90k,
            dts_90k: v.dts_90k.unwrap_or(v.pts_90k),
            data: v.data.clone(),
            framing: v.framing,
            is_idr,
        });
        let mut s = lock(&self.inner);
        if s.closed {
            return;
        }
        if is_idr {
            s.gop.clear();
            s.gop_bytes = 0;
        }
        if is_idr || !s.gop.is_empty() {
            s.gop_bytes += unit.data.len();
            s.gop.push(unit.clone());
            if s.gop_bytes > s.config.max_gop_bytes {
                // Too long to keep: new viewers wait for the next IDR.
                s.gop.clear();
                s.gop_bytes = 0;
            }
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
                slot.queue.push_back(unit.clone());
            }
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }

    /// The source's out-of-band AudioSpecificConfig (SDP, `esds`), used for raw access units;
    /// ADTS frames carry their own.
    pub fn set_audio_config(&self, config: Option<AudioSpecificConfig>) {
        lock(&self.inner).audio_config = config.map(Arc::new);
    }

    /// Queues an AAC frame (raw, or one or more ADTS frames) for every audio reader. Units
    /// without a config, or with an unparsable ADTS header, are dropped.
    fn push_audio(&self, pts_samples: i64, data: &Bytes) {
        let mut s = lock(&self.inner);
        s.audio_seen = true;
        if s.closed || s.audio_readers.is_empty() {
            return;
        }
        let mut units = Vec::with_capacity(1);
        if aac::looks_like_adts(data) {
            let Ok(frames) = aac::parse_adts(data) else {
                return;
            };
            let mut pts = pts_samples;
            for f in frames {
                let step = i64::from(f.config.samples_per_frame);
                let config = match &s.audio_config {
                    Some(c) if **c == f.config => Arc::clone(c),
                    _ => Arc::new(f.config),
                };
                units.push(LiveAudio {
                    pts_samples: pts,
                    data: data.slice(f.payload),
                    config,
                });
                pts += step;
            }
        } else if let Some(config) = &s.audio_config {
            units.push(LiveAudio {
                pts_samples,
                data: data.clone(),
                config: Arc::clone(config),
            });
        }
        let limit = s.config.audio_queue_units;
        for slot in s.audio_readers.values_mut() {
            if slot.end.is_some() {
                continue;
            }
            for u in &units {
                if slot.queue.len() >= limit {
                    slot.queue.clear();
                    slot.end = Some(ReaderError::Lagged { queue_len: limit });
                    break;
                }
                slot.queue.push_back(u.clone());
            }
        }
    }

    /// An audio reader from now on; `None` when the feed is closed. It yields nothing while
    /// the source has no audio (or no config for raw access units).
    pub fn audio_reader(&self) -> Option<AudioReader> {
        let mut s = lock(&self.inner);
        if s.closed {
            return None;
        }
        let id = s.next_reader_id;
        s.next_reader_id += 1;
        s.audio_readers.insert(
            id,
            AudioSlot {
                queue: VecDeque::new(),
                end: None,
            },
        );
        Some(AudioReader {
            inner: Arc::clone(&self.inner),
            id,
        })
    }

    /// Whether the source has audio: a config, or audio units seen.
    pub fn has_audio(&self) -> bool {
        let s = lock(&self.inner);
        s.audio_config.is_some() || s.audio_seen
    }

    /// Ends the feed (the source stopped for good): readers end with
    /// [`ReaderError::Closed`] after their queued units.
    pub fn close(&self) {
        let mut s = lock(&self.inner);
        s.closed = true;
        s.gop.clear();
        s.gop_bytes = 0;
        for slot in s.readers.values_mut() {
            slot.end.get_or_insert(ReaderError::Closed);
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
        for slot in s.audio_readers.values_mut() {
            slot.end.get_or_insert(ReaderError::Closed);
        }
    }

    /// A reader that starts at the newest IDR; `None` until the feed has one.
    pub fn reader(&self) -> Option<LiveReader> {
        let mut s = lock(&self.inner);
        if s.gop.is_empty() || s.closed {
            return None;
        }
        let queue: VecDeque<Arc<LiveUnit>> = s.gop.iter().cloned().collect();
        let backlog = queue.len();
        let limit = backlog + s.config.reader_queue_units;
        let id = s.next_reader_id;
        s.next_reader_id += 1;
        s.readers.insert(
            id,
            Slot {
                queue,
                limit,
                waker: None,
                end: None,
            },
        );
        Some(LiveReader {
            inner: Arc::clone(&self.inner),
            id,
            backlog,
        })
    }

    /// Access units (and bytes) of the GOP in progress.
    pub fn gop_len(&self) -> (usize, usize) {
        let s = lock(&self.inner);
        (s.gop.len(), s.gop_bytes)
    }

    /// Live readers.
    pub fn reader_count(&self) -> usize {
        lock(&self.inner).readers.len()
    }
}

/// One viewer's audio: AAC access units from when it started. Dropping it unregisters it.
pub struct AudioReader {
    inner: Arc<Mutex<Inner>>,
    id: u64,
}

impl std::fmt::Debug for AudioReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioReader")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Drop for AudioReader {
    fn drop(&mut self) {
        lock(&self.inner).audio_readers.remove(&self.id);
    }
}

impl AudioReader {
    /// The next access unit if one is queued, `Ok(None)` if none is yet. There is no waker:
    /// the caller drains on its own schedule (live view drains on each video wakeup).
    ///
    /// # Errors
    /// [`ReaderError::Lagged`] at once when the reader fell behind; [`ReaderError::Closed`]
    /// after the queued units when the feed was closed.
    pub fn try_next(&mut self) -> Result<Option<LiveAudio>, ReaderError> {
        let mut s = lock(&self.inner);
        let Some(slot) = s.audio_readers.get_mut(&self.id) else {
            return Err(ReaderError::Closed);
        };
        next_in(&mut slot.queue, slot.end).transpose()
    }
}

/// One viewer's view of the feed. Dropping it unregisters it.
pub struct LiveReader {
    inner: Arc<Mutex<Inner>>,
    id: u64,
    backlog: usize,
}

impl std::fmt::Debug for LiveReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveReader")
            .field("id", &self.id)
            .field("backlog", &self.backlog)
            .finish_non_exhaustive()
    }
}

impl Drop for LiveReader {
    fn drop(&mut self) {
        lock(&self.inner).readers.remove(&self.id);
    }
}

impl LiveReader {
    /// Units that were queued when the reader started (the GOP so far, IDR first).
    pub fn backlog(&self) -> usize {
        self.backlog
    }

    /// The source's out-of-band parameter sets, if it has them (send them before each IDR).
    pub fn parameter_sets(&self) -> Option<ParameterSets> {
        lock(&self.inner).parameter_sets.clone()
    }

    /// The next unit if one is queued, `Ok(None)` if none is yet.
    ///
    /// # Errors
    /// [`ReaderError::Lagged`] at once when the reader fell behind; [`ReaderError::Closed`]
    /// after the queued units when the feed was closed.
    pub fn try_next(&mut self) -> Result<Option<Arc<LiveUnit>>, ReaderError> {
        let mut s = lock(&self.inner);
        let Some(slot) = s.readers.get_mut(&self.id) else {
            return Err(ReaderError::Closed);
        };
        next_in(&mut slot.queue, slot.end).transpose()
    }

    /// Async-friendly [`Self::try_next`]: registers `cx`'s waker when nothing is queued.
    ///
    /// # Cancel safety
    /// Nothing is lost if the caller stops polling: units stay queued (up to the bound).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Arc<LiveUnit>, ReaderError>> {
        let mut s = lock(&self.inner);
        let Some(slot) = s.readers.get_mut(&self.id) else {
            return Poll::Ready(Err(ReaderError::Closed));
        };
        match next_in(&mut slot.queue, slot.end) {
            Some(r) => Poll::Ready(r),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use std::task::Wake;

    use super::*;
    use crate::input::VideoAccessUnit;

    const AVCC4: H264Framing = H264Framing::Avcc {
        length_size_bytes: 4,
    };

    /// A one-slice access unit: IDR (type 5) or non-IDR (type 1), `n` bytes of payload.
    fn au(pts: i64, idr: bool, n: usize) -> MediaUnit {
        let header = if idr { 0x65 } else { 0x41 };
        let mut data = u32::try_from(n + 1).unwrap().to_be_bytes().to_vec();
        data.push(header);
        data.resize(data.len() + n, 0xab);
        MediaUnit::Video(VideoAccessUnit {
            pts_90k: pts,
            dts_90k: None,
            data: Bytes::from(data),
            framing: AVCC4,
        })
    }

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn no_reader_before_the_first_idr_then_it_starts_at_the_newest_idr() {
        let feed = LiveFeed::new(LiveFeedConfig::default());
        feed.push(&au(0, false, 10));
        assert!(feed.reader().is_none(), "nothing decodable yet");
        feed.push(&au(3000, true, 10));
        feed.push(&au(6000, false, 10));
        feed.push(&au(9000, true, 10));
        feed.push(&au(12000, false, 10));
        let mut r = feed.reader().unwrap();
        assert_eq!(r.backlog(), 2);
        let first = r.try_next().unwrap().unwrap();
        assert!(first.is_idr);
        assert_eq!(first.pts_90k, 9000);
        assert_eq!(r.try_next().unwrap().unwrap().pts_90k, 12000);
        assert_eq!(r.try_next().unwrap(), None);
        feed.push(&au(15000, false, 10));
        assert_eq!(r.try_next().unwrap().unwrap().pts_90k, 15000);
    }

    #[test]
    fn units_are_shared_not_copied() {
        let feed = LiveFeed::new(LiveFeedConfig::default());
        let unit = au(0, true, 1000);
        let MediaUnit::Video(v) = &unit else {
            unreachable!()
        };
        feed.push(&unit);
        let mut a = feed.reader().unwrap();
        let mut b = feed.reader().unwrap();
        let (ua, ub) = (
            a.try_next().unwrap().unwrap(),
            b.try_next().unwrap().unwrap(),
        );
        assert_eq!(ua.data.as_ptr(), v.data.as_ptr());
        assert!(Arc::ptr_eq(&ua, &ub));
    }

    #[test]
    fn a_slow_reader_is_dropped_with_lagged_and_others_go_on() {
        let feed = LiveFeed::new(LiveFeedConfig {
            max_gop_bytes: 1 << 20,
            reader_queue_units: 3,
            ..LiveFeedConfig::default()
        });
        feed.push(&au(0, true, 10));
        let mut slow = feed.reader().unwrap();
        let mut fast = feed.reader().unwrap();
        for i in 1..=4 {
            let _ = fast.try_next().unwrap();
            feed.push(&au(i * 3000, false, 10));
        }
        assert_eq!(slow.try_next(), Err(ReaderError::Lagged { queue_len: 4 }));
        assert_eq!(fast.try_next().unwrap().unwrap().pts_90k, 12000);
    }

    #[test]
    fn an_oversized_gop_is_dropped_until_the_next_idr() {
        let feed = LiveFeed::new(LiveFeedConfig {
            max_gop_bytes: 100,
            reader_queue_units: 10,
            ..LiveFeedConfig::default()
        });
        feed.push(&au(0, true, 60));
        assert!(feed.reader().is_some());
        feed.push(&au(3000, false, 60));
        assert!(feed.reader().is_none());
        assert_eq!(feed.gop_len(), (0, 0));
        feed.push(&au(6000, false, 10));
        assert!(feed.reader().is_none(), "still no IDR");
        feed.push(&au(9000, true, 10));
        assert_eq!(
            feed.reader().unwrap().try_next().unwrap().unwrap().pts_90k,
            9000
        );
    }

    #[test]
    fn close_ends_readers_after_their_queue_and_wakes_them() {
        let feed = LiveFeed::new(LiveFeedConfig::default());
        feed.push(&au(0, true, 10));
        let mut r = feed.reader().unwrap();
        assert!(r.try_next().unwrap().is_some());
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(r.poll_next(&mut cx).is_pending());
        feed.push(&au(3000, false, 10));
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst), "woken");
        feed.close();
        assert!(matches!(r.poll_next(&mut cx), Poll::Ready(Ok(u)) if u.pts_90k == 3000));
        assert_eq!(r.try_next(), Err(ReaderError::Closed));
        assert!(feed.reader().is_none());
    }

    #[test]
    fn dropping_a_reader_unregisters_it_and_parameter_sets_are_kept() {
        let feed = LiveFeed::new(LiveFeedConfig::default());
        let ps = ParameterSets {
            sps: Bytes::from_static(&[0x67, 1]),
            pps: Bytes::from_static(&[0x68, 2]),
        };
        feed.push(&MediaUnit::ParameterSets(ps.clone()));
        feed.push(&au(0, true, 10));
        let r = feed.reader().unwrap();
        assert_eq!(r.parameter_sets(), Some(ps));
        assert_eq!(feed.reader_count(), 1);
        drop(r);
        assert_eq!(feed.reader_count(), 0);
    }

    fn audio(pts: i64, data: &[u8]) -> MediaUnit {
        MediaUnit::Audio(crate::input::AudioFrame {
            pts_samples: pts,
            data: Bytes::copy_from_slice(data),
        })
    }

    fn next_audio(r: &mut AudioReader) -> Poll<Result<LiveAudio, ReaderError>> {
        match r.try_next() {
            Ok(Some(u)) => Poll::Ready(Ok(u)),
            Ok(None) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    #[test]
    fn audio_readers_get_raw_units_with_the_config_and_adts_split_into_frames() {
        let feed = LiveFeed::new(LiveFeedConfig::default());
        let mut r = feed.audio_reader().unwrap();
        // Raw units need the source's config; before it they are dropped.
        feed.push(&audio(0, &[1, 2, 3]));
        assert!(next_audio(&mut r).is_pending());
        let asc = AudioSpecificConfig::parse(&[0x12, 0x88]).unwrap();
        feed.set_audio_config(Some(asc.clone()));
        feed.push(&audio(1024, &[4, 5]));
        let Poll::Ready(Ok(u)) = next_audio(&mut r) else {
            panic!("no unit")
        };
        assert_eq!(
            (u.pts_samples, &u.data[..], &*u.config),
            (1024, &[4u8, 5][..], &asc)
        );
        // Two ADTS frames (48 kHz stereo) in one buffer: two units, 1024 samples apart, with
        // the header's config.
        let frame = [0xff, 0xf1, 0x4c, 0x80, 0x01, 0x5f, 0xfc, 1, 2, 3];
        feed.push(&audio(5000, &[frame, frame].concat()));
        let mut got = Vec::new();
        while let Poll::Ready(Ok(u)) = next_audio(&mut r) {
            got.push((u.pts_samples, u.data.to_vec(), u.config.sample_rate_hz));
        }
        assert_eq!(
            got,
            vec![(5000, vec![1, 2, 3], 48000), (6024, vec![1, 2, 3], 48000)]
        );
        // A garbled ADTS header is dropped, not passed on.
        feed.push(&audio(7000, &[0xff, 0xf1, 0x4c, 0x80, 0x7f, 0xff, 0xfc, 1]));
        assert!(next_audio(&mut r).is_pending());
        // Video readers never see audio.
        assert_eq!(feed.gop_len(), (0, 0));
    }

    #[test]
    fn a_slow_audio_reader_is_dropped_and_the_end_is_seen_after_close() {
        let feed = LiveFeed::new(LiveFeedConfig {
            audio_queue_units: 3,
            ..LiveFeedConfig::default()
        });
        feed.set_audio_config(Some(AudioSpecificConfig::parse(&[0x12, 0x88]).unwrap()));
        let mut slow = feed.audio_reader().unwrap();
        let mut fine = feed.audio_reader().unwrap();
        for i in 0..3 {
            feed.push(&audio(i * 1024, &[9]));
            assert!(matches!(next_audio(&mut fine), Poll::Ready(Ok(_))));
        }
        feed.push(&audio(3 * 1024, &[9]));
        assert!(matches!(
            next_audio(&mut slow),
            Poll::Ready(Err(ReaderError::Lagged { queue_len: 3 }))
        ));
        assert!(matches!(next_audio(&mut fine), Poll::Ready(Ok(_))));
        feed.close();
        assert!(matches!(
            next_audio(&mut fine),
            Poll::Ready(Err(ReaderError::Closed))
        ));
        drop(slow);
        drop(fine);
        assert!(feed.audio_reader().is_none());
    }
}
