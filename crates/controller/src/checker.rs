//! Checks every invariant of an HKSV recording a hub relies on (protocol-notes §4.9, §6.1;
//! fixture-analysis "rules") and writes the clip.
//!
//! Stream level: init segment first as dataSequenceNumber 1 (`mediaInitialization`, `ftyp` +
//! `moov`), fragments numbered on from 2, chunks ≤ 262144 bytes numbered from 1 with
//! `isLastDataChunk` on the last, `dataTotalSize` on chunk 1 equal to the segment size,
//! `endOfStream` on last chunks only. Fragment level: exactly `moof` + `mdat`, the first video
//! sample flagged sync and its first VCL NAL an IDR (type 5), duration ≈ the fragment length
//! (reported; bounded loosely), `tfdt` continuous per track.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hds::SegmentKind;

use crate::hds_client::{Recording, RecordingEnd};

/// Largest chunk a hub accepts (§4.9; HAP-NodeJS `maxChunkSize`).
pub const MAX_CHUNK_BYTES: usize = 262_144;
/// Loose bounds on a fragment's video duration (4000 ms expected; the last may be shorter).
pub const FRAGMENT_MS_BOUNDS: (u64, u64) = (1000, 10_000);

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The invariant holds.
    Pass,
    /// Unusual but a hub would likely accept it.
    Warn,
    /// A hub would reject or mis-play the recording.
    Fail,
}

/// One checked invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Outcome.
    pub severity: Severity,
    /// What was checked.
    pub check: String,
    /// Details.
    pub detail: String,
}

/// Facts about one fragment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FragmentInfo {
    /// dataSequenceNumber.
    pub data_sequence_number: i64,
    /// Size, bytes.
    pub size_bytes: usize,
    /// Chunks it came in.
    pub chunks: usize,
    /// Video duration, ms.
    pub video_duration_ms: u64,
    /// Video samples.
    pub video_samples: u64,
    /// NAL type of the first VCL NAL of the first video sample.
    pub first_vcl_nal_type: Option<u8>,
}

/// The checker's verdict.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CheckReport {
    /// Every check, in order.
    pub findings: Vec<Finding>,
    /// Per-fragment facts.
    pub fragments: Vec<FragmentInfo>,
    /// Time from `dataSend/open` to the first chunk.
    pub open_to_first_chunk: Option<Duration>,
}

impl CheckReport {
    /// No finding is [`Severity::Fail`].
    pub fn passed(&self) -> bool {
        !self.findings.iter().any(|f| f.severity == Severity::Fail)
    }

    /// The failed findings.
    pub fn failures(&self) -> Vec<&Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Fail)
            .collect()
    }

    fn push(&mut self, severity: Severity, check: &str, detail: impl Into<String>) {
        self.findings.push(Finding {
            severity,
            check: check.into(),
            detail: detail.into(),
        });
    }

    fn expect(&mut self, ok: bool, check: &str, detail: impl Into<String>) {
        let sev = if ok { Severity::Pass } else { Severity::Fail };
        self.push(sev, check, detail);
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = self.open_to_first_chunk {
            writeln!(f, "open → first chunk: {:.1} ms", d.as_secs_f64() * 1000.0)?;
        }
        for fr in &self.fragments {
            writeln!(
                f,
                "fragment {}: {} bytes in {} chunk(s), video {} ms / {} samples, first VCL NAL type {:?}",
                fr.data_sequence_number,
                fr.size_bytes,
                fr.chunks,
                fr.video_duration_ms,
                fr.video_samples,
                fr.first_vcl_nal_type
            )?;
        }
        for x in &self.findings {
            let tag = match x.severity {
                Severity::Pass => "ok  ",
                Severity::Warn => "warn",
                Severity::Fail => "FAIL",
            };
            writeln!(f, "[{tag}] {}: {}", x.check, x.detail)?;
        }
        Ok(())
    }
}

// ---- a minimal ISO-BMFF walker (bounds-checked; input comes from the accessory) ----

struct Mp4Box<'a> {
    ty: [u8; 4],
    /// Offset of the box start within the walked buffer.
    start: usize,
    payload: &'a [u8],
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_be_bytes)
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_be_bytes)
}

