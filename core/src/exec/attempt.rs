//! One attempt of a task: a CPU call on rayon, a supervised CPU call with a timeout, or
//! an IO future on tokio; each with its panics caught as the task's failure.

use std::sync::atomic::AtomicU8;

use super::stop::CatchUnwind;
use super::*;
use crate::plan::NodeFn;

/// The life of a supervised CPU attempt, shared by the supervisor and the rayon job.
const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
/// The supervisor gave up on it (its time ran out, or the run stopped): a queued
/// attempt never runs; a running one gives the task's permit back when it returns.
const ABANDONED: u8 = 3;

impl Shared {
    /// Whether `node` is a cleanup task (see [`TaskInfo::is_cleanup`]).
    pub(super) fn is_cleanup(&self, node: usize) -> bool {
        self.plan.flags[node] & crate::plan::CLEANUP != 0
    }

    /// Whether `node` may start (or retry) now (see [`Stop::may_start`]). The value of
    /// an `if` or `match` runs nothing: like a cleanup task, it passes a soft stop, so
    /// that a cleanup downstream sees the value the taken arm made.
    pub(super) fn may_start(&self, node: usize) -> bool {
        let passes = self.plan.flags[node] & crate::plan::PASSES_SOFT_STOP != 0;
        self.run.stop.may_start(passes)
    }

