//! RTSP cameras through `retina`: DESCRIBE → SETUP (H.264 video, AAC audio when present) →
//! PLAY, then demuxed frames as [`MediaUnit`]s.
//!
//! - Transport: RTP interleaved over the RTSP TCP connection by default (RFC 2326 §10.12);
//!   `#transport=udp` asks for UDP.
//! - Credentials come from the URL and are handed to retina (digest or basic, as the camera
//!   asks); the URL given to retina has them removed, and they never reach a log line.
//! - Video frames are 4-byte length-prefixed with SPS/PPS inserted before each key frame, so
//!   parameter changes reach the fragmenter in band; the SDP's parameter sets go out of band.
//! - Audio other than AAC (`mpeg4-generic`) is not set up: the recording is video-only and
//!   the stream parameters say what was ignored (HKSV records AAC-LC or AAC-ELD only).
//! - `rtsps://` is parsed but rejected: retina 0.4 speaks plain RTSP only.

use std::pin::Pin;

use futures_util::StreamExt;
use recorder::MediaUnit;
use recorder::aac::AudioSpecificConfig;
use recorder::input::{AudioFrame, H264Framing, ParameterSets, VideoAccessUnit};
use retina::client::{
    Credentials, Demuxed, PlayOptions, Session, SessionOptions, SetupOptions, Transport,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef, VideoParametersCodec};
use tracing::{debug, info};
use url::Url;

use crate::Error;
use crate::camera::{Connector, MediaSession, StreamParams};
use crate::spec::{RtspTransport, SourceSpec};

/// Opens RTSP sessions for an `rtsp://` [`SourceSpec`].
pub struct RtspConnector {
    url: Url,
    transport: RtspTransport,
    camera: String,
}

impl std::fmt::Debug for RtspConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtspConnector")
            .field("camera", &self.camera)
            .field("transport", &self.transport)
            .finish()
    }
}

