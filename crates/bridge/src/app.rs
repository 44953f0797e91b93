//! Runs the configured cameras: sources, recorders, HAP servers, HDS, motion, API.
