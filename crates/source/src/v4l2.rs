//! V4L2 H.264 capture (`v4l2:///dev/video0?width=1920&height=1080&fps=30&<control>=<value>`).
//!
//! [`configure`] is the pure part, run against the [`V4l2Device`] trait (the real device
//! through the `v4l` crate, or [`SimDevice`] in tests):
//! 1. set the capture format to `H264` (V4L2_PIX_FMT_H264) at the requested size; a device
//!    that answers with another format (MJPG, YUYV) is rejected naming what HKSV needs;
//! 2. set the frame rate;
//! 3. set the encoder's I-frame period (V4L2_CID_MPEG_VIDEO_H264_I_PERIOD) to `fps × 4`, so
//!    each GOP is exactly one 4 s HKSV fragment (protocol-notes §3.4: fragments of 4000 ms),
//!    and ask for SPS/PPS before every IDR (V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER) where
//!    supported;
//! 4. set every other control from the URL, by our name table ([`control_id`]) or by the
//!    device's own control name (lower case, non-alphanumerics as `_`: "Video Bitrate" →
//!    `video_bitrate`). An explicit `h264_i_period=` overrides step 3.
//!
//! Capture runs on a blocking thread (the `v4l` crate's mmap stream) and hands each buffer
//! (one Annex B access unit) with its driver timestamp to the session.

use std::collections::BTreeMap;

use crate::Error;
use crate::spec::V4l2Params;

/// Control ids from `linux/v4l2-controls.h`.
pub mod cid {
    /// V4L2_CID_BASE (user class).
    const USER_BASE: u32 = 0x0098_0900;
    /// V4L2_CID_CODEC_BASE (stateful codec class).
    const CODEC_BASE: u32 = 0x0099_0900;
    /// V4L2_CID_CAMERA_CLASS_BASE.
    const CAMERA_BASE: u32 = 0x009a_0900;
    /// V4L2_CID_BRIGHTNESS.
    pub const BRIGHTNESS: u32 = USER_BASE;
    /// V4L2_CID_CONTRAST.
    pub const CONTRAST: u32 = USER_BASE + 1;
    /// V4L2_CID_SATURATION.
    pub const SATURATION: u32 = USER_BASE + 2;
    /// V4L2_CID_HFLIP.
    pub const HFLIP: u32 = USER_BASE + 20;
    /// V4L2_CID_VFLIP.
    pub const VFLIP: u32 = USER_BASE + 21;
    /// V4L2_CID_POWER_LINE_FREQUENCY.
    pub const POWER_LINE_FREQUENCY: u32 = USER_BASE + 24;
    /// V4L2_CID_SHARPNESS.
    pub const SHARPNESS: u32 = USER_BASE + 27;
    /// V4L2_CID_ROTATE.
    pub const ROTATE: u32 = USER_BASE + 34;
    /// V4L2_CID_MPEG_VIDEO_GOP_SIZE.
    pub const GOP_SIZE: u32 = CODEC_BASE + 203;
    /// V4L2_CID_MPEG_VIDEO_BITRATE_MODE.
    pub const BITRATE_MODE: u32 = CODEC_BASE + 206;
    /// V4L2_CID_MPEG_VIDEO_BITRATE.
    pub const BITRATE: u32 = CODEC_BASE + 207;
    /// V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER.
    pub const REPEAT_SEQ_HEADER: u32 = CODEC_BASE + 226;
    /// V4L2_CID_MPEG_VIDEO_H264_I_PERIOD.
    pub const H264_I_PERIOD: u32 = CODEC_BASE + 358;
    /// V4L2_CID_MPEG_VIDEO_H264_LEVEL.
    pub const H264_LEVEL: u32 = CODEC_BASE + 359;
    /// V4L2_CID_MPEG_VIDEO_H264_PROFILE.
    pub const H264_PROFILE: u32 = CODEC_BASE + 363;
    /// V4L2_CID_EXPOSURE_AUTO.
    pub const EXPOSURE_AUTO: u32 = CAMERA_BASE + 1;
    /// V4L2_CID_EXPOSURE_ABSOLUTE.
    pub const EXPOSURE_ABSOLUTE: u32 = CAMERA_BASE + 2;
}

