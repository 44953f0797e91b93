//! The camera's one recording slot: at most one `dataSend` stream per camera, whichever hub or
//! HDS connection asks (HAP-NodeJS allows one too; a second gets busy, reason 2).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Shared by every HDS connection of one camera. Cloning shares the slot.
#[derive(Debug, Clone, Default)]
pub struct RecordingSlot(Arc<AtomicBool>);

impl RecordingSlot {
    /// A free slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the slot; `None` while another stream holds it.
    pub fn try_acquire(&self) -> Option<SlotGuard> {
        self.0
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .ok()
            .map(|_| SlotGuard(self.0.clone()))
    }

    /// Whether a stream holds the slot.
    pub fn is_taken(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Holds the slot; dropping it frees the slot.
#[derive(Debug)]
pub struct SlotGuard(Arc<AtomicBool>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_drop_frees() {
        let slot = RecordingSlot::new();
        let other = slot.clone();
        let g = slot.try_acquire().expect("free");
        assert!(other.is_taken());
        assert!(other.try_acquire().is_none());
        drop(g);
        assert!(!slot.is_taken());
        assert!(other.try_acquire().is_some());
    }
}
