//! The camera accessory's services and their handlers (protocol-notes §2.2–§2.5, §3).
//!
//! Handlers run under the HAP `Core` lock: they only touch [`Shared`] and hand slow work
//! (persisting, mirroring StatusActive) to the control task.

use std::sync::Arc;

use hap_server::{Accessory, Characteristic, Database, Format, HapStatus, Perms, Service, Value};
use hap_tlv::hksv::{
    self, SelectedCameraRecordingConfiguration, StreamingAudioCodec, StreamingStatus,
    SupportedAudioStreamConfiguration, SupportedVideoStreamConfiguration,
};
use tracing::{debug, info, warn};

use super::{CameraState, Ids, Shared, lock, now, supported};
use crate::accessory::*;

fn tlv8(ty: hap_server::HapType, perms: Perms, value: Vec<u8>) -> Characteristic {
    Characteristic::new(ty, Format::Tlv8, perms).value(Value::Bytes(value))
}

/// A uint8 0/1 switch backed by one field of [`CameraState`], admin-only writes (HAP-NodeJS
/// variant, §2.3: uint8 without `tw` for 21B/223/225).
fn switch(
    shared: &Arc<Shared>,
    ty: hap_server::HapType,
    timed: bool,
    admin: bool,
    get: fn(&CameraState) -> bool,
    set: fn(&mut CameraState, bool),
) -> Characteristic {
    let mut perms = Perms::PR | Perms::PW | Perms::EV;
    if timed {
        perms = perms | Perms::TW;
    }
    let initial = u64::from(get(&shared.state()));
    let r = shared.clone();
    let w = shared.clone();
    let mut c = Characteristic::new(ty, Format::UInt8, perms)
        .range(0.0, 1.0, 1.0)
        .value(Value::UInt(initial))
        .on_read(move |_| Ok(Value::UInt(u64::from(get(&r.state())))))
        .on_write(move |ctx, v| {
            let on = match v {
                Value::UInt(n) => *n == 1,
                Value::Bool(b) => *b,
                _ => return Err(HapStatus::INVALID_VALUE_IN_REQUEST),
            };
            debug!(controller = %ctx.controller_id, ?ty, on, "switch write");
            w.commit_write(|s| set(s, on))?;
            Ok(None)
        });
    if admin {
        c = c.admin_write();
    }
    c
}

/// The current supported configurations (from the source once known).
pub(super) fn current_supported(shared: &Shared) -> supported::Supported {
    let facts = lock(&shared.facts).clone();
    supported::supported(
        facts.as_ref(),
        shared.options.audio,
        shared.options.doorbell,
    )
}

