//! A small, bounded MP4 demuxer (ISO/IEC 14496-12) for plain and fragmented files: enough to
//! replay the bundled demo clip and test recordings as access units. Every length is checked
//! against its enclosing box; the sample count is bounded by the file size. Never panics.

use std::ops::Range;

use bytes::Bytes;

use crate::Error;
use crate::aac::AudioSpecificConfig;
use crate::input::{AudioFrame, H264Framing, MediaUnit, ParameterSets, VideoAccessUnit};

/// What a track carries.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackKind {
    /// H.264 (`avc1`/`avc3` with `avcC`).
    Video {
        /// The first SPS and PPS of `avcC`.
        parameter_sets: ParameterSets,
        /// NAL length prefix size, bytes (`lengthSizeMinusOne + 1`).
        length_size_bytes: u8,
    },
    /// AAC (`mp4a` with `esds`).
    Audio {
        /// From the `esds` DecoderSpecificInfo.
        asc: AudioSpecificConfig,
    },
    /// Anything else (kept so track indices stay stable; samples are still listed).
    Other,
}

/// One sample's place and timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mp4Sample {
    /// Decode time in the track's timescale.
    pub dts: i64,
    /// Composition offset in the track's timescale.
    pub composition_offset: i32,
    /// Duration in the track's timescale.
    pub duration: u32,
    /// A sync sample.
    pub is_sync: bool,
    /// Byte range in the file.
    pub range: Range<usize>,
}

/// One track.
#[derive(Debug, Clone, PartialEq)]
pub struct Mp4Track {
    /// `track_ID`.
    pub track_id: u32,
    /// `mdhd` timescale, ticks per second.
    pub timescale: u32,
    /// What it carries.
    pub kind: TrackKind,
    /// Samples in decode order.
    pub samples: Vec<Mp4Sample>,
}

/// A demuxed file: the bytes and the tracks' sample tables pointing into them.
#[derive(Debug, Clone)]
pub struct Mp4File {
    /// The whole file.
    pub data: Bytes,
    /// Tracks in `moov` order.
    pub tracks: Vec<Mp4Track>,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::MalformedMp4(msg.into())
}

/// Iterates the boxes in `data`: `(fourcc, body, body offset within data)`.
struct Boxes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Boxes<'a> {
    type Item = Result<([u8; 4], &'a [u8], usize), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.data.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        let res = (|| {
            let Some(&[s0, s1, s2, s3, f0, f1, f2, f3]) = rest.get(..8) else {
                return Err(bad("truncated box header"));
            };
            let size32 = u32::from_be_bytes([s0, s1, s2, s3]);
            let fourcc = [f0, f1, f2, f3];
            let (size, header_len) = match size32 {
                0 => (rest.len(), 8),
                1 => {
                    let l = rest.get(8..16).ok_or_else(|| bad("truncated largesize"))?;
                    let mut b = [0u8; 8];
                    b.copy_from_slice(l);
                    (
                        usize::try_from(u64::from_be_bytes(b)).map_err(|_| bad("box too large"))?,
                        16,
                    )
                }
                n => (n as usize, 8),
            };
            if size < header_len || size > rest.len() {
                return Err(bad(format!(
                    "box {} size {size} out of range",
                    String::from_utf8_lossy(&fourcc)
                )));
            }
            let body = rest.get(header_len..size).ok_or_else(|| bad("box body"))?;
            let body_off = self.pos + header_len;
            self.pos += size;
            Ok((fourcc, body, body_off))
        })();
        if res.is_err() {
            self.pos = self.data.len();
        }
        Some(res)
    }
}

fn boxes(data: &[u8]) -> Boxes<'_> {
    Boxes { data, pos: 0 }
}

/// The body of the first child box `fourcc`, with its offset relative to `data`.
fn find<'a>(data: &'a [u8], fourcc: &[u8; 4]) -> Result<Option<(&'a [u8], usize)>, Error> {
    for b in boxes(data) {
        let (f, body, off) = b?;
        if &f == fourcc {
            return Ok(Some((body, off)));
        }
    }
    Ok(None)
}