    /// Resolves when an attempt of `node` must be given up: at the soft stop, or for a
    /// cleanup task at the hard one.
    pub(super) fn halted(&self, node: usize) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        if self.is_cleanup(node) {
            self.run.stop.killed()
        } else {
            self.run.stop.stopped()
        }
    }

    /// The signal [`task::cancelled`] reads during an attempt of `node`, and its id.
    fn halt_token(&self, node: usize) -> (u64, &CancellationToken) {
        self.run.halt_token(self.is_cleanup(node))
    }

    /// Counts the start of `job`'s next attempt, at `now` if given (the instant its
    /// predecessor ended, for a job this thread runs right after it), else read now.
    #[inline]
    pub(super) fn begin(&self, job: &mut Job, now: Option<Instant>) -> Instant {
        let now = now.unwrap_or_else(Instant::now);
        if let (0, Some(progress)) = (job.attempt, &self.run.progress) {
            progress.started();
        }
        job.attempt += 1;
        tracing::debug!(
            parent: &self.span,
            node = %self.plan.graph.name_of(job.node),
            attempt = job.attempt,
            "task started"
        );
        now
    }

    /// Sleeps before a retry of `node` unless the run stops first; `false` if it did.
    pub(super) async fn sleep(&self, node: usize, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = self.halted(node) => false,
        }
    }

    /// One attempt of a CPU task, on this thread, in `scope`: the cancel signal this
    /// thread's [`task::cancelled`] reads, entered once for the tasks of one signal that
    /// a rayon job runs one after another (entered again only when the signal changes:
    /// a cleanup task reads the hard stop's).
    pub(super) fn call_cpu_here(
        &self,
        node: usize,
        scope: &mut Option<CancelScoped>,
    ) -> Result<Value, TaskError> {
        let (signal, token) = self.halt_token(node);
        if scope.as_ref().is_none_or(|(id, _)| *id != signal) {
            // The old scope goes first: it puts back what the thread had before it.
            *scope = None;
            *scope = Some((signal, task::CancelScope::enter(signal, token)));
        }
        let Call::Task(call) = &self.plan.calls[node] else {
            return Err(not_a_task());
        };
        task::enter_task();
        let outcome = catch_unwind(AssertUnwindSafe(|| call(self.board.slots().into())));
        called(outcome, task::leave_task())
    }

    fn call_cpu(
        &self,
        node: usize,
        signal: u64,
        cancel: &CancellationToken,
    ) -> Result<Value, TaskError> {
        let Call::Task(call) = &self.plan.calls[node] else {
            return Err(not_a_task());
        };
        call_cpu(call, self.board.slots(), signal, cancel)
    }

    /// One attempt of a CPU task with a timeout: it runs on rayon while this tokio task
    /// waits. Its clock starts when rayon starts it, not while it is queued. A late
    /// attempt cannot be preempted: it is abandoned, its result ignored,
    /// [`task::cancelled`] turns true for it, and it keeps the task's concurrency
    /// permit until it returns (`job.permit` is then false). Returns when the attempt
    /// started (`None` if it never did: the run stopped while it was queued) and its
    /// result (`None` if the run stopped first).
    pub(super) async fn call_cpu_supervised(
        self: &Arc<Self>,
        job: &mut Job,
        span: tracing::Span,
    ) -> (Option<Instant>, Option<Result<Value, TaskError>>) {
        let node = job.node;
        let limit = self.plan.graph.info(node).timeout.unwrap_or(Duration::MAX);
        let attempt = self.halt_token(node).1.child_token();
        let state = Arc::new(AtomicU8::new(QUEUED));
        let (started_tx, mut started_rx) = oneshot::channel::<Instant>();
        let (result_tx, mut result_rx) = oneshot::channel();
        let permit = job.permit;
        let (run, token, shared_state) = (Arc::clone(self), attempt.clone(), Arc::clone(&state));
        rayon::spawn(move || {
            let context = Arc::clone(&run.run);
            guard(&context, "the scheduler", move || {
                let start = shared_state.compare_exchange(
                    QUEUED,
                    RUNNING,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                if token.is_cancelled() || start.is_err() {
                    return;
                }
                let _ = started_tx.send(Instant::now());
                let result = span.in_scope(|| run.call_cpu(node, signal_id(), &token));
                let done = shared_state.compare_exchange(
                    RUNNING,
                    DONE,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                // A value nobody waits for (the run future is gone, or the attempt
                // was abandoned at its timeout) is dropped here, a panic in its `Drop`
                // contained.
                let name = run.plan.graph.name_of(node);
                match done {
                    Ok(_) => {
                        if let Err(result) = result_tx.send(result) {
                            crate::contain::drop_contained(name, result);
                        }
                    }
                    // Abandoned: the permit was left to this attempt.
                    Err(_) => {
                        run.give_back(node, permit);
                        crate::contain::drop_contained(name, result);
                    }
                }
            });
        });
        let halted = self.halted(node);
        tokio::pin!(halted);
        let started = tokio::select! {
            biased;
            at = &mut started_rx => at.ok(),
            () = &mut halted => {
                let give_up = state.compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire);
                match give_up {
                    Ok(_) => None,
                    // It started just now.
                    Err(_) => (&mut started_rx).await.ok(),
                }
            }
        };
        // No start: the run stopped while it was queued, or the job faulted.
        let Some(started) = started else {
            return (None, None);
        };
        let remaining = limit.saturating_sub(started.elapsed());
        let gave_up = tokio::select! {
            biased;
            result = &mut result_rx => {
                attempt.cancel();
                return (Some(started), Some(result.unwrap_or_else(|_| Err(TaskError::msg("the attempt's thread went away")))));
            }
            () = tokio::time::sleep(remaining) => Some(TaskError::timed_out(limit)),
            () = &mut halted => None,
        };
        attempt.cancel();
        let abandon =
            state.compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire);
        if abandon.is_ok() {
            job.permit = false;
            return (Some(started), gave_up.map(Err));
        }
        // It finished as its time ran out: take its result.
        let result = result_rx
            .await
            .unwrap_or_else(|_| Err(TaskError::msg("the attempt's thread went away")));
        (Some(started), Some(result))
    }

    /// One attempt of an IO task, bounded by its timeout. `None` if the run stopped.
    pub(super) async fn call_io(&self, node: usize) -> Option<Result<Value, TaskError>> {
        let Call::Task(call) = &self.plan.calls[node] else {
            return Some(Err(not_a_task()));
        };
        let future = match catch_unwind(AssertUnwindSafe(|| call(self.board.slots().into()))) {
            Ok(Called::Pending(future)) => CatchUnwind(future),
            Ok(Called::Done(result)) => return Some(result),
            Err(panic) => return Some(Err(TaskError::panicked(&*panic))),
        };
        // `biased`: a task that finishes on its first poll never registers a waiter.
        // The timer lives in a box of its own, so a task without a timeout (the common
        // case) keeps its spawned future small.
        // A panic while polling is the task's failure.
        let caught = |result: Result<_, Box<dyn Any + Send>>| {
            result.unwrap_or_else(|panic| Err(TaskError::panicked(&*panic)))
        };
        // A future given up (the run stopped, or its time ran out) is dropped behind
        // the boundary: it may hold a value the task took, whose `Drop` may panic. One
        // that finished holds nothing of the task's.
        let name = self.plan.graph.name_of(node);
        match self.plan.graph.info(node).timeout {
            None => {
                let mut future = future;
                let result = tokio::select! {
                    biased;
                    result = &mut future => Some(caught(result)),
                    () = self.halted(node) => None,
                };
                if result.is_none() {
                    crate::contain::drop_contained(name, future);
                }
                result
            }
            Some(limit) => {
                let mut bounded = Box::pin(async move {
                    let mut future = future;
                    match tokio::time::timeout(limit, &mut future).await {
                        Ok(result) => caught(result),
                        Err(_) => {
                            crate::contain::drop_contained(name, future);
                            Err(TaskError::timed_out(limit))
                        }
                    }
                });
                let result = tokio::select! {
                    biased;
                    result = &mut bounded => Some(result),
                    () = self.halted(node) => None,
                };
                if result.is_none() {
                    crate::contain::drop_contained(name, bounded);
                }
                result
            }
        }
    }
}

