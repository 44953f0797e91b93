//! The live-view TLV decoders (118 request and read-back, 117) never panic on arbitrary bytes,
//! and whatever they accept survives an encode → decode round trip.
#![no_main]

use hap_tlv::rtp::{SelectedRtpStreamConfiguration, SetupEndpointsRequest, SetupEndpointsResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = SetupEndpointsRequest::decode(data) {
        assert_eq!(SetupEndpointsRequest::decode(&r.encode()), Ok(r));
    }
    if let Ok(r) = SetupEndpointsResponse::decode(data) {
        assert_eq!(SetupEndpointsResponse::decode(&r.encode()), Ok(r));
    }
    if let Ok(c) = SelectedRtpStreamConfiguration::decode(data) {
        let again = SelectedRtpStreamConfiguration::decode(&c.encode());
        assert!(again.is_ok(), "{c:?} re-encoded does not decode: {again:?}");
        if let Ok(again) = again {
            assert_eq!(again.session_id, c.session_id);
            assert_eq!(again.command, c.command);
        }
    }
});