/// The camera accessory with `aid` (1 in accessory mode).
pub(super) fn camera_accessory(shared: &Arc<Shared>, aid: u64) -> Accessory {
    let name = &shared.options.name;
    let sup = current_supported(shared);

    let operating = Service::new(CAMERA_OPERATING_MODE)
        .characteristic(switch(
            shared,
            EVENT_SNAPSHOTS_ACTIVE,
            false,
            true,
            |s| s.event_snapshots_active,
            |s, v| s.event_snapshots_active = v,
        ))
        .characteristic(switch(
            shared,
            HOMEKIT_CAMERA_ACTIVE,
            false,
            true,
            |s| s.camera_active,
            |s, v| s.camera_active = v,
        ))
        .characteristic(switch(
            shared,
            PERIODIC_SNAPSHOTS_ACTIVE,
            false,
            true,
            |s| s.periodic_snapshots_active,
            |s, v| s.periodic_snapshots_active = v,
        ));

    let (r205, r206, r207) = (shared.clone(), shared.clone(), shared.clone());
    let sel_r = shared.clone();
    let sel_w = shared.clone();
    let recording = Service::new(CAMERA_RECORDING_MANAGEMENT)
        .linked(MOTION_SENSOR, "")
        .linked(DATA_STREAM_MANAGEMENT, "")
        .characteristic(switch(shared, ACTIVE, false, true, |s| s.recording_active, |s, v| s.recording_active = v))
        .characteristic(
            tlv8(SUPPORTED_CAMERA_RECORDING_CONFIGURATION, Perms::PR | Perms::EV, sup.camera.encode())
                .on_read(move |_| Ok(Value::Bytes(current_supported(&r205).camera.encode()))),
        )
        .characteristic(
            tlv8(SUPPORTED_VIDEO_RECORDING_CONFIGURATION, Perms::PR | Perms::EV, sup.video.encode())
                .on_read(move |_| Ok(Value::Bytes(current_supported(&r206).video.encode()))),
        )
        .characteristic(
            tlv8(SUPPORTED_AUDIO_RECORDING_CONFIGURATION, Perms::PR | Perms::EV, sup.audio.encode())
                .on_read(move |_| Ok(Value::Bytes(current_supported(&r207).audio.encode()))),
        )
        .characteristic(
            Characteristic::new(SELECTED_CAMERA_RECORDING_CONFIGURATION, Format::Tlv8, Perms::PR | Perms::PW | Perms::EV)
                .admin_write()
                .on_read(move |_| {
                    // HAP-NodeJS: a read before any write fails with -70402 (§3.4).
                    sel_r.state().selected.clone().map(Value::Bytes).ok_or(HapStatus::SERVICE_COMMUNICATION_FAILURE)
                })
                .on_write(move |ctx, v| {
                    let Value::Bytes(bytes) = v else {
                        return Err(HapStatus::INVALID_VALUE_IN_REQUEST);
                    };
                    let sel = SelectedCameraRecordingConfiguration::decode(bytes).map_err(|e| {
                        warn!(controller = %ctx.controller_id, error = %e, "rejected recording configuration; keeping the old one");
                        HapStatus::INVALID_VALUE_IN_REQUEST
                    })?;
                    let facts = lock(&sel_w.facts).clone();
                    let diffs = supported::differences(&sel, facts.as_ref());
                    info!(camera = %sel_w.options.name, prebuffer_ms = sel.prebuffer_ms, differences = %diffs.join("; "), "recording configuration selected (the native stream is sent)");
                    let bytes = bytes.clone();
                    sel_w.commit_write(move |s| s.selected = Some(bytes))?;
                    Ok(None)
                }),
        )
        .characteristic(switch(shared, RECORDING_AUDIO_ACTIVE, true, false, |s| s.recording_audio_active, |s, v| s.recording_audio_active = v));

    let dsm_w = shared.clone();
    let dsm_r = shared.clone();
    let data_stream = Service::new(DATA_STREAM_MANAGEMENT)
        .characteristic(tlv8(
            SUPPORTED_DATA_STREAM_TRANSPORT_CONFIGURATION,
            Perms::PR,
            hksv::supported_data_stream_transport_configuration(),
        ))
        .characteristic(
            Characteristic::new(
                SETUP_DATA_STREAM_TRANSPORT,
                Format::Tlv8,
                Perms::PR | Perms::PW | Perms::WR,
            )
            .value(Value::Bytes(Vec::new()))
            .on_read(move |_| Ok(Value::Bytes(dsm_r.transport.last_response())))
            .on_write(move |ctx, v| setup_data_stream(&dsm_w, ctx, v)),
        )
        .characteristic(string(VERSION, "1.0"));

    let camera_active = shared.state().camera_active;
    let motion = Service::new(MOTION_SENSOR)
        .characteristic(
            Characteristic::new(MOTION_DETECTED, Format::Bool, Perms::PR | Perms::EV)
                .immediate_events(true)
                .value(Value::Bool(false)),
        )
        .characteristic(
            Characteristic::new(STATUS_ACTIVE, Format::Bool, Perms::PR | Perms::EV)
                .value(Value::Bool(camera_active)),
        );

    let mut accessory = Accessory::new(aid)
        .service(information(name, &serial_for(name)))
        .service(protocol_information())
        .service(rtp_service(shared, 0))
        .service(operating)
        .service(recording)
        .service(data_stream);
    // Further RTP services go after the others (IIDs are stable either way; see hap-server).
    for index in 1..shared.live.services.len() {
        accessory = accessory.service(rtp_service(shared, index));
    }
    if live_audio(shared) {
        let muted = Arc::clone(&shared.live.muted);
        let muted_w = Arc::clone(&shared.live.muted);
        accessory = accessory.service(
            Service::new(MICROPHONE).characteristic(
                Characteristic::new(MUTE, Format::Bool, Perms::PR | Perms::PW | Perms::EV)
                    .value(Value::Bool(false))
                    .on_read(move |_| {
                        Ok(Value::Bool(
                            muted.load(std::sync::atomic::Ordering::Relaxed),
                        ))
                    })
                    .on_write(move |_, v| {
                        let m = match v {
                            Value::Bool(b) => *b,
                            Value::UInt(n) if *n <= 1 => *n == 1,
                            _ => return Err(HapStatus::INVALID_VALUE_IN_REQUEST),
                        };
                        muted_w.store(m, std::sync::atomic::Ordering::Relaxed);
                        info!(muted = m, "live audio mute");
                        Ok(None)
                    }),
            ),
        );
    }
    if shared.options.doorbell {
        accessory = accessory.service(
            Service::new(DOORBELL).primary().characteristic(
                Characteristic::new(
                    PROGRAMMABLE_SWITCH_EVENT,
                    Format::UInt8,
                    Perms::PR | Perms::EV,
                )
                .range(0.0, 2.0, 1.0)
                .immediate_events(true)
                .value(Value::Null)
                .on_read(|_| Ok(Value::Null)),
            ),
        );
        accessory.service(motion)
    } else {
        accessory.service(motion.primary())
    }
}