fn boxes(data: &[u8]) -> Result<Vec<Mp4Box<'_>>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let size32 = be_u32(data, pos).ok_or("truncated box header")?;
        let ty: [u8; 4] = data
            .get(pos + 4..pos + 8)
            .and_then(|s| s.try_into().ok())
            .ok_or("truncated box type")?;
        let (size, header) = match size32 {
            0 => (data.len() - pos, 8),
            1 => (
                usize::try_from(be_u64(data, pos + 8).ok_or("truncated largesize")?)
                    .map_err(|_| "box too large")?,
                16,
            ),
            n => (n as usize, 8),
        };
        if size < header || pos.checked_add(size).is_none_or(|e| e > data.len()) {
            return Err(format!(
                "box '{}' at {pos} has bad size {size}",
                String::from_utf8_lossy(&ty)
            ));
        }
        out.push(Mp4Box {
            ty,
            start: pos,
            payload: data.get(pos + header..pos + size).unwrap_or_default(),
        });
        pos += size;
    }
    Ok(out)
}

fn child<'a>(data: &'a [u8], ty: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(data)
        .ok()?
        .into_iter()
        .find(|b| &b.ty == ty)
        .map(|b| b.payload)
}

fn children<'a>(data: &'a [u8], ty: &[u8; 4]) -> Vec<&'a [u8]> {
    boxes(data)
        .unwrap_or_default()
        .into_iter()
        .filter(|b| &b.ty == ty)
        .map(|b| b.payload)
        .collect()
}

#[derive(Debug, Clone, Copy, Default)]
struct TrackInfo {
    id: u32,
    timescale: u32,
    video: bool,
    trex_duration: u32,
    trex_flags: u32,
}

fn parse_init(init: &[u8]) -> Result<Vec<TrackInfo>, String> {
    let top = boxes(init)?;
    if top.first().map(|b| &b.ty) != Some(b"ftyp") {
        return Err("init segment does not start with ftyp".into());
    }
    let moov = top
        .iter()
        .find(|b| &b.ty == b"moov")
        .ok_or("init segment has no moov")?
        .payload;
    let mut tracks = Vec::new();
    for trak in children(moov, b"trak") {
        let tkhd = child(trak, b"tkhd").ok_or("trak without tkhd")?;
        let v1 = tkhd.first() == Some(&1);
        let id = be_u32(tkhd, if v1 { 20 } else { 12 }).ok_or("short tkhd")?;
        let mdia = child(trak, b"mdia").ok_or("trak without mdia")?;
        let mdhd = child(mdia, b"mdhd").ok_or("mdia without mdhd")?;
        let v1 = mdhd.first() == Some(&1);
        let timescale = be_u32(mdhd, if v1 { 20 } else { 12 }).ok_or("short mdhd")?;
        let hdlr = child(mdia, b"hdlr").ok_or("mdia without hdlr")?;
        let video = hdlr.get(8..12) == Some(b"vide");
        tracks.push(TrackInfo {
            id,
            timescale,
            video,
            ..TrackInfo::default()
        });
    }
    if let Some(mvex) = child(moov, b"mvex") {
        for trex in children(mvex, b"trex") {
            let id = be_u32(trex, 4).unwrap_or(0);
            if let Some(t) = tracks.iter_mut().find(|t| t.id == id) {
                t.trex_duration = be_u32(trex, 12).unwrap_or(0);
                t.trex_flags = be_u32(trex, 20).unwrap_or(0);
            }
        }
    }
    Ok(tracks)
}

#[derive(Debug, Default)]
struct TrafFacts {
    track_id: u32,
    tfdt: Option<u64>,
    duration: u64,
    samples: u64,
    first_flags: Option<u32>,
    /// (data offset from the moof start, size) of the first sample.
    first_sample: Option<(u64, u32)>,
}

