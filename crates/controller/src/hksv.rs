//! HKSV as the hub drives it: read 205/206/207, derive and write a
//! SelectedCameraRecordingConfiguration (209), switch recording on, and set up a HomeKit Data
//! Stream with SetupDataStreamTransport (131). TLV layouts: protocol-notes §3.1–§3.6.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hap_tlv::{Tlv8, TlvType};
use serde_json::{Value as Json, json};

use crate::hap::{CharWrite, HapClient, HapError};
use crate::model::AccessoryDb;

/// Service and characteristic short types (protocol-notes §2.2, §2.3).
pub mod types {
    /// CameraEventRecordingManagement service.
    pub const RECORDING_MANAGEMENT: &str = "204";
    /// CameraOperatingMode service.
    pub const OPERATING_MODE: &str = "21A";
    /// DataStreamTransportManagement service.
    pub const DATA_STREAM_MANAGEMENT: &str = "129";
    /// MotionSensor service.
    pub const MOTION_SENSOR: &str = "85";
    /// CameraRTPStreamManagement service.
    pub const RTP_STREAM_MANAGEMENT: &str = "110";
    /// Active.
    pub const ACTIVE: &str = "B0";
    /// SupportedCameraRecordingConfiguration.
    pub const SUPPORTED_CAMERA_RECORDING: &str = "205";
    /// SupportedVideoRecordingConfiguration.
    pub const SUPPORTED_VIDEO_RECORDING: &str = "206";
    /// SupportedAudioRecordingConfiguration.
    pub const SUPPORTED_AUDIO_RECORDING: &str = "207";
    /// SelectedCameraRecordingConfiguration.
    pub const SELECTED_RECORDING: &str = "209";
    /// RecordingAudioActive.
    pub const RECORDING_AUDIO_ACTIVE: &str = "226";
    /// HomeKitCameraActive.
    pub const HOMEKIT_CAMERA_ACTIVE: &str = "21B";
    /// SetupDataStreamTransport.
    pub const SETUP_DATA_STREAM_TRANSPORT: &str = "131";
    /// MotionDetected.
    pub const MOTION_DETECTED: &str = "22";
}

/// One video codec entry of 206.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VideoCodec {
    /// 0 = H.264.
    pub codec: u8,
    /// Profile codes (0 Baseline, 1 Main, 2 High).
    pub profiles: Vec<u8>,
    /// Level codes (0 = 3.1, 1 = 3.2, 2 = 4.0).
    pub levels: Vec<u8>,
    /// (width, height, fps) attributes.
    pub attributes: Vec<(u16, u16, u8)>,
}

/// One audio codec entry of 207.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AudioCodec {
    /// 0 = AAC-LC, 1 = AAC-ELD.
    pub codec: u8,
    /// Channels.
    pub channels: u8,
    /// Bitrate modes offered (0 variable, 1 constant).
    pub bitrate_modes: Vec<u8>,
    /// Sample-rate codes (0 8k … 5 48k).
    pub sample_rates: Vec<u8>,
}

/// What the camera supports (205 + 206 + 207).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SupportedRecording {
    /// Prebuffer length, ms.
    pub prebuffer_ms: u32,
    /// Event trigger bitmask (0x01 motion, 0x02 doorbell).
    pub event_triggers: u64,
    /// Fragment length of the first fMP4 container configuration, ms.
    pub fragment_length_ms: u32,
    /// Video codecs.
    pub video: Vec<VideoCodec>,
    /// Audio codecs.
    pub audio: Vec<AudioCodec>,
}

fn bad(what: &str) -> String {
    format!("malformed TLV: {what}")
}

fn uint(t: &Tlv8, ty: u8, what: &str) -> Result<u64, String> {
    t.require_uint(TlvType(ty)).map_err(|_| bad(what))
}

fn nested(t: &Tlv8, ty: u8, what: &str) -> Result<Tlv8, String> {
    t.nested(TlvType(ty))
        .ok()
        .flatten()
        .ok_or_else(|| bad(what))
}

/// Decodes the items of type `ty`, each a nested TLV; lists are split by `00 00` (§3).
fn nested_list(t: &Tlv8, ty: u8) -> Result<Vec<Tlv8>, String> {
    t.get_all(TlvType(ty))
        .map(|v| Tlv8::decode(v).map_err(|e| bad(&e.to_string())))
        .collect()
}

