//! Pair-setup (M1–M6) and pair-verify (M1–M4), accessory and controller sides.