/// Live view carries audio: `audio = true` and the source has AAC. Then the camera has a
/// Microphone service.
fn live_audio(shared: &Shared) -> bool {
    shared.options.audio
        && lock(&shared.facts)
            .as_ref()
            .is_some_and(|f| f.aac_sample_rate_hz.is_some())
}

/// A stable serial number from the name.
pub(crate) fn serial_for(name: &str) -> String {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("HKSV-{:08X}", h as u32)
}

/// SetupDataStreamTransport write (§3.6, §4.1): prepare an HDS session keyed from this HAP
/// session's shared secret and answer with our port and salt.
fn setup_data_stream(
    shared: &Shared,
    ctx: &hap_server::ConnectionContext,
    v: &Value,
) -> Result<Option<Value>, HapStatus> {
    let Value::Bytes(bytes) = v else {
        return Err(HapStatus::INVALID_VALUE_IN_REQUEST);
    };
    let reply = shared.transport.setup(
        now(),
        bytes,
        ctx.shared_secret().as_bytes(),
        ctx.connection_id,
    )?;
    debug!(controller = %ctx.controller_id, port = shared.transport.port(), "HDS session prepared");
    Ok(Some(Value::Bytes(reply)))
}

/// Whether live view may run: HomeKitCameraActive and the RTP services' Active.
fn streaming_enabled(shared: &Shared) -> bool {
    let s = shared.state();
    s.camera_active && s.rtp_active
}

fn caller(ctx: &hap_server::ConnectionContext) -> crate::live::Caller {
    crate::live::Caller {
        connection_id: ctx.connection_id,
        local_addr: ctx.local_addr,
    }
}

/// The subtype of RTP service `index` (the first keeps the empty subtype it always had).
fn rtp_subtype(index: usize) -> String {
    if index == 0 {
        String::new()
    } else {
        index.to_string()
    }
}

