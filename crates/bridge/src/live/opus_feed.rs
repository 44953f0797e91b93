//! [`OpusFeed`]: one AAC-LC → Opus transcoder per camera and target, shared by every viewer
//! that asked for that target (D22).
//!
//! ```text
//!  LiveFeed ─► AudioReader ─► OpusFeed (AacToOpus, one per rate/packet time/bitrate)
//!                                 ├─► OpusSubscription (viewer 1's queue) ─► AudioSession
//!                                 └─► OpusSubscription (viewer 2's queue) ─► AudioSession
//! ```
//!
//! Nothing runs on its own: whichever subscriber drains first takes the queued AAC units,
//! transcodes them once and queues the packets for every subscriber. So two iPhones watching
//! cost one decode and one encode, and the feed wakes no task. The feed (and its reader) goes
//! when the last subscription is dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use recorder::{AudioReader, ReaderError};

use super::transcode::{AacToOpus, OpusPacket, OpusTarget, TranscodeError};

/// Corrupt access units in a row after which the feed ends.
pub const MAX_CORRUPT_IN_A_ROW: u32 = 50;
/// Packets a subscriber may have queued; beyond it its oldest are dropped (a stalled viewer
/// costs memory for 10 s of 20 ms packets at most).
const MAX_QUEUED_PACKETS: usize = 500;

struct Inner {
    reader: Option<AudioReader>,
    transcoder: AacToOpus,
    subscribers: HashMap<u64, VecDeque<OpusPacket>>,
    next_id: u64,
    corrupt_in_a_row: u32,
    /// Why the feed ended, once it did.
    ended: Option<String>,
    scratch: Vec<OpusPacket>,
}

/// A shared transcoder; see the module docs.
pub struct OpusFeed {
    target: OpusTarget,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for OpusFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusFeed")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl OpusFeed {
    /// A feed that transcodes what `reader` yields to `target`.
    ///
    /// # Errors
    /// [`TranscodeError::Target`] for a target HomeKit does not use.
    pub fn new(reader: AudioReader, target: OpusTarget) -> Result<Self, TranscodeError> {
        Ok(Self {
            target,
            inner: Mutex::new(Inner {
                reader: Some(reader),
                transcoder: AacToOpus::new(target)?,
                subscribers: HashMap::new(),
                next_id: 0,
                corrupt_in_a_row: 0,
                ended: None,
                scratch: Vec::new(),
            }),
        })
    }

    /// A new subscriber: packets from the next transcoded unit on.
    pub fn subscribe(self: &Arc<Self>) -> OpusSubscription {
        let mut s = lock(&self.inner);
        let id = s.next_id;
        s.next_id += 1;
        s.subscribers.insert(id, VecDeque::new());
        OpusSubscription {
            feed: Arc::clone(self),
            id,
        }
    }

    /// Whether it ended (a new viewer should get a new feed).
    pub fn is_ended(&self) -> bool {
        lock(&self.inner).ended.is_some()
    }

    /// Access units decoded and skipped as corrupt.
    pub fn units(&self) -> (u64, u64) {
        let s = lock(&self.inner);
        (s.transcoder.decoded, s.transcoder.corrupt)
    }

    /// Transcodes every queued unit once, for all subscribers.
    fn pump(s: &mut Inner) {
        while s.ended.is_none() {
            let Some(reader) = s.reader.as_mut() else {
                return;
            };
            let unit = match reader.try_next() {
                Ok(None) => return,
                Ok(Some(u)) => u,
                Err(ReaderError::Lagged { .. }) => {
                    return end(s, "the audio fell behind the camera".to_owned());
                }
                Err(_) => return end(s, "the source's audio ended".to_owned()),
            };
            let mut packets = std::mem::take(&mut s.scratch);
            packets.clear();
            match s.transcoder.push(&unit, &mut packets) {
                Ok(()) => s.corrupt_in_a_row = 0,
                Err(TranscodeError::Decode(e)) => {
                    s.corrupt_in_a_row += 1;
                    tracing::debug!(error = %e, "corrupt AAC unit skipped in live audio");
                    if s.corrupt_in_a_row >= MAX_CORRUPT_IN_A_ROW {
                        s.scratch = packets;
                        return end(
                            s,
                            format!("{MAX_CORRUPT_IN_A_ROW} corrupt AAC units in a row ({e})"),
                        );
                    }
                }
                Err(e @ (TranscodeError::Source(_) | TranscodeError::Target(_))) => {
                    s.scratch = packets;
                    return end(s, e.to_string());
                }
                Err(TranscodeError::Encode(e)) => {
                    tracing::debug!(error = e, "Opus encoder refused a frame");
                }
            }
            for queue in s.subscribers.values_mut() {
                for p in &packets {
                    if queue.len() >= MAX_QUEUED_PACKETS {
                        queue.pop_front();
                    }
                    queue.push_back(p.clone());
                }
            }
            s.scratch = packets;
        }
    }
}

fn end(s: &mut Inner, why: String) {
    s.reader = None;
    s.ended = Some(why);
}

/// One viewer's queue of a shared [`OpusFeed`]. Dropping it unsubscribes.
pub struct OpusSubscription {
    feed: Arc<OpusFeed>,
    id: u64,
}

impl std::fmt::Debug for OpusSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusSubscription")
            .field("id", &self.id)
            .field("target", &self.feed.target)
            .finish()
    }
}

impl Drop for OpusSubscription {
    fn drop(&mut self) {
        lock(&self.feed.inner).subscribers.remove(&self.id);
    }
}

