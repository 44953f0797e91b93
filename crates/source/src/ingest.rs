//! Byte-stream ingest (sans-IO): bytes in, [`MediaUnit`]s out. Detects Annex B H.264 or
//! fragmented MP4 from the first bytes and rejects H.265 and MJPEG by name.
//!
//! - Annex B (ITU-T H.264 Annex B) carries no timestamps: frame `n` gets
//!   `pts_90k = n × 90000 / fps`, with `fps` from the `fps=` option, else the first SPS's VUI
//!   timing (H.264 Annex E: `time_scale / (2 × num_units_in_tick)`), else 30.
//! - Fragmented MP4 (ISO/IEC 14496-12 §8.8): top-level boxes are collected; the init segment
//!   (`ftyp` + `moov`) gives the tracks, each `moof` + `mdat` pair is demuxed by
//!   [`recorder::demux`] and its samples become units with their `tfdt`-based times. The
//!   recorder's fragmenter then cuts its own fragments at keyframes.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use recorder::H264Framing;
use recorder::MediaUnit;
use recorder::ParameterSets;
use recorder::aac::AudioSpecificConfig;
use recorder::demux::{self, TrackKind};
use recorder::h264::{self, AnnexBSplitter, NalType, SpsInfo};
use recorder::input::VideoAccessUnit;

use crate::Error;

/// Access units larger than this are dropped (a 4K IDR is a few MB).
const MAX_ACCESS_UNIT_BYTES: usize = 16 << 20;
/// Boxes larger than this are rejected (a 4 s fragment at 20 Mbit/s is 10 MB).
const MAX_BOX_BYTES: u64 = 64 << 20;
/// Bytes to look at before deciding the format.
const DETECT_BYTES: usize = 8;

/// The detected container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteFormat {
    /// Annex B H.264 elementary stream.
    AnnexB,
    /// Fragmented MP4.
    Fmp4,
}

enum State {
    Detect(BytesMut),
    AnnexB(AnnexBState),
    Fmp4(Fmp4State),
}

struct AnnexBState {
    splitter: AnnexBSplitter,
    fps: Option<f64>,
    frames: i64,
    /// Access units held until the first SPS tells the frame rate (a stream that starts
    /// mid-GOP has none before its first IDR).
    held: Vec<Bytes>,
}

/// Access units held while waiting for an SPS before falling back to 30 fps.
const MAX_HELD_FOR_SPS: usize = 600;

struct Fmp4State {
    buf: BytesMut,
    ftyp: Option<Bytes>,
    moov: Option<Bytes>,
    moof: Option<Bytes>,
    parameter_sets: Option<ParameterSets>,
}

/// The byte-stream ingest state machine. See the module docs.
pub struct ByteIngest {
    camera: String,
    fps_option: Option<f64>,
    state: State,
    out: VecDeque<MediaUnit>,
    audio: Option<AudioSpecificConfig>,
    ready: bool,
}

impl std::fmt::Debug for ByteIngest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteIngest")
            .field("camera", &self.camera)
            .field("format", &self.format())
            .finish_non_exhaustive()
    }
}

impl ByteIngest {
    /// An ingest for `camera` (used in error messages), timing Annex B at `fps` if given.
    pub fn new(camera: impl Into<String>, fps: Option<f64>) -> Self {
        Self {
            camera: camera.into(),
            fps_option: fps,
            state: State::Detect(BytesMut::new()),
            out: VecDeque::new(),
            audio: None,
            ready: false,
        }
    }

    /// The detected format, once known.
    pub fn format(&self) -> Option<ByteFormat> {
        match self.state {
            State::Detect(_) => None,
            State::AnnexB(_) => Some(ByteFormat::AnnexB),
            State::Fmp4(_) => Some(ByteFormat::Fmp4),
        }
    }

    /// True once the stream parameters are known: Annex B detected, or an fMP4 `moov` read.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The AAC config from the fMP4 `moov`, if it has an AAC track.
    pub fn audio_config(&self) -> Option<&AudioSpecificConfig> {
        self.audio.as_ref()
    }

    /// The frame rate used to time Annex B input, once decided.
    pub fn annexb_fps(&self) -> Option<f64> {
        match &self.state {
            State::AnnexB(a) => a.fps,
            _ => None,
        }
    }

    fn stream_err(&self, detail: impl Into<String>) -> Error {
        Error::Stream {
            camera: self.camera.clone(),
            detail: detail.into(),
        }
    }

