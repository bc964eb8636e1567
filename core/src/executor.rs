//! The executor: a ready-queue scheduler over rayon (CPU tasks) and tokio (IO tasks).
//!
//! Each node has a counter of the task inputs it still waits for. A node that is
//! resolved (succeeded, failed or skipped) decrements its successors' counters; a
//! successor that reaches zero is ready, or is skipped if an input it requires did not
//! succeed. A finished task runs one ready successor of its own mode itself (no round
//! trip through any queue) and dispatches the others. The run's state is one `Arc`
//! shared by every running task; when the last task drops it, `Drop` hands the results
//! to the waiting run future: the reference count is the completion count.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::error::{Error, TaskFailure};
use crate::graph::Plan;
use crate::report::{AttemptReport, RunReport, TaskReport, TaskStatus};
use crate::task::{self, Kind, TaskError};

pub(crate) type Value = Box<dyn Any + Send + Sync>;

/// What calling a node gives: its result, or a future of it.
pub(crate) enum Step<'a> {
    Done(Result<Value, TaskError>),
    Pending(Pin<Box<dyn Future<Output = Result<Value, TaskError>> + Send + 'a>>),
}

/// How one run goes: set by [`Runner`](crate::Runner).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RunOptions {
    pub(crate) fail_fast: bool,
    pub(crate) timeout: Option<Duration>,
}

/// What one node did in one run; written once, when it is resolved.
pub struct Record {
    /// An `Outcome<T>`, boxed.
    pub(crate) value: Value,
    status: TaskStatus,
    error: Option<TaskError>,
    ready: Instant,
    first_started: Option<Instant>,
    last_started: Option<Instant>,
    finished: Instant,
    /// The attempts before the last one, each of which failed.
    retried: Vec<FailedAttempt>,
}

struct FailedAttempt {
    started: Instant,
    finished: Instant,
    error: TaskError,
}

/// A node's place in a run: empty until the node is resolved.
pub type Slot = OnceLock<Record>;

pub(crate) fn fill(slot: &Slot, value: Value) {
    let now = Instant::now();
    let _ = slot.set(Record {
        value,
        status: TaskStatus::Succeeded,
        error: None,
        ready: now,
        first_started: None,
        last_started: None,
        finished: now,
        retried: Vec::new(),
    });
}

/// The low 32 bits count the inputs a node still waits for; the high 32 bits count
/// those that did not succeed although the node requires them.
const DOOMED: u64 = 1 << 32;
const COUNT: u64 = DOOMED - 1;

/// Where a node's attempts run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// On a rayon thread.
    Rayon,
    /// In a tokio task: IO tasks, and CPU tasks with a timeout, whose attempts a
    /// tokio task supervises.
    Tokio,
}

/// One task's way through its attempts.
struct Job {
    node: usize,
    ready: Instant,
    attempt: u32,
    first_started: Option<Instant>,
    retried: Vec<FailedAttempt>,
}

impl Job {
    fn new(node: usize, ready: Instant) -> Self {
        Self {
            node,
            ready,
            attempt: 0,
            first_started: None,
            retried: Vec::new(),
        }
    }
}

/// What to do after an attempt.
enum Next {
    Retry(Job, Duration),
    Continue(Job),
    Stop,
}

struct Shared {
    plan: Arc<Plan>,
    slots: Box<[Slot]>,
    waiting: Box<[AtomicU64]>,
    tokio: tokio::runtime::Handle,
    span: tracing::Span,
    cancel: CancellationToken,
    options: RunOptions,
    done: Option<oneshot::Sender<Box<[Slot]>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            // The receiver is gone only if the run future was dropped: nobody to tell.
            let _ = done.send(std::mem::take(&mut self.slots));
        }
    }
}

/// The slots of a run that has ended.
pub(crate) struct Finished {
    started: Instant,
    wall: Duration,
    slots: Box<[Slot]>,
    timed_out: Option<Duration>,
    cancelled: bool,
}

