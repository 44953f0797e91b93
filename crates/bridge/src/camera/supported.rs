//! What the camera advertises in 205/206/207 (and the RTP service's 114/115), derived from
//! what the source really delivers: we remux, so the native stream is sent whatever the hub
//! selects (protocol-notes §3.1–§3.3, §5.1).

use hap_tlv::hksv::{
    AudioCodecConfiguration, EventTriggers, H264Level, H264Profile, MediaContainer,
    RecordingAudioCodec, SampleRate, SelectedCameraRecordingConfiguration,
    SupportedAudioRecordingConfiguration, SupportedCameraRecordingConfiguration,
    SupportedVideoRecordingConfiguration, VideoAttributes, VideoCodecConfiguration,
};

/// Prebuffer we advertise, milliseconds (we keep 8 s in the ring; §3.1 asks ≥ 4000).
pub const PREBUFFER_MS: u32 = 4000;
/// Fragment length we cut at, milliseconds (§6.1).
pub const FRAGMENT_MS: u32 = 4000;

/// Facts about the source's stream, from its SPS and its AAC config. Persisted with the camera
/// state so that 205/206/207 read the same after a restart as before it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceFacts {
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// Frames per second (rounded).
    pub fps: u8,
    /// `profile_idc`.
    pub profile_idc: u8,
    /// `level_idc` (ten times the level).
    pub level_idc: u8,
    /// AAC sample rate, Hz, when the source has AAC.
    pub aac_sample_rate_hz: Option<u32>,
    /// AAC channels.
    pub aac_channels: u8,
}

/// HomeKit's profile code for an H.264 `profile_idc` (66/77/100; others map to High).
pub fn profile_for(profile_idc: u8) -> H264Profile {
    match profile_idc {
        66 => H264Profile::Baseline,
        77 => H264Profile::Main,
        _ => H264Profile::High,
    }
}

/// HomeKit's level code for a `level_idc` (only 3.1, 3.2 and 4.0 exist; higher levels are
/// advertised as 4.0).
pub fn level_for(level_idc: u8) -> H264Level {
    match level_idc {
        0..=31 => H264Level::L3_1,
        32 => H264Level::L3_2,
        _ => H264Level::L4_0,
    }
}

/// The three supported-configuration values.
#[derive(Debug, Clone, PartialEq)]
pub struct Supported {
    /// 205.
    pub camera: SupportedCameraRecordingConfiguration,
    /// 206.
    pub video: SupportedVideoRecordingConfiguration,
    /// 207.
    pub audio: SupportedAudioRecordingConfiguration,
}

/// Builds the supported configurations. `facts` is `None` until the source produced its first
/// init segment; then the defaults (1080p/720p at 30 and 15 fps, Main/High, 4.0) are used.
/// Audio is offered only when `audio` is configured on and the source has AAC; with no audio
/// we still list AAC-LC mono 16 kHz, as HomeKit expects a codec entry, and record none.
pub fn supported(facts: Option<&SourceFacts>, audio: bool, doorbell: bool) -> Supported {
    let mut attributes = Vec::new();
    let mut profiles = vec![H264Profile::Main, H264Profile::High];
    let mut levels = vec![H264Level::L3_1, H264Level::L4_0];
    let fps = facts.map_or(30, |f| f.fps.clamp(1, 60));
    if let Some(f) = facts {
        if let (Ok(w), Ok(h)) = (u16::try_from(f.width), u16::try_from(f.height)) {
            attributes.push(VideoAttributes {
                width: w,
                height: h,
                fps,
            });
        }
        profiles = vec![profile_for(f.profile_idc)];
        levels = vec![level_for(f.level_idc)];
    }
    // Mandatory for HomeKit (§3.2), as peers advertise them.
    for (w, h) in [(1920, 1080), (1280, 720)] {
        for rate in [fps, 15] {
            let a = VideoAttributes {
                width: w,
                height: h,
                fps: rate,
            };
            if !attributes.contains(&a) {
                attributes.push(a);
            }
        }
    }
    let mut triggers = EventTriggers::MOTION;
    if doorbell {
        triggers = EventTriggers(triggers.0 | EventTriggers::DOORBELL.0);
    }
    let (rate, channels) = match facts.and_then(|f| Some((f.aac_sample_rate_hz?, f.aac_channels))) {
        Some((hz, ch)) if audio => (
            SampleRate::from_hz(hz).unwrap_or(SampleRate::Hz16000),
            ch.max(1),
        ),
        _ => (SampleRate::Hz16000, 1),
    };
    Supported {
        camera: SupportedCameraRecordingConfiguration {
            prebuffer_ms: PREBUFFER_MS,
            event_triggers: triggers,
            containers: vec![MediaContainer {
                container_type: hap_tlv::hksv::CONTAINER_FRAGMENTED_MP4,
                fragment_length_ms: FRAGMENT_MS,
            }],
        },
        video: SupportedVideoRecordingConfiguration {
            codecs: vec![VideoCodecConfiguration {
                profiles,
                levels,
                attributes,
            }],
        },
        audio: SupportedAudioRecordingConfiguration {
            codecs: vec![AudioCodecConfiguration {
                codec: RecordingAudioCodec::AacLc,
                channels,
                bitrate_mode: 0,
                sample_rates: vec![rate],
            }],
        },
    }
}

