//! Regular (moov-based) MP4 files, as phones, NVR exports and `ffmpeg -c copy` write them:
//! the `moov` sample tables are read once, wherever the box is (after `ftyp` with
//! `+faststart`, else after the `mdat`), then each sample is read from its offset, video and
//! audio interleaved by decode time. The file is never loaded whole: memory is the index
//! (about 40 bytes a sample) and one sample. Fragmented MP4 files go through the byte ingest.

use std::io::SeekFrom;
use std::path::Path;

use bytes::Bytes;
use recorder::MediaUnit;
use recorder::aac::AudioSpecificConfig;
use recorder::demux::{self, TrackKind};
use recorder::input::{AudioFrame, H264Framing, ParameterSets, VideoAccessUnit};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::Error;

/// Largest `moov` read, bytes (an hour of 30 fps video with AAC has a `moov` of ≈ 2 MB).
pub const MAX_MOOV_BYTES: u64 = 64 << 20;
/// Largest sample read, bytes (a 4K IDR picture is a few MB).
const MAX_SAMPLE_BYTES: u32 = 16 << 20;

#[derive(Debug, Clone, Copy)]
enum Timing {
    Video { pts_90k: i64, dts_90k: i64 },
    Audio { pts_samples: i64 },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: u64,
    len: u32,
    timing: Timing,
}

/// An open regular MP4 file and its sample index.
#[derive(Debug)]
pub struct PlainMp4 {
    camera: String,
    file: tokio::fs::File,
    parameter_sets: ParameterSets,
    length_size_bytes: u8,
    audio: Option<AudioSpecificConfig>,
    entries: Vec<Entry>,
    next: usize,
    sent_parameter_sets: bool,
}

fn stream_error(camera: &str, detail: impl Into<String>) -> Error {
    Error::Stream {
        camera: camera.to_owned(),
        detail: detail.into(),
    }
}

/// Reads the top-level box header at `pos`: `(fourcc, header length, box length)`, with the
/// byte ingest's parser (largesize; 0 = to the end of the file). `None`: no box header there.
async fn box_header(
    file: &mut tokio::fs::File,
    pos: u64,
    file_len: u64,
) -> std::io::Result<Option<([u8; 4], u64, u64)>> {
    if pos.saturating_add(8) > file_len {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(pos)).await?;
    let mut h = [0u8; 16];
    let n = usize::try_from((file_len - pos).min(16)).unwrap_or(16);
    let head = h.get_mut(..n).unwrap_or_default();
    file.read_exact(head).await?;
    let Ok(Some((fourcc, size))) = crate::ingest::box_header(head) else {
        return Ok(None);
    };
    let header = if head.get(..4) == Some(&[0, 0, 0, 1]) {
        16
    } else {
        8
    };
    let size = if size == u64::MAX {
        file_len - pos
    } else {
        size
    };
    Ok(Some((fourcc, header, size)))
}

