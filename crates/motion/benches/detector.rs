//! Placeholder; replaced by the detector benchmark.
fn main() {}