fn bytes_of(t: &Tlv8, ty: u8) -> Vec<u8> {
    t.get_all(TlvType(ty))
        .filter_map(|v| v.first().copied())
        .collect()
}

impl SupportedRecording {
    /// Parses the three raw TLV values.
    ///
    /// # Errors
    /// A description of the first malformed or missing item.
    pub fn parse(camera_205: &[u8], video_206: &[u8], audio_207: &[u8]) -> Result<Self, String> {
        let cam = Tlv8::decode(camera_205).map_err(|e| bad(&e.to_string()))?;
        let prebuffer_ms =
            u32::try_from(uint(&cam, 0x01, "205 prebuffer")?).map_err(|_| bad("205 prebuffer"))?;
        let event_triggers = uint(&cam, 0x02, "205 event triggers")?;
        let containers = nested_list(&cam, 0x03)?;
        let fragment_length_ms = containers
            .iter()
            .find(|c| c.get(TlvType(0x01)) == Some(&[0][..]))
            .and_then(|c| c.nested(TlvType(0x02)).ok().flatten())
            .and_then(|p| p.get_uint(TlvType(0x01)).ok().flatten())
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| bad("205 fMP4 fragment length"))?;

        let vid = Tlv8::decode(video_206).map_err(|e| bad(&e.to_string()))?;
        let mut video = Vec::new();
        for c in nested_list(&vid, 0x01)? {
            let params = nested(&c, 0x02, "206 codec parameters")?;
            let mut attributes = Vec::new();
            for a in nested_list(&c, 0x03)? {
                let w = u16::try_from(uint(&a, 0x01, "206 width")?).map_err(|_| bad("width"))?;
                let h = u16::try_from(uint(&a, 0x02, "206 height")?).map_err(|_| bad("height"))?;
                let f = u8::try_from(uint(&a, 0x03, "206 fps")?).map_err(|_| bad("fps"))?;
                attributes.push((w, h, f));
            }
            video.push(VideoCodec {
                codec: u8::try_from(uint(&c, 0x01, "206 codec type")?).map_err(|_| bad("codec"))?,
                profiles: bytes_of(&params, 0x01),
                levels: bytes_of(&params, 0x02),
                attributes,
            });
        }

        let aud = Tlv8::decode(audio_207).map_err(|e| bad(&e.to_string()))?;
        let mut audio = Vec::new();
        for c in nested_list(&aud, 0x01)? {
            let params = nested(&c, 0x02, "207 codec parameters")?;
            audio.push(AudioCodec {
                codec: u8::try_from(uint(&c, 0x01, "207 codec type")?).map_err(|_| bad("codec"))?,
                channels: params
                    .get(TlvType(0x01))
                    .and_then(|v| v.first().copied())
                    .unwrap_or(1),
                bitrate_modes: bytes_of(&params, 0x02),
                sample_rates: bytes_of(&params, 0x03),
            });
        }
        Ok(Self {
            prebuffer_ms,
            event_triggers,
            fragment_length_ms,
            video,
            audio,
        })
    }

    /// What a hub would select: the first codec, the highest profile and level offered,
    /// 1920×1080 if offered (else the largest attribute), 2000 kbit/s, an I-frame interval
    /// equal to the fragment length (§3.4), motion trigger, and the first audio codec.
    ///
    /// # Errors
    /// When no video codec or attribute is offered.
    pub fn select(&self) -> Result<SelectedRecording, String> {
        let v = self.video.first().ok_or("206 offers no video codec")?;
        let attr = v
            .attributes
            .iter()
            .copied()
            .find(|&(w, h, _)| (w, h) == (1920, 1080))
            .or_else(|| {
                v.attributes
                    .iter()
                    .copied()
                    .max_by_key(|&(w, h, f)| (u32::from(w) * u32::from(h), f))
            })
            .ok_or("206 offers no resolution")?;
        let audio = self.audio.first().map(|a| SelectedAudio {
            codec: a.codec,
            channels: a.channels,
            bitrate_mode: a.bitrate_modes.first().copied().unwrap_or(0),
            sample_rate: a.sample_rates.first().copied().unwrap_or(3),
            max_bitrate_kbps: 64,
        });
        Ok(SelectedRecording {
            prebuffer_ms: self.prebuffer_ms,
            event_triggers: self.event_triggers & 0x01,
            fragment_length_ms: self.fragment_length_ms,
            video_codec: v.codec,
            profile: v.profiles.iter().copied().max().unwrap_or(0),
            level: v.levels.iter().copied().max().unwrap_or(0),
            bitrate_kbps: 2000,
            iframe_interval_ms: self.fragment_length_ms,
            width: attr.0,
            height: attr.1,
            fps: attr.2,
            audio,
        })
    }
}

