//! The prebuffer ring: time and byte bounds, many readers sharing payloads, per-reader
//! rebasing, lagging readers dropped, init changes, and waker notification.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, missing_docs)]

mod common;
use common::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use recorder::fmp4::{SampleInfo, TrackRun};
use recorder::{
    Fragment, Fragmenter, FragmenterConfig, FragmenterEvent, InitSegment, PrebufferConfig,
    PrebufferRing, ReaderError,
};

/// A 4 s fragment (120 frames at 30 fps) starting at `index × 4 s`, payload `bytes` long.
fn fragment(index: u64, bytes: usize) -> Fragment {
    let n = 120u32;
    let size = (bytes / n as usize) as u32;
    let samples = (0..n)
        .map(|i| SampleInfo {
            duration: 3000,
            size_bytes: size,
            composition_offset: 0,
            is_sync: i == 0,
        })
        .collect();
    let audio = (0..188)
        .map(|_| SampleInfo {
            duration: 1024,
            size_bytes: 0,
            composition_offset: 0,
            is_sync: true,
        })
        .collect();
    Fragment {
        video: TrackRun {
            base_decode_time: index * 360_000,
            samples,
        },
        audio: Some(TrackRun {
            base_decode_time: index * 192_512,
            samples: audio,
        }),
        payload: Bytes::from(vec![index as u8; size as usize * n as usize]).into(),
    }
}

/// A real init segment (from a tiny synthetic stream).
fn init() -> InitSegment {
    let mut f = Fragmenter::new(FragmenterConfig {
        record_audio: false,
        ..Default::default()
    })
    .unwrap();
    let sps = make_sps(80, 45);
    for n in 0..200 {
        let idr = n % 30 == 0;
        f.push_video(video(
            n * 3000,
            annexb_au(idr.then_some(&sps[..]), idr, 10, 1),
        ))
        .unwrap();
    }
    std::iter::from_fn(|| f.poll_event())
        .find_map(|e| match e {
            FragmenterEvent::Init(i) => Some(i),
            FragmenterEvent::Fragment(_) => None,
        })
        .unwrap()
}

#[test]
fn keeps_at_least_the_prebuffer_and_prunes_older() {
    let ring = PrebufferRing::new(PrebufferConfig::default()).unwrap();
    ring.push_fragment(fragment(0, 1000)); // ignored: no init yet
    assert_eq!(ring.bytes_held(), 0);
    ring.push_init(init());
    for i in 0..10 {
        ring.push_fragment(fragment(i, 250_000));
        let held = ring.buffered();
        assert!(held >= Duration::from_secs(4 * (i + 1).min(2)), "{held:?}");
        assert!(held <= Duration::from_secs(8), "{held:?}");
    }
    assert!(
        ring.bytes_held() >= 500_000 && ring.bytes_held() < 520_000,
        "{}",
        ring.bytes_held()
    );
    // 4 s prebuffer → starts with the newest fragment; 8 s → the two newest.
    let mut r4 = ring.reader(Duration::from_secs(4)).unwrap();
    let mut r8 = ring.reader(Duration::from_secs(8)).unwrap();
    let f4 = r4.try_next().unwrap().unwrap();
    assert_eq!(r4.try_next().unwrap().map(|f| f.sequence_number), None);
    let f8a = r8.try_next().unwrap().unwrap();
    let f8b = r8.try_next().unwrap().unwrap();
    assert_eq!(
        (f4.sequence_number, f8a.sequence_number, f8b.sequence_number),
        (1, 1, 2)
    );
    // Both readers' first fragment is rebased to tfdt 0 on both tracks.
    for f in [&f4, &f8a] {
        let s = parse_fragment(&f.to_bytes());
        assert_eq!((s.trafs[0].tfdt, s.trafs[1].tfdt), (0, 0));
    }
    let s = parse_fragment(&f8b.to_bytes());
    assert_eq!((s.trafs[0].tfdt, s.trafs[1].tfdt), (360_000, 192_512));
    // The same stored fragment seen by two readers: same payload, different moof timing.
    let (a, b) = (f4.to_bytes(), f8b.to_bytes());
    assert_eq!(a.len(), b.len());
    assert_ne!(a, b);
    let moof = parse_fragment(&a).moof_len;
    assert_eq!(a[moof..], b[moof..]);
}

