//! `hksv-bridge.toml` configuration with `HKSV_*` environment overrides.