fn need<'a>(data: &'a [u8], fourcc: &[u8; 4]) -> Result<&'a [u8], Error> {
    find(data, fourcc)?
        .map(|(b, _)| b)
        .ok_or_else(|| bad(format!("missing {}", String::from_utf8_lossy(fourcc))))
}

/// A bounded big-endian cursor.
struct Cur<'a> {
    d: &'a [u8],
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let (a, b) = self
            .d
            .split_at_checked(n)
            .ok_or_else(|| bad("truncated field"))?;
        self.d = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }
    fn u16(&mut self) -> Result<u16, Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ]))
    }
    fn u32(&mut self) -> Result<u32, Error> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, Error> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
}

/// Track defaults from `trex`.
#[derive(Clone, Copy, Default)]
struct Trex {
    duration: u32,
    size: u32,
    flags: u32,
}

/// Bound on samples per file: a sample is at least one byte, and at most 4 M samples.
fn max_samples(file_len: usize) -> usize {
    file_len.min(4 << 20)
}

/// Demuxes `data`.
///
/// # Errors
/// [`Error::MalformedMp4`] for any structural problem: no `moov`, a box running past its
/// parent, a table whose entries point outside the file, too many samples.
pub fn demux(data: Bytes) -> Result<Mp4File, Error> {
    let file = &data[..];
    let mut moov = None;
    for b in boxes(file) {
        let (f, body, off) = b?;
        if &f == b"moov" {
            moov = Some((body, off));
        }
    }
    let (moov, _) = moov.ok_or_else(|| bad("no moov"))?;
    let mut tracks = Vec::new();
    let mut trex: Vec<(u32, Trex)> = Vec::new();
    if let Some((mvex, _)) = find(moov, b"mvex")? {
        for b in boxes(mvex) {
            let (f, body, _) = b?;
            if &f == b"trex" {
                let mut c = Cur { d: body };
                c.take(4)?;
                let id = c.u32()?;
                c.u32()?;
                trex.push((
                    id,
                    Trex {
                        duration: c.u32()?,
                        size: c.u32()?,
                        flags: c.u32()?,
                    },
                ));
            }
        }
    }
    let mut total = 0usize;
    for b in boxes(moov) {
        let (f, body, _) = b?;
        if &f == b"trak" {
            let t = parse_trak(body, file.len(), &mut total)?;
            tracks.push(t);
        }
    }
    // Fragments.
    for b in boxes(file) {
        let (f, body, off) = b?;
        if &f == b"moof" {
            parse_moof(body, off - 8, &trex, &mut tracks, file.len(), &mut total)?;
        }
    }
    Ok(Mp4File { data, tracks })
}

/// The tracks of a regular (moov-based) MP4 from its `moov` body alone, so a file can be read
/// sample by sample without loading it: sample ranges are absolute offsets, checked against
/// `file_len`. Fragments (`moof`) are not seen; see [`moov_is_fragmented`].
///
/// # Errors
/// [`Error::MalformedMp4`] as for [`demux`], and for a file too large to address.
pub fn index(moov: &[u8], file_len: u64) -> Result<Vec<Mp4Track>, Error> {
    let file_len = usize::try_from(file_len).map_err(|_| bad("file too large to address"))?;
    let mut total = 0usize;
    let mut tracks = Vec::new();
    for b in boxes(moov) {
        let (f, body, _) = b?;
        if &f == b"trak" {
            tracks.push(parse_trak(body, file_len, &mut total)?);
        }
    }
    Ok(tracks)
}

/// Whether a `moov` body announces fragments (`mvex`): its samples then live in `moof`s.
pub fn moov_is_fragmented(moov: &[u8]) -> bool {
    matches!(find(moov, b"mvex"), Ok(Some(_)))
}