    /// Feeds bytes.
    ///
    /// # Errors
    /// [`Error::UnsupportedCodec`] for H.265 or MJPEG; [`Error::Stream`] for bytes that are
    /// neither Annex B nor MP4, or an MP4 box that is malformed or too large. After an error
    /// the ingest should be dropped (the source reconnects).
    pub fn push(&mut self, data: &[u8]) -> Result<(), Error> {
        if let State::Detect(buf) = &mut self.state {
            buf.extend_from_slice(data);
            if buf.len() < DETECT_BYTES {
                return Ok(());
            }
            let head = buf.split().freeze();
            self.state = self.detect(&head)?;
            self.ready = matches!(self.state, State::AnnexB(_));
            return self.push(&head);
        }
        match &mut self.state {
            State::Detect(_) => Ok(()),
            State::AnnexB(a) => {
                // An oversized access unit is dropped by the splitter; keep going.
                if let Err(e) = a.splitter.push(data) {
                    tracing::debug!(camera = %self.camera, %e, "dropped an Annex B access unit");
                }
                self.drain_annexb();
                Ok(())
            }
            State::Fmp4(f) => {
                f.buf.extend_from_slice(data);
                self.drain_fmp4()
            }
        }
    }

    /// Ends the stream: the last Annex B access unit becomes available.
    pub fn finish(&mut self) {
        if let State::AnnexB(a) = &mut self.state {
            a.splitter.finish();
            self.drain_annexb();
            if let State::AnnexB(a) = &mut self.state {
                let fps = *a.fps.get_or_insert(30.0);
                for au in a.held.drain(..) {
                    let pts_90k = (a.frames as f64 * 90_000.0 / fps).round() as i64;
                    a.frames += 1;
                    self.out.push_back(MediaUnit::Video(VideoAccessUnit {
                        pts_90k,
                        dts_90k: None,
                        data: au,
                        framing: H264Framing::AnnexB,
                    }));
                }
            }
        }
    }

    /// The next unit, oldest first.
    pub fn pull(&mut self) -> Option<MediaUnit> {
        self.out.pop_front()
    }

    fn detect(&self, head: &[u8]) -> Result<State, Error> {
        if head.starts_with(&[0xff, 0xd8, 0xff]) || head.starts_with(b"--") {
            return Err(Error::UnsupportedCodec {
                camera: self.camera.clone(),
                found: "MJPEG".into(),
            });
        }
        let first_nal = match head {
            [0, 0, 0, 1, h, ..] | [0, 0, 1, h, ..] => Some(*h),
            _ => None,
        };
        if let Some(h) = first_nal {
            if h264::looks_like_h265(h) {
                return Err(Error::UnsupportedCodec {
                    camera: self.camera.clone(),
                    found: "H.265".into(),
                });
            }
            return Ok(State::AnnexB(AnnexBState {
                splitter: AnnexBSplitter::new(MAX_ACCESS_UNIT_BYTES),
                fps: self.fps_option,
                frames: 0,
                held: Vec::new(),
            }));
        }
        if matches!(
            head.get(4..8),
            Some(b"ftyp" | b"styp" | b"moov" | b"moof" | b"free" | b"sidx")
        ) {
            return Ok(State::Fmp4(Fmp4State {
                buf: BytesMut::new(),
                ftyp: None,
                moov: None,
                moof: None,
                parameter_sets: None,
            }));
        }
        Err(self.stream_err(format!(
            "neither Annex B H.264 (00 00 00 01 …) nor MP4 (…ftyp/moof): first bytes {:02x?}",
            head.get(..DETECT_BYTES).unwrap_or(head)
        )))
    }

    fn drain_annexb(&mut self) {
        let State::AnnexB(a) = &mut self.state else {
            return;
        };
        while let Some(au) = a.splitter.pull() {
            if a.fps.is_none() {
                match sps_fps(&au) {
                    Some(fps) => a.fps = Some(fps),
                    None if a.held.len() < MAX_HELD_FOR_SPS && !au_has_sps(&au) => {
                        a.held.push(au);
                        continue;
                    }
                    None => a.fps = Some(30.0), // an SPS without VUI timing, or none for long
                }
            }
            let fps = a.fps.unwrap_or(30.0);
            for au in a.held.drain(..).chain(std::iter::once(au)) {
                let pts_90k = (a.frames as f64 * 90_000.0 / fps).round() as i64;
                a.frames += 1;
                self.out.push_back(MediaUnit::Video(VideoAccessUnit {
                    pts_90k,
                    dts_90k: None,
                    data: au,
                    framing: H264Framing::AnnexB,
                }));
            }
        }
    }

    fn drain_fmp4(&mut self) -> Result<(), Error> {
        loop {
            let State::Fmp4(f) = &mut self.state else {
                return Ok(());
            };
            let Some((fourcc, size)) = box_header(&f.buf)? else {
                return Ok(());
            };
            if size > MAX_BOX_BYTES {
                return Err(self.stream_err(format!(
                    "MP4 box {} of {size} bytes is over the {MAX_BOX_BYTES}-byte bound",
                    String::from_utf8_lossy(&fourcc)
                )));
            }
            let size = size as usize;
            if f.buf.len() < size {
                return Ok(());
            }
            let b = f.buf.split_to(size).freeze();
            match &fourcc {
                b"ftyp" => f.ftyp = Some(b),
                b"moov" => {
                    f.moov = Some(b);
                    self.on_moov()?;
                }
                b"moof" => {
                    let State::Fmp4(f) = &mut self.state else {
                        return Ok(());
                    };
                    f.moof = Some(b);
                }
                b"mdat" => {
                    let State::Fmp4(f) = &mut self.state else {
                        return Ok(());
                    };
                    if let Some(moof) = f.moof.take() {
                        self.on_fragment(&moof, &b)?;
                    }
                }
                _ => {} // styp, sidx, free, emsg, prft…
            }
        }
    }

