//! The executor: a ready-queue scheduler over rayon (CPU tasks) and tokio (IO tasks).
//!
//! Each node has a counter of the task inputs it still waits for. A node that is
//! resolved (succeeded, failed or skipped) decrements its successors' counters; a
//! successor that reaches zero is ready, or is skipped if an input it requires did not
//! succeed. A finished task runs one ready successor of its own mode itself (no round
//! trip through any queue); other ready CPU jobs go to rayon as one parallel
//! iteration, other ready IO jobs are polled once in place and spawned only if they
//! must wait. The run's state is one `Arc` shared by every running task; when the last
//! task drops it, `Drop` hands the results to the waiting run future: the reference
//! count is the completion count.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

/// TSC-based: `std::time::Instant::now` costs a `clock_gettime`, a fifth of the
/// per-task time in `independent-10k` when profiled.
use quanta::Instant;

use rayon::iter::{IntoParallelIterator, IntoParallelRefIterator, ParallelIterator};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::error::{Error, TaskFailure};
use crate::plan::{Call, Called, FanOutDef, Plan};
use crate::report::{AttemptReport, ItemsReport, RunReport, TaskReport, TaskStatus};
use crate::task::{self, Kind, TaskError, TaskInfo};

mod attempt;
mod branch;
#[cfg(feature = "durable")]
mod cache;
mod chain;
mod checkpoint;
mod dispatch;
mod fanout;
mod finish;
mod fused;
mod permits;
mod resolve;
mod retry;
mod state;
mod stop;
#[cfg(feature = "durable")]
mod writer;

#[cfg(feature = "durable")]
use cache::JobCache;
#[cfg(feature = "durable")]
pub(crate) use cache::{CacheRun, CacheWarnings};
#[cfg(feature = "postgres")]
pub(crate) use cache::{decode as decode_cached, key_of};
#[cfg(feature = "durable")]
pub(crate) use checkpoint::Flushed;
pub(crate) use checkpoint::{Extras, Nested, Sink};
pub(crate) use finish::{Finished, RunEnd};
pub(crate) use stop::Stop;

use fanout::FanOut;
use permits::{Limiter, limits};
use state::Board;
use stop::{CatchUnwind, Guarded, StopOnDrop, guard, signal_id};

use crate::task::panic_message;
use crate::value::{
    END, FIRST_START, FailedAttempt, ItemRuns, LAST_START, NEVER, READY, Record, Slot, Value,
};

/// How one run goes: set by [`Runner`](crate::Runner).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RunOptions {
    pub(crate) fail_fast: bool,
    pub(crate) timeout: Option<Duration>,
    /// How long cleanup tasks may run after a soft stop; [`DEFAULT_GRACE`] if unset.
    pub(crate) grace: Option<Duration>,
    /// Whether a fused fan-out keeps every item's rows for the report, not only those
    /// of the items that did not succeed.
    pub(crate) item_rows: bool,
}

/// How long cleanup tasks may run after a soft stop, unless the runner says otherwise.
pub(crate) const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// Where a node's attempts run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// On a rayon thread.
    Rayon,
    /// In a tokio task: IO tasks, and CPU tasks with a timeout, whose attempts a
    /// tokio task supervises.
    Tokio,
}

/// One task's way through its attempts. Small, because every queued task holds one.
struct Job {
    node: usize,
    ready: Instant,
    attempt: u32,
    /// Whether it holds a permit of its task's concurrency limit.
    permit: bool,
    /// Only once an attempt failed and is retried.
    retries: Option<Box<Retries>>,
    /// Only for a cached task, once it looked its result up.
    cache: Option<Box<JobCache>>,
}

struct Retries {
    first_started: Instant,
    /// The attempts so far, each of which failed.
    failed: Vec<FailedAttempt>,
}

impl Job {
    fn new(node: usize, ready: Instant) -> Self {
        Self {
            node,
            ready,
            attempt: 0,
            permit: false,
            retries: None,
            cache: None,
        }
    }

    /// Keeps a failed attempt, which is not its last, in its history.
    fn failed_attempt(&mut self, started: Instant, error: TaskError) {
        let retries = self.retries.get_or_insert_with(|| {
            Box::new(Retries {
                first_started: started,
                failed: Vec::new(),
            })
        });
        retries.failed.push(FailedAttempt {
            started,
            finished: Instant::now(),
            error,
        });
    }