/// How a selection differs from what the source delivers (we send the native stream anyway).
pub fn differences(
    sel: &SelectedCameraRecordingConfiguration,
    facts: Option<&SourceFacts>,
) -> Vec<String> {
    let mut out = Vec::new();
    let Some(f) = facts else {
        return out;
    };
    let a = sel.video.attributes;
    if u32::from(a.width) != f.width || u32::from(a.height) != f.height {
        out.push(format!(
            "resolution {}x{} selected, source is {}x{}",
            a.width, a.height, f.width, f.height
        ));
    }
    if a.fps != f.fps {
        out.push(format!("{} fps selected, source has {}", a.fps, f.fps));
    }
    if sel.video.profile != profile_for(f.profile_idc) {
        out.push(format!(
            "profile {:?} selected, source is {:?}",
            sel.video.profile,
            profile_for(f.profile_idc)
        ));
    }
    match (&sel.audio, f.aac_sample_rate_hz) {
        (Some(a), Some(hz)) if a.sample_rate.hz() != hz => out.push(format!(
            "audio {} Hz selected, source has {hz} Hz",
            a.sample_rate.hz()
        )),
        (Some(a), Some(_)) if a.channels != f.aac_channels => out.push(format!(
            "{} audio channel(s) selected, source has {}",
            a.channels, f.aac_channels
        )),
        _ => {}
    }
    if sel.container.fragment_length_ms != FRAGMENT_MS {
        out.push(format!(
            "fragment length {} ms selected, we cut at {FRAGMENT_MS} ms",
            sel.container.fragment_length_ms
        ));
    }
    out
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_video_and_audio_mismatches() {
        let f = SourceFacts {
            width: 1280,
            height: 720,
            fps: 16,
            profile_idc: 77,
            level_idc: 31,
            aac_sample_rate_hz: Some(32000),
            aac_channels: 1,
        };
        let mut sel = SelectedCameraRecordingConfiguration {
            prebuffer_ms: 4000,
            event_triggers: EventTriggers::MOTION,
            container: MediaContainer {
                container_type: hap_tlv::hksv::CONTAINER_FRAGMENTED_MP4,
                fragment_length_ms: FRAGMENT_MS,
            },
            video: hap_tlv::hksv::SelectedVideo {
                profile: H264Profile::Main,
                level: H264Level::L3_1,
                bitrate_kbps: 2000,
                iframe_interval_ms: 4000,
                attributes: VideoAttributes {
                    width: 1280,
                    height: 720,
                    fps: 16,
                },
            },
            audio: Some(hap_tlv::hksv::SelectedAudio {
                codec: RecordingAudioCodec::AacLc,
                channels: 1,
                bitrate_mode: 0,
                sample_rate: SampleRate::Hz32000,
                max_bitrate_kbps: 64,
            }),
        };
        assert!(differences(&sel, Some(&f)).is_empty());
        sel.video.attributes.fps = 30;
        sel.video.profile = H264Profile::High;
        if let Some(a) = sel.audio.as_mut() {
            a.sample_rate = SampleRate::Hz16000;
        }
        let d = differences(&sel, Some(&f));
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(
            d.iter()
                .any(|l| l == "audio 16000 Hz selected, source has 32000 Hz"),
            "{d:?}"
        );
        if let Some(a) = sel.audio.as_mut() {
            a.sample_rate = SampleRate::Hz32000;
            a.channels = 2;
        }
        assert!(
            differences(&sel, Some(&f))
                .iter()
                .any(|l| l.contains("2 audio channel(s)"))
        );
    }

    #[test]
    fn source_resolution_first_then_mandatory_ones() {
        let f = SourceFacts {
            width: 1280,
            height: 960,
            fps: 25,
            profile_idc: 77,
            level_idc: 41,
            aac_sample_rate_hz: Some(32000),
            aac_channels: 1,
        };
        let s = supported(Some(&f), true, true);
        let v = &s.video.codecs[0];
        assert_eq!(v.profiles, vec![H264Profile::Main]);
        assert_eq!(v.levels, vec![H264Level::L4_0]);
        assert_eq!(
            v.attributes[0],
            VideoAttributes {
                width: 1280,
                height: 960,
                fps: 25
            }
        );
        assert!(
            v.attributes
                .iter()
                .any(|a| (a.width, a.height, a.fps) == (1920, 1080, 15))
        );
        assert!(
            v.attributes
                .iter()
                .any(|a| (a.width, a.height, a.fps) == (1280, 720, 25))
        );
        assert_eq!(s.audio.codecs[0].sample_rates, vec![SampleRate::Hz32000]);
        assert_eq!(s.camera.event_triggers.0, 3);
        let no_bell = supported(Some(&f), false, false);
        assert_eq!(no_bell.camera.event_triggers, EventTriggers::MOTION);
        assert_eq!(
            no_bell.audio.codecs[0].sample_rates,
            vec![SampleRate::Hz16000]
        );
        // Round trip through the TLV codecs.
        assert_eq!(
            SupportedVideoRecordingConfiguration::decode(&s.video.encode()).unwrap(),
            s.video
        );
    }
}
