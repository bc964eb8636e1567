//! Stopping a run: cancel handles, timeouts, fail-fast and dropped futures.

use super::*;

/// A run's stop signal: an atomic flag for the hot path (the token's own
/// `is_cancelled` takes a mutex), and a token to wake what waits on it.
#[derive(Clone, Default)]
pub(crate) struct Stop(Arc<StopInner>);

#[derive(Default)]
pub(super) struct StopInner {
    pub(super) stopped: std::sync::atomic::AtomicBool,
    pub(super) token: CancellationToken,
}

impl Stop {
    pub(crate) fn stop(&self) {
        self.0.stopped.store(true, Ordering::Release);
        self.0.token.cancel();
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::Acquire)
    }

    pub(super) fn stopped(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.0.token.cancelled()
    }

    pub(super) fn token(&self) -> &CancellationToken {
        &self.0.token
    }
}

/// Stops the run if the run future is dropped before it ends.
pub(super) struct StopOnDrop(pub(super) Option<Stop>);

impl StopOnDrop {
    pub(super) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(stop) = &self.0 {
            stop.stop();
        }
    }
}

/// Ids for cancel signals, so a thread knows when its cached one is stale.
pub(super) static SIGNALS: AtomicU64 = AtomicU64::new(0);

pub(super) fn signal_id() -> u64 {
    SIGNALS.fetch_add(1, Ordering::Relaxed)
}
