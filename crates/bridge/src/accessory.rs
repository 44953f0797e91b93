//! HAP service and characteristic types the camera accessory uses (protocol notes §2.2, §2.3),
//! and the shared AccessoryInformation / ProtocolInformation services.

use hap_server::{Accessory, Characteristic, Format, HapType, Perms, Service, Value};

/// AccessoryInformation service (§2.2).
pub const ACCESSORY_INFORMATION: HapType = HapType::apple(0x3E);
/// ProtocolInformation service.
pub const PROTOCOL_INFORMATION: HapType = HapType::apple(0xA2);
/// MotionSensor service.
pub const MOTION_SENSOR: HapType = HapType::apple(0x85);
/// MotionDetected characteristic (bool, pr ev).
pub const MOTION_DETECTED: HapType = HapType::apple(0x22);

/// StatusActive (bool, pr ev).
pub const STATUS_ACTIVE: HapType = HapType::apple(0x75);
/// CameraRTPStreamManagement service.
pub const CAMERA_RTP_STREAM_MANAGEMENT: HapType = HapType::apple(0x110);
/// CameraOperatingMode service.
pub const CAMERA_OPERATING_MODE: HapType = HapType::apple(0x21A);
/// CameraEventRecordingManagement service.
pub const CAMERA_RECORDING_MANAGEMENT: HapType = HapType::apple(0x204);
/// DataStreamTransportManagement service.
pub const DATA_STREAM_MANAGEMENT: HapType = HapType::apple(0x129);
/// Microphone service (live audio; no Speaker: our sources have no way back).
pub const MICROPHONE: HapType = HapType::apple(0x112);
/// Mute (bool, pr pw ev).
pub const MUTE: HapType = HapType::apple(0x11A);
/// Doorbell service.
pub const DOORBELL: HapType = HapType::apple(0x121);
/// Active (uint8 0/1).
pub const ACTIVE: HapType = HapType::apple(0xB0);
/// HomeKitCameraActive.
pub const HOMEKIT_CAMERA_ACTIVE: HapType = HapType::apple(0x21B);
/// EventSnapshotsActive.
pub const EVENT_SNAPSHOTS_ACTIVE: HapType = HapType::apple(0x223);
/// PeriodicSnapshotsActive.
pub const PERIODIC_SNAPSHOTS_ACTIVE: HapType = HapType::apple(0x225);
/// RecordingAudioActive.
pub const RECORDING_AUDIO_ACTIVE: HapType = HapType::apple(0x226);
/// SupportedCameraRecordingConfiguration (205).
pub const SUPPORTED_CAMERA_RECORDING_CONFIGURATION: HapType = HapType::apple(0x205);
/// SupportedVideoRecordingConfiguration (206).
pub const SUPPORTED_VIDEO_RECORDING_CONFIGURATION: HapType = HapType::apple(0x206);
/// SupportedAudioRecordingConfiguration (207).
pub const SUPPORTED_AUDIO_RECORDING_CONFIGURATION: HapType = HapType::apple(0x207);
/// SelectedCameraRecordingConfiguration (209).
pub const SELECTED_CAMERA_RECORDING_CONFIGURATION: HapType = HapType::apple(0x209);
/// SupportedDataStreamTransportConfiguration (130).
pub const SUPPORTED_DATA_STREAM_TRANSPORT_CONFIGURATION: HapType = HapType::apple(0x130);
/// SetupDataStreamTransport (131).
pub const SETUP_DATA_STREAM_TRANSPORT: HapType = HapType::apple(0x131);
/// SupportedVideoStreamConfiguration (114).
pub const SUPPORTED_VIDEO_STREAM_CONFIGURATION: HapType = HapType::apple(0x114);
/// SupportedAudioStreamConfiguration (115).
pub const SUPPORTED_AUDIO_STREAM_CONFIGURATION: HapType = HapType::apple(0x115);
/// SupportedRTPConfiguration (116).
pub const SUPPORTED_RTP_CONFIGURATION: HapType = HapType::apple(0x116);
/// SelectedRTPStreamConfiguration (117).
pub const SELECTED_RTP_STREAM_CONFIGURATION: HapType = HapType::apple(0x117);
/// SetupEndpoints (118).
pub const SETUP_ENDPOINTS: HapType = HapType::apple(0x118);
/// StreamingStatus (120).
pub const STREAMING_STATUS: HapType = HapType::apple(0x120);
/// ProgrammableSwitchEvent (Doorbell).
pub const PROGRAMMABLE_SWITCH_EVENT: HapType = HapType::apple(0x73);
/// Version (DataStreamManagement "1.0", ProtocolInformation "1.1.0").
pub const VERSION: HapType = HapType::apple(0x37);

const IDENTIFY: HapType = HapType::apple(0x14);
const MANUFACTURER: HapType = HapType::apple(0x20);
const MODEL: HapType = HapType::apple(0x21);
const NAME: HapType = HapType::apple(0x23);
const SERIAL_NUMBER: HapType = HapType::apple(0x30);
const FIRMWARE_REVISION: HapType = HapType::apple(0x52);

/// Model string, also the `md` TXT value.
pub const MODEL_NAME: &str = "hksv-bridge";

/// A read-only string characteristic (maxLen 64).
pub fn string(ty: HapType, v: &str) -> Characteristic {
    Characteristic::new(ty, Format::String, Perms::PR)
        .max_len(64)
        .value(Value::String(v.to_owned()))
}

/// AccessoryInformation (iid 1) with `serial`.
pub fn information(name: &str, serial: &str) -> Service {
    Service::new(ACCESSORY_INFORMATION)
        .characteristic(
            Characteristic::new(IDENTIFY, Format::Bool, Perms::PW).on_write(|ctx, _| {
                tracing::info!(controller = %ctx.controller_id, "identify");
                Ok(None)
            }),
        )
        .characteristic(string(MANUFACTURER, "hksv-bridge"))
        .characteristic(string(MODEL, MODEL_NAME))
        .characteristic(string(NAME, name))
        .characteristic(string(SERIAL_NUMBER, serial))
        .characteristic(string(FIRMWARE_REVISION, env!("CARGO_PKG_VERSION")))
}

/// ProtocolInformation, Version 1.1.0.
pub fn protocol_information() -> Service {
    Service::new(PROTOCOL_INFORMATION).characteristic(string(VERSION, "1.1.0"))
}

/// The motion-sensor-only accessory with AID 1 (before the camera services existed).
pub fn demo_accessory(name: &str) -> Accessory {
    let info = information(name, "HKSV-0001");
    let protocol = protocol_information();
    let motion = Service::new(MOTION_SENSOR)
        .primary()
        .characteristic(Characteristic::new(
            MOTION_DETECTED,
            Format::Bool,
            Perms::PR | Perms::EV,
        ))
        .characteristic(
            Characteristic::new(STATUS_ACTIVE, Format::Bool, Perms::PR | Perms::EV)
                .value(Value::Bool(true)),
        );
    Accessory::new(1)
        .service(info)
        .service(protocol)
        .service(motion)
}