/// Our control names (as written in the URL) and their ids.
pub const CONTROL_NAMES: &[(&str, u32)] = &[
    ("brightness", cid::BRIGHTNESS),
    ("contrast", cid::CONTRAST),
    ("saturation", cid::SATURATION),
    ("hflip", cid::HFLIP),
    ("vflip", cid::VFLIP),
    ("power_line_frequency", cid::POWER_LINE_FREQUENCY),
    ("sharpness", cid::SHARPNESS),
    ("rotate", cid::ROTATE),
    ("gop_size", cid::GOP_SIZE),
    ("bitrate_mode", cid::BITRATE_MODE),
    ("video_bitrate", cid::BITRATE),
    ("bitrate", cid::BITRATE),
    ("repeat_sequence_header", cid::REPEAT_SEQ_HEADER),
    ("h264_i_period", cid::H264_I_PERIOD),
    ("h264_i_frame_period", cid::H264_I_PERIOD),
    ("h264_level", cid::H264_LEVEL),
    ("h264_profile", cid::H264_PROFILE),
    ("auto_exposure", cid::EXPOSURE_AUTO),
    ("exposure_auto", cid::EXPOSURE_AUTO),
    ("exposure_time_absolute", cid::EXPOSURE_ABSOLUTE),
    ("exposure_absolute", cid::EXPOSURE_ABSOLUTE),
];

/// The id of a control by our name (see [`CONTROL_NAMES`]).
pub fn control_id(name: &str) -> Option<u32> {
    CONTROL_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, id)| id)
}

/// A device control's name normalised for matching URL keys: "H264 I-Frame Period" →
/// `h264_i_frame_period`.
pub fn normalise_control_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_owned()
}

/// A control the device offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlInfo {
    /// Control id.
    pub id: u32,
    /// The driver's name, e.g. "Video Bitrate".
    pub name: String,
}

/// The pixel format (fourcc) and size the device agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgreedFormat {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The fourcc, e.g. `*b"H264"`.
    pub fourcc: [u8; 4],
}

/// The device operations [`configure`] needs. Errors are the driver's messages.
pub trait V4l2Device {
    /// The device's controls.
    fn controls(&mut self) -> Result<Vec<ControlInfo>, String>;
    /// Sets a control.
    fn set_control(&mut self, id: u32, value: i64) -> Result<(), String>;
    /// Requests a capture format; returns what the device chose.
    fn set_format(
        &mut self,
        width: u32,
        height: u32,
        fourcc: [u8; 4],
    ) -> Result<AgreedFormat, String>;
    /// Requests a frame rate; returns the rate the device chose.
    fn set_fps(&mut self, fps: u32) -> Result<u32, String>;
}

/// What [`configure`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedConfig {
    /// The agreed format.
    pub format: AgreedFormat,
    /// The agreed frame rate.
    pub fps: u32,
    /// Controls set, in order: (id, value).
    pub controls: Vec<(u32, i64)>,
}

