//! Fragmented MP4 (ISO/IEC 14496-12) writer: pure functions from a configuration and sample
//! tables to bytes. No IO, no clock.
//!
//! The layout copies a real HKSV camera recording (fixture-analysis §7 A and B):
//!
//! ```text
//! init segment                               media fragment (one per GOP group, ≈ 4 s)
//! ftyp  mp42 / 1 / isom,mp42,avc1 (§4.3)     moof (§8.8.4)
//! moov (§8.2.1)                                mfhd  sequence_number 1, 2, … (§8.8.5)
//!   mvhd v0 timescale 1000 (§8.2.2)            traf video (§8.8.6)
//!   trak video, track_ID 1                       tfhd 0x020020 default-base-is-moof,
//!     tkhd flags 7 (§8.3.2)                           default flags 0x01010000 (§8.8.7)
//!     mdia mdhd (90 kHz) hdlr 'vide'             tfdt v1 (§8.8.12)
//!       minf vmhd dinf/dref/url                  trun 0x305 per keyframe: data_offset,
//!         stbl stsd/avc1/avcC, empty                  first_sample_flags 0x02000000,
//!              stts stsc stsz stco                    duration+size per sample (§8.8.8);
//!   trak audio, track_ID 2 (optional)                 v1 + 0x800 offsets with B-frames
//!     … mdhd (sample rate) hdlr 'soun'         traf audio (only if configured)
//!       smhd … stsd/mp4a/esds (14496-14 §5.6)    tfhd 0x020000, tfdt v1, trun 0x301
//!   mvex (§8.8.1) mehd 0, trex per track     mdat: video samples, then audio samples
//! ```
//!
//! Boxes are written by hand rather than with `mp4-atom`: the output must reproduce the
//! fixture's exact `trun` flag combinations (0x305 first-sample-flags runs, 0x301 audio runs),
//! a `tfhd` with default sample flags and no base data offset, and data offsets patched after
//! the `moof` size is known — a dozen small functions are shorter and easier to pin than
//! bending a general-purpose box model. Each writer is size-checked in the tests below.
//!
//! Intended differences from the fixture: the video timescale is 90 kHz (the camera used 1 kHz;
//! fixture-analysis §7 C allows any), and each traf has one `trun` per keyframe instead of
//! eight ~0.5 s runs interleaved with audio (the interleaving is camera-specific, §7 C).

use bytes::{BufMut, Bytes};

use crate::aac::AudioSpecificConfig;
use crate::h264::SpsInfo;

/// Bump when the bytes this module writes for the same input change (moonfire-nvr's rule):
/// the digest test below pins the current output.
pub const FORMAT_VERSION: u32 = 1;

/// Timescale of the video track: 90 kHz, the input clock, so durations stay exact.
pub const VIDEO_TIMESCALE: u32 = 90_000;
/// Timescale of `mvhd` (1 kHz, as in the fixture).
pub const MOVIE_TIMESCALE: u32 = 1000;
/// track_ID of the video track.
pub const VIDEO_TRACK_ID: u32 = 1;
/// track_ID of the audio track.
pub const AUDIO_TRACK_ID: u32 = 2;

/// `sample_flags` of a sync sample: sample_depends_on = 2 (depends on no other) (§8.8.3.1).
pub const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync video sample: depends_on = 1, is_non_sync_sample = 1.
pub const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// Video track configuration: the single SPS and PPS that go into `avcC`.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoConfig {
    /// SPS NAL unit (with header byte).
    pub sps: Bytes,
    /// PPS NAL unit (with header byte).
    pub pps: Bytes,
    /// Facts parsed from `sps`.
    pub info: SpsInfo,
}

/// Audio track configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioConfig {
    /// The codec configuration; its sample rate is the track's timescale.
    pub asc: AudioSpecificConfig,
    /// Declared bitrate for `esds` (max and average), bits per second; 0 if unknown.
    pub bitrate_bps: u32,
}

