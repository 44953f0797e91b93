//! Test support: an independent ISO-BMFF box walker, fragment summaries, pipeline helpers and
//! ffmpeg/ffprobe wrappers.
#![allow(
    dead_code,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    missing_docs,
    unreachable_pub
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use recorder::MediaUnit;
use recorder::{Fragment, Fragmenter, FragmenterConfig, FragmenterEvent, InitSegment};

pub fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(b[at..at + 2].try_into().unwrap())
}
pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
pub fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// Top-level boxes: (fourcc, whole box bytes). Panics on malformed input (tests only).
pub fn boxes(data: &[u8]) -> Vec<(String, &[u8])> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let size = be32(data, pos) as usize;
        assert!(
            size >= 8 && pos + size <= data.len(),
            "bad box at {pos}: size {size}"
        );
        let fourcc = String::from_utf8_lossy(&data[pos + 4..pos + 8]).into_owned();
        out.push((fourcc, &data[pos..pos + size]));
        pos += size;
    }
    out
}

/// Bytes after the header of a plain box (full boxes keep their version/flags word).
pub fn body(b: &[u8]) -> &[u8] {
    &b[8..]
}

/// Where a container's children start inside its body (stsd/dref/avc1/mp4a have fields first).
fn child_offset(fourcc: &str) -> Option<usize> {
    Some(match fourcc {
        "moov" | "trak" | "mdia" | "minf" | "stbl" | "dinf" | "mvex" | "moof" | "traf" | "edts" => {
            0
        }
        "stsd" | "dref" => 8,
        "avc1" => 78,
        "mp4a" => 28,
        _ => return None,
    })
}

