//! motion — see README.md.
#![forbid(unsafe_code)]