#[test]
fn fragments_a_frame_short_of_4_s_keep_8_s_not_12() {
    // The demo clip's fragments are 3999 ms: two of them are 7998 ms, "8 s" for the ring.
    let ring = PrebufferRing::new(PrebufferConfig::default()).unwrap();
    ring.push_init(init());
    for i in 0..6u64 {
        let mut f = fragment(i, 120_000);
        let last = f.video.samples.len() - 1;
        f.video.samples[last].duration = 3000 - 90;
        f.video.base_decode_time = i * (360_000 - 90);
        ring.push_fragment(f);
    }
    assert_eq!(ring.buffered(), Duration::from_millis(7998));
    // An 8 s prebuffer starts two fragments back, a 4 s one at the newest.
    let mut r8 = ring.reader(Duration::from_secs(8)).unwrap();
    let mut r4 = ring.reader(Duration::from_secs(4)).unwrap();
    let count = |r: &mut recorder::RingReader| std::iter::from_fn(|| r.try_next().unwrap()).count();
    assert_eq!((count(&mut r8), count(&mut r4)), (2, 1));
    // Fragments well short of the length still count as what they are: 3.5 s ones keep 3.
    let ring = PrebufferRing::new(PrebufferConfig::default()).unwrap();
    ring.push_init(init());
    for i in 0..6u64 {
        let mut f = fragment(i, 120_000);
        for s in &mut f.video.samples {
            s.duration = 2625;
        }
        f.video.base_decode_time = i * 315_000;
        ring.push_fragment(f);
    }
    assert_eq!(ring.buffered(), Duration::from_millis(10_500));
}

#[test]
fn byte_bound_wins_over_time_but_keeps_one_fragment() {
    let config = PrebufferConfig {
        max_bytes: 600_000,
        ..Default::default()
    };
    let ring = PrebufferRing::new(config).unwrap();
    ring.push_init(init());
    for i in 0..5 {
        ring.push_fragment(fragment(i, 400_000));
        assert!(ring.bytes_held() <= 600_000 || ring.buffered() == Duration::from_secs(4));
    }
    assert_eq!(ring.buffered(), Duration::from_secs(4));
    assert!(ring.peak_bytes_held() <= 900_000);
}

#[test]
fn live_fragments_reach_every_reader_and_laggards_are_dropped() {
    let config = PrebufferConfig {
        reader_queue_len: 3,
        ..Default::default()
    };
    let ring = PrebufferRing::new(config).unwrap();
    ring.push_init(init());
    ring.push_fragment(fragment(0, 1200));
    let mut fast = ring.reader(Duration::from_secs(4)).unwrap();
    let mut slow = ring.reader(Duration::from_secs(4)).unwrap();
    assert_eq!(ring.reader_count(), 2);
    let mut seen = 0;
    for i in 1..=5 {
        ring.push_fragment(fragment(i, 1200));
        while let Some(f) = fast.try_next().unwrap() {
            assert_eq!(f.sequence_number, seen + 1);
            seen += 1;
        }
    }
    assert_eq!(seen, 6);
    // slow had 1 backlog + 3 live allowed; the 5th live fragment overflowed it.
    assert_eq!(
        slow.try_next().unwrap_err(),
        ReaderError::Lagged { queue_len: 4 }
    );
    drop(slow);
    assert_eq!(ring.reader_count(), 1);
}

#[test]
fn init_change_and_close_end_readers_after_their_queue() {
    let ring = PrebufferRing::new(PrebufferConfig::default()).unwrap();
    ring.push_init(init());
    ring.push_fragment(fragment(0, 1200));
    let mut r = ring.reader(Duration::from_secs(8)).unwrap();
    ring.push_init(init());
    assert!(
        r.try_next().unwrap().is_some(),
        "queued fragment still delivered"
    );
    assert_eq!(r.try_next().unwrap_err(), ReaderError::InitChanged);
    assert_eq!(ring.buffered(), Duration::ZERO, "old generation dropped");
    ring.push_fragment(fragment(0, 1200));
    let mut r2 = ring.reader(Duration::from_secs(8)).unwrap();
    ring.close();
    assert!(r2.try_next().unwrap().is_some());
    assert_eq!(r2.try_next().unwrap_err(), ReaderError::Closed);
    assert!(ring.reader(Duration::from_secs(4)).is_none());
}

struct CountingWaker(AtomicUsize);
impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn poll_next_registers_a_waker_that_a_new_fragment_wakes() {
    let ring = PrebufferRing::new(PrebufferConfig::default()).unwrap();
    ring.push_init(init());
    let mut r = ring.reader(Duration::from_secs(4)).unwrap();
    let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let waker = Waker::from(Arc::clone(&counter));
    let mut cx = Context::from_waker(&waker);
    assert!(r.poll_next(&mut cx).is_pending());
    assert_eq!(counter.0.load(Ordering::SeqCst), 0);
    ring.push_fragment(fragment(0, 1200));
    assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    match r.poll_next(&mut cx) {
        Poll::Ready(Ok(f)) => assert_eq!(f.sequence_number, 1),
        other => panic!("{other:?}"),
    }
}

#[test]
fn chunks_share_the_payload_and_rejoin_exactly() {
    let ring = PrebufferRing::new(PrebufferConfig::default()).unwrap();
    ring.push_init(init());
    ring.push_fragment(fragment(0, 600_000));
    let f = ring
        .reader(Duration::from_secs(4))
        .unwrap()
        .try_next()
        .unwrap()
        .unwrap();
    let chunks = f.chunks(262_144);
    assert_eq!(
        chunks.iter().map(Bytes::len).collect::<Vec<_>>(),
        [262_144, 262_144, f.len() - 524_288]
    );
    assert_eq!(chunks.concat(), f.to_bytes().to_vec());
}