/// The selected audio part of 209.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedAudio {
    /// 0 AAC-LC, 1 AAC-ELD.
    pub codec: u8,
    /// Channels.
    pub channels: u8,
    /// 0 variable, 1 constant.
    pub bitrate_mode: u8,
    /// Sample-rate code.
    pub sample_rate: u8,
    /// Max audio bitrate, kbit/s.
    pub max_bitrate_kbps: u32,
}

/// A SelectedCameraRecordingConfiguration (209, §3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedRecording {
    /// Prebuffer, ms.
    pub prebuffer_ms: u32,
    /// Trigger bitmask.
    pub event_triggers: u64,
    /// Fragment length, ms.
    pub fragment_length_ms: u32,
    /// Video codec (0 H.264).
    pub video_codec: u8,
    /// Profile code.
    pub profile: u8,
    /// Level code.
    pub level: u8,
    /// Video bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// I-frame interval, ms.
    pub iframe_interval_ms: u32,
    /// Width, pixels.
    pub width: u16,
    /// Height, pixels.
    pub height: u16,
    /// Frame rate.
    pub fps: u8,
    /// Audio, if selected.
    pub audio: Option<SelectedAudio>,
}

impl SelectedRecording {
    /// The TLV bytes (layout of the HAP-NodeJS test vector in §3.4).
    pub fn encode(&self) -> Vec<u8> {
        let mut container_params = Tlv8::new();
        container_params.push_u32(TlvType(0x01), self.fragment_length_ms);
        let mut container = Tlv8::new();
        container
            .push_u8(TlvType(0x01), 0)
            .push_nested(TlvType(0x02), &container_params);
        let mut general = Tlv8::new();
        general
            .push_u32(TlvType(0x01), self.prebuffer_ms)
            .push_u64(TlvType(0x02), self.event_triggers)
            .push_nested(TlvType(0x03), &container);

        let mut vparams = Tlv8::new();
        vparams
            .push_u8(TlvType(0x01), self.profile)
            .push_u8(TlvType(0x02), self.level)
            .push_u32(TlvType(0x03), self.bitrate_kbps)
            .push_u32(TlvType(0x04), self.iframe_interval_ms);
        let mut attr = Tlv8::new();
        attr.push_u16(TlvType(0x01), self.width)
            .push_u16(TlvType(0x02), self.height)
            .push_u8(TlvType(0x03), self.fps);
        let mut video = Tlv8::new();
        video
            .push_u8(TlvType(0x01), self.video_codec)
            .push_nested(TlvType(0x02), &vparams)
            .push_nested(TlvType(0x03), &attr);

        let mut out = Tlv8::new();
        out.push_nested(TlvType(0x01), &general)
            .push_nested(TlvType(0x02), &video);
        if let Some(a) = &self.audio {
            let mut aparams = Tlv8::new();
            aparams
                .push_u8(TlvType(0x01), a.channels)
                .push_u8(TlvType(0x02), a.bitrate_mode)
                .push_u8(TlvType(0x03), a.sample_rate)
                .push_u32(TlvType(0x04), a.max_bitrate_kbps);
            let mut audio = Tlv8::new();
            audio
                .push_u8(TlvType(0x01), a.codec)
                .push_nested(TlvType(0x02), &aparams);
            out.push_nested(TlvType(0x03), &audio);
        }
        out.encode()
    }
}

/// The accessory's answer to a SetupDataStreamTransport write (§3.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataStreamSetup {
    /// 0 success, 1 generic error, 2 busy.
    pub status: u8,
    /// HDS TCP port.
    pub port: u16,
    /// Accessory key salt.
    pub accessory_salt: [u8; 32],
}