    fn init_bytes(f: &Fmp4State) -> BytesMut {
        let mut init = BytesMut::new();
        if let Some(ftyp) = &f.ftyp {
            init.extend_from_slice(ftyp);
        }
        if let Some(moov) = &f.moov {
            init.extend_from_slice(moov);
        }
        init
    }

    fn on_moov(&mut self) -> Result<(), Error> {
        let State::Fmp4(f) = &mut self.state else {
            return Ok(());
        };
        let moov_body = f
            .moov
            .as_deref()
            .and_then(|m| m.get(8..))
            .unwrap_or_default();
        if !demux::moov_is_fragmented(moov_body)
            && !contains(moov_body, b"hvc1")
            && !contains(moov_body, b"hev1")
        {
            // Its samples are in an mdat we may never see (or saw before the moov).
            return Err(Error::Stream {
                camera: self.camera.clone(),
                detail: "a regular (non-fragmented) MP4 is read only from a file; as a stream, send fragmented MP4 (ffmpeg -movflags frag_keyframe+empty_moov) or Annex B".into(),
            });
        }
        let init = Self::init_bytes(f).freeze();
        let file = demux::demux(init.clone()).map_err(|e| Error::Stream {
            camera: self.camera.clone(),
            detail: e.to_string(),
        })?;
        let video = file.tracks.iter().find_map(|t| match &t.kind {
            TrackKind::Video { parameter_sets, .. } => Some(parameter_sets.clone()),
            _ => None,
        });
        let Some(ps) = video else {
            let moov = f.moov.as_deref().unwrap_or_default();
            let found = if contains(moov, b"hvc1") || contains(moov, b"hev1") {
                "H.265"
            } else if contains(moov, b"mp4v") || contains(moov, b"jpeg") || contains(moov, b"mjpa")
            {
                "MJPEG/MPEG-4"
            } else {
                "non-H.264"
            };
            return Err(Error::UnsupportedCodec {
                camera: self.camera.clone(),
                found: found.into(),
            });
        };
        f.parameter_sets = Some(ps.clone());
        self.audio = file.audio_config();
        self.out.push_back(MediaUnit::ParameterSets(ps));
        self.ready = true;
        Ok(())
    }

    fn on_fragment(&mut self, moof: &[u8], mdat: &[u8]) -> Result<(), Error> {
        let State::Fmp4(f) = &mut self.state else {
            return Ok(());
        };
        if f.moov.is_none() {
            return Err(Error::Stream {
                camera: self.camera.clone(),
                detail: "fMP4 fragment before the init segment (moov)".into(),
            });
        }
        let mut file = Self::init_bytes(f);
        file.extend_from_slice(moof);
        file.extend_from_slice(mdat);
        let parsed = demux::demux(file.freeze()).map_err(|e| Error::Stream {
            camera: self.camera.clone(),
            detail: e.to_string(),
        })?;
        for unit in parsed.media_units() {
            if matches!(unit, MediaUnit::ParameterSets(_)) {
                continue; // sent once, after the moov
            }
            self.out.push_back(unit);
        }
        Ok(())
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// `(fourcc, total size)` of the box at the start of `buf`, `None` if the header is incomplete.
pub(crate) fn box_header(buf: &[u8]) -> Result<Option<([u8; 4], u64)>, Error> {
    let Some(&[s0, s1, s2, s3, f0, f1, f2, f3]) = buf.get(..8) else {
        return Ok(None);
    };
    let fourcc = [f0, f1, f2, f3];
    let size = match u32::from_be_bytes([s0, s1, s2, s3]) {
        1 => {
            let Some(l) = buf.get(8..16) else {
                return Ok(None);
            };
            let mut b = [0u8; 8];
            b.copy_from_slice(l);
            u64::from_be_bytes(b)
        }
        0 => u64::MAX, // "to the end of the file": unbounded on a live stream
        n => u64::from(n),
    };
    if size < 8 {
        return Err(Error::Stream {
            camera: String::new(),
            detail: format!("MP4 box size {size} < 8"),
        });
    }
    Ok(Some((fourcc, size)))
}

fn au_has_sps(au: &[u8]) -> bool {
    h264::find_nal(au, H264Framing::AnnexB, NalType::SPS).is_some()
}

/// The VUI frame rate of the first SPS in an Annex B access unit.
fn sps_fps(au: &[u8]) -> Option<f64> {
    let sps = h264::find_nal(au, H264Framing::AnnexB, NalType::SPS)?;
    SpsInfo::parse(sps)
        .ok()?
        .vui_fps
        .filter(|f| (1.0..=240.0).contains(f))
}