/// A thread's cancel scope, with the id of the signal it reads.
pub(super) type CancelScoped = (u64, task::CancelScope);

impl RunContext {
    /// The signal [`task::cancelled`] reads during an attempt, and its id: the hard
    /// stop's for a cleanup task, else the soft one's.
    pub(super) fn halt_token(&self, cleanup: bool) -> (u64, &CancellationToken) {
        if cleanup {
            (self.signals[1], self.stop.kill_token())
        } else {
            (self.signals[0], self.stop.token())
        }
    }
}

/// One attempt of CPU task `call` on this thread, reading `slots`, with `signal` as
/// what [`task::cancelled`] reads: its panic is its failure, and a result returned
/// after the signal told it to stop is not a result.
pub(super) fn call_cpu(
    call: &NodeFn,
    slots: &[Slot],
    signal: u64,
    cancel: &CancellationToken,
) -> Result<Value, TaskError> {
    let (outcome, told) = task::with_cancel(signal, cancel, || {
        catch_unwind(AssertUnwindSafe(|| call(slots.into())))
    });
    called(outcome, told)
}

/// The error of a call of a node that is not a task.
fn not_a_task() -> TaskError {
    TaskError::permanent(TaskError::msg("aqueduct: only task nodes are called"))
}

/// What a CPU task's call came to: its panic is its failure, and a result returned
/// after [`task::cancelled`] `told` it to stop is not a result.
fn called(
    outcome: Result<Called<'_>, Box<dyn Any + Send>>,
    told: bool,
) -> Result<Value, TaskError> {
    if told {
        // It may have returned a partial value because it was told to stop.
        crate::contain::drop_contained("a value returned after a stop", outcome);
        return Err(TaskError::stopped_early());
    }
    match outcome {
        Ok(Called::Done(result)) => result,
        Ok(Called::Pending(_)) => Err(TaskError::permanent(TaskError::msg(
            "a CPU task returned a future; declare it `async fn` to run it on tokio",
        ))),
        Err(panic) => Err(TaskError::panicked(&*panic)),
    }
}