impl OpusSubscription {
    /// The feed it reads.
    pub fn feed(&self) -> &Arc<OpusFeed> {
        &self.feed
    }

    /// Moves the packets ready for this subscriber (transcoding what the camera sent since
    /// anyone last asked) into `out`.
    ///
    /// # Errors
    /// Why the feed ended (the audio of every subscriber ends; the video goes on), after the
    /// packets it made before.
    pub fn drain(&mut self, out: &mut Vec<OpusPacket>) -> Result<(), String> {
        let mut s = lock(&self.feed.inner);
        OpusFeed::pump(&mut s);
        if let Some(q) = s.subscribers.get_mut(&self.id) {
            out.extend(q.drain(..));
        }
        match &s.ended {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use recorder::{DemoSource, LiveFeed, LiveFeedConfig, MediaUnit};

    fn target() -> OpusTarget {
        OpusTarget {
            sample_rate_hz: 16_000,
            packet_time_ms: 20,
            bitrate_bps: 24_000,
        }
    }

    fn feed_demo(feed: &LiveFeed, demo: &mut DemoSource, units: usize) {
        let mut n = 0;
        while n < units {
            let (_, u) = demo.next_unit();
            if matches!(u, MediaUnit::Audio(_)) {
                feed.push(&u);
                n += 1;
            }
        }
    }

    #[test]
    fn two_subscribers_get_the_same_packets_from_one_transcode() {
        let feed = LiveFeed::new(LiveFeedConfig::default());
        let mut demo = DemoSource::bundled().unwrap();
        feed.set_audio_config(demo.audio_config().cloned());
        let opus = Arc::new(OpusFeed::new(feed.audio_reader().unwrap(), target()).unwrap());
        let (mut a, mut b) = (opus.subscribe(), opus.subscribe());
        feed_demo(&feed, &mut demo, 30);
        let (mut pa, mut pb) = (Vec::new(), Vec::new());
        a.drain(&mut pa).unwrap();
        b.drain(&mut pb).unwrap();
        assert!(pa.len() > 40, "{} packets", pa.len());
        assert_eq!(pa, pb);
        // Each unit was decoded once, not once per subscriber.
        assert_eq!(opus.units(), (30, 0));
        // A late subscriber starts with what comes next.
        let mut c = opus.subscribe();
        let mut pc = Vec::new();
        c.drain(&mut pc).unwrap();
        assert!(pc.is_empty());
        feed_demo(&feed, &mut demo, 5);
        c.drain(&mut pc).unwrap();
        pa.clear();
        a.drain(&mut pa).unwrap();
        assert_eq!(pa, pc);
        // Dropped subscribers leave; the last one takes the reader with it.
        drop((a, b, c));
        assert_eq!(lock(&opus.inner).subscribers.len(), 0);
    }

    #[test]
    fn corrupt_runs_and_untranscodable_audio_end_the_feed_with_a_reason() {
        let feed = LiveFeed::new(LiveFeedConfig::default());
        let demo = DemoSource::bundled().unwrap();
        feed.set_audio_config(demo.audio_config().cloned());
        let opus = Arc::new(OpusFeed::new(feed.audio_reader().unwrap(), target()).unwrap());
        let mut sub = opus.subscribe();
        for i in 0..i64::from(MAX_CORRUPT_IN_A_ROW) {
            feed.push(&MediaUnit::Audio(recorder::input::AudioFrame {
                pts_samples: i * 1024,
                data: bytes::Bytes::from(match i % 3 {
                    0 => vec![0x5a; 600],
                    1 => vec![0x00],
                    _ => vec![0x13, 0x37, 0xff, 0x00, 0x42],
                }),
            }));
        }
        let err = sub.drain(&mut Vec::new()).unwrap_err();
        assert!(err.contains("corrupt"), "{err}");
        assert!(opus.is_ended());
        assert_eq!(opus.units(), (0, u64::from(MAX_CORRUPT_IN_A_ROW)));

        // AAC-ELD cannot be decoded here.
        let eld = LiveFeed::new(LiveFeedConfig::default());
        eld.set_audio_config(Some(
            recorder::aac::AudioSpecificConfig::parse(&[0xf8, 0xf0, 0x20, 0x00]).unwrap(),
        ));
        let opus = Arc::new(OpusFeed::new(eld.audio_reader().unwrap(), target()).unwrap());
        let mut sub = opus.subscribe();
        eld.push(&MediaUnit::Audio(recorder::input::AudioFrame {
            pts_samples: 0,
            data: bytes::Bytes::from_static(&[1, 2, 3]),
        }));
        let err = sub.drain(&mut Vec::new()).unwrap_err();
        assert!(err.contains("AAC-LC"), "{err}");
    }

    #[test]
    fn a_feed_nobody_drains_falls_behind_and_ends() {
        let feed = LiveFeed::new(LiveFeedConfig {
            audio_queue_units: 4,
            ..LiveFeedConfig::default()
        });
        let mut demo = DemoSource::bundled().unwrap();
        feed.set_audio_config(demo.audio_config().cloned());
        let opus = Arc::new(OpusFeed::new(feed.audio_reader().unwrap(), target()).unwrap());
        let mut sub = opus.subscribe();
        feed_demo(&feed, &mut demo, 5);
        let err = sub.drain(&mut Vec::new()).unwrap_err();
        assert!(err.contains("fell behind"), "{err}");
    }
}