fn parse_traf(traf: &[u8], tracks: &[TrackInfo]) -> Result<TrafFacts, String> {
    let tfhd = child(traf, b"tfhd").ok_or("traf without tfhd")?;
    let flags = be_u32(tfhd, 0).ok_or("short tfhd")? & 0x00FF_FFFF;
    let track_id = be_u32(tfhd, 4).ok_or("short tfhd")?;
    let trex = tracks
        .iter()
        .find(|t| t.id == track_id)
        .copied()
        .unwrap_or_default();
    let mut at = 8;
    if flags & 0x01 != 0 {
        at += 8; // base_data_offset: HKSV uses default-base-is-moof instead
    }
    if flags & 0x02 != 0 {
        at += 4;
    }
    let mut default_duration = trex.trex_duration;
    let mut default_flags = trex.trex_flags;
    if flags & 0x08 != 0 {
        default_duration = be_u32(tfhd, at).ok_or("short tfhd")?;
        at += 4;
    }
    let mut default_size = 0;
    if flags & 0x10 != 0 {
        default_size = be_u32(tfhd, at).ok_or("short tfhd")?;
        at += 4;
    }
    if flags & 0x20 != 0 {
        default_flags = be_u32(tfhd, at).ok_or("short tfhd")?;
    }
    let tfdt = child(traf, b"tfdt").and_then(|t| match t.first() {
        Some(1) => be_u64(t, 4),
        _ => be_u32(t, 4).map(u64::from),
    });
    let mut f = TrafFacts {
        track_id,
        tfdt,
        ..TrafFacts::default()
    };
    for trun in children(traf, b"trun") {
        let tf = be_u32(trun, 0).ok_or("short trun")? & 0x00FF_FFFF;
        let count = be_u32(trun, 4).ok_or("short trun")?;
        let mut p = 8;
        let mut data_offset = None;
        if tf & 0x01 != 0 {
            data_offset = Some(be_u32(trun, p).ok_or("short trun")?);
            p += 4;
        }
        let mut first_flags = None;
        if tf & 0x04 != 0 {
            first_flags = Some(be_u32(trun, p).ok_or("short trun")?);
            p += 4;
        }
        for i in 0..count {
            let mut dur = default_duration;
            let mut size = default_size;
            let mut sflags = if i == 0 {
                first_flags.unwrap_or(default_flags)
            } else {
                default_flags
            };
            if tf & 0x100 != 0 {
                dur = be_u32(trun, p).ok_or("short trun sample")?;
                p += 4;
            }
            if tf & 0x200 != 0 {
                size = be_u32(trun, p).ok_or("short trun sample")?;
                p += 4;
            }
            if tf & 0x400 != 0 {
                sflags = be_u32(trun, p).ok_or("short trun sample")?;
                p += 4;
            }
            if tf & 0x800 != 0 {
                p += 4;
            }
            if f.samples == 0 {
                f.first_flags = Some(sflags);
                f.first_sample = data_offset.map(|o| (u64::from(o), size));
            }
            f.samples += 1;
            f.duration += u64::from(dur);
        }
    }
    Ok(f)
}

/// The type of the first VCL NAL (1–5) in a length-prefixed (4-byte) sample.
fn first_vcl_nal_type(sample: &[u8]) -> Option<u8> {
    let framing = recorder::H264Framing::Avcc {
        length_size_bytes: 4,
    };
    recorder::h264::first_slice_type(sample, framing).map(|t| t.id())
}

