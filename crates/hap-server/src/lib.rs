//! hap-server — see README.md.
#![forbid(unsafe_code)]
