//! `fuzz_target!` as a plain function: `fuzz_target!(|data: &[u8]| { … })` becomes
//! `pub fn fuzz_entry(data: &[u8]) { … }`, so `tests/fuzz_smoke.rs` can include each file of
//! `fuzz/fuzz_targets/` unchanged and feed it inputs on stable Rust (cargo-fuzz needs nightly,
//! which this project's machines cannot fetch).

/// See the crate docs.
#[macro_export]
macro_rules! fuzz_target {
    (|$data:ident: &[u8]| $body:block) => {
        /// The target's body.
        pub fn fuzz_entry($data: &[u8]) $body
    };
}