/// Runs `plan` once: `store` fills the parameters' slots, then every task runs as soon
/// as its inputs exist. Cancelling `cancel`, or dropping this future, stops the run.
pub(crate) async fn execute(
    plan: Arc<Plan>,
    options: RunOptions,
    cancel: CancellationToken,
    store: impl FnOnce(&[Slot]),
) -> Result<Finished, Error> {
    let tokio = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime {
        workflow: plan.graph.name.to_string(),
    })?;
    let stop_on_drop = cancel.clone().drop_guard();
    let started = Instant::now();
    let span = tracing::info_span!("workflow", name = %plan.graph.name);
    let slots: Box<[Slot]> = (0..plan.calls.len()).map(|_| Slot::new()).collect();
    store(&slots);
    let waiting = plan
        .waits_for
        .iter()
        .map(|&n| AtomicU64::new(u64::from(n)))
        .collect();
    let (done, mut finished) = oneshot::channel();
    let shared = Arc::new(Shared {
        plan: Arc::clone(&plan),
        slots,
        waiting,
        tokio,
        span,
        cancel: cancel.clone(),
        options,
        done: Some(done),
    });
    for &root in &plan.roots {
        shared.dispatch(Job::new(root as usize, started));
    }
    drop(shared);
    let mut timed_out = None;
    let slots = match options.timeout {
        None => finished.await,
        Some(limit) => tokio::select! {
            slots = &mut finished => slots,
            () = tokio::time::sleep(limit) => {
                timed_out = Some(limit);
                cancel.cancel();
                finished.await
            }
        },
    };
    let slots =
        slots.expect("aqueduct: the run's state was dropped without handing back its results");
    stop_on_drop.disarm();
    Ok(Finished {
        started,
        wall: started.elapsed(),
        slots,
        timed_out,
        cancelled: cancel.is_cancelled(),
    })
}

impl Shared {
    fn mode(&self, node: usize) -> Mode {
        let graph_node = &self.plan.graph.nodes[node];
        match graph_node.kind {
            Kind::Cpu if graph_node.timeout.is_none() => Mode::Rayon,
            _ => Mode::Tokio,
        }
    }

    fn dispatch(self: &Arc<Self>, job: Job) {
        if self.cancel.is_cancelled() {
            return;
        }
        let run = Arc::clone(self);
        match self.mode(job.node) {
            Mode::Rayon => rayon::spawn(move || run.run_on_rayon(job)),
            Mode::Tokio => {
                self.tokio.spawn(run.run_on_tokio(job));
            }
        }
    }

    fn attempt_span(&self, job: &Job) -> tracing::Span {
        let node = &self.plan.graph.nodes[job.node];
        tracing::info_span!(
            parent: &self.span,
            "task",
            task = node.task.unwrap_or_default(),
            node = %node.name,
            attempt = job.attempt,
        )
    }