/// The box tree as indented lines "fourcc size" (children of known containers expanded).
pub fn tree(data: &[u8]) -> Vec<String> {
    fn walk(data: &[u8], depth: usize, out: &mut Vec<String>) {
        for (f, b) in boxes(data) {
            out.push(format!("{}{} {}", "  ".repeat(depth), f, b.len()));
            if let Some(off) = child_offset(&f) {
                walk(&body(b)[off..], depth + 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(data, 0, &mut out);
    out
}

/// Follows a path like "moov/trak[1]/mdia/mdhd"; returns the whole box.
pub fn find<'a>(data: &'a [u8], path: &str) -> Option<&'a [u8]> {
    let mut cur = data;
    let mut found = None;
    for part in path.split('/') {
        let (name, idx) = match part.split_once('[') {
            Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().unwrap()),
            None => (part, 0),
        };
        let b = boxes(cur)
            .into_iter()
            .filter(|(f, _)| f == name)
            .nth(idx)?
            .1;
        found = Some(b);
        cur = &body(b)[child_offset(name).unwrap_or(0)..];
    }
    found
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trun {
    pub version: u8,
    pub flags: u32,
    pub data_offset: i32,
    pub first_sample_flags: Option<u32>,
    /// (duration, size, composition offset)
    pub samples: Vec<(u32, u32, i32)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Traf {
    pub track_id: u32,
    pub tfhd_flags: u32,
    pub default_sample_flags: Option<u32>,
    pub tfdt_version: u8,
    pub tfdt: u64,
    pub truns: Vec<Trun>,
}

impl Traf {
    pub fn durations(&self) -> Vec<u32> {
        self.truns
            .iter()
            .flat_map(|t| t.samples.iter().map(|s| s.0))
            .collect()
    }
    pub fn sizes(&self) -> Vec<u32> {
        self.truns
            .iter()
            .flat_map(|t| t.samples.iter().map(|s| s.1))
            .collect()
    }
    /// Per-sample "is sync" as ISO 14496-12 §8.8.3.1 flags resolve.
    pub fn sync_flags(&self, trex_default: u32) -> Vec<bool> {
        let default = self.default_sample_flags.unwrap_or(trex_default);
        let mut out = Vec::new();
        for t in &self.truns {
            for (i, _) in t.samples.iter().enumerate() {
                let f = if i == 0 {
                    t.first_sample_flags.unwrap_or(default)
                } else {
                    default
                };
                out.push(f & 0x0001_0000 == 0);
            }
        }
        out
    }
    pub fn duration(&self) -> u64 {
        self.durations().iter().map(|&d| u64::from(d)).sum()
    }
}

/// A parsed `moof` + `mdat` fragment, checked for the one-moof-one-mdat shape.
#[derive(Debug, Clone)]
pub struct FragSummary {
    pub sequence: u32,
    pub trafs: Vec<Traf>,
    pub moof_len: usize,
    pub mdat_payload_len: usize,
}

pub fn parse_fragment(data: &[u8]) -> FragSummary {
    let top = boxes(data);
    let names: Vec<&str> = top.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(names, ["moof", "mdat"], "a fragment is exactly moof + mdat");
    let moof = top[0].1;
    let mut sequence = 0;
    let mut trafs = Vec::new();
    for (f, b) in boxes(body(moof)) {
        match f.as_str() {
            "mfhd" => sequence = be32(b, 12),
            "traf" => {
                let mut traf = Traf {
                    track_id: 0,
                    tfhd_flags: 0,
                    default_sample_flags: None,
                    tfdt_version: 0,
                    tfdt: 0,
                    truns: vec![],
                };
                for (f, b) in boxes(body(b)) {
                    let vf = be32(b, 8);
                    let (version, flags) = ((vf >> 24) as u8, vf & 0xff_ffff);
                    match f.as_str() {
                        "tfhd" => {
                            traf.tfhd_flags = flags;
                            traf.track_id = be32(b, 12);
                            let mut p = 16;
                            for (bit, len) in [(1, 8), (2, 4), (8, 4), (0x10, 4)] {
                                if flags & bit != 0 {
                                    p += len;
                                }
                            }
                            if flags & 0x20 != 0 {
                                traf.default_sample_flags = Some(be32(b, p));
                            }
                        }
                        "tfdt" => {
                            traf.tfdt_version = version;
                            traf.tfdt = if version == 1 {
                                be64(b, 12)
                            } else {
                                u64::from(be32(b, 12))
                            };
                        }
                        "trun" => {
                            let n = be32(b, 12) as usize;
                            let mut p = 16;
                            let mut t = Trun {
                                version,
                                flags,
                                data_offset: 0,
                                first_sample_flags: None,
                                samples: vec![],
                            };
                            if flags & 1 != 0 {
                                t.data_offset = be32(b, p) as i32;
                                p += 4;
                            }
                            if flags & 4 != 0 {
                                t.first_sample_flags = Some(be32(b, p));
                                p += 4;
                            }
                            for _ in 0..n {
                                let mut s = (0, 0, 0);
                                if flags & 0x100 != 0 {
                                    s.0 = be32(b, p);
                                    p += 4;
                                }
                                if flags & 0x200 != 0 {
                                    s.1 = be32(b, p);
                                    p += 4;
                                }
                                assert_eq!(flags & 0x400, 0, "we never write per-sample flags");
                                if flags & 0x800 != 0 {
                                    s.2 = be32(b, p) as i32;
                                    p += 4;
                                }
                                t.samples.push(s);
                            }
                            assert_eq!(p, b.len(), "trun size matches its flags");
                            traf.truns.push(t);
                        }
                        other => panic!("unexpected box {other} in traf"),
                    }
                }
                trafs.push(traf);
            }
            other => panic!("unexpected box {other} in moof"),
        }
    }
    let summary = FragSummary {
        sequence,
        trafs,
        moof_len: moof.len(),
        mdat_payload_len: top[1].1.len() - 8,
    };
    assert_tiles_mdat(&summary);
    summary
}

/// The truns' data offsets tile the mdat payload exactly (fixture-analysis §7 B14).
pub fn assert_tiles_mdat(f: &FragSummary) {
    let mut runs: Vec<(usize, usize)> = f
        .trafs
        .iter()
        .flat_map(|t| t.truns.iter())
        .map(|t| {
            (
                t.data_offset as usize,
                t.samples.iter().map(|s| s.1 as usize).sum(),
            )
        })
        .collect();
    runs.sort();
    let mut pos = f.moof_len + 8;
    for (off, len) in runs {
        assert_eq!(off, pos, "runs must be contiguous");
        pos += len;
    }
    assert_eq!(
        pos,
        f.moof_len + 8 + f.mdat_payload_len,
        "runs must end at the mdat's end"
    );
}

/// Splits a concatenated recording into (init, fragments).
pub fn split_recording(data: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let top = boxes(data);
    assert_eq!(top[0].0, "ftyp");
    assert_eq!(top[1].0, "moov");
    let init = [top[0].1, top[1].1].concat();
    let frags = top[2..]
        .chunks(2)
        .map(|c| [c[0].1, c[1].1].concat())
        .collect();
    (init, frags)
}

/// Runs units through a fragmenter; returns the events and errors seen.
pub fn run_units(
    config: FragmenterConfig,
    units: Vec<MediaUnit>,
) -> (Vec<FragmenterEvent>, Vec<recorder::Error>) {
    let mut f = Fragmenter::new(config).unwrap();
    let mut events = Vec::new();
    let mut errors = Vec::new();
    for u in units {
        if let Err(e) = f.push(u) {
            errors.push(e);
        }
        events.extend(std::iter::from_fn(|| f.poll_event()));
    }
    f.finish();
    events.extend(std::iter::from_fn(|| f.poll_event()));
    (events, errors)
}

/// One recording per init segment: (init, fragments as complete bytes with sequence from 1).
pub fn recordings(events: &[FragmenterEvent]) -> Vec<(InitSegment, Vec<(Fragment, Bytes)>)> {
    let mut out: Vec<(InitSegment, Vec<(Fragment, Bytes)>)> = Vec::new();
    for e in events {
        match e {
            FragmenterEvent::Init(i) => out.push((i.clone(), vec![])),
            FragmenterEvent::Fragment(f) => {
                let rec = out.last_mut().expect("fragment before init");
                let timing = recorder::fmp4::FragmentTiming {
                    sequence_number: rec.1.len() as u32 + 1,
                    video_decode_time: f.video.base_decode_time,
                    audio_decode_time: f.audio.as_ref().map_or(0, |a| a.base_decode_time),
                };
                rec.1.push((f.clone(), f.to_bytes(&timing)));
            }
        }
    }
    out
}

pub fn concat(init: &InitSegment, frags: &[(Fragment, Bytes)]) -> Vec<u8> {
    let mut v = init.bytes.to_vec();
    for (_, b) in frags {
        v.extend_from_slice(b);
    }
    v
}

pub fn shared_fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/hksv-example")
        .join(rel)
}

pub fn demo_clip() -> Bytes {
    Bytes::from_static(recorder::demo::DEMO_CLIP_MP4)
}

/// Fails (never skips) when ffmpeg/ffprobe are missing.
pub fn require_ffmpeg() {
    for tool in ["ffmpeg", "ffprobe"] {
        let ok = Command::new(tool)
            .arg("-version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            ok,
            "{tool} is not installed: run scripts/test (it installs ffmpeg) or `apt-get install ffmpeg`"
        );
    }
}

/// Runs ffmpeg with `args`; panics with stderr on failure.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-y", "-loglevel", "error"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Decodes a file fully; asserts exit 0 and no error output. `-fps_mode passthrough` avoids
/// ffmpeg 5.1's null-muxer DTS complaint on irregular frame timing (fixture-analysis §6).
pub fn assert_decodes_cleanly(path: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args([
            "-fps_mode",
            "passthrough",
            "-enc_time_base",
            "-1",
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "decoding {} failed: {stderr}",
        path.display()
    );
}

/// ffprobe packets of one stream: (pts_time seconds, duration seconds, is_key).
pub fn probe_packets(path: &Path, stream: &str) -> Vec<(f64, f64, bool)> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            stream,
            "-show_entries",
            "packet=pts_time,duration_time,flags",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].parse().unwrap_or(f64::NAN),
                f[1].parse().unwrap_or(f64::NAN),
                f[2].contains('K'),
            )
        })
        .collect()
}