    /// The attempts before the current one.
    fn into_failed(self) -> Vec<FailedAttempt> {
        self.retries.map(|r| r.failed).unwrap_or_default()
    }
}

/// Without the `durable` feature there is no store, so no cache.
#[cfg(not(feature = "durable"))]
pub(crate) enum CacheRun {}

#[cfg(not(feature = "durable"))]
enum JobCache {}

#[cfg(not(feature = "durable"))]
impl JobCache {
    fn hit(&self) -> Option<&str> {
        match *self {}
    }
}

#[cfg(not(feature = "durable"))]
impl Shared {
    #[allow(clippy::unused_self)]
    fn looks_up(&self, _job: &Job) -> bool {
        false
    }

    #[allow(clippy::unused_self)]
    fn look_up(&self, _job: &mut Job) -> Option<Value> {
        None
    }

    #[allow(clippy::unused_self)]
    async fn look_up_off_runtime(self: &Arc<Self>, _job: &mut Job) -> Option<Value> {
        None
    }

    fn save_result(
        &self,
        _node: usize,
        job: &JobCache,
        _value: &Value,
        _checkpoint: Option<&crate::store::Checkpoint>,
    ) {
        match *job {}
    }
}

/// Who resolves a node, and so where its ready successors go.
enum Caller<'s> {
    /// A rayon thread: one ready CPU successor continues here, the other CPU ones go
    /// to `spill` (and then to rayon together), the rest are dispatched.
    Rayon(&'s mut Vec<Job>),
    /// A rayon thread resolving the task it just ran: as `Rayon`, and it learns when
    /// the task ended (see [`dispatch::Streak`]).
    RayonTask(&'s mut Vec<Job>, &'s mut Option<Instant>),
    /// A tokio task: one ready successor of tokio mode continues here, the others of
    /// that mode are started by it (`spill`), the rest are dispatched.
    Tokio(&'s mut Vec<Job>),
}

impl Caller<'_> {
    fn mode(&self) -> Mode {
        match self {
            Caller::Rayon(_) | Caller::RayonTask(..) => Mode::Rayon,
            Caller::Tokio(_) => Mode::Tokio,
        }
    }
}

/// How deep tokio-mode jobs may be polled inside one another before they are spawned.
const MAX_INLINE: u32 = 16;