/// What an init segment describes.
#[derive(Debug, Clone, PartialEq)]
pub struct InitConfig {
    /// The video track (always present, track 1).
    pub video: VideoConfig,
    /// The audio track (track 2), present only when recording audio is active.
    pub audio: Option<AudioConfig>,
}

/// One sample's row in a `trun`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleInfo {
    /// Duration in the track's timescale (90 kHz video, sample rate audio).
    pub duration: u32,
    /// Size of the sample in the `mdat`, bytes.
    pub size_bytes: u32,
    /// Composition minus decode time, in the track's timescale (B-frames; else 0).
    pub composition_offset: i32,
    /// A sync sample (IDR / every AAC frame).
    pub is_sync: bool,
}

/// One track's samples within a fragment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrackRun {
    /// Decode time of the first sample on the recording's timeline (`tfdt`), in the track's
    /// timescale. Readers rebase this per clip.
    pub base_decode_time: u64,
    /// The samples, in decode order.
    pub samples: Vec<SampleInfo>,
}

impl TrackRun {
    /// Sum of the sample durations, in the track's timescale.
    pub fn duration(&self) -> u64 {
        self.samples.iter().map(|s| u64::from(s.duration)).sum()
    }

    /// Sum of the sample sizes: this run's share of the `mdat` payload, bytes.
    pub fn payload_bytes(&self) -> usize {
        self.samples.iter().map(|s| s.size_bytes as usize).sum()
    }
}

/// A media fragment's content: sample tables plus the shared `mdat` payload. A fresh `moof` is
/// written per reader by [`write_fragment_header`], so the payload is never copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentData {
    /// Video samples (the first is a keyframe).
    pub video: TrackRun,
    /// Audio samples, when the init segment has an audio track (may be empty).
    pub audio: Option<TrackRun>,
    /// The `mdat` payload: all video sample bytes in order, then all audio sample bytes, as
    /// the samples' own buffers (nothing copied when the fragment is cut).
    pub payload: Payload,
}

/// An `mdat` payload as a list of parts (one per sample as the fragmenter makes it), shared by
/// cheap clones: cutting a fragment, keeping it in the ring and handing it to readers copies
/// no sample bytes; they are copied once, where a sender writes them out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    parts: std::sync::Arc<[Bytes]>,
    len: usize,
}

impl Payload {
    /// The payload made of `parts`, in order (empty parts are dropped).
    pub fn from_parts(parts: impl IntoIterator<Item = Bytes>) -> Self {
        let parts: Vec<Bytes> = parts.into_iter().filter(|p| !p.is_empty()).collect();
        let len = parts.iter().map(Bytes::len).sum();
        Self {
            parts: parts.into(),
            len,
        }
    }

    /// Total bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// The first `n` bytes (all when `n` ≥ the length) as parts: slices, nothing copied.
    pub fn prefix(&self, n: usize) -> Vec<Bytes> {
        self.range(0, n)
    }

    /// Bytes `start..end` (clamped) as parts: slices of the parts, nothing copied.
    pub fn range(&self, start: usize, end: usize) -> Vec<Bytes> {
        let end = end.min(self.len);
        let mut out = Vec::new();
        if start >= end {
            return out;
        }
        let mut at = 0;
        for p in self.parts.iter() {
            let (a, b) = (at, at + p.len());
            at = b;
            if b <= start {
                continue;
            }
            if a >= end {
                break;
            }
            out.push(p.slice(start.saturating_sub(a)..(end - a).min(p.len())));
        }
        out
    }

    /// The payload in one buffer (copies it; for tests and one-slice callers).
    pub fn to_bytes(&self) -> Bytes {
        match &*self.parts {
            [] => Bytes::new(),
            [one] => one.clone(),
            parts => {
                let mut v = Vec::with_capacity(self.len);
                for p in parts {
                    v.extend_from_slice(p);
                }
                Bytes::from(v)
            }
        }
    }
}

impl From<Bytes> for Payload {
    fn from(b: Bytes) -> Self {
        Self::from_parts([b])
    }
}