impl RtspConnector {
    /// A connector for `spec`.
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] if `spec` is not RTSP.
    pub fn new(spec: &SourceSpec) -> Result<Self, Error> {
        match spec {
            SourceSpec::Rtsp { url, transport } => Ok(Self {
                url: url.clone(),
                transport: *transport,
                camera: spec.to_string(),
            }),
            _ => Err(Error::InvalidSpec {
                input: spec.to_string(),
                reason: "not an RTSP source".into(),
            }),
        }
    }

    fn map_err(&self, e: &retina::Error, stage: &str) -> Error {
        match e.status_code() {
            Some(s @ (401 | 403)) => Error::Auth {
                camera: self.camera.clone(),
                status: s,
            },
            _ => Error::Connect {
                camera: self.camera.clone(),
                detail: format!("{stage}: {}", first_line(&e.to_string())),
            },
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_owned()
}

/// One playing RTSP session.
pub struct RtspSession {
    camera: String,
    demuxed: Pin<Box<Demuxed>>,
    video_stream: usize,
    audio_stream: Option<usize>,
    params: StreamParams,
}

impl std::fmt::Debug for RtspSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtspSession")
            .field("camera", &self.camera)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl Connector for RtspConnector {
    type Session = RtspSession;

    fn camera(&self) -> String {
        self.camera.clone()
    }

    async fn connect(&mut self) -> Result<RtspSession, Error> {
        if self.url.scheme() == "rtsps" {
            return Err(Error::Unsupported {
                camera: self.camera.clone(),
                detail: "rtsps:// (RTSP over TLS) is not supported by the RTSP client (retina 0.4); use the camera's rtsp:// URL on the LAN".into(),
            });
        }
        let mut bare = self.url.clone();
        let creds = (!bare.username().is_empty()).then(|| Credentials {
            username: percent_decode(bare.username()),
            password: percent_decode(bare.password().unwrap_or("")),
        });
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
        let options = SessionOptions::default()
            .creds(creds)
            .user_agent("hksv-bridge".into());
        let mut session = Session::describe(bare, options)
            .await
            .map_err(|e| self.map_err(&e, "DESCRIBE"))?;

        let streams = session.streams();
        let video_stream = streams
            .iter()
            .position(|s| s.media() == "video" && s.encoding_name().eq_ignore_ascii_case("h264"));
        let Some(video_stream) = video_stream else {
            let found = streams
                .iter()
                .find(|s| s.media() == "video")
                .map(|s| match s.encoding_name().to_ascii_lowercase().as_str() {
                    "h265" => "H.265".to_owned(),
                    "jpeg" => "MJPEG".to_owned(),
                    other => other.to_uppercase(),
                })
                .unwrap_or_else(|| "no".into());
            return Err(Error::UnsupportedCodec {
                camera: self.camera.clone(),
                found,
            });
        };
        let mut ignored_audio = None;
        let audio_stream = streams.iter().position(|s| {
            s.media() == "audio" && s.encoding_name().eq_ignore_ascii_case("mpeg4-generic")
        });
        if audio_stream.is_none()
            && let Some(a) = streams.iter().find(|s| s.media() == "audio")
        {
            let note = format!(
                "{} {} Hz",
                a.encoding_name().to_uppercase(),
                a.clock_rate_hz()
            );
            info!(camera = %self.camera, audio = %note, "audio is not AAC; recording video only (HKSV records AAC-LC or AAC-ELD)");
            ignored_audio = Some(note);
        }
        let out_of_band = match streams.get(video_stream).and_then(|s| s.parameters()) {
            Some(ParametersRef::Video(v)) => match v.codec_params() {
                VideoParametersCodec::H264 { sps, pps } => Some(ParameterSets {
                    sps: sps.clone(),
                    pps: pps.clone(),
                }),
                _ => None,
            },
            _ => None,
        };
        let transport = match self.transport {
            RtspTransport::Tcp => Transport::Tcp(Default::default()),
            RtspTransport::Udp => Transport::Udp(Default::default()),
        };
        let format = FrameFormat {
            h26x_framing: retina::codec::h26x::Framing::FourByteLength,
            parameter_set_insertion: retina::codec::ParameterSetInsertion::EachKeyFrame,
            aac_framing: retina::codec::aac::Framing::Raw,
        };
        session
            .setup(
                video_stream,
                SetupOptions::default()
                    .transport(transport.clone())
                    .frame_format(format),
            )
            .await
            .map_err(|e| self.map_err(&e, "SETUP video"))?;
        let mut audio = None;
        if let Some(i) = audio_stream {
            session
                .setup(
                    i,
                    SetupOptions::default()
                        .transport(transport)
                        .frame_format(format),
                )
                .await
                .map_err(|e| self.map_err(&e, "SETUP audio"))?;
            if let Some(ParametersRef::Audio(a)) =
                session.streams().get(i).and_then(|s| s.parameters())
            {
                match AudioSpecificConfig::parse(a.extra_data()) {
                    Ok(asc) => audio = Some(asc),
                    Err(e) => {
                        ignored_audio = Some(format!("AAC with an unusable config ({e})"));
                    }
                }
            }
        }
        let playing = session
            .play(PlayOptions::default())
            .await
            .map_err(|e| self.map_err(&e, "PLAY"))?;
        let demuxed = playing.demuxed().map_err(|e| self.map_err(&e, "demux"))?;
        debug!(camera = %self.camera, "RTSP session playing");
        let transport = match self.transport {
            RtspTransport::Tcp => "RTSP, RTP over TCP",
            RtspTransport::Udp => "RTSP, RTP over UDP",
        };
        let audio_stream = audio.as_ref().and(audio_stream);
        Ok(RtspSession {
            camera: self.camera.clone(),
            demuxed: Box::pin(demuxed),
            video_stream,
            audio_stream,
            params: StreamParams {
                parameter_sets: out_of_band,
                audio,
                ignored_audio,
                transport: transport.into(),
            },
        })
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

impl MediaSession for RtspSession {
    fn params(&self) -> &StreamParams {
        &self.params
    }

    async fn next_unit(&mut self) -> Result<Option<MediaUnit>, Error> {
        loop {
            let Some(item) = self.demuxed.next().await else {
                return Ok(None);
            };
            let item = item.map_err(|e| Error::Stream {
                camera: self.camera.clone(),
                detail: first_line(&e.to_string()),
            })?;
            match item {
                CodecItem::VideoFrame(f) if f.stream_id() == self.video_stream => {
                    // retina extends the 32-bit RTP timestamp to i64 (RFC 3550 §5.1 wraps).
                    let t = f.timestamp();
                    let pts_90k = rescale(t.timestamp(), t.clock_rate().get(), 90_000);
                    return Ok(Some(MediaUnit::Video(VideoAccessUnit {
                        pts_90k,
                        dts_90k: None,
                        data: f.into_data().into(),
                        framing: H264Framing::Avcc {
                            length_size_bytes: 4,
                        },
                    })));
                }
                CodecItem::AudioFrame(f) if Some(f.stream_id()) == self.audio_stream => {
                    // The mpeg4-generic clock rate is the sample rate (RFC 3640 §3.3.6).
                    let t = f.timestamp();
                    let rate = self
                        .params
                        .audio
                        .as_ref()
                        .map_or(t.clock_rate().get(), |a| a.sample_rate_hz);
                    return Ok(Some(MediaUnit::Audio(AudioFrame {
                        pts_samples: rescale(t.timestamp(), t.clock_rate().get(), rate),
                        data: bytes::Bytes::copy_from_slice(f.data()),
                    })));
                }
                _ => {}
            }
        }
    }
}

fn rescale(t: i64, from_hz: u32, to_hz: u32) -> i64 {
    if from_hz == to_hz {
        return t;
    }
    (i128::from(t) * i128::from(to_hz) / i128::from(from_hz.max(1))) as i64
}