/// The 131 write: start session, HDS over TCP, our 32-byte salt.
pub fn setup_data_stream_request(controller_salt: &[u8; 32]) -> Vec<u8> {
    let mut t = Tlv8::new();
    t.push_u8(TlvType(0x01), 0)
        .push_u8(TlvType(0x02), 0)
        .push(TlvType(0x03), controller_salt);
    t.encode()
}

/// Parses the 131 write-response.
///
/// # Errors
/// Missing status; on status 0 a missing port or salt.
pub fn parse_data_stream_setup(b: &[u8]) -> Result<DataStreamSetup, String> {
    let t = Tlv8::decode(b).map_err(|e| bad(&e.to_string()))?;
    let status = t.require_u8(TlvType(0x01)).map_err(|_| bad("131 status"))?;
    if status != 0 {
        return Ok(DataStreamSetup {
            status,
            port: 0,
            accessory_salt: [0; 32],
        });
    }
    let params = nested(&t, 0x02, "131 session parameters")?;
    let port = u16::try_from(uint(&params, 0x01, "131 port")?).map_err(|_| bad("131 port"))?;
    let accessory_salt = t
        .require_array::<32>(TlvType(0x03))
        .map_err(|_| bad("131 accessory salt"))?;
    Ok(DataStreamSetup {
        status,
        port,
        accessory_salt,
    })
}

/// `(aid, iid)` of every characteristic the hub uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HksvIds {
    /// Recording management Active.
    pub recording_active: (u64, u64),
    /// 205.
    pub supported_camera: (u64, u64),
    /// 206.
    pub supported_video: (u64, u64),
    /// 207.
    pub supported_audio: (u64, u64),
    /// 209.
    pub selected: (u64, u64),
    /// HomeKitCameraActive.
    pub camera_active: (u64, u64),
    /// SetupDataStreamTransport.
    pub setup_data_stream: (u64, u64),
    /// MotionDetected.
    pub motion_detected: (u64, u64),
}

impl HksvIds {
    /// Finds them in the accessory called `name` when the database has several accessories
    /// (a bridge: AccessoryInformation Name), else in the only one.
    ///
    /// # Errors
    /// No accessory of that name behind a bridge, or a missing characteristic.
    pub fn find_named(db: &AccessoryDb, name: &str) -> Result<Self, String> {
        if db.accessories.len() <= 1 {
            return Self::find(db);
        }
        let aid = db
            .aid_named(name)
            .ok_or_else(|| format!("no bridged accessory is named {name:?}"))?;
        Self::find(&db.only(aid))
    }

    /// Finds them in `/accessories`.
    ///
    /// # Errors
    /// Names the first missing characteristic.
    pub fn find(db: &AccessoryDb) -> Result<Self, String> {
        use types::*;
        let get = |s: &str, c: &str| {
            db.id_of(s, c)
                .ok_or_else(|| format!("characteristic {c} missing in service {s}"))
        };
        Ok(Self {
            recording_active: get(RECORDING_MANAGEMENT, ACTIVE)?,
            supported_camera: get(RECORDING_MANAGEMENT, SUPPORTED_CAMERA_RECORDING)?,
            supported_video: get(RECORDING_MANAGEMENT, SUPPORTED_VIDEO_RECORDING)?,
            supported_audio: get(RECORDING_MANAGEMENT, SUPPORTED_AUDIO_RECORDING)?,
            selected: get(RECORDING_MANAGEMENT, SELECTED_RECORDING)?,
            camera_active: get(OPERATING_MODE, HOMEKIT_CAMERA_ACTIVE)?,
            setup_data_stream: get(DATA_STREAM_MANAGEMENT, SETUP_DATA_STREAM_TRANSPORT)?,
            motion_detected: get(MOTION_SENSOR, MOTION_DETECTED)?,
        })
    }
}

fn tlv_of(v: &Json) -> Result<Vec<u8>, HapError> {
    let s = v.as_str().unwrap_or_default();
    BASE64
        .decode(s)
        .map_err(|e| HapError::Malformed(format!("tlv8 value is not base64: {e}")))
}