/// MSB-first bit writer for hand-made SPS NAL units.
struct BitWriter {
    out: Vec<u8>,
    bits: u32,
    cur: u8,
}
impl BitWriter {
    fn bit(&mut self, b: bool) {
        self.cur = (self.cur << 1) | u8::from(b);
        self.bits += 1;
        if self.bits == 8 {
            self.out.push(self.cur);
            self.cur = 0;
            self.bits = 0;
        }
    }
    fn bits(&mut self, v: u32, n: u32) {
        for i in (0..n).rev() {
            self.bit(v >> i & 1 == 1);
        }
    }
    fn ue(&mut self, v: u32) {
        let x = v + 1;
        let len = 32 - x.leading_zeros();
        self.bits(0, len - 1);
        self.bits(x, len);
    }
}

/// A Baseline-profile SPS (ITU-T H.264 §7.3.2.1.1) for a `width_mbs` × `height_mbs` picture,
/// with emulation prevention applied.
pub fn make_sps(width_mbs: u32, height_mbs: u32) -> Vec<u8> {
    let mut w = BitWriter {
        out: vec![0x67],
        bits: 0,
        cur: 0,
    };
    w.bits(66, 8); // profile_idc Baseline
    w.bits(0xc0, 8); // constraint flags
    w.bits(40, 8); // level 4.0
    w.ue(0); // sps id
    w.ue(0); // log2_max_frame_num_minus4
    w.ue(2); // pic_order_cnt_type
    w.ue(1); // max_num_ref_frames
    w.bit(false);
    w.ue(width_mbs - 1);
    w.ue(height_mbs - 1);
    w.bit(true); // frame_mbs_only
    w.bit(true); // direct_8x8_inference
    w.bit(false); // cropping
    w.bit(false); // vui
    w.bit(true); // rbsp_stop_one_bit
    while w.bits != 0 {
        w.bit(false);
    }
    let mut out = Vec::new();
    let mut zeros = 0;
    for b in w.out {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

pub const PPS: [u8; 4] = [0x68, 0xce, 0x3c, 0x80];

/// An Annex B access unit: optional SPS/PPS, then one slice NAL of `len` bytes.
pub fn annexb_au(sps: Option<&[u8]>, idr: bool, len: usize, fill: u8) -> Bytes {
    let mut v = Vec::new();
    if let Some(sps) = sps {
        v.extend_from_slice(&[0, 0, 0, 1]);
        v.extend_from_slice(sps);
        v.extend_from_slice(&[0, 0, 0, 1]);
        v.extend_from_slice(&PPS);
    }
    v.extend_from_slice(&[0, 0, 0, 1, if idr { 0x65 } else { 0x41 }, 0x88]);
    v.extend(std::iter::repeat_n(fill | 1, len)); // never 0: no accidental start codes
    Bytes::from(v)
}

pub fn video(pts_90k: i64, data: Bytes) -> recorder::VideoAccessUnit {
    recorder::VideoAccessUnit {
        pts_90k,
        dts_90k: None,
        data,
        framing: recorder::H264Framing::AnnexB,
    }
}

/// A 48 kHz mono AAC-LC ADTS frame with `len` payload bytes.
pub fn adts_frame(len: usize) -> Vec<u8> {
    let frame_len = len + 7;
    let mut v = vec![0xff, 0xf1, 0x4c, 0x40, 0, 0, 0xfc];
    v[3] |= ((frame_len >> 11) & 3) as u8;
    v[4] = ((frame_len >> 3) & 0xff) as u8;
    v[5] = (((frame_len & 7) << 5) as u8) | 0x1f;
    v.extend(std::iter::repeat_n(0x21, len));
    v
}

/// Checks the HKSV invariants of one recording (fixture-analysis §7): init = ftyp + moov,
/// fragments = moof + mdat, mfhd from 1, first video sample sync, tfdt continuous from 0,
/// data offsets tiling the mdat.
pub fn assert_hksv_recording(init: &InitSegment, frags: &[(Fragment, Bytes)]) {
    let top: Vec<String> = boxes(&init.bytes).into_iter().map(|(f, _)| f).collect();
    assert_eq!(top, ["ftyp", "moov"]);
    let has_audio = init.config.audio.is_some();
    let mut expect = (0u64, 0u64);
    for (i, (_, bytes)) in frags.iter().enumerate() {
        let s = parse_fragment(bytes);
        assert_eq!(s.sequence as usize, i + 1);
        assert_eq!(s.trafs.len(), 1 + usize::from(has_audio));
        let v = &s.trafs[0];
        assert_eq!(v.track_id, 1);
        assert_eq!(v.tfhd_flags, 0x020020);
        assert_eq!(v.default_sample_flags, Some(0x0101_0000));
        assert_eq!(
            v.truns[0].first_sample_flags,
            Some(0x0200_0000),
            "fragment starts with a keyframe"
        );
        assert!(v.sync_flags(0)[0]);
        assert_eq!(v.tfdt, expect.0, "video tfdt continuous");
        expect.0 += v.duration();
        if has_audio {
            let a = &s.trafs[1];
            assert_eq!((a.track_id, a.tfhd_flags), (2, 0x020000));
            assert_eq!(a.tfdt, expect.1, "audio tfdt continuous");
            expect.1 += a.duration();
        }
    }
}