/// CameraRTPStreamManagement service `index` (live-view notes §7.1): the supported
/// configurations, StreamingStatus, SetupEndpoints and SelectedRTPStreamConfiguration of
/// [`crate::live::StreamService`]. `Active` is one switch shared by the camera's RTP services.
fn rtp_service(shared: &Arc<Shared>, index: usize) -> Service {
    let sup = current_supported(shared);
    let video = SupportedVideoStreamConfiguration {
        profiles: sup
            .video
            .codecs
            .first()
            .map(|c| c.profiles.clone())
            .unwrap_or_default(),
        levels: sup
            .video
            .codecs
            .first()
            .map(|c| c.levels.clone())
            .unwrap_or_default(),
        attributes: streaming_attributes(
            &sup.video
                .codecs
                .first()
                .map(|c| c.attributes.clone())
                .unwrap_or_default(),
        ),
    };
    // Opus, mono, VBR at 8/16/24 kHz (the Watch's rate is disputed, notes §3), no comfort
    // noise. iOS requires an audio codec even from a camera without audio (HAP-NodeJS does the
    // same); such a camera sends none.
    let audio = SupportedAudioStreamConfiguration {
        codecs: vec![(
            StreamingAudioCodec::Opus,
            vec![
                hksv::SampleRate::Hz8000,
                hksv::SampleRate::Hz16000,
                hksv::SampleRate::Hz24000,
            ],
        )],
        comfort_noise: false,
    };
    let Some(service) = shared.live.services.get(index).cloned() else {
        return Service::new(CAMERA_RTP_STREAM_MANAGEMENT).subtype(rtp_subtype(index));
    };
    let (status_r, setup_r, setup_w, sel_r, sel_w) = (
        service.clone(),
        (shared.clone(), service.clone()),
        (shared.clone(), service.clone()),
        (shared.clone(), service.clone()),
        (shared.clone(), service),
    );
    Service::new(CAMERA_RTP_STREAM_MANAGEMENT)
        .subtype(rtp_subtype(index))
        .characteristic(switch(
            shared,
            ACTIVE,
            false,
            true,
            |s| s.rtp_active,
            |s, v| s.rtp_active = v,
        ))
        .characteristic(tlv8(
            SUPPORTED_VIDEO_STREAM_CONFIGURATION,
            Perms::PR,
            video.encode(),
        ))
        .characteristic(tlv8(
            SUPPORTED_AUDIO_STREAM_CONFIGURATION,
            Perms::PR,
            audio.encode(),
        ))
        .characteristic(tlv8(
            SUPPORTED_RTP_CONFIGURATION,
            Perms::PR,
            hksv::supported_rtp_configuration(&[0]),
        ))
        .characteristic(
            tlv8(
                STREAMING_STATUS,
                Perms::PR | Perms::EV,
                StreamingStatus::Available.encode(),
            )
            .on_read(move |_| Ok(Value::Bytes(status_r.status().encode()))),
        )
        .characteristic(
            tlv8(
                SELECTED_RTP_STREAM_CONFIGURATION,
                Perms::PR | Perms::PW,
                Vec::new(),
            )
            .on_read(move |_| {
                Ok(Value::Bytes(
                    sel_r.1.read_selected(streaming_enabled(&sel_r.0)),
                ))
            })
            .on_write(move |ctx, v| {
                let Value::Bytes(bytes) = v else {
                    return Err(HapStatus::INVALID_VALUE_IN_REQUEST);
                };
                let (shared, service) = &sel_w;
                let (order, changed) =
                    service.select(now(), caller(ctx), bytes, streaming_enabled(shared))?;
                if let Some(order) = order {
                    debug!(controller = %ctx.controller_id, service = index, "live view START");
                    shared.live.start(order);
                }
                if changed {
                    shared.state.wake();
                }
                Ok(None)
            }),
        )
        .characteristic(
            tlv8(SETUP_ENDPOINTS, Perms::PR | Perms::PW, Vec::new())
                .on_read(move |_| {
                    Ok(Value::Bytes(
                        setup_r
                            .1
                            .read_setup_endpoints(streaming_enabled(&setup_r.0)),
                    ))
                })
                .on_write(move |ctx, v| {
                    let Value::Bytes(bytes) = v else {
                        return Err(HapStatus::INVALID_VALUE_IN_REQUEST);
                    };
                    let (shared, service) = &setup_w;
                    if service.setup_endpoints(
                        now(),
                        caller(ctx),
                        bytes,
                        streaming_enabled(shared),
                    )? {
                        shared.live.prepared(index, ctx.connection_id);
                        shared.state.wake();
                    }
                    Ok(None)
                }),
        )
}