/// Reads 205/206/207 and parses them.
///
/// # Errors
/// Read failures or malformed TLVs ([`HapError::Malformed`]).
pub async fn read_supported(
    hap: &mut HapClient,
    ids: &HksvIds,
) -> Result<SupportedRecording, HapError> {
    let c = tlv_of(
        &hap.read_one(ids.supported_camera.0, ids.supported_camera.1)
            .await?,
    )?;
    let v = tlv_of(
        &hap.read_one(ids.supported_video.0, ids.supported_video.1)
            .await?,
    )?;
    let a = tlv_of(
        &hap.read_one(ids.supported_audio.0, ids.supported_audio.1)
            .await?,
    )?;
    SupportedRecording::parse(&c, &v, &a).map_err(HapError::Malformed)
}

/// Reads the raw 209 value (`None` if the read fails, e.g. nothing selected yet).
pub async fn read_selected(hap: &mut HapClient, ids: &HksvIds) -> Option<Vec<u8>> {
    let v = hap.read_one(ids.selected.0, ids.selected.1).await.ok()?;
    tlv_of(&v).ok()
}

/// Writes raw 209 bytes.
///
/// # Errors
/// The write's HAP status as [`HapError::Http`].
pub async fn write_selected(
    hap: &mut HapClient,
    ids: &HksvIds,
    tlv: &[u8],
) -> Result<(), HapError> {
    write_tlv(hap, ids.selected, tlv).await
}

/// Writes a TLV8 characteristic (base64 in the JSON).
///
/// # Errors
/// The write's HAP status as [`HapError::Http`].
pub async fn write_tlv(hap: &mut HapClient, id: (u64, u64), tlv: &[u8]) -> Result<(), HapError> {
    hap.write_one(CharWrite::value(id.0, id.1, json!(BASE64.encode(tlv))))
        .await
        .map(drop)
}

/// Reads a TLV8 characteristic.
///
/// # Errors
/// Read failures or a value that is not base64 ([`HapError::Malformed`]).
pub async fn read_tlv(hap: &mut HapClient, id: (u64, u64)) -> Result<Vec<u8>, HapError> {
    tlv_of(&hap.read_one(id.0, id.1).await?)
}

/// Writes a 0/1 characteristic (Active, HomeKitCameraActive).
///
/// # Errors
/// The write's HAP status as [`HapError::Http`].
pub async fn write_flag(hap: &mut HapClient, id: (u64, u64), on: bool) -> Result<(), HapError> {
    hap.write_one(CharWrite::value(id.0, id.1, json!(u8::from(on))))
        .await
        .map(drop)
}