fn parse_trak(trak: &[u8], file_len: usize, total: &mut usize) -> Result<Mp4Track, Error> {
    let tkhd = need(trak, b"tkhd")?;
    let mut c = Cur { d: tkhd };
    let version = c.u8()?;
    c.take(3)?;
    c.take(if version == 1 { 16 } else { 8 })?;
    let track_id = c.u32()?;
    let mdia = need(trak, b"mdia")?;
    let mut c = Cur {
        d: need(mdia, b"mdhd")?,
    };
    let version = c.u8()?;
    c.take(3)?;
    c.take(if version == 1 { 16 } else { 8 })?;
    let timescale = c.u32()?;
    if timescale == 0 {
        return Err(bad("zero timescale"));
    }
    let stbl = need(need(mdia, b"minf")?, b"stbl")?;
    let kind = parse_stsd(need(stbl, b"stsd")?)?;
    let samples = parse_stbl(stbl, file_len, total)?;
    Ok(Mp4Track {
        track_id,
        timescale,
        kind,
        samples,
    })
}

fn parse_stsd(stsd: &[u8]) -> Result<TrackKind, Error> {
    let mut c = Cur { d: stsd };
    c.take(8)?; // version/flags, entry_count
    let Some(entry) = boxes(c.d).next() else {
        return Ok(TrackKind::Other);
    };
    let (f, body, _) = entry?;
    match &f {
        b"avc1" | b"avc3" => {
            // VisualSampleEntry fields (§12.1.3) are 78 bytes before the child boxes.
            let children = body.get(78..).ok_or_else(|| bad("short avc1"))?;
            let avcc = need(children, b"avcC")?;
            let mut c = Cur { d: avcc };
            c.take(4)?;
            let length_size_bytes = (c.u8()? & 3) + 1;
            let n_sps = c.u8()? & 0x1f;
            let mut sps = None;
            for _ in 0..n_sps {
                let len = usize::from(c.u16()?);
                let s = c.take(len)?;
                sps.get_or_insert(Bytes::copy_from_slice(s));
            }
            let n_pps = c.u8()?;
            let mut pps = None;
            for _ in 0..n_pps {
                let len = usize::from(c.u16()?);
                let p = c.take(len)?;
                pps.get_or_insert(Bytes::copy_from_slice(p));
            }
            let (Some(sps), Some(pps)) = (sps, pps) else {
                return Err(bad("avcC without SPS/PPS"));
            };
            Ok(TrackKind::Video {
                parameter_sets: ParameterSets { sps, pps },
                length_size_bytes,
            })
        }
        b"mp4a" => {
            // AudioSampleEntry fields (§12.2.3) are 28 bytes before the child boxes.
            let children = body.get(28..).ok_or_else(|| bad("short mp4a"))?;
            let esds = need(children, b"esds")?;
            let asc = parse_esds(esds.get(4..).ok_or_else(|| bad("short esds"))?)?;
            Ok(TrackKind::Audio { asc })
        }
        _ => Ok(TrackKind::Other),
    }
}

/// Reads one descriptor header (ISO/IEC 14496-1 §8.3.3: tag, then 1–4 size bytes).
fn descriptor<'a>(c: &mut Cur<'a>) -> Result<(u8, &'a [u8]), Error> {
    let tag = c.u8()?;
    let mut len = 0usize;
    for _ in 0..4 {
        let b = c.u8()?;
        len = (len << 7) | usize::from(b & 0x7f);
        if b & 0x80 == 0 {
            break;
        }
    }
    Ok((tag, c.take(len)?))
}