/// Writes `size fourcc body`, patching the 32-bit size after `body` ran (gst-plugins-rs style).
fn write_box(buf: &mut Vec<u8>, fourcc: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.put_u32(0);
    buf.put_slice(fourcc);
    body(buf);
    // Our boxes are bounded by the fragmenter's byte limit (≤ 256 MiB), far below 4 GiB.
    let size = u32::try_from(buf.len() - start).unwrap_or(u32::MAX);
    if let Some(slot) = buf.get_mut(start..start + 4) {
        slot.copy_from_slice(&size.to_be_bytes());
    }
}

/// A full box: version (8 bits) and flags (24 bits) before the body (§4.2).
fn write_full_box(
    buf: &mut Vec<u8>,
    fourcc: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    debug_assert!(flags < 1 << 24);
    write_box(buf, fourcc, |b| {
        b.put_u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
        body(b);
    });
}

const UNITY_MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];
/// ISO-639-2/T "und", packed (§8.4.2.3).
const LANGUAGE_UND: u16 = 0x55c4;

/// Writes the init segment: `ftyp` + `moov` (fixture-analysis §3).
pub fn write_init_segment(cfg: &InitConfig) -> Bytes {
    let mut b = Vec::with_capacity(1200);
    write_box(&mut b, b"ftyp", |b| {
        b.put_slice(b"mp42");
        b.put_u32(1);
        b.put_slice(b"isommp42avc1");
    });
    write_box(&mut b, b"moov", |b| {
        write_full_box(b, b"mvhd", 0, 0, |b| {
            b.put_u32(0); // creation_time
            b.put_u32(0); // modification_time
            b.put_u32(MOVIE_TIMESCALE);
            b.put_u32(0); // duration: unknown (fragmented)
            b.put_u32(0x0001_0000); // rate 1.0
            b.put_u16(0x0100); // volume 1.0
            b.put_slice(&[0; 10]);
            UNITY_MATRIX.iter().for_each(|&m| b.put_u32(m));
            b.put_slice(&[0; 24]); // pre_defined
            b.put_u32(0xffff_ffff); // next_track_ID, as the fixture camera writes it
        });
        write_video_trak(b, &cfg.video);
        if let Some(audio) = &cfg.audio {
            write_audio_trak(b, audio);
        }
        write_box(b, b"mvex", |b| {
            write_full_box(b, b"mehd", 0, 0, |b| b.put_u32(0));
            write_trex(b, VIDEO_TRACK_ID);
            if cfg.audio.is_some() {
                write_trex(b, AUDIO_TRACK_ID);
            }
        });
    });
    Bytes::from(b)
}

fn write_trex(b: &mut Vec<u8>, track_id: u32) {
    write_full_box(b, b"trex", 0, 0, |b| {
        b.put_u32(track_id);
        b.put_u32(1); // default_sample_description_index
        b.put_u32(0); // default_sample_duration
        b.put_u32(0); // default_sample_size
        b.put_u32(0); // default_sample_flags
    });
}

fn write_tkhd(b: &mut Vec<u8>, track_id: u32, volume: u16, width: u32, height: u32) {
    // flags 7: enabled, in movie, in preview (§8.3.2).
    write_full_box(b, b"tkhd", 0, 7, |b| {
        b.put_u32(0);
        b.put_u32(0);
        b.put_u32(track_id);
        b.put_u32(0); // reserved
        b.put_u32(0); // duration
        b.put_slice(&[0; 8]);
        b.put_u16(0); // layer
        b.put_u16(0); // alternate_group
        b.put_u16(volume);
        b.put_u16(0);
        UNITY_MATRIX.iter().for_each(|&m| b.put_u32(m));
        b.put_u32(width << 16);
        b.put_u32(height << 16);
    });
}

fn write_mdhd_hdlr(b: &mut Vec<u8>, timescale: u32, handler: &[u8; 4], name: &str) {
    write_full_box(b, b"mdhd", 0, 0, |b| {
        b.put_u32(0);
        b.put_u32(0);
        b.put_u32(timescale);
        b.put_u32(0);
        b.put_u16(LANGUAGE_UND);
        b.put_u16(0);
    });
    write_full_box(b, b"hdlr", 0, 0, |b| {
        b.put_u32(0); // pre_defined
        b.put_slice(handler);
        b.put_slice(&[0; 12]);
        b.put_slice(name.as_bytes());
        b.put_u8(0);
    });
}