/// Writes SetupDataStreamTransport with `"r": true` and a fresh salt; returns the parsed
/// response and the HDS keys for it.
///
/// # Errors
/// The write failed, or the answer is malformed.
pub async fn setup_data_stream(
    hap: &mut HapClient,
    ids: &HksvIds,
) -> Result<(DataStreamSetup, hds::SessionKeys), HapError> {
    let mut salt = [0u8; 32];
    rand::fill(&mut salt);
    let w = CharWrite {
        response: true,
        ..CharWrite::value(
            ids.setup_data_stream.0,
            ids.setup_data_stream.1,
            json!(BASE64.encode(setup_data_stream_request(&salt))),
        )
    };
    let value = hap
        .write_one(w)
        .await?
        .ok_or_else(|| HapError::Malformed("131 write returned no value (r: true)".into()))?;
    let setup = parse_data_stream_setup(&tlv_of(&value)?).map_err(HapError::Malformed)?;
    let keys = hap.hds_keys(&salt, &setup.accessory_salt);
    Ok((setup, keys))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // tests: a panic is a failed check
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).expect("hex")
    }

    #[test]
    fn parses_hap_nodejs_vectors_and_selects() {
        // protocol-notes §3.1, §3.2, §3.3 examples (HAP-NodeJS tests).
        let cam = unhex(
            "01 04 40 1f 00 00 02 08 03 00 00 00 00 00 00 00 03 0b 01 01 00 02 06 01 04 a0 0f 00 00",
        );
        let vid = unhex(
            "01 1d 01 01 00 02 0b 01 01 01 02 01 00 00 00 02 01 02 03 0b 01 02 80 07 02 02 38 04 03 01 1e",
        );
        let aud = unhex("01 0e 01 01 00 02 09 01 01 01 02 01 00 03 01 03");
        let s = SupportedRecording::parse(&cam, &vid, &aud).expect("parse");
        assert_eq!(
            (s.prebuffer_ms, s.event_triggers, s.fragment_length_ms),
            (8000, 3, 4000)
        );
        assert_eq!(s.video[0].levels, vec![0, 2]);
        assert_eq!(s.video[0].attributes, vec![(1920, 1080, 30)]);
        assert_eq!(s.audio[0].sample_rates, vec![3]);
        let sel = s.select().expect("select");
        assert_eq!(
            (sel.width, sel.height, sel.fps, sel.level),
            (1920, 1080, 30, 2)
        );
        assert_eq!(sel.event_triggers, 1, "hubs select motion only");
        assert_eq!(sel.iframe_interval_ms, 4000);
    }

    #[test]
    fn encodes_the_hap_nodejs_selected_vector() {
        // protocol-notes §3.4 annotated example.
        let want = BASE64
            .decode("AR0BBKAPAAACCAEAAAAAAAAAAwsBAQACBgEEoA8AAAIkAQEAAhIBAQECAQIDBNAHAAAEBKAPAAADCwECsAQCAkAGAwEYAxQBAQACDwEBAQIBAAMBAwQEQAAAAA==")
            .expect("b64");
        let sel = SelectedRecording {
            prebuffer_ms: 4000,
            event_triggers: 1,
            fragment_length_ms: 4000,
            video_codec: 0,
            profile: 1,
            level: 2,
            bitrate_kbps: 2000,
            iframe_interval_ms: 4000,
            width: 1200,
            height: 1600,
            fps: 24,
            audio: Some(SelectedAudio {
                codec: 0,
                channels: 1,
                bitrate_mode: 0,
                sample_rate: 3,
                max_bitrate_kbps: 64,
            }),
        };
        assert_eq!(sel.encode(), want);
    }

    #[test]
    fn selected_encoding_decodes_with_hap_tlv_typed_decoder() {
        // Cross-check against the camera's own typed decoder (hap_tlv::hksv).
        let s = SupportedRecording {
            prebuffer_ms: 4000,
            event_triggers: 3,
            fragment_length_ms: 4000,
            video: vec![VideoCodec {
                codec: 0,
                profiles: vec![0, 1, 2],
                levels: vec![0, 1, 2],
                attributes: vec![(1280, 720, 30), (1920, 1080, 15)],
            }],
            audio: vec![AudioCodec {
                codec: 0,
                channels: 1,
                bitrate_modes: vec![0],
                sample_rates: vec![5],
            }],
        };
        let sel = s.select().expect("select");
        let typed = hap_tlv::hksv::SelectedCameraRecordingConfiguration::decode(&sel.encode())
            .expect("hap_tlv decodes our 209");
        assert_eq!(typed.prebuffer_ms, 4000);
        assert_eq!(typed.event_triggers.0, 1);
        let a = typed.video.attributes;
        assert_eq!((a.width, a.height, a.fps), (1920, 1080, 15));
        assert_eq!(typed.video.profile.code(), 2);
        assert_eq!(typed.video.level.code(), 2);
        assert_eq!(typed.video.iframe_interval_ms, 4000);
        assert_eq!(typed.audio.map(|a| a.max_bitrate_kbps), Some(64));
    }

    #[test]
    fn data_stream_setup_round_trip_and_errors() {
        let req = setup_data_stream_request(&[9; 32]);
        assert_eq!(req.get(..6), Some(&[1, 1, 0, 2, 1, 0][..]));
        let mut resp = Tlv8::new();
        let mut p = Tlv8::new();
        p.push_u16(TlvType(0x01), 40123);
        resp.push_u8(TlvType(0x01), 0)
            .push_nested(TlvType(0x02), &p)
            .push(TlvType(0x03), &[5; 32]);
        let s = parse_data_stream_setup(&resp.encode()).expect("parse");
        assert_eq!((s.status, s.port, s.accessory_salt), (0, 40123, [5; 32]));
        assert_eq!(parse_data_stream_setup(&[1, 1, 2]).expect("busy").status, 2);
        assert!(parse_data_stream_setup(&[1, 1, 0]).is_err());
        assert!(parse_data_stream_setup(&[1]).is_err());
    }
}