/// Small live-view sizes every camera offers besides its recording resolutions: the Apple Watch
/// asks for 320x240@15 and shows "No Response" without it (live-view-notes §2, go2rtc PR #949);
/// 640x360 and 480x270 cover small tiles. Passthrough sends the source's own size anyway.
const SMALL_STREAM_SIZES: [hksv::VideoAttributes; 3] = [
    hksv::VideoAttributes {
        width: 640,
        height: 360,
        fps: 30,
    },
    hksv::VideoAttributes {
        width: 480,
        height: 270,
        fps: 30,
    },
    hksv::VideoAttributes {
        width: 320,
        height: 240,
        fps: 15,
    },
];

/// 114's resolutions: the recording ones, then the small sizes not already listed.
fn streaming_attributes(recording: &[hksv::VideoAttributes]) -> Vec<hksv::VideoAttributes> {
    let mut all = recording.to_vec();
    for a in SMALL_STREAM_SIZES {
        if !all
            .iter()
            .any(|r| (r.width, r.height, r.fps) == (a.width, a.height, a.fps))
        {
            all.push(a);
        }
    }
    all
}

/// Finds the ids the camera sets from outside requests.
pub(super) fn ids(db: &Database, aid: u64, doorbell: bool, rtp_services: usize) -> Option<Ids> {
    let streaming_status = (0..rtp_services)
        .map(|i| {
            db.find(
                aid,
                CAMERA_RTP_STREAM_MANAGEMENT,
                &rtp_subtype(i),
                STREAMING_STATUS,
            )
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Ids {
        streaming_status,
        motion_detected: db.find(aid, MOTION_SENSOR, "", MOTION_DETECTED)?,
        status_active: db.find(aid, MOTION_SENSOR, "", STATUS_ACTIVE)?,
        switch_event: if doorbell {
            db.find(aid, DOORBELL, "", PROGRAMMABLE_SWITCH_EVENT)
        } else {
            None
        },
        supported: [
            db.find(
                aid,
                CAMERA_RECORDING_MANAGEMENT,
                "",
                SUPPORTED_CAMERA_RECORDING_CONFIGURATION,
            )?,
            db.find(
                aid,
                CAMERA_RECORDING_MANAGEMENT,
                "",
                SUPPORTED_VIDEO_RECORDING_CONFIGURATION,
            )?,
            db.find(
                aid,
                CAMERA_RECORDING_MANAGEMENT,
                "",
                SUPPORTED_AUDIO_RECORDING_CONFIGURATION,
            )?,
        ],
    })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn va(width: u16, height: u16, fps: u8) -> hksv::VideoAttributes {
        hksv::VideoAttributes { width, height, fps }
    }

    #[test]
    fn live_view_offers_the_watch_size_and_small_tiles_after_the_recording_sizes() {
        let rec = [va(1920, 1080, 30), va(1280, 720, 30), va(640, 360, 30)];
        let all = streaming_attributes(&rec);
        assert_eq!(&all[..3], &rec, "recording sizes first, in order");
        assert_eq!(
            &all[3..],
            &[va(480, 270, 30), va(320, 240, 15)],
            "640x360@30 is not listed twice"
        );
        assert_eq!(streaming_attributes(&[]), SMALL_STREAM_SIZES.to_vec());
    }
}
