//! The accessory this binary serves for now: AccessoryInformation, ProtocolInformation and a
//! motion sensor (protocol notes §2.2, §2.3). Camera services come with later issues.

use hap_server::{Accessory, Characteristic, Format, HapType, Perms, Service, Value};

/// AccessoryInformation service (§2.2).
pub const ACCESSORY_INFORMATION: HapType = HapType::apple(0x3E);
/// ProtocolInformation service.
pub const PROTOCOL_INFORMATION: HapType = HapType::apple(0xA2);
/// MotionSensor service.
pub const MOTION_SENSOR: HapType = HapType::apple(0x85);
/// MotionDetected characteristic (bool, pr ev).
pub const MOTION_DETECTED: HapType = HapType::apple(0x22);

const IDENTIFY: HapType = HapType::apple(0x14);
const MANUFACTURER: HapType = HapType::apple(0x20);
const MODEL: HapType = HapType::apple(0x21);
const NAME: HapType = HapType::apple(0x23);
const SERIAL_NUMBER: HapType = HapType::apple(0x30);
const FIRMWARE_REVISION: HapType = HapType::apple(0x52);
const VERSION: HapType = HapType::apple(0x37);
const STATUS_ACTIVE: HapType = HapType::apple(0x75);

/// Model string, also the `md` TXT value.
pub const MODEL_NAME: &str = "hksv-bridge";

fn string(ty: HapType, v: &str) -> Characteristic {
    Characteristic::new(ty, Format::String, Perms::PR)
        .max_len(64)
        .value(Value::String(v.to_owned()))
}

/// The accessory with AID 1.
pub fn demo_accessory(name: &str) -> Accessory {
    let info = Service::new(ACCESSORY_INFORMATION)
        .characteristic(
            Characteristic::new(IDENTIFY, Format::Bool, Perms::PW).on_write(|ctx, _| {
                tracing::info!(controller = %ctx.controller_id, "identify");
                Ok(None)
            }),
        )
        .characteristic(string(MANUFACTURER, "hksv-bridge"))
        .characteristic(string(MODEL, MODEL_NAME))
        .characteristic(string(NAME, name))
        .characteristic(string(SERIAL_NUMBER, "HKSV-0001"))
        .characteristic(string(FIRMWARE_REVISION, env!("CARGO_PKG_VERSION")));
    let protocol = Service::new(PROTOCOL_INFORMATION).characteristic(string(VERSION, "1.1.0"));
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