thread_local! {
    static INLINE_DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// What to do after an attempt.
enum Next {
    Retry(Job, Duration),
    Continue(Job),
    Stop,
}

pub(crate) struct Shared {
    plan: Arc<Plan>,
    /// What the run and the runs of its fan-outs' items share.
    run: Arc<RunContext>,
    /// What is resolved, what is ready.
    board: Board,
    span: tracing::Span,
    completion: Option<Completion>,
    /// For a nested run of a durable run whose body is checkpointed (a fan-out's item,
    /// a durable sub-workflow): the prefix of its checkpoints' names, `each[17].` or
    /// `stats.` (after the parent's own prefix).
    path: Option<Arc<str>>,
}

/// The parts of a run its fan-outs' items share, behind one pointer: an item's own
/// state stays small.
struct RunContext {
    /// Where checkpoints go, in a durable run.
    sink: Option<Sink>,
    /// Live counts, if someone watches.
    progress: Option<Arc<crate::progress::Progress>>,
    started: Instant,
    /// The ids of `stop`'s soft and hard tokens for [`task::with_cancel`].
    signals: [u64; 2],
    tokio: tokio::runtime::Handle,
    stop: Stop,
    options: RunOptions,
    /// The concurrency limit of every task that has one, in this run and every
    /// fan-out body in it: limits hold across the whole run.
    limits: HashMap<TaskInfo, Limiter>,
    /// A resumed run's checkpoints of nested runs (fan-out items, sub-workflows), by
    /// name (`each[17].sum`): each nested run restores its own as it starts.
    /// Taken by each nested run as it starts (and so freed); `None` for a run that
    /// restores no nested run, which then never takes the lock.
    nested: Option<std::sync::Mutex<Nested>>,
    /// How checkpoints are encoded.
    format: crate::plan::CheckpointFormat,
    /// Where cached tasks' results are looked up and saved, if the run has a store.
    #[cfg_attr(not(feature = "durable"), allow(dead_code))]
    cache: Option<CacheRun>,
}

/// Who gets a run's slots when its last task is done.
enum Completion {
    /// The run future, waiting on the other end.
    Run(oneshot::Sender<Box<[Slot]>>),
    /// A fan-out, for item `index`.
    Item { fan: Arc<FanOut>, index: usize },
}

impl Drop for Shared {
    fn drop(&mut self) {
        let mut slots = self.board.take_slots();
        match self.completion.take() {
            // The receiver is gone only if the run future was dropped: nobody to tell.
            Some(Completion::Run(done)) => {
                // Dropped by a panic's unwind: the scheduler's, caught in `guard`
                // only after this sends the slots, so the fault is recorded first.
                if std::thread::panicking() {
                    self.run.stop.fault_unwinding();
                }
                self.run.stop.end();
                finish::drop_values(&self.plan, &mut slots);
                if let Err(mut slots) = done.send(slots) {
                    // Nobody waits: the values are dropped here, on a pool's thread,
                    // where a panic in a value's `Drop` must not unwind.
                    crate::contain::drop_slots(&mut slots, |node| self.plan.graph.name_of(node));
                }
            }
            Some(Completion::Item { fan, index }) => {
                let context = Arc::clone(&fan.parent.run);
                guard(&context, "a fan-out item's end", move || {
                    let mut slots = slots;
                    fan.forget_values(&mut slots);
                    let _ = fan.items[index].set(slots);
                    fan.item_ended();
                });
            }
            None => {}
        }
    }
}

/// The run future's end of the channel a run's slots come back on. Dropped with the
/// slots still in it (the run future dropped after the run ended but before it looked),
/// it drops their values behind the boundary, as the run's end would have.
struct Finishing(oneshot::Receiver<Box<[Slot]>>);

impl Future for Finishing {
    type Output = Result<Box<[Slot]>, oneshot::error::RecvError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl Drop for Finishing {
    fn drop(&mut self) {
        if let Ok(mut slots) = self.0.try_recv() {
            crate::contain::drop_slots(&mut slots, |_| "a value of a run dropped unread");
        }
    }
}

impl Drop for RunContext {
    /// Values restored for nested runs that never started and whose fan-out never
    /// ended (the run stopped before it expanded): dropped here, their `Drop` being
    /// the user's code, behind a boundary.
    fn drop(&mut self) {
        if let Some(nested) = self.nested.take() {
            let nested = nested
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let values = nested.into_values().flatten().map(|(_, value)| value);
            crate::contain::drop_all(values.enumerate(), |_| "a value restored for a nested run");
        }
    }
}

impl RunContext {
    /// Stops the run for good because the scheduler itself panicked, and forgets the
    /// jobs waiting for permits (whoever held those permits may never give them back).
    fn fault(&self, message: String) {
        tracing::error!(%message, "aqueduct: the run stops on a fault");
        self.stop.fault(message);
        for limiter in self.limits.values() {
            limiter.drain();
        }
    }
}

/// A run's resources, put in their slots as it starts.
pub(crate) type Provide = Box<dyn FnOnce(&[Slot]) + Send + Sync>;

/// Runs `plan` once: `store` fills the parameters' slots, then every task runs as soon
/// as its inputs exist. Stopping `stop`, or dropping this future, stops the run.
pub(crate) async fn execute(
    plan: Arc<Plan>,
    options: RunOptions,
    stop: Stop,
    store: impl FnOnce(&[Slot]),
    extras: Extras,
) -> Result<Finished, Error> {
    let tokio = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime {
        workflow: plan.graph.name().to_string(),
    })?;
    let stop_on_drop = StopOnDrop(Some(stop.clone()));
    let started = Instant::now();
    let name = plan.graph.name();
    // Only a runner made by `Workflow::runner_with` runs a workflow with resources.
    if plan.resources > 0 && extras.resources.is_none() {
        return Err(Error::MissingResources {
            workflow: name.to_owned(),
        });
    }
    let span = tracing::info_span!("workflow", name = %name, run = tracing::field::Empty);
    // A run given no id gets one for its span, made only if a subscriber records it.
    if !span.is_disabled() {
        let run_id = extras
            .run_id
            .unwrap_or_else(|| crate::run_id::new_run_id(name));
        span.record("run", tracing::field::display(&run_id));
    }
    tracing::info!(parent: &span, "run started");
    let mut board = Board::new(&plan);
    store(board.slots());
    if let Some(provide) = extras.resources {
        provide(board.slots());
    }
    board.settle_params(&plan);
    if let Some(progress) = &extras.progress {
        progress.add_total(task_count(&plan));
        let restored = extras.restored.iter();
        progress.add_done(
            restored
                .filter(|(n, _)| plan.graph.kind(*n).is_task())
                .count() as u64,
        );
    }
    let (restored_roots, cpu_roots) = if extras.restored.is_empty() {
        (None, plan.cpu_roots)
    } else {
        let mut roots = board.restore(&plan, extras.restored);
        let cpu = crate::plan::cpu_first(&mut roots, &plan.flags);
        (Some(roots), cpu)
    };
    let (done, finished) = oneshot::channel();
    let mut finished = Finishing(finished);
    let mut limited = HashMap::new();
    limits(&plan, &mut limited);
    let shared = Arc::new(Shared {
        plan: Arc::clone(&plan),
        run: Arc::new(RunContext {
            started,
            signals: [signal_id(), signal_id()],
            tokio,
            stop: stop.clone(),
            options,
            limits: limited,
            sink: extras.sink,
            progress: extras.progress,
            nested: (!extras.nested.is_empty()).then(|| std::sync::Mutex::new(extras.nested)),
            format: extras.format,
            cache: extras.cache,
        }),
        board,
        span: span.clone(),
        completion: Some(Completion::Run(done)),
        path: None,
    });
    let roots = restored_roots.as_deref().unwrap_or(&plan.roots);
    let mut io: Vec<Job> = roots[cpu_roots..]
        .iter()
        .map(|&root| Job::new(root as usize, started))
        .collect();
    // CPU roots first, so they compute while IO roots are started.
    shared.spawn_roots(restored_roots, cpu_roots, started);
    shared.start_all(&mut io).await;
    drop(shared);
    let mut timed_out = None;
    let deadline = async {
        match options.timeout {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    // Until the run ends or stops; after a soft stop, cleanup tasks have the grace
    // period, then the stop is hard.
    // Whether the deadline passed after every task had ended: not a timeout.
    let mut ended_in_time = false;
    let slots = tokio::select! {
        biased;
        slots = &mut finished => Some(slots),
        () = stop.stopped() => None,
        () = deadline => {
            if stop.has_ended() {
                ended_in_time = true;
            } else {
                timed_out = options.timeout;
                stop.stop();
            }
            None
        }
    };
    let slots = match slots {
        Some(slots) => slots,
        None if ended_in_time => finished.await,
        None => {
            let grace = options.grace.unwrap_or(DEFAULT_GRACE);
            tokio::select! {
                biased;
                slots = &mut finished => slots,
                () = stop.killed() => finished.await,
                () = tokio::time::sleep(grace) => {
                    stop.kill();
                    finished.await
                }
            }
        }
    };
    stop_on_drop.disarm();
    let Ok(slots) = slots else {
        tracing::info!(parent: &span, status = "failed", "run ended");
        return Err(Error::Fault {
            workflow: plan.graph.name().to_string(),
            message: "the run's state was dropped without handing back its results".into(),
        });
    };
    Ok(Finished {
        started,
        wall: started.elapsed(),
        slots,
        timed_out,
        cancelled: stop.is_stopped(),
        fault: stop.fault_message().map(str::to_owned),
        span,
    })
}

/// A task's future (`Step::pending`'s) whose panic while polled is its failure: what a
/// distributed worker awaits.
#[cfg(feature = "postgres")]
pub(crate) async fn caught<'a>(
    future: Pin<Box<dyn Future<Output = Result<Value, TaskError>> + Send + 'a>>,
) -> Result<Value, TaskError> {
    CatchUnwind(future)
        .await
        .unwrap_or_else(|panic| Err(TaskError::panicked(&*panic)))
}

/// How many task nodes `plan` has, not counting its fan-outs' bodies.
fn task_count(plan: &Plan) -> u64 {
    plan.graph.nodes().filter(|n| n.kind().is_task()).count() as u64
}