/// Configures a device for HKSV capture. See the module docs for the steps.
///
/// # Errors
/// [`Error::UnsupportedCodec`] if the device cannot produce H.264; [`Error::InvalidSpec`]
/// for a control name neither our table nor the device knows; [`Error::Connect`] when the
/// driver rejects the format, the frame rate or a requested control.
pub fn configure(
    dev: &mut impl V4l2Device,
    p: &V4l2Params,
    camera: &str,
) -> Result<AppliedConfig, Error> {
    let drv = |detail: String| Error::Connect {
        camera: camera.to_owned(),
        detail,
    };
    let format = dev
        .set_format(p.width, p.height, *b"H264")
        .map_err(|e| drv(format!("set format: {e}")))?;
    if &format.fourcc != b"H264" {
        let found = match &format.fourcc {
            b"MJPG" | b"JPEG" => "MJPEG".to_owned(),
            b"HEVC" => "H.265".to_owned(),
            other => format!(
                "raw {} (no H.264 encoder on this device)",
                String::from_utf8_lossy(other)
            ),
        };
        return Err(Error::UnsupportedCodec {
            camera: camera.to_owned(),
            found,
        });
    }
    let fps = dev
        .set_fps(p.fps)
        .map_err(|e| drv(format!("set frame rate: {e}")))?
        .max(1);
    let available = dev
        .controls()
        .map_err(|e| drv(format!("list controls: {e}")))?;
    let by_name: BTreeMap<String, u32> = available
        .iter()
        .map(|c| (normalise_control_name(&c.name), c.id))
        .collect();
    let has = |id: u32| available.iter().any(|c| c.id == id);

    // Requested controls first resolved, so a bad name fails before anything is changed.
    let mut requested = Vec::with_capacity(p.controls.len());
    for (name, value) in &p.controls {
        let id = control_id(name)
            .or_else(|| by_name.get(name.as_str()).copied())
            .ok_or_else(|| Error::InvalidSpec {
                input: camera.to_owned(),
                reason: format!(
                    "unknown V4L2 control {name:?}; this device has: {}",
                    by_name.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            })?;
        requested.push((id, *value));
    }
    let mut controls = Vec::new();
    let explicit_period = requested.iter().any(|&(id, _)| id == cid::H264_I_PERIOD);
    if !explicit_period {
        // One GOP per 4 s fragment (HKSV fragment length, protocol-notes §3.4).
        let period = i64::from(fps) * 4;
        if has(cid::H264_I_PERIOD) {
            dev.set_control(cid::H264_I_PERIOD, period)
                .map_err(|e| drv(format!("set H264 I-frame period: {e}")))?;
            controls.push((cid::H264_I_PERIOD, period));
        } else if has(cid::GOP_SIZE) {
            dev.set_control(cid::GOP_SIZE, period)
                .map_err(|e| drv(format!("set GOP size: {e}")))?;
            controls.push((cid::GOP_SIZE, period));
        } else {
            tracing::warn!(
                camera,
                "the device has no I-frame period control; check the GOP with `check`"
            );
        }
    }
    if has(cid::REPEAT_SEQ_HEADER)
        && !requested
            .iter()
            .any(|&(id, _)| id == cid::REPEAT_SEQ_HEADER)
    {
        // Best effort: without it SPS/PPS come only once, before the first IDR.
        if dev.set_control(cid::REPEAT_SEQ_HEADER, 1).is_ok() {
            controls.push((cid::REPEAT_SEQ_HEADER, 1));
        }
    }
    for (id, value) in requested {
        dev.set_control(id, value)
            .map_err(|e| drv(format!("set control {id:#010x}={value}: {e}")))?;
        controls.push((id, value));
    }
    Ok(AppliedConfig {
        format,
        fps,
        controls,
    })
}

/// A simulated V4L2 device for tests: records what was set.
#[derive(Debug, Clone, Default)]
pub struct SimDevice {
    /// Controls offered.
    pub available: Vec<ControlInfo>,
    /// The fourcc the device produces (it ignores the requested one when it differs).
    pub native_fourcc: Option<[u8; 4]>,
    /// The fps it accepts at most.
    pub max_fps: u32,
    /// Controls set so far, in order.
    pub set: Vec<(u32, i64)>,
    /// Control ids whose setting fails.
    pub failing: Vec<u32>,
}

impl V4l2Device for SimDevice {
    fn controls(&mut self) -> Result<Vec<ControlInfo>, String> {
        Ok(self.available.clone())
    }
    fn set_control(&mut self, id: u32, value: i64) -> Result<(), String> {
        if self.failing.contains(&id) || !self.available.iter().any(|c| c.id == id) {
            return Err("Invalid argument (os error 22)".into());
        }
        self.set.push((id, value));
        Ok(())
    }
    fn set_format(
        &mut self,
        width: u32,
        height: u32,
        fourcc: [u8; 4],
    ) -> Result<AgreedFormat, String> {
        Ok(AgreedFormat {
            width,
            height,
            fourcc: self.native_fourcc.unwrap_or(fourcc),
        })
    }
    fn set_fps(&mut self, fps: u32) -> Result<u32, String> {
        Ok(fps.min(self.max_fps.max(1)))
    }
}

#[cfg(feature = "v4l2")]
pub use real::{V4l2Connector, V4l2Session};

#[cfg(feature = "v4l2")]
mod real {
    use bytes::Bytes;
    use recorder::MediaUnit;
    use recorder::input::{H264Framing, VideoAccessUnit};
    use tokio::sync::mpsc;
    use v4l::io::traits::CaptureStream;
    use v4l::video::Capture;

    use super::{AgreedFormat, ControlInfo, V4l2Device, configure};
    use crate::Error;
    use crate::camera::{Connector, MediaSession, StreamParams};
    use crate::spec::V4l2Params;

    struct Real(v4l::Device);

    impl V4l2Device for Real {
        fn controls(&mut self) -> Result<Vec<ControlInfo>, String> {
            let c = self.0.query_controls().map_err(|e| e.to_string())?;
            Ok(c.into_iter()
                .map(|d| ControlInfo {
                    id: d.id,
                    name: d.name,
                })
                .collect())
        }
        fn set_control(&mut self, id: u32, value: i64) -> Result<(), String> {
            self.0
                .set_control(v4l::control::Control {
                    id,
                    value: v4l::control::Value::Integer(value),
                })
                .map_err(|e| e.to_string())
        }
        fn set_format(
            &mut self,
            width: u32,
            height: u32,
            fourcc: [u8; 4],
        ) -> Result<AgreedFormat, String> {
            let f = v4l::Format::new(width, height, v4l::FourCC::new(&fourcc));
            let got = Capture::set_format(&self.0, &f).map_err(|e| e.to_string())?;
            Ok(AgreedFormat {
                width: got.width,
                height: got.height,
                fourcc: got.fourcc.repr,
            })
        }
        fn set_fps(&mut self, fps: u32) -> Result<u32, String> {
            let got = Capture::set_params(&self.0, &v4l::video::capture::Parameters::with_fps(fps))
                .map_err(|e| e.to_string())?;
            Ok(got
                .interval
                .denominator
                .checked_div(got.interval.numerator.max(1))
                .unwrap_or(fps))
        }
    }

    /// Opens V4L2 capture sessions.
    #[derive(Debug)]
    pub struct V4l2Connector {
        params: V4l2Params,
        camera: String,
    }

    impl V4l2Connector {
        /// A connector for the device in `params`.
        pub fn new(params: V4l2Params, camera: String) -> Self {
            Self { params, camera }
        }
    }

    /// A running capture: buffers arrive from the capture thread.
    #[derive(Debug)]
    pub struct V4l2Session {
        rx: mpsc::Receiver<Result<(Bytes, i64), String>>,
        camera: String,
        params: StreamParams,
        first_us: Option<i64>,
    }

    impl Connector for V4l2Connector {
        type Session = V4l2Session;

        fn camera(&self) -> String {
            self.camera.clone()
        }

        async fn connect(&mut self) -> Result<V4l2Session, Error> {
            let params = self.params.clone();
            let camera = self.camera.clone();
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            let (tx, rx) = mpsc::channel(8);
            // The v4l crate is blocking: configure and capture on a dedicated thread.
            std::thread::Builder::new()
                .name("v4l2-capture".into())
                .spawn(move || {
                    let dev = match v4l::Device::with_path(&params.device) {
                        Ok(d) => d,
                        Err(e) => {
                            let _ = ready_tx.send(Err(Error::Connect {
                                camera,
                                detail: format!("open {}: {e}", params.device.display()),
                            }));
                            return;
                        }
                    };
                    let mut real = Real(dev);
                    if let Err(e) = configure(&mut real, &params, &camera) {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                    let mut stream = match v4l::io::mmap::Stream::with_buffers(
                        &real.0,
                        v4l::buffer::Type::VideoCapture,
                        4,
                    ) {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(Error::Connect {
                                camera,
                                detail: format!("start capture: {e}"),
                            }));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    loop {
                        let item = match CaptureStream::next(&mut stream) {
                            Ok((buf, meta)) => {
                                let used = (meta.bytesused as usize).min(buf.len());
                                // time_t is 32-bit on 32-bit Raspberry Pi OS, 64-bit here.
                                #[allow(clippy::useless_conversion)]
                                let us = i64::from(meta.timestamp.sec) * 1_000_000
                                    + i64::from(meta.timestamp.usec);
                                Ok((
                                    Bytes::copy_from_slice(buf.get(..used).unwrap_or_default()),
                                    us,
                                ))
                            }
                            Err(e) => Err(e.to_string()),
                        };
                        let failed = item.is_err();
                        if tx.blocking_send(item).is_err() || failed {
                            return; // session dropped, or the device failed
                        }
                    }
                })
                .map_err(|e| Error::Connect {
                    camera: self.camera.clone(),
                    detail: format!("capture thread: {e}"),
                })?;
            ready_rx.await.map_err(|_| Error::Connect {
                camera: self.camera.clone(),
                detail: "capture thread ended".into(),
            })??;
            Ok(V4l2Session {
                rx,
                camera: self.camera.clone(),
                params: StreamParams {
                    transport: "V4L2 H.264 capture".into(),
                    ..Default::default()
                },
                first_us: None,
            })
        }
    }

    impl MediaSession for V4l2Session {
        fn params(&self) -> &StreamParams {
            &self.params
        }

        async fn next_unit(&mut self) -> Result<Option<MediaUnit>, Error> {
            match self.rx.recv().await {
                None => Ok(None),
                Some(Err(e)) => Err(Error::Stream {
                    camera: self.camera.clone(),
                    detail: e,
                }),
                Some(Ok((data, us))) => {
                    // Driver timestamps are CLOCK_MONOTONIC microseconds.
                    let first = *self.first_us.get_or_insert(us);
                    let pts_90k = (us - first).max(0) * 9 / 100;
                    Ok(Some(MediaUnit::Video(VideoAccessUnit {
                        pts_90k,
                        dts_90k: None,
                        data,
                        framing: H264Framing::AnnexB,
                    })))
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::spec::SourceSpec;

    /// The controls a Raspberry Pi's bcm2835-codec H.264 encoder lists (names as the driver
    /// reports them).
    fn pi_encoder() -> SimDevice {
        let c = |id, name: &str| ControlInfo {
            id,
            name: name.into(),
        };
        SimDevice {
            available: vec![
                c(cid::BITRATE_MODE, "Video Bitrate Mode"),
                c(cid::BITRATE, "Video Bitrate"),
                c(cid::REPEAT_SEQ_HEADER, "Repeat Sequence Header"),
                c(cid::H264_I_PERIOD, "H264 I-Frame Period"),
                c(cid::H264_LEVEL, "H264 Level"),
                c(cid::H264_PROFILE, "H264 Profile"),
                c(cid::ROTATE, "Rotate"),
                c(0x0099_0a6c, "H264 Minimum QP Value"),
            ],
            native_fourcc: None,
            max_fps: 30,
            ..Default::default()
        }
    }

    fn params(s: &str) -> V4l2Params {
        match s.parse::<SourceSpec>().unwrap() {
            SourceSpec::V4l2(p) => p,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn i_period_is_four_seconds_of_frames() {
        let mut dev = pi_encoder();
        let applied = configure(
            &mut dev,
            &params("v4l2:///dev/video0?width=1280&height=720&fps=25"),
            "cam",
        )
        .unwrap();
        assert_eq!(
            (
                applied.format.width,
                applied.format.height,
                &applied.format.fourcc
            ),
            (1280, 720, b"H264")
        );
        assert_eq!(
            dev.set,
            vec![(cid::H264_I_PERIOD, 100), (cid::REPEAT_SEQ_HEADER, 1)]
        );
    }

    #[test]
    fn fps_the_device_lowers_sets_the_period() {
        let mut dev = pi_encoder();
        dev.max_fps = 15;
        configure(&mut dev, &params("v4l2:///dev/video0?fps=30"), "cam").unwrap();
        assert_eq!(dev.set[0], (cid::H264_I_PERIOD, 60));
    }

    #[test]
    fn named_controls_by_table_and_by_device_name() {
        let mut dev = pi_encoder();
        let p = params(
            "v4l2:///dev/video0?rotate=180&video_bitrate_mode=1&h264_minimum_qp_value=20&h264_i_period=30",
        );
        configure(&mut dev, &p, "cam").unwrap();
        assert_eq!(
            dev.set,
            vec![
                (cid::REPEAT_SEQ_HEADER, 1),
                (cid::ROTATE, 180),
                (cid::BITRATE_MODE, 1),
                (0x0099_0a6c, 20),
                (cid::H264_I_PERIOD, 30)
            ]
        );
    }

    #[test]
    fn unknown_control_fails_before_changing_anything() {
        let mut dev = pi_encoder();
        let e = configure(&mut dev, &params("v4l2:///dev/video0?zoom_level=3"), "cam").unwrap_err();
        assert!(
            matches!(&e, Error::InvalidSpec { reason, .. } if reason.contains("zoom_level") && reason.contains("video_bitrate")),
            "{e}"
        );
        assert!(dev.set.is_empty());
    }

    #[test]
    fn mjpeg_only_device_is_rejected_naming_h264() {
        let mut dev = pi_encoder();
        dev.native_fourcc = Some(*b"MJPG");
        let e = configure(&mut dev, &params("v4l2:///dev/video0"), "usb-cam").unwrap_err();
        assert!(matches!(&e, Error::UnsupportedCodec { found, .. } if found == "MJPEG"));
        assert!(e.to_string().contains("needs H.264"), "{e}");
    }

    #[test]
    fn gop_size_fallback_and_driver_errors() {
        let mut dev = SimDevice {
            available: vec![ControlInfo {
                id: cid::GOP_SIZE,
                name: "Video GOP Size".into(),
            }],
            max_fps: 30,
            ..Default::default()
        };
        configure(&mut dev, &params("v4l2:///dev/video0?fps=20"), "cam").unwrap();
        assert_eq!(dev.set, vec![(cid::GOP_SIZE, 80)]);
        let mut dev = pi_encoder();
        dev.failing.push(cid::ROTATE);
        let e = configure(&mut dev, &params("v4l2:///dev/video0?rotate=90"), "cam").unwrap_err();
        assert!(matches!(e, Error::Connect { .. }), "{e}");
    }

    #[test]
    fn control_names_normalise() {
        assert_eq!(
            normalise_control_name("H264 I-Frame Period"),
            "h264_i_frame_period"
        );
        assert_eq!(normalise_control_name("  Video Bitrate "), "video_bitrate");
        assert_eq!(control_id("h264_i_period"), Some(0x0099_0a66));
        assert_eq!(control_id("rotate"), Some(0x0098_0922));
    }
}
