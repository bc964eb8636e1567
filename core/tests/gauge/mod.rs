//! How many run at once, and the most that ever did: for tests of concurrency limits.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts how many run at once and the most that ever did.
#[derive(Default)]
pub(crate) struct Gauge {
    pub(crate) now: AtomicUsize,
    pub(crate) peak: AtomicUsize,
}

impl Gauge {
    pub(crate) fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }

    pub(crate) fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}