fn write_dinf(b: &mut Vec<u8>) {
    write_box(b, b"dinf", |b| {
        write_full_box(b, b"dref", 0, 0, |b| {
            b.put_u32(1);
            // flags 1: media data is in this file.
            write_full_box(b, b"url ", 0, 1, |_| {});
        });
    });
}

/// `stbl` with the given `stsd` entry and empty sample tables (fragmented file, §8.8.1).
fn write_stbl(b: &mut Vec<u8>, sample_entry: impl FnOnce(&mut Vec<u8>)) {
    write_box(b, b"stbl", |b| {
        write_full_box(b, b"stsd", 0, 0, |b| {
            b.put_u32(1);
            sample_entry(b);
        });
        write_full_box(b, b"stsz", 0, 0, |b| {
            b.put_u32(0);
            b.put_u32(0);
        });
        write_full_box(b, b"stsc", 0, 0, |b| b.put_u32(0));
        write_full_box(b, b"stts", 0, 0, |b| b.put_u32(0));
        write_full_box(b, b"stco", 0, 0, |b| b.put_u32(0));
    });
}

fn write_video_trak(b: &mut Vec<u8>, v: &VideoConfig) {
    let (w, h) = (v.info.width, v.info.height);
    write_box(b, b"trak", |b| {
        write_tkhd(b, VIDEO_TRACK_ID, 0, w, h);
        write_box(b, b"mdia", |b| {
            write_mdhd_hdlr(b, VIDEO_TIMESCALE, b"vide", "Video Handler");
            write_box(b, b"minf", |b| {
                write_full_box(b, b"vmhd", 0, 1, |b| b.put_slice(&[0; 8]));
                write_dinf(b);
                write_stbl(b, |b| write_avc1(b, v));
            });
        });
    });
}

/// `avc1` VisualSampleEntry (14496-12 §12.1.3) with its `avcC` (14496-15 §5.3.3.1).
fn write_avc1(b: &mut Vec<u8>, v: &VideoConfig) {
    write_box(b, b"avc1", |b| {
        b.put_slice(&[0; 6]);
        b.put_u16(1); // data_reference_index
        b.put_slice(&[0; 16]); // pre_defined, reserved
        b.put_u16(u16::try_from(v.info.width).unwrap_or(u16::MAX));
        b.put_u16(u16::try_from(v.info.height).unwrap_or(u16::MAX));
        b.put_u32(0x0048_0000); // 72 dpi
        b.put_u32(0x0048_0000);
        b.put_u32(0);
        b.put_u16(1); // frame_count
        let mut name = [0u8; 32];
        name[0] = 4; // Pascal string "h264", as the fixture camera writes it
        name[1..5].copy_from_slice(b"h264");
        b.put_slice(&name);
        b.put_u16(0x0018); // depth
        b.put_i16(-1); // pre_defined
        write_box(b, b"avcC", |b| {
            b.put_u8(1); // configurationVersion
            b.put_u8(v.info.profile_idc);
            b.put_u8(v.info.constraint_flags);
            b.put_u8(v.info.level_idc);
            b.put_u8(0xfc | 3); // lengthSizeMinusOne = 3: 4-byte NAL lengths
            b.put_u8(0xe0 | 1); // one SPS
            b.put_u16(u16::try_from(v.sps.len()).unwrap_or(0));
            b.put_slice(&v.sps);
            b.put_u8(1); // one PPS
            b.put_u16(u16::try_from(v.pps.len()).unwrap_or(0));
            b.put_slice(&v.pps);
            if matches!(v.info.profile_idc, 100 | 110 | 122 | 144) {
                // High-profile extension of the record (14496-15 §5.3.3.1.2).
                b.put_u8(0xfc | v.info.chroma_format_idc);
                b.put_u8(0xf8 | v.info.bit_depth_luma_minus8);
                b.put_u8(0xf8 | v.info.bit_depth_chroma_minus8);
                b.put_u8(0); // numOfSequenceParameterSetExt
            }
        });
    });
}