fn parse_esds(d: &[u8]) -> Result<AudioSpecificConfig, Error> {
    let mut c = Cur { d };
    let (tag, es) = descriptor(&mut c)?;
    if tag != 3 {
        return Err(bad("esds without ES_Descriptor"));
    }
    let mut c = Cur { d: es };
    c.u16()?; // ES_ID
    let flags = c.u8()?;
    if flags & 0x80 != 0 {
        c.u16()?;
    }
    if flags & 0x40 != 0 {
        let n = usize::from(c.u8()?);
        c.take(n)?;
    }
    if flags & 0x20 != 0 {
        c.u16()?;
    }
    while !c.d.is_empty() {
        let (tag, body) = descriptor(&mut c)?;
        if tag == 4 {
            let mut c = Cur {
                d: body
                    .get(13..)
                    .ok_or_else(|| bad("short DecoderConfigDescriptor"))?,
            };
            while !c.d.is_empty() {
                let (tag, body) = descriptor(&mut c)?;
                if tag == 5 {
                    return AudioSpecificConfig::parse(body);
                }
            }
        }
    }
    Err(bad("esds without DecoderSpecificInfo"))
}

fn full_box_entries<'a>(body: &'a [u8]) -> Result<(u8, Cur<'a>, usize), Error> {
    let mut c = Cur { d: body };
    let version = c.u8()?;
    c.take(3)?;
    let n = c.u32()? as usize;
    Ok((version, c, n))
}

fn parse_stbl(stbl: &[u8], file_len: usize, total: &mut usize) -> Result<Vec<Mp4Sample>, Error> {
    // Sizes.
    let mut c = Cur {
        d: need(stbl, b"stsz")?,
    };
    c.take(4)?;
    let constant = c.u32()?;
    let count = c.u32()? as usize;
    *total = total.saturating_add(count);
    if *total > max_samples(file_len) {
        return Err(bad("too many samples"));
    }
    if count == 0 {
        return Ok(Vec::new());
    }
    let mut sizes = Vec::with_capacity(count);
    for _ in 0..count {
        sizes.push(if constant != 0 { constant } else { c.u32()? });
    }
    // Chunk offsets.
    let mut offsets = Vec::new();
    if let Some((stco, _)) = find(stbl, b"stco")? {
        let (_, mut c, n) = full_box_entries(stco)?;
        for _ in 0..n.min(count) {
            offsets.push(u64::from(c.u32()?));
        }
    } else if let Some((co64, _)) = find(stbl, b"co64")? {
        let (_, mut c, n) = full_box_entries(co64)?;
        for _ in 0..n.min(count) {
            offsets.push(c.u64()?);
        }
    } else {
        return Err(bad("no stco/co64"));
    }
    // Samples per chunk.
    let (_, mut c, n) = full_box_entries(need(stbl, b"stsc")?)?;
    let mut stsc = Vec::new();
    for _ in 0..n.min(count) {
        let first = c.u32()?;
        let per = c.u32()?;
        c.u32()?;
        stsc.push((first.max(1) as usize, per as usize));
    }
    let mut ranges = Vec::with_capacity(count);
    let mut sample = 0usize;
    for (ci, &off) in offsets.iter().enumerate() {
        let chunk_no = ci + 1;
        let per = stsc
            .iter()
            .rev()
            .find(|(first, _)| *first <= chunk_no)
            .map_or(0, |e| e.1);
        let mut pos = usize::try_from(off).map_err(|_| bad("offset"))?;
        for _ in 0..per {
            let Some(&size) = sizes.get(sample) else {
                break;
            };
            let end = pos
                .checked_add(size as usize)
                .filter(|&e| e <= file_len)
                .ok_or_else(|| bad("sample outside the file"))?;
            ranges.push(pos..end);
            pos = end;
            sample += 1;
        }
    }
    if ranges.len() != count {
        return Err(bad("stsc/stco do not cover stsz"));
    }
    // Decode times.
    let (_, mut c, n) = full_box_entries(need(stbl, b"stts")?)?;
    let mut durations = Vec::with_capacity(count);
    for _ in 0..n {
        let k = c.u32()? as usize;
        let d = c.u32()?;
        let k = k.min(count - durations.len());
        durations.extend(std::iter::repeat_n(d, k));
        if durations.len() == count {
            break;
        }
    }
    durations.resize(count, durations.last().copied().unwrap_or(0));
    let mut ctts = vec![0i32; count];
    if let Some((body, _)) = find(stbl, b"ctts")? {
        let (_, mut c, n) = full_box_entries(body)?;
        let mut i = 0;
        for _ in 0..n {
            let k = c.u32()? as usize;
            let o = c.u32()? as i32; // v0 is unsigned but values stay < 2^31 in practice
            for slot in ctts.iter_mut().skip(i).take(k) {
                *slot = o;
            }
            i = i.saturating_add(k);
            if i >= count {
                break;
            }
        }
    }
    let mut sync = vec![find(stbl, b"stss")?.is_none(); count];
    if let Some((body, _)) = find(stbl, b"stss")? {
        let (_, mut c, n) = full_box_entries(body)?;
        for _ in 0..n.min(count) {
            let s = c.u32()? as usize;
            if let Some(slot) = s.checked_sub(1).and_then(|i| sync.get_mut(i)) {
                *slot = true;
            }
        }
    }
    let mut dts = 0i64;
    let mut out = Vec::with_capacity(count);
    for (i, range) in ranges.into_iter().enumerate() {
        let duration = durations.get(i).copied().unwrap_or(0);
        out.push(Mp4Sample {
            dts,
            composition_offset: ctts.get(i).copied().unwrap_or(0),
            duration,
            is_sync: sync.get(i).copied().unwrap_or(true),
            range,
        });
        dts += i64::from(duration);
    }
    Ok(out)
}

