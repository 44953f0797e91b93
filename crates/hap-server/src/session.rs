//! Encrypted HAP session framing (ChaCha20-Poly1305, 1024-byte frames).