fn write_audio_trak(b: &mut Vec<u8>, a: &AudioConfig) {
    write_box(b, b"trak", |b| {
        write_tkhd(b, AUDIO_TRACK_ID, 0x0100, 0, 0);
        write_box(b, b"mdia", |b| {
            write_mdhd_hdlr(b, a.asc.sample_rate_hz, b"soun", "Sound Handler");
            write_box(b, b"minf", |b| {
                write_full_box(b, b"smhd", 0, 0, |b| b.put_u32(0));
                write_dinf(b);
                write_stbl(b, |b| write_mp4a(b, a));
            });
        });
    });
}

/// `mp4a` AudioSampleEntry (14496-12 §12.2.3) with `esds` (14496-14 §5.6, 14496-1 §7.2.6).
fn write_mp4a(b: &mut Vec<u8>, a: &AudioConfig) {
    write_box(b, b"mp4a", |b| {
        b.put_slice(&[0; 6]);
        b.put_u16(1); // data_reference_index
        b.put_slice(&[0; 8]);
        b.put_u16(u16::from(a.asc.channels));
        b.put_u16(16); // samplesize
        b.put_u32(0);
        b.put_u32(a.asc.sample_rate_hz.min(0xffff) << 16);
        write_full_box(b, b"esds", 0, 0, |b| {
            let asc = &a.asc.bytes;
            // Descriptor lengths fit one byte: the ASC is at most a few bytes.
            let asc_len = u8::try_from(asc.len()).unwrap_or(0).min(100);
            let dec_specific_len = 2 + asc_len;
            let dec_config_len = 13 + dec_specific_len;
            let es_len = 3 + 2 + dec_config_len + 3;
            b.put_u8(0x03); // ES_DescrTag
            b.put_u8(es_len);
            b.put_u16(0); // ES_ID
            b.put_u8(0); // flags
            b.put_u8(0x04); // DecoderConfigDescrTag
            b.put_u8(dec_config_len);
            b.put_u8(0x40); // objectTypeIndication: MPEG-4 Audio
            b.put_u8(0x15); // streamType 5 (audio) << 2 | upStream 0 | reserved 1
            b.put_slice(&[0; 3]); // bufferSizeDB
            b.put_u32(a.bitrate_bps); // maxBitrate
            b.put_u32(a.bitrate_bps); // avgBitrate
            b.put_u8(0x05); // DecSpecificInfoTag
            b.put_u8(asc_len);
            b.put_slice(asc.get(..usize::from(asc_len)).unwrap_or_default());
            b.put_u8(0x06); // SLConfigDescrTag
            b.put_u8(1);
            b.put_u8(2); // predefined = 2 (reserved for MP4)
        });
    });
}

/// Timing of one fragment as one reader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentTiming {
    /// `mfhd` sequence_number: 1 for the first fragment of a clip.
    pub sequence_number: u32,
    /// Video `tfdt`, 90 kHz.
    pub video_decode_time: u64,
    /// Audio `tfdt`, sample-rate ticks.
    pub audio_decode_time: u64,
}

/// Writes `moof` and the 8-byte `mdat` header for `frag`; append `frag.payload` to get the
/// complete fragment. The trun data offsets tile the payload exactly (fixture-analysis §7 B14).
pub fn write_fragment_header(frag: &FragmentData, timing: &FragmentTiming) -> Vec<u8> {
    write_moof_mdat(&frag.video, frag.audio.as_ref(), frag.payload.len(), timing)
}

