//! One HKSV camera accessory: services, state, data stream, recording flow, snapshots.
