//! Live counts of a run's tasks, for a progress display.

use std::sync::atomic::{AtomicU64, Ordering};

/// How far a run has come, updated by the executor as tasks start and end, and read
/// from any thread (a progress bar's ticker). Get one with
/// [`Runner::progress`](crate::Runner::progress).
///
/// Counts are of task instances: each item of a fan-out adds its tasks to
/// [`total`](Self::total) when the fan-out starts, so the total can grow.
#[derive(Debug, Default)]
pub struct Progress {
    total: AtomicU64,
    done: AtomicU64,
    running: AtomicU64,
}

impl Progress {
    /// Tasks known so far.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Tasks that ended: succeeded, failed, skipped, or restored from a checkpoint.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Tasks between their first attempt's start and their end.
    pub fn running(&self) -> u64 {
        self.running.load(Ordering::Relaxed)
    }

    pub(crate) fn add_total(&self, tasks: u64) {
        self.total.fetch_add(tasks, Ordering::Relaxed);
    }

    /// Tasks that ended before the run started (restored from checkpoints).
    pub(crate) fn add_done(&self, tasks: u64) {
        self.done.fetch_add(tasks, Ordering::Relaxed);
    }

    pub(crate) fn started(&self) {
        self.running.fetch_add(1, Ordering::Relaxed);
    }

    /// A task counted as started did not start after all (the run stopped first).
    pub(crate) fn unstarted(&self) {
        self.running.fetch_sub(1, Ordering::Relaxed);
    }

    /// A task ended; `was_running` if it had started.
    pub(crate) fn ended(&self, was_running: bool) {
        if was_running {
            self.running.fetch_sub(1, Ordering::Relaxed);
        }
        self.done.fetch_add(1, Ordering::Relaxed);
    }
}
