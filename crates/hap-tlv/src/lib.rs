//! hap-tlv — see README.md.
#![forbid(unsafe_code)]
