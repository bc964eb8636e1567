//! Which attempt of which task a worker runs, for the task to read
//! ([`current_attempt`]): an idempotency key for its side effects.

use std::sync::Arc;

/// Which attempt of which task of which distributed run is running: what a task with
/// side effects builds an idempotency key from (a task runs at least once: a worker
/// that dies or stalls past its lease loses its attempt to another, which runs it
/// again). See [`current_attempt`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttemptId {
    /// The run's id.
    pub run_id: String,
    /// The task's node, as `show --distributed` names it (`fan[3].fetch` for a task
    /// of a fan-out's item).
    pub node: String,
    /// The attempt, from 1: every claim of the task counts, a lost worker's too.
    pub attempt: u32,
}

thread_local! {
    /// The attempt a CPU task runs for on this thread.
    static CURRENT: std::cell::RefCell<Option<Arc<AttemptId>>> =
        const { std::cell::RefCell::new(None) };
}

tokio::task_local! {
    /// The attempt an IO task runs for in this tokio task.
    pub(super) static CURRENT_IO: Arc<AttemptId>;
}

/// The run, node and attempt of the task calling it, when a distributed worker runs
/// it ([`Worker`](super::Worker)); `None` elsewhere (a run in one process, or code
/// that is not a task). Read it on the task's own thread (or, for an `async fn`, in
/// its future) and pass it on: inside the task's `par_iter` closures, on other rayon
/// threads, it is not the task's.
///
/// ```no_run
/// # use aqueduct::prelude::*;
/// #[task]
/// async fn charge(order: &u64) -> Result<String, TaskError> {
///     // The same key on every attempt of this call: the payment API charges once.
///     let key = aqueduct::dist::current_attempt()
///         .map(|a| format!("{}/{}", a.run_id, a.node))
///         .unwrap_or_else(|| format!("local/{order}"));
///     Ok(key)
/// }
/// ```
pub fn current_attempt() -> Option<AttemptId> {
    CURRENT
        .with_borrow(|current| current.as_deref().cloned())
        .or_else(|| CURRENT_IO.try_with(|current| (**current).clone()).ok())
}

/// Runs `f` with `id` as [`current_attempt`] on this thread (what it was before is
/// put back after: rayon may run another task inside this one's `par_iter`).
pub(super) fn as_current<R>(id: &Arc<AttemptId>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<AttemptId>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with_borrow_mut(|current| *current = previous);
        }
    }
    let previous = CURRENT.with_borrow_mut(|current| current.replace(Arc::clone(id)));
    let _restore = Restore(previous);
    f()
}