    /// Runs a CPU node's attempts on this rayon thread, then any ready CPU successor it
    /// unlocks. A retry after a delay waits on tokio's timer, not on this thread.
    fn run_on_rayon(self: Arc<Self>, mut job: Job) {
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            let started = self.begin(&mut job);
            let result = self
                .attempt_span(&job)
                .in_scope(|| self.call_cpu(job.node, &self.cancel));
            job = match self.after_attempt(job, started, result, Mode::Rayon) {
                Next::Continue(next) => next,
                Next::Retry(next, delay) if delay.is_zero() => next,
                Next::Retry(next, delay) => {
                    let run = Arc::clone(&self);
                    self.tokio.spawn(async move {
                        if run.sleep(delay).await {
                            rayon::spawn(move || run.run_on_rayon(next));
                        }
                    });
                    return;
                }
                Next::Stop => return,
            }
        }
    }

    /// Runs an IO node's attempts (or a CPU node's with a timeout) in this tokio task,
    /// then any ready successor of the same mode it unlocks.
    async fn run_on_tokio(self: Arc<Self>, mut job: Job) {
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            let started = self.begin(&mut job);
            let span = self.attempt_span(&job);
            let result = match self.plan.graph.nodes[job.node].kind {
                Kind::Io => self.call_io(job.node).instrument(span).await,
                _ => self.call_cpu_supervised(job.node, span).await,
            };
            let Some(result) = result else {
                return self.record_cancelled(job, started);
            };
            job = match self.after_attempt(job, started, result, Mode::Tokio) {
                Next::Continue(next) => next,
                Next::Retry(next, delay) => {
                    if !self.sleep(delay).await {
                        return;
                    }
                    next
                }
                Next::Stop => return,
            }
        }
    }

    fn begin(&self, job: &mut Job) -> Instant {
        let now = Instant::now();
        job.attempt += 1;
        job.first_started.get_or_insert(now);
        now
    }

    /// Sleeps unless the run stops first; `false` if it did.
    async fn sleep(&self, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = self.cancel.cancelled() => false,
        }
    }

    fn call_cpu(&self, node: usize, cancel: &CancellationToken) -> Result<Value, TaskError> {
        let call = self.plan.calls[node]
            .as_ref()
            .expect("a task node has a call");
        let outcome = task::with_cancel(cancel, || {
            catch_unwind(AssertUnwindSafe(|| call(&self.slots)))
        });
        match outcome {
            Ok(Step::Done(result)) => result,
            Ok(Step::Pending(_)) => Err(TaskError::permanent(TaskError::msg(
                "a CPU task returned a future; declare it `async fn` to run it on tokio",
            ))),
            Err(panic) => Err(TaskError::panicked(&*panic)),
        }
    }

    /// One attempt of a CPU task with a timeout: it runs on rayon while this tokio task
    /// waits with the timer. A late attempt cannot be preempted: it is abandoned, its
    /// result ignored, and [`task::cancelled`] turns true for it. `None` if the run
    /// stopped.
    async fn call_cpu_supervised(
        self: &Arc<Self>,
        node: usize,
        span: tracing::Span,
    ) -> Option<Result<Value, TaskError>> {
        let limit = self.plan.graph.nodes[node]
            .timeout
            .expect("supervised tasks have a timeout");
        let attempt = self.cancel.child_token();
        let (sender, receiver) = oneshot::channel();
        let (run, token) = (Arc::clone(self), attempt.clone());
        rayon::spawn(move || {
            let _ = sender.send(span.in_scope(|| run.call_cpu(node, &token)));
        });
        let result = tokio::select! {
            result = receiver => result.unwrap_or_else(|_| Err(TaskError::msg("the attempt's thread went away"))),
            () = tokio::time::sleep(limit) => Err(TaskError::timed_out(limit)),
            () = self.cancel.cancelled() => return None,
        };
        attempt.cancel();
        Some(result)
    }

    /// One attempt of an IO task, bounded by its timeout. `None` if the run stopped.
    async fn call_io(&self, node: usize) -> Option<Result<Value, TaskError>> {
        let call = self.plan.calls[node]
            .as_ref()
            .expect("a task node has a call");
        let future = match catch_unwind(AssertUnwindSafe(|| call(&self.slots))) {
            Ok(Step::Pending(future)) => CatchUnwind(future),
            Ok(Step::Done(result)) => return Some(result),
            Err(panic) => return Some(Err(TaskError::panicked(&*panic))),
        };
        let limit = self.plan.graph.nodes[node].timeout;
        let bounded = async move {
            match limit {
                Some(limit) => tokio::time::timeout(limit, future)
                    .await
                    .unwrap_or_else(|_| Err(TaskError::timed_out(limit))),
                None => future.await,
            }
        };
        // `biased`: a task that finishes on its first poll never registers a waiter.
        tokio::select! {
            biased;
            result = bounded => Some(result),
            () = self.cancel.cancelled() => None,
        }
    }

    /// Retries a failed attempt if its policy allows, else resolves the node.
    fn after_attempt(
        self: &Arc<Self>,
        mut job: Job,
        started: Instant,
        result: Result<Value, TaskError>,
        mode: Mode,
    ) -> Next {
        let node = &self.plan.graph.nodes[job.node];
        if let Err(error) = &result
            && node.retry.retries_after(job.attempt, error)
            && !self.cancel.is_cancelled()
        {
            let delay = node.retry.delay_before(job.attempt);
            tracing::warn!(
                parent: &self.span, node = %node.name, attempt = job.attempt, %error,
                "attempt failed; retrying in {delay:?}"
            );
            job.retried.push(FailedAttempt {
                started,
                finished: Instant::now(),
                error: error.clone(),
            });
            return Next::Retry(job, delay);
        }
        match self.resolve(job, started, result, mode) {
            Some(next) => Next::Continue(next),
            None => Next::Stop,
        }
    }

    /// Records a node whose attempt the run's stop interrupted.
    fn record_cancelled(&self, job: Job, started: Instant) {
        let _ = self.slots[job.node].set(Record {
            value: (self.plan.unresolved[job.node])(None),
            status: TaskStatus::Cancelled,
            error: None,
            ready: job.ready,
            first_started: job.first_started,
            last_started: Some(started),
            finished: Instant::now(),
            retried: job.retried,
        });
    }

    /// Records a node's final outcome and releases its successors. Returns one ready
    /// successor of `mode` for the caller to run next.
    fn resolve(
        self: &Arc<Self>,
        job: Job,
        started: Instant,
        result: Result<Value, TaskError>,
        mode: Mode,
    ) -> Option<Job> {
        let node = job.node;
        let (value, status, error) = match result {
            Ok(value) => (value, TaskStatus::Succeeded, None),
            Err(error) => {
                let graph_node = &self.plan.graph.nodes[node];
                tracing::error!(parent: &self.span, node = %graph_node.name, attempts = job.attempt, %error, "task failed");
                let status = if error.is_timeout() {
                    TaskStatus::TimedOut
                } else {
                    TaskStatus::Failed
                };
                (
                    (self.plan.unresolved[node])(Some(error.clone())),
                    status,
                    Some(error),
                )
            }
        };
        let succeeded = error.is_none();
        let _ = self.slots[node].set(Record {
            value,
            status,
            error,
            ready: job.ready,
            first_started: job.first_started,
            last_started: Some(started),
            finished: Instant::now(),
            retried: job.retried,
        });
        if !succeeded && self.options.fail_fast {
            self.cancel.cancel();
        }
        self.release(node, succeeded, mode)
    }

    /// Decrements the counters of `node`'s successors; dispatches those now ready,
    /// skips those an unsuccessful required input dooms, and returns one ready
    /// successor of `mode` for the caller.
    fn release(self: &Arc<Self>, node: usize, succeeded: bool, mode: Mode) -> Option<Job> {
        let now = Instant::now();
        let mut next = None;
        let mut skipped = Vec::new();
        let mut resolved = (node, succeeded);
        loop {
            let (node, succeeded) = resolved;
            for (&successor, &required) in self.plan.successors(node) {
                let successor = successor as usize;
                let step = if !succeeded && required {
                    DOOMED - 1
                } else {
                    u64::MAX
                };
                let before = self.waiting[successor].fetch_add(step, Ordering::AcqRel);
                if before & COUNT != 1 {
                    continue;
                }
                if before >= DOOMED || (!succeeded && required) {
                    skipped.push(successor);
                } else if next.is_none() && self.mode(successor) == mode {
                    next = Some(Job::new(successor, now));
                } else {
                    self.dispatch(Job::new(successor, now));
                }
            }
            let Some(skip) = skipped.pop() else { break };
            let _ = self.slots[skip].set(Record {
                value: (self.plan.unresolved[skip])(None),
                status: TaskStatus::Skipped,
                error: None,
                ready: now,
                first_started: None,
                last_started: None,
                finished: now,
                retried: Vec::new(),
            });
            resolved = (skip, false);
        }
        next
    }
}

