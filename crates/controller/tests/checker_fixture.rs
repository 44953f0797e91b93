//! The recording checker against the real HKSV recording in the shared fixtures (a camera we
//! did not write): it passes, and each injected defect is caught.
#![allow(clippy::indexing_slicing)] // tests: a panic is a failed check

use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use controller::checker::{self, Severity};
use controller::hds_client::{ChunkInfo, Recording, RecordingEnd, Segment};
use hds::SegmentKind;
use hds::message::ChunkMeta;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/hksv-example")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (shared fixtures missing)", p.display()))
}

/// The fixture's segments as a hub receives them, chunked at 262144 bytes.
fn recording(segments: Vec<Vec<u8>>) -> Recording {
    let mut chunks = Vec::new();
    let mut segs = Vec::new();
    let n = segments.len();
    for (i, data) in segments.into_iter().enumerate() {
        let seq = i as i64 + 1;
        let kind = if seq == 1 {
            SegmentKind::MediaInitialization
        } else {
            SegmentKind::MediaFragment
        };
        let parts: Vec<&[u8]> = data.chunks(262_144).collect();
        for (j, p) in parts.iter().enumerate() {
            let last = j + 1 == parts.len();
            chunks.push(ChunkInfo {
                meta: ChunkMeta {
                    stream_id: 1,
                    kind,
                    data_sequence_number: seq,
                    data_chunk_sequence_number: j as i64 + 1,
                    is_last_data_chunk: last,
                    data_total_size_bytes: (j == 0).then_some(data.len() as u64),
                    end_of_stream: last.then_some(i + 1 == n),
                },
                len_bytes: p.len(),
                at: Instant::now(),
            });
        }
        segs.push(Segment {
            kind,
            data_sequence_number: seq,
            data: Bytes::from(data),
            end_of_stream: i + 1 == n,
        });
    }
    Recording {
        stream_id: 1,
        open_to_first_chunk: None,
        chunks,
        segments: segs,
        end: RecordingEnd::EndOfStream,
    }
}

fn real() -> Vec<Vec<u8>> {
    [
        "mediaInitialization.mp4",
        "sequence2.mp4",
        "sequence3.mp4",
        "sequence4.mp4",
    ]
    .iter()
    .map(|n| fixture(&format!("fragments/{n}")))
    .collect()
}

#[test]
fn real_recording_passes_every_invariant() {
    let rec = recording(real());
    assert!(
        rec.chunks.len() > rec.segments.len(),
        "fixture needs multi-chunk segments"
    );
    let report = checker::check(&rec, 4000);
    assert!(report.passed(), "{report}");
    let d: Vec<u64> = report
        .fragments
        .iter()
        .map(|f| f.video_duration_ms)
        .collect();
    assert_eq!(d, vec![4004, 4000, 3999], "fixture-analysis table");
    assert!(
        report
            .fragments
            .iter()
            .all(|f| f.first_vcl_nal_type == Some(5))
    );

    let dir = tempfile::tempdir().expect("tmp");
    let clip = checker::write_clip(&rec, dir.path()).expect("write");
    let want: usize = rec.segments.iter().map(|s| s.data.len()).sum();
    assert_eq!(std::fs::metadata(&clip).expect("clip").len() as usize, want);
    assert_eq!(
        std::fs::read(&clip).expect("clip"),
        fixture("fully-assembled.mp4")
    );
}

fn failed_checks(rec: &Recording) -> Vec<String> {
    checker::check(rec, 4000)
        .findings
        .into_iter()
        .filter(|f| f.severity == Severity::Fail)
        .map(|f| f.check)
        .collect()
}

#[test]
fn each_defect_is_caught() {
    // A missing fragment: sequence numbers and tfdt continuity break.
    let mut segs = real();
    segs.remove(2);
    let mut rec = recording(segs);
    rec.segments[2].data_sequence_number = 4;
    let f = failed_checks(&rec);
    assert!(f.contains(&"dataSequenceNumber".to_owned()), "{f:?}");
    assert!(f.contains(&"tfdt continuity".to_owned()), "{f:?}");

    // The first sample of a fragment is not an IDR (NAL type patched to 1).
    let mut segs = real();
    let moof_size = u32::from_be_bytes(segs[1][0..4].try_into().expect("4")) as usize;
    let nal = moof_size + 8 + 4;
    assert_eq!(
        segs[1][nal] & 0x1F,
        5,
        "fixture: first sample is one IDR NAL"
    );
    segs[1][nal] = (segs[1][nal] & 0xE0) | 1;
    assert!(failed_checks(&recording(segs)).contains(&"IDR-led".to_owned()));

    // Init segment missing: a fragment sent as dataSequenceNumber 1 has no ftyp/moov.
    let mut segs = real();
    segs.remove(0);
    let f = failed_checks(&recording(segs));
    assert!(f.contains(&"init boxes".to_owned()), "{f:?}");
    // …and labelled as a fragment it also fails the order check.
    let mut rec = recording(real());
    rec.segments[0].kind = SegmentKind::MediaFragment;
    assert!(failed_checks(&rec).contains(&"init segment".to_owned()));

    // An oversized chunk, and dataTotalSize that lies.
    let mut rec = recording(real());
    rec.chunks[1].len_bytes = 262_145;
    rec.chunks[1].meta.data_total_size_bytes = Some(1);
    let f = failed_checks(&rec);
    assert!(f.contains(&"chunk size".to_owned()), "{f:?}");
    assert!(f.contains(&"dataTotalSize".to_owned()), "{f:?}");

    // Truncated box: an error, not a panic.
    let mut segs = real();
    segs[2].truncate(100);
    let f = failed_checks(&recording(segs));
    assert!(f.contains(&"fragment boxes".to_owned()), "{f:?}");

    // Refused open.
    let mut rec = recording(real());
    rec.end = RecordingEnd::Rejected {
        status: hds::HdsStatus::PROTOCOL_SPECIFIC_ERROR,
        reason: hds::Reason::NOT_ALLOWED,
    };
    assert!(!checker::check(&rec, 4000).passed());
}
