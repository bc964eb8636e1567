//! Stopping a run: cancel handles, timeouts, fail-fast, dropped futures and faults.
//!
//! A stop has two levels. A *soft* stop (a cancel, the run's timeout, fail-fast, a
//! store failure) starts no new task but for cleanup tasks — tasks with an input taken
//! as `&Outcome<T>` whose required inputs succeeded — which still run, like a
//! `finally`, until the run's grace period ends. A *hard* stop (a second cancel, the
//! grace period's end, the run future dropped, a fault in the executor) starts nothing
//! and drops every running async task.

use super::*;

/// A run's stop signal: an atomic level for the hot path (the tokens' own
/// `is_cancelled` takes a mutex), and a token per level to wake what waits on it.
#[derive(Clone, Default)]
pub(crate) struct Stop(Arc<StopInner>);

#[derive(Default)]
pub(super) struct StopInner {
    /// [`RUNNING`], [`STOPPING`] or [`KILLED`].
    level: std::sync::atomic::AtomicU8,
    /// Cancelled at the soft stop.
    token: CancellationToken,
    /// Cancelled at the hard stop.
    kill: CancellationToken,
    /// Why the executor stopped the run itself, if it did: a panic outside a task.
    fault: OnceLock<String>,
    /// Every task of the run has ended: what is left is dropping its values.
    ended: std::sync::atomic::AtomicBool,
    /// The run's state was dropped while a panic of the scheduler unwound: a fault
    /// whose message (the panic's) is recorded only once the unwind is caught, maybe
    /// after the run future has read it.
    unwound: std::sync::atomic::AtomicBool,
}

const RUNNING: u8 = 0;
const STOPPING: u8 = 1;
const KILLED: u8 = 2;

impl Stop {
    /// The soft stop: nothing starts but cleanup tasks.
    pub(crate) fn stop(&self) {
        self.0.level.fetch_max(STOPPING, Ordering::AcqRel);
        self.0.token.cancel();
    }

    /// The hard stop: nothing starts, running async tasks are dropped.
    pub(crate) fn kill(&self) {
        self.0.level.store(KILLED, Ordering::Release);
        self.0.token.cancel();
        self.0.kill.cancel();
    }

    /// Stops the run for good because something outside a task panicked.
    pub(crate) fn fault(&self, message: String) {
        let _ = self.0.fault.set(message);
        self.kill();
    }

    /// [`fault`](Self::fault) from the run's state dropped during a panic's unwind,
    /// before the panic is caught and its message recorded.
    pub(super) fn fault_unwinding(&self) {
        self.0.unwound.store(true, Ordering::Release);
        self.kill();
    }

    /// Whether a task may start (or retry) now: always while the run goes on; after
    /// a soft stop only a cleanup task; after a hard stop nothing.
    pub(super) fn may_start(&self, cleanup: bool) -> bool {
        !self.is_stopped() || (!self.is_killed() && cleanup)
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.0.level.load(Ordering::Acquire) != RUNNING
    }

    pub(crate) fn is_killed(&self) -> bool {
        self.0.level.load(Ordering::Acquire) == KILLED
    }

    /// Says that every task of the run has ended, before the run drops its values: a
    /// deadline that passes after this is not the run's timeout.
    pub(super) fn end(&self) {
        self.0.ended.store(true, Ordering::Release);
    }

    /// Whether every task of the run has ended ([`end`](Self::end)).
    pub(super) fn has_ended(&self) -> bool {
        self.0.ended.load(Ordering::Acquire)
    }

    /// Why the executor stopped the run, if a fault did.
    pub(crate) fn fault_message(&self) -> Option<&str> {
        self.0.fault.get().map(String::as_str).or_else(|| {
            self.0
                .unwound
                .load(Ordering::Acquire)
                .then_some("the scheduler panicked as the run ended")
        })
    }

    /// Resolves at the soft stop (or the hard one).
    pub(super) fn stopped(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.0.token.cancelled()
    }

    /// Resolves at the hard stop.
    pub(super) fn killed(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.0.kill.cancelled()
    }

    pub(super) fn token(&self) -> &CancellationToken {
        &self.0.token
    }

    pub(super) fn kill_token(&self) -> &CancellationToken {
        &self.0.kill
    }
}

/// Stops the run for good if the run future is dropped before it ends.
pub(super) struct StopOnDrop(pub(super) Option<Stop>);

impl StopOnDrop {
    pub(super) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(stop) = &self.0 {
            stop.kill();
        }
    }
}

/// Ids for cancel signals, so a thread knows when its cached one is stale.
pub(super) static SIGNALS: AtomicU64 = AtomicU64::new(0);

pub(super) fn signal_id() -> u64 {
    SIGNALS.fetch_add(1, Ordering::Relaxed)
}

/// Runs `f`; a panic in it becomes a fault of the run (stopped for good, failed with
/// the panic's message) instead of unwinding into rayon (which aborts the process) or
/// tokio. Every job the executor hands to a pool, and every `Drop` that runs the
/// scheduler, goes through here.
pub(super) fn guard(run: &RunContext, what: &str, f: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
        run.fault(format!("{what} panicked: {}", panic_message(&*payload)));
    }
}

/// A future whose panics are caught while it is polled: `Err(payload)` instead of an
/// unwind into tokio or into whoever polls it.
pub(super) struct CatchUnwind<F>(pub(super) F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(future).poll(cx))) {
            Ok(poll) => poll.map(Ok),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

/// A future of the scheduler whose panics become a fault of the run (see [`guard`]).
pub(super) struct Guarded<F> {
    pub(super) run: Arc<RunContext>,
    pub(super) future: CatchUnwind<F>,
}

impl<F: Future<Output = ()> + Unpin> Future for Guarded<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        Pin::new(&mut this.future).poll(cx).map(|caught| {
            if let Err(payload) = caught {
                let message = panic_message(&*payload);
                this.run.fault(format!("the scheduler panicked: {message}"));
            }
        })
    }
}