/// Writes `moof` and the 8-byte `mdat` header for `frag`'s video track alone: no audio
/// `traf`, and the `mdat` covers only the video samples, which lead the payload
/// ([`FragmentData::payload`]). Append `frag.payload.prefix(n)` with
/// `n =`[`video_payload_bytes`]`(frag)` to get the complete fragment. Pairs with an init
/// segment written without audio (protocol-notes §6.1: omit the audio track when
/// RecordingAudioActive = 0).
pub fn write_video_only_fragment_header(frag: &FragmentData, timing: &FragmentTiming) -> Vec<u8> {
    write_moof_mdat(&frag.video, None, video_payload_bytes(frag), timing)
}

/// Bytes of `frag.payload` holding video samples (its leading part), clamped to the payload.
pub fn video_payload_bytes(frag: &FragmentData) -> usize {
    frag.video.payload_bytes().min(frag.payload.len())
}

/// `moof` with a video `traf` and, if given, an audio `traf` whose samples follow the video
/// ones, then the header of an `mdat` of `payload_len` bytes.
fn write_moof_mdat(
    video: &TrackRun,
    audio: Option<&TrackRun>,
    payload_len: usize,
    timing: &FragmentTiming,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(256 + 16 * video.samples.len());
    // Positions of trun data_offset fields and the payload offset each must point at.
    let mut patches: Vec<(usize, usize)> = Vec::new();
    write_box(&mut b, b"moof", |b| {
        write_full_box(b, b"mfhd", 0, 0, |b| b.put_u32(timing.sequence_number));
        write_box(b, b"traf", |b| {
            // default-base-is-moof | default-sample-flags-present
            write_full_box(b, b"tfhd", 0, 0x02_0020, |b| {
                b.put_u32(VIDEO_TRACK_ID);
                b.put_u32(NON_SYNC_SAMPLE_FLAGS);
            });
            write_full_box(b, b"tfdt", 1, 0, |b| b.put_u64(timing.video_decode_time));
            write_video_truns(b, &video.samples, &mut patches);
        });
        if let Some(audio) = audio {
            write_box(b, b"traf", |b| {
                write_full_box(b, b"tfhd", 0, 0x02_0000, |b| b.put_u32(AUDIO_TRACK_ID));
                write_full_box(b, b"tfdt", 1, 0, |b| b.put_u64(timing.audio_decode_time));
                if !audio.samples.is_empty() {
                    let pos = b.len() + 16; // after size, type, version/flags, sample_count
                    patches.push((pos, video.payload_bytes()));
                    // data-offset | sample-duration | sample-size
                    write_full_box(b, b"trun", 0, 0x301, |b| {
                        b.put_u32(u32::try_from(audio.samples.len()).unwrap_or(0));
                        b.put_i32(0);
                        for s in &audio.samples {
                            b.put_u32(s.duration);
                            b.put_u32(s.size_bytes);
                        }
                    });
                }
            });
        }
    });
    let moof_len = b.len();
    for (pos, payload_off) in patches {
        // data_offset is relative to the moof start (default-base-is-moof); +8 skips mdat's header.
        let off = i32::try_from(moof_len + 8 + payload_off).unwrap_or(i32::MAX);
        if let Some(slot) = b.get_mut(pos..pos + 4) {
            slot.copy_from_slice(&off.to_be_bytes());
        }
    }
    b.put_u32(u32::try_from(payload_len + 8).unwrap_or(u32::MAX));
    b.put_slice(b"mdat");
    b
}

