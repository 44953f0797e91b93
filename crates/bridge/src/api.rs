//! HTTP API: motion triggers, doorbell, camera list (axum).