/// Checks a received recording. `fragment_length_ms` is the selected fragment length.
pub fn check(rec: &Recording, fragment_length_ms: u64) -> CheckReport {
    let mut r = CheckReport {
        open_to_first_chunk: rec.open_to_first_chunk,
        ..CheckReport::default()
    };
    match &rec.end {
        RecordingEnd::Rejected { status, reason } => {
            r.push(
                Severity::Fail,
                "open",
                format!("dataSend/open refused: {status} {reason}"),
            );
            return r;
        }
        RecordingEnd::ConnectionLost(e) => {
            r.push(Severity::Fail, "end", format!("connection lost: {e}"))
        }
        RecordingEnd::Stalled => r.push(Severity::Fail, "end", "no chunk for too long (stalled)"),
        other => r.push(Severity::Pass, "end", format!("{other:?}")),
    }
    // Chunk level.
    let big = rec
        .chunks
        .iter()
        .filter(|c| c.len_bytes > MAX_CHUNK_BYTES)
        .count();
    r.expect(
        big == 0,
        "chunk size",
        format!("{big} chunk(s) over {MAX_CHUNK_BYTES} bytes"),
    );
    let mut chunk_errors = Vec::new();
    let mut expected_chunk = 1;
    for c in &rec.chunks {
        let m = &c.meta;
        if m.data_chunk_sequence_number != expected_chunk {
            chunk_errors.push(format!(
                "segment {} chunk {} (expected {expected_chunk})",
                m.data_sequence_number, m.data_chunk_sequence_number
            ));
        }
        if (m.data_chunk_sequence_number == 1) != m.data_total_size_bytes.is_some() {
            chunk_errors.push(format!(
                "segment {} chunk {}: dataTotalSize must be on chunk 1 only",
                m.data_sequence_number, m.data_chunk_sequence_number
            ));
        }
        if m.end_of_stream.is_some() != m.is_last_data_chunk {
            chunk_errors.push(format!(
                "segment {} chunk {}: endOfStream must be present exactly on last chunks",
                m.data_sequence_number, m.data_chunk_sequence_number
            ));
        }
        expected_chunk = if m.is_last_data_chunk {
            1
        } else {
            expected_chunk + 1
        };
    }
    r.expect(
        chunk_errors.is_empty(),
        "chunk numbering",
        if chunk_errors.is_empty() {
            format!("{} chunks in order", rec.chunks.len())
        } else {
            chunk_errors.join("; ")
        },
    );
    for s in &rec.segments {
        let total = rec
            .chunks
            .iter()
            .find(|c| {
                c.meta.data_sequence_number == s.data_sequence_number
                    && c.meta.data_chunk_sequence_number == 1
            })
            .and_then(|c| c.meta.data_total_size_bytes);
        if total != Some(s.data.len() as u64) {
            r.push(
                Severity::Fail,
                "dataTotalSize",
                format!(
                    "segment {}: {total:?} announced, {} received",
                    s.data_sequence_number,
                    s.data.len()
                ),
            );
        }
    }
    // Segment order.
    let Some(init) = rec.segments.first() else {
        r.push(Severity::Fail, "init segment", "no segment received");
        return r;
    };
    r.expect(
        init.kind == SegmentKind::MediaInitialization && init.data_sequence_number == 1,
        "init segment",
        format!(
            "first segment: {:?} #{}",
            init.kind, init.data_sequence_number
        ),
    );
    let seq_ok = rec
        .segments
        .iter()
        .enumerate()
        .all(|(i, s)| s.data_sequence_number == i as i64 + 1);
    r.expect(seq_ok, "dataSequenceNumber", "1, 2, 3, … without gaps");
    let kinds_ok = rec
        .segments
        .iter()
        .skip(1)
        .all(|s| s.kind == SegmentKind::MediaFragment);
    r.expect(
        kinds_ok,
        "segment types",
        "mediaFragment after the init segment",
    );
    let eos: Vec<usize> = rec
        .segments
        .iter()
        .enumerate()
        .filter(|(_, s)| s.end_of_stream)
        .map(|(i, _)| i)
        .collect();
    r.expect(
        eos.is_empty() || eos == [rec.segments.len() - 1],
        "endOfStream",
        format!("on segment index {eos:?} of {}", rec.segments.len()),
    );
    let tracks = match parse_init(&init.data) {
        Ok(t) => {
            r.push(
                Severity::Pass,
                "init boxes",
                format!("ftyp + moov, {} track(s)", t.len()),
            );
            t
        }
        Err(e) => {
            r.push(Severity::Fail, "init boxes", e);
            return r;
        }
    };
    let Some(video) = tracks.iter().find(|t| t.video).copied() else {
        r.push(Severity::Fail, "init boxes", "no video track");
        return r;
    };
    let fragments: Vec<_> = rec.segments.iter().skip(1).collect();
    r.expect(
        !fragments.is_empty(),
        "fragments",
        format!("{} fragment(s)", fragments.len()),
    );
    let mut next_tfdt: Vec<(u32, u64)> = Vec::new();
    for (i, s) in fragments.iter().enumerate() {
        let seq = s.data_sequence_number;
        let last = i + 1 == fragments.len();
        let mut info = FragmentInfo {
            data_sequence_number: seq,
            size_bytes: s.data.len(),
            chunks: rec
                .chunks
                .iter()
                .filter(|c| c.meta.data_sequence_number == seq)
                .count(),
            ..FragmentInfo::default()
        };
        let top = match boxes(&s.data) {
            Ok(b) => b,
            Err(e) => {
                r.push(Severity::Fail, "fragment boxes", format!("#{seq}: {e}"));
                r.fragments.push(info);
                continue;
            }
        };
        let names: Vec<String> = top
            .iter()
            .map(|b| String::from_utf8_lossy(&b.ty).into_owned())
            .collect();
        if names != ["moof", "mdat"] {
            r.push(
                Severity::Fail,
                "fragment boxes",
                format!("#{seq}: {names:?}, want [moof, mdat]"),
            );
        }
        let Some(moof) = top.iter().find(|b| &b.ty == b"moof") else {
            r.fragments.push(info);
            continue;
        };
        let moof_start = moof.start;
        for traf in children(moof.payload, b"traf") {
            let f = match parse_traf(traf, &tracks) {
                Ok(f) => f,
                Err(e) => {
                    r.push(Severity::Fail, "traf", format!("#{seq}: {e}"));
                    continue;
                }
            };
            // tfdt continuity (fixture rule 13).
            let want = next_tfdt
                .iter()
                .find(|(t, _)| *t == f.track_id)
                .map(|(_, w)| *w);
            if let (Some(tfdt), Some(want)) = (f.tfdt, want)
                && tfdt != want
            {
                r.push(
                    Severity::Fail,
                    "tfdt continuity",
                    format!(
                        "#{seq} track {}: tfdt {tfdt}, previous fragment ended at {want}",
                        f.track_id
                    ),
                );
            }
            next_tfdt.retain(|(t, _)| *t != f.track_id);
            if let Some(tfdt) = f.tfdt {
                next_tfdt.push((f.track_id, tfdt + f.duration));
            } else {
                r.push(
                    Severity::Fail,
                    "tfdt",
                    format!("#{seq} track {}: no tfdt", f.track_id),
                );
            }
            if f.track_id != video.id {
                continue;
            }
            info.video_samples = f.samples;
            info.video_duration_ms = f.duration * 1000 / u64::from(video.timescale.max(1));
            let sync = f.first_flags.is_some_and(|fl| fl & 0x0001_0000 == 0);
            if !sync {
                r.push(
                    Severity::Fail,
                    "IDR-led",
                    format!(
                        "#{seq}: first video sample not flagged sync ({:?})",
                        f.first_flags.map(|x| format!("{x:#010x}"))
                    ),
                );
            }
            if let Some((off, size)) = f.first_sample {
                let start = (moof_start as u64).saturating_add(off);
                let sample = usize::try_from(start)
                    .ok()
                    .and_then(|st| s.data.get(st..st.saturating_add(size as usize)));
                info.first_vcl_nal_type = sample.and_then(first_vcl_nal_type);
            }
            if info.first_vcl_nal_type != Some(5) {
                r.push(
                    Severity::Fail,
                    "IDR-led",
                    format!(
                        "#{seq}: first VCL NAL type {:?}, want 5 (IDR)",
                        info.first_vcl_nal_type
                    ),
                );
            }
            let (lo, hi) = FRAGMENT_MS_BOUNDS;
            let d = info.video_duration_ms;
            if !last && !(lo..=hi).contains(&d) {
                r.push(
                    Severity::Fail,
                    "fragment duration",
                    format!("#{seq}: {d} ms, outside {lo}–{hi} ms"),
                );
            } else if !last && d.abs_diff(fragment_length_ms) > fragment_length_ms / 4 {
                r.push(
                    Severity::Warn,
                    "fragment duration",
                    format!("#{seq}: {d} ms, selected {fragment_length_ms} ms"),
                );
            }
        }
        r.fragments.push(info);
    }
    let durations: Vec<u64> = r.fragments.iter().map(|f| f.video_duration_ms).collect();
    r.push(
        Severity::Pass,
        "fragment durations (ms)",
        format!("{durations:?}"),
    );
    r
}

/// Writes `clip.mp4` (init + fragments) and one file per segment into `dir`; returns the
/// clip's path.
///
/// # Errors
/// File-system errors.
pub fn write_clip(rec: &Recording, dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut clip = Vec::new();
    for s in &rec.segments {
        clip.extend_from_slice(&s.data);
        let name = match s.kind {
            SegmentKind::MediaInitialization => {
                format!("segment-{:03}-init.mp4", s.data_sequence_number)
            }
            _ => format!("segment-{:03}.m4s", s.data_sequence_number),
        };
        std::fs::write(dir.join(name), &s.data)?;
    }
    let path = dir.join("clip.mp4");
    std::fs::write(&path, clip)?;
    Ok(path)
}