fn parse_moof(
    moof: &[u8],
    moof_start: usize,
    trex: &[(u32, Trex)],
    tracks: &mut [Mp4Track],
    file_len: usize,
    total: &mut usize,
) -> Result<(), Error> {
    for b in boxes(moof) {
        let (f, traf, _) = b?;
        if &f != b"traf" {
            continue;
        }
        let mut c = Cur {
            d: need(traf, b"tfhd")?,
        };
        c.u8()?;
        let fl = c.take(3)?;
        let flags = (u32::from(fl.first().copied().unwrap_or(0)) << 16)
            | (u32::from(fl.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(fl.get(2).copied().unwrap_or(0));
        let track_id = c.u32()?;
        let mut d = trex
            .iter()
            .find(|(id, _)| *id == track_id)
            .map(|t| t.1)
            .unwrap_or_default();
        let mut base = moof_start as u64;
        if flags & 0x1 != 0 {
            base = c.u64()?;
        }
        if flags & 0x2 != 0 {
            c.u32()?;
        }
        if flags & 0x8 != 0 {
            d.duration = c.u32()?;
        }
        if flags & 0x10 != 0 {
            d.size = c.u32()?;
        }
        if flags & 0x20 != 0 {
            d.flags = c.u32()?;
        }
        let track = tracks
            .iter_mut()
            .find(|t| t.track_id == track_id)
            .ok_or_else(|| bad("traf for an unknown track"))?;
        let mut dts = track
            .samples
            .last()
            .map_or(0, |s| s.dts + i64::from(s.duration));
        if let Some((tfdt, _)) = find(traf, b"tfdt")? {
            let mut c = Cur { d: tfdt };
            let v = c.u8()?;
            c.take(3)?;
            let t = if v == 1 {
                c.u64()?
            } else {
                u64::from(c.u32()?)
            };
            dts = i64::try_from(t).map_err(|_| bad("tfdt"))?;
        }
        let mut next_pos = base;
        for b in boxes(traf) {
            let (f, trun, _) = b?;
            if &f != b"trun" {
                continue;
            }
            let mut c = Cur { d: trun };
            let version = c.u8()?;
            let fl = c.take(3)?;
            let tflags = (u32::from(fl.get(1).copied().unwrap_or(0)) << 8)
                | u32::from(fl.get(2).copied().unwrap_or(0));
            let n = c.u32()? as usize;
            *total = total.saturating_add(n);
            if *total > max_samples(file_len) {
                return Err(bad("too many samples"));
            }
            let mut pos = next_pos;
            if tflags & 0x1 != 0 {
                pos = base
                    .checked_add_signed(i64::from(c.u32()? as i32))
                    .ok_or_else(|| bad("data offset"))?;
            }
            let first_flags = if tflags & 0x4 != 0 {
                Some(c.u32()?)
            } else {
                None
            };
            for i in 0..n {
                let duration = if tflags & 0x100 != 0 {
                    c.u32()?
                } else {
                    d.duration
                };
                let size = if tflags & 0x200 != 0 {
                    c.u32()?
                } else {
                    d.size
                };
                let mut sflags = if tflags & 0x400 != 0 {
                    c.u32()?
                } else {
                    d.flags
                };
                if let (0, Some(ff)) = (i, first_flags) {
                    sflags = ff;
                }
                let cto = if tflags & 0x800 != 0 {
                    let v = c.u32()?;
                    if version == 0 {
                        i32::try_from(v).unwrap_or(i32::MAX)
                    } else {
                        v as i32
                    }
                } else {
                    0
                };
                let start = usize::try_from(pos).map_err(|_| bad("offset"))?;
                let end = start
                    .checked_add(size as usize)
                    .filter(|&e| e <= file_len)
                    .ok_or_else(|| bad("sample outside the file"))?;
                track.samples.push(Mp4Sample {
                    dts,
                    composition_offset: cto,
                    duration,
                    is_sync: sflags & 0x0001_0000 == 0,
                    range: start..end,
                });
                dts += i64::from(duration);
                pos = end as u64;
            }
            next_pos = pos;
        }
    }
    Ok(())
}

impl Mp4File {
    /// The first H.264 track and the first AAC track, as input units in decode-time order
    /// (video timestamps in 90 kHz, audio in sample-rate ticks), with `avcC`'s parameter sets
    /// first. Audio is omitted when there is none.
    pub fn media_units(&self) -> Vec<MediaUnit> {
        let mut out = Vec::new();
        let video = self
            .tracks
            .iter()
            .find(|t| matches!(t.kind, TrackKind::Video { .. }));
        let audio = self
            .tracks
            .iter()
            .find(|t| matches!(t.kind, TrackKind::Audio { .. }));
        let rate = audio.map_or(1, |a| match &a.kind {
            TrackKind::Audio { asc } => asc.sample_rate_hz,
            _ => 1,
        });
        if let Some(v) = video
            && let TrackKind::Video {
                parameter_sets,
                length_size_bytes,
            } = &v.kind
        {
            {
                out.push(MediaUnit::ParameterSets(parameter_sets.clone()));
                let ts = i128::from(v.timescale);
                for s in &v.samples {
                    let dts = (i128::from(s.dts) * 90_000 / ts) as i64;
                    let pts =
                        (i128::from(s.dts + i64::from(s.composition_offset)) * 90_000 / ts) as i64;
                    out.push(MediaUnit::Video(VideoAccessUnit {
                        pts_90k: pts,
                        dts_90k: Some(dts),
                        data: self.data.slice(s.range.clone()),
                        framing: H264Framing::Avcc {
                            length_size_bytes: *length_size_bytes,
                        },
                    }));
                }
            }
        }
        if let Some(a) = audio {
            let ts = i128::from(a.timescale);
            for s in &a.samples {
                out.push(MediaUnit::Audio(AudioFrame {
                    pts_samples: (i128::from(s.dts) * i128::from(rate) / ts) as i64,
                    data: self.data.slice(s.range.clone()),
                }));
            }
        }
        // Stable sort keeps parameter sets first and decode order within a track.
        out.sort_by_key(|u| u.time_90k(rate));
        out
    }

    /// The AudioSpecificConfig of the first AAC track.
    pub fn audio_config(&self) -> Option<AudioSpecificConfig> {
        self.tracks.iter().find_map(|t| match &t.kind {
            TrackKind::Audio { asc } => Some(asc.clone()),
            _ => None,
        })
    }
}