/// One video `trun` per keyframe-led run, so each run's first sample carries the sync flags
/// through `first_sample_flags` and every other sample takes tfhd's non-sync default.
fn write_video_truns(b: &mut Vec<u8>, samples: &[SampleInfo], patches: &mut Vec<(usize, usize)>) {
    let has_offsets = samples.iter().any(|s| s.composition_offset != 0);
    let mut payload_off = 0usize;
    let mut rest = samples;
    while !rest.is_empty() {
        let run_len = rest
            .iter()
            .skip(1)
            .position(|s| s.is_sync)
            .map_or(rest.len(), |p| p + 1);
        let (run, tail) = rest.split_at(run_len);
        let first_is_sync = run.first().is_some_and(|s| s.is_sync);
        // data-offset | duration | size, + first-sample-flags, + composition offsets (v1: signed).
        let mut flags = 0x301;
        if first_is_sync {
            flags |= 0x004;
        }
        if has_offsets {
            flags |= 0x800;
        }
        let version = u8::from(has_offsets);
        patches.push((b.len() + 16, payload_off));
        write_full_box(b, b"trun", version, flags, |b| {
            b.put_u32(u32::try_from(run.len()).unwrap_or(0));
            b.put_i32(0);
            if first_is_sync {
                b.put_u32(SYNC_SAMPLE_FLAGS);
            }
            for s in run {
                b.put_u32(s.duration);
                b.put_u32(s.size_bytes);
                if has_offsets {
                    b.put_i32(s.composition_offset);
                }
            }
        });
        payload_off += run.iter().map(|s| s.size_bytes as usize).sum::<usize>();
        rest = tail;
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
pub(crate) mod tests {
    #[test]
    fn payload_ranges_slice_across_parts_without_copying() {
        let a = Bytes::from_static(b"abc");
        let b = Bytes::from_static(b"defgh");
        let p = Payload::from_parts([a.clone(), Bytes::new(), b.clone()]);
        assert_eq!(
            (p.len(), p.parts().len()),
            (8, 2),
            "the empty part is dropped"
        );
        assert_eq!(p.to_bytes(), Bytes::from_static(b"abcdefgh"));
        let joined = |v: Vec<Bytes>| v.concat();
        assert_eq!(joined(p.range(2, 5)), b"cde");
        assert_eq!(joined(p.range(3, 8)), b"defgh");
        assert_eq!(joined(p.prefix(4)), b"abcd");
        assert_eq!(joined(p.prefix(100)), b"abcdefgh");
        assert!(p.range(5, 5).is_empty() && p.range(9, 12).is_empty());
        // Slices point into the parts' own memory.
        let r = p.range(2, 5);
        assert_eq!(r[0].as_ptr(), a[2..].as_ptr());
        assert_eq!(r[1].as_ptr(), b.as_ptr());
        assert_eq!(Payload::from(Bytes::from_static(b"x")).len(), 1);
        assert!(Payload::default().is_empty() && Payload::default().to_bytes().is_empty());
    }

    use super::*;

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn write_box_patches_size() {
        let mut b = vec![0xaa];
        write_box(&mut b, b"free", |b| b.put_slice(&[1, 2, 3]));
        assert_eq!(b, [0xaa, 0, 0, 0, 11, b'f', b'r', b'e', b'e', 1, 2, 3]);
        let mut b = Vec::new();
        write_full_box(&mut b, b"mehd", 1, 0x020020, |b| b.put_u64(7));
        assert_eq!(b.len(), 20);
        assert_eq!(be32(&b, 0), 20);
        assert_eq!(be32(&b, 8), 0x0102_0020);
    }

    fn sample(duration: u32, size: u32, sync: bool) -> SampleInfo {
        SampleInfo {
            duration,
            size_bytes: size,
            composition_offset: 0,
            is_sync: sync,
        }
    }

    #[test]
    fn trun_sizes_match_flags() {
        // Two keyframes → two runs: 0x305 (12 + 4 + 4 + 8n) each.
        let samples = [
            sample(3000, 10, true),
            sample(3000, 5, false),
            sample(3000, 7, true),
        ];
        let mut b = Vec::new();
        let mut patches = Vec::new();
        write_video_truns(&mut b, &samples, &mut patches);
        assert_eq!(b.len(), (12 + 4 + 4 + 4 + 16) + (12 + 4 + 4 + 4 + 8));
        assert_eq!(be32(&b, 8), 0x305);
        assert_eq!(patches, vec![(16, 0), (40 + 16, 15)]);
        // With composition offsets: version 1, flag 0x800, 12 bytes per sample.
        let mut samples = samples;
        samples[1].composition_offset = -3000;
        let mut b = Vec::new();
        write_video_truns(&mut b, &samples, &mut Vec::new());
        assert_eq!(be32(&b, 8), 0x0100_0b05);
        assert_eq!(b.len(), (24 + 24) + (24 + 12));
    }
}