impl PlainMp4 {
    /// Opens `path` if it is a regular MP4 with an H.264 track; `Ok(None)` for anything else
    /// (fragmented MP4, Annex B, garbage), which the byte ingest then reads or refuses.
    ///
    /// # Errors
    /// [`Error::Connect`] when the file cannot be read; [`Error::Stream`] for a regular MP4
    /// whose `moov` is malformed or too large, or that has no H.264 track.
    pub async fn open(path: &Path, camera: &str) -> Result<Option<Self>, Error> {
        let io = |e: std::io::Error| Error::Connect {
            camera: camera.to_owned(),
            detail: e.to_string(),
        };
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let file_len = file.metadata().await.map_err(io)?.len();
        match box_header(&mut file, 0, file_len).await.map_err(io)? {
            Some((f, _, _)) if &f == b"ftyp" => {}
            _ => return Ok(None),
        }
        // Walk the top-level boxes to the moov (skipping a leading or trailing mdat).
        let mut pos = 0u64;
        let moov = loop {
            let Some((fourcc, header, size)) =
                box_header(&mut file, pos, file_len).await.map_err(io)?
            else {
                return Ok(None);
            };
            if size < header || pos.saturating_add(size) > file_len {
                return Err(stream_error(
                    camera,
                    format!(
                        "malformed MP4: box {} at byte {pos} runs past the end of the file (truncated download?)",
                        String::from_utf8_lossy(&fourcc)
                    ),
                ));
            }
            if &fourcc == b"moov" {
                let body_len = size - header;
                if body_len > MAX_MOOV_BYTES {
                    return Err(stream_error(
                        camera,
                        format!(
                            "MP4 moov of {body_len} bytes is over the {MAX_MOOV_BYTES}-byte limit"
                        ),
                    ));
                }
                let mut body = vec![0u8; usize::try_from(body_len).unwrap_or(0)];
                file.seek(SeekFrom::Start(pos + header)).await.map_err(io)?;
                file.read_exact(&mut body).await.map_err(io)?;
                break body;
            }
            if &fourcc == b"moof" {
                return Ok(None); // fragmented, moov-less segment
            }
            pos += size;
        };
        if demux::moov_is_fragmented(&moov) {
            return Ok(None);
        }
        let tracks = demux::index(&moov, file_len)
            .map_err(|e| stream_error(camera, format!("{e} (a regular MP4's moov)")))?;
        let video = tracks
            .iter()
            .find(|t| matches!(t.kind, TrackKind::Video { .. }) && !t.samples.is_empty())
            .ok_or_else(|| {
                stream_error(
                    camera,
                    "the MP4 has no H.264 video track (HomeKit Secure Video needs H.264)",
                )
            })?;
        let TrackKind::Video {
            parameter_sets,
            length_size_bytes,
        } = &video.kind
        else {
            return Ok(None);
        };
        let audio_track = tracks
            .iter()
            .find(|t| matches!(t.kind, TrackKind::Audio { .. }) && !t.samples.is_empty());
        let audio = audio_track.and_then(|t| match &t.kind {
            TrackKind::Audio { asc } => Some(asc.clone()),
            _ => None,
        });
        let mut entries =
            Vec::with_capacity(video.samples.len() + audio_track.map_or(0, |a| a.samples.len()));
        let vts = i128::from(video.timescale);
        for s in &video.samples {
            let dts = i128::from(s.dts);
            let pts = dts + i128::from(s.composition_offset);
            entries.push(Entry {
                offset: s.range.start as u64,
                len: u32::try_from(s.range.len()).unwrap_or(u32::MAX),
                timing: Timing::Video {
                    pts_90k: (pts * 90_000 / vts) as i64,
                    dts_90k: (dts * 90_000 / vts) as i64,
                },
            });
        }
        let rate = audio.as_ref().map_or(1, |a| a.sample_rate_hz);
        if let Some(a) = audio_track {
            let ats = i128::from(a.timescale);
            for s in &a.samples {
                entries.push(Entry {
                    offset: s.range.start as u64,
                    len: u32::try_from(s.range.len()).unwrap_or(u32::MAX),
                    timing: Timing::Audio {
                        pts_samples: (i128::from(s.dts) * i128::from(rate) / ats) as i64,
                    },
                });
            }
        }
        let time = |e: &Entry| match e.timing {
            Timing::Video { dts_90k, .. } => dts_90k,
            Timing::Audio { pts_samples } => {
                (i128::from(pts_samples) * 90_000 / i128::from(rate)) as i64
            }
        };
        // Stable: decode order within a track is kept.
        entries.sort_by_key(time);
        Ok(Some(Self {
            camera: camera.to_owned(),
            file,
            parameter_sets: parameter_sets.clone(),
            length_size_bytes: *length_size_bytes,
            audio,
            entries,
            next: 0,
            sent_parameter_sets: false,
        }))
    }

    /// The AAC configuration of the first audio track, if any.
    pub fn audio_config(&self) -> Option<&AudioSpecificConfig> {
        self.audio.as_ref()
    }

    /// Samples in the index (video and audio).
    pub fn sample_count(&self) -> usize {
        self.entries.len()
    }

    /// The next unit: `avcC`'s parameter sets first, then samples in decode-time order;
    /// `None` at the end of the file.
    ///
    /// # Errors
    /// [`Error::Stream`] when a sample cannot be read (file truncated or changed).
    pub async fn next_unit(&mut self) -> Result<Option<MediaUnit>, Error> {
        if !self.sent_parameter_sets {
            self.sent_parameter_sets = true;
            return Ok(Some(MediaUnit::ParameterSets(self.parameter_sets.clone())));
        }
        let Some(e) = self.entries.get(self.next).copied() else {
            return Ok(None);
        };
        self.next += 1;
        if e.len > MAX_SAMPLE_BYTES {
            return Err(stream_error(
                &self.camera,
                format!(
                    "MP4 sample of {} bytes is over the {MAX_SAMPLE_BYTES}-byte limit",
                    e.len
                ),
            ));
        }
        let mut data = vec![0u8; e.len as usize];
        let read = async {
            self.file.seek(SeekFrom::Start(e.offset)).await?;
            self.file.read_exact(&mut data).await
        };
        read.await.map_err(|err| {
            stream_error(
                &self.camera,
                format!("reading the MP4 sample at byte {}: {err}", e.offset),
            )
        })?;
        let data = Bytes::from(data);
        Ok(Some(match e.timing {
            Timing::Video { pts_90k, dts_90k } => MediaUnit::Video(VideoAccessUnit {
                pts_90k,
                dts_90k: Some(dts_90k),
                data,
                framing: H264Framing::Avcc {
                    length_size_bytes: self.length_size_bytes,
                },
            }),
            Timing::Audio { pts_samples } => MediaUnit::Audio(AudioFrame { pts_samples, data }),
        }))
    }
}
