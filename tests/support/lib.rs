//! Support for the end-to-end tests: find the real `hksv-bridge` binary and the test peers.
//!
//! `scripts/test` builds the binary and sets `HKSV_BRIDGE_BIN`, `HKSV_TEST_PYTHON` and
//! `HKSV_TEST_NODE_MODULES`. A missing peer fails the test (never a silent skip).

use std::path::PathBuf;

/// Path of the `hksv-bridge` binary under test.
///
/// # Panics
/// If the binary does not exist: run `scripts/test` (or `cargo build --bins`) first.
pub fn bridge_bin() -> PathBuf {
    let path = std::env::var_os("HKSV_BRIDGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/hksv-bridge"));
    assert!(
        path.exists(),
        "hksv-bridge binary not found at {}; run scripts/test (it builds it first)",
        path.display()
    );
    path
}

/// The workspace root (parent of this package).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The Python interpreter that has aiohomekit installed.
///
/// # Panics
/// If `HKSV_TEST_PYTHON` is unset or does not exist: run `scripts/test`.
pub fn python_with_aiohomekit() -> PathBuf {
    let path = std::env::var_os("HKSV_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
    assert!(
        path.exists(),
        "python with aiohomekit not found at {}; run scripts/test (it installs it)",
        path.display()
    );
    path
}