/// Turns a panic while polling into the task's failure.
struct CatchUnwind<F>(F);

impl<F: Future<Output = Result<Value, TaskError>> + Unpin> Future for CatchUnwind<F> {
    type Output = Result<Value, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(future).poll(cx))) {
            Ok(poll) => poll,
            Err(panic) => Poll::Ready(Err(TaskError::panicked(&*panic))),
        }
    }
}

impl Finished {
    /// Splits the run into its output (or why there is none) and its report.
    pub(crate) fn into_output<O: 'static>(self, plan: &Plan) -> (Result<O, Error>, RunReport) {
        let report = self.report(plan);
        let graph = &plan.graph;
        let failures: Vec<TaskFailure> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(node, slot)| {
                let record = slot.get()?;
                Some(TaskFailure {
                    node: graph.nodes[node].name.to_string(),
                    task: graph.nodes[node].task.unwrap_or_default(),
                    attempts: record.retried.len() as u32 + 1,
                    error: record.error.clone()?,
                })
            })
            .collect();
        let names = |status| report.with_status(status).map(|t| t.node.clone()).collect();
        let workflow = graph.name.to_string();
        let error = if !failures.is_empty() {
            Some(Error::Failed {
                workflow,
                failures,
                skipped: names(TaskStatus::Skipped),
            })
        } else if let Some(after) = self.timed_out {
            Some(Error::TimedOut {
                workflow,
                after,
                unfinished: names(TaskStatus::Cancelled),
            })
        } else if self.cancelled && self.slots[graph.output].get().is_none() {
            Some(Error::Cancelled {
                workflow,
                unfinished: names(TaskStatus::Cancelled),
            })
        } else {
            None
        };
        if let Some(error) = error {
            return (Err(error), report);
        }
        let mut slots = self.slots.into_vec();
        let output = slots
            .swap_remove(graph.output)
            .into_inner()
            .and_then(|record| record.value.downcast::<task::Outcome<O>>().ok())
            .and_then(|outcome| match *outcome {
                task::Outcome::Ok(value) => Some(value),
                _ => None,
            })
            .expect("aqueduct: a run without failures has its output");
        (Ok(output), report)
    }

    fn report(&self, plan: &Plan) -> RunReport {
        let graph = &plan.graph;
        let since = |at: Instant| at.saturating_duration_since(self.started);
        let tasks = graph
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| node.kind != Kind::Param)
            .map(|(i, node)| {
                let record = self.slots[i].get();
                let mut attempts: Vec<AttemptReport> = record
                    .into_iter()
                    .flat_map(|r| &r.retried)
                    .map(|a| AttemptReport {
                        started_at: since(a.started),
                        duration: a.finished - a.started,
                        error: Some(a.error.to_string()),
                    })
                    .collect();
                if let Some((record, started)) = record.and_then(|r| Some((r, r.last_started?))) {
                    attempts.push(AttemptReport {
                        started_at: since(started),
                        duration: record.finished - started,
                        error: record.error.as_ref().map(ToString::to_string),
                    });
                }
                let started = record.and_then(|r| r.first_started);
                TaskReport {
                    node: node.name.to_string(),
                    task: node.task.unwrap_or_default().to_string(),
                    kind: node.kind,
                    status: record.map_or(TaskStatus::Cancelled, |r| r.status),
                    started_at: started.map(since),
                    queue_wait: record.zip(started).map_or(Duration::ZERO, |(r, s)| {
                        s.saturating_duration_since(r.ready)
                    }),
                    duration: record.zip(started).map_or(Duration::ZERO, |(r, s)| {
                        r.finished.saturating_duration_since(s)
                    }),
                    error: record
                        .and_then(|r| r.error.as_ref())
                        .map(ToString::to_string),
                    attempts,
                }
            })
            .collect();
        RunReport {
            workflow: graph.name.to_string(),
            wall: self.wall,
            tasks,
            critical_path: self.critical_path(plan),
        }
    }

    /// The chain of tasks, each an input of the next, whose durations add up to the
    /// most: no schedule can finish the run sooner.
    fn critical_path(&self, plan: &Plan) -> Vec<String> {
        let nodes = &plan.graph.nodes;
        let ran = |i: usize| {
            let record = self.slots[i].get()?;
            Some(
                record
                    .finished
                    .saturating_duration_since(record.first_started?),
            )
        };
        // Nodes are in topological order, so one forward pass finds every longest path.
        let mut longest: Vec<Option<(Duration, Option<usize>)>> = vec![None; nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            let Some(duration) = ran(i) else { continue };
            let before = node
                .inputs
                .iter()
                .filter_map(|&j| Some((longest[j]?.0, Some(j))))
                .max_by_key(|(d, _)| *d);
            let (base, previous) = before.unwrap_or((Duration::ZERO, None));
            longest[i] = Some((base + duration, previous));
        }
        let mut at = (0..nodes.len())
            .filter_map(|i| Some((longest[i]?.0, i)))
            .max_by_key(|(d, _)| *d)
            .map(|(_, i)| i);
        let mut path = Vec::new();
        while let Some(i) = at {
            path.push(nodes[i].name.to_string());
            at = longest[i].and_then(|(_, previous)| previous);
        }
        path.reverse();
        path
    }
}
