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

use rayon::iter::{IntoParallelIterator, ParallelIterator};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::error::{Error, TaskFailure};
use crate::graph::{Assemble, Call, FanOutDef, Plan};
use crate::report::{AttemptReport, RunReport, TaskReport, TaskStatus};
use crate::task::{self, Kind, TaskError, TaskInfo};

mod attempt;
mod durable;
mod fanout;
mod finish;
mod limits;
mod record;
mod stop;

pub(crate) use durable::{Extras, Sink};
pub(crate) use fanout::{imported_outcome, imported_value};
pub(crate) use finish::Finished;
pub(crate) use record::fill;
pub use record::{Record, Slot};
pub(crate) use stop::{Stop, panic_message};

use fanout::FanOut;
use limits::{Limiter, limits};
use record::{END, FIRST_START, FailedAttempt, LAST_START, NEVER, READY};
use stop::{CatchUnwind, Guarded, StopOnDrop, guard, signal_id};

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
    /// How long cleanup tasks may run after a soft stop; [`DEFAULT_GRACE`] if unset.
    pub(crate) grace: Option<Duration>,
}

/// How long cleanup tasks may run after a soft stop, unless the runner says otherwise.
pub(crate) const DEFAULT_GRACE: Duration = Duration::from_secs(30);

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

/// One task's way through its attempts. Small, because every queued task holds one.
struct Job {
    node: usize,
    ready: Instant,
    attempt: u32,
    /// Whether it holds a permit of its task's concurrency limit.
    permit: bool,
    /// Only once an attempt failed and is retried.
    retries: Option<Box<Retries>>,
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

/// Who resolves a node, and so where its ready successors go.
enum Caller<'s> {
    /// A rayon thread: one ready CPU successor continues here, the other CPU ones go
    /// to `spill` (and then to rayon together), the rest are dispatched.
    Rayon(&'s mut Vec<Job>),
    /// A tokio task: one ready successor of tokio mode continues here, the others of
    /// that mode are started by it (`spill`), the rest are dispatched.
    Tokio(&'s mut Vec<Job>),
}

impl Caller<'_> {
    fn mode(&self) -> Mode {
        match self {
            Caller::Rayon(_) => Mode::Rayon,
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
    slots: Box<[Slot]>,
    waiting: Box<[AtomicU64]>,
    span: tracing::Span,
    completion: Option<Completion>,
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
        let slots = std::mem::take(&mut self.slots);
        match self.completion.take() {
            // The receiver is gone only if the run future was dropped: nobody to tell.
            Some(Completion::Run(done)) => {
                if let Err(slots) = done.send(slots) {
                    // Nobody waits: the values are dropped here, on a pool's thread,
                    // where a panic in a value's `Drop` must not unwind.
                    let _ = catch_unwind(AssertUnwindSafe(move || drop(slots)));
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

fn empty_slots(plan: &Plan) -> (Box<[Slot]>, Box<[AtomicU64]>) {
    let slots = (0..plan.calls.len()).map(|_| Slot::new()).collect();
    let waiting = plan
        .waits_for
        .iter()
        .map(|&n| AtomicU64::new(u64::from(n)))
        .collect();
    (slots, waiting)
}

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
    let span = tracing::info_span!("workflow", name = %plan.graph.name());
    let (slots, mut waiting) = empty_slots(&plan);
    store(&slots);
    if let Some(progress) = &extras.progress {
        progress.add_total(task_count(&plan));
        let restored = extras.restored.iter();
        progress.add_done(
            restored
                .filter(|(n, _)| plan.graph.kind(*n).is_task())
                .count() as u64,
        );
    }
    let roots = if extras.restored.is_empty() {
        plan.roots.clone()
    } else {
        restore(&plan, &slots, &mut waiting, extras.restored)
    };
    let (done, mut finished) = oneshot::channel();
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
        }),
        slots,
        waiting,
        span,
        completion: Some(Completion::Run(done)),
    });
    // CPU roots first, so they compute while IO roots are started.
    let roots = roots.iter().map(|&root| Job::new(root as usize, started));
    let (mut cpu, mut io): (Vec<Job>, Vec<Job>) =
        roots.partition(|job| shared.mode(job.node) == Mode::Rayon);
    shared.spawn_on_rayon(&mut cpu);
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
    let slots = tokio::select! {
        biased;
        slots = &mut finished => Some(slots),
        () = stop.stopped() => None,
        () = deadline => {
            timed_out = options.timeout;
            stop.stop();
            None
        }
    };
    let slots = match slots {
        Some(slots) => slots,
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
    })
}

/// How many task nodes `plan` has, not counting its fan-outs' bodies.
fn task_count(plan: &Plan) -> u64 {
    plan.graph.nodes().filter(|n| n.kind().is_task()).count() as u64
}

/// Fills the slots of restored nodes and counts, for the others, only the inputs
/// still to come. Returns the tasks that can start at once.
fn restore(
    plan: &Plan,
    slots: &[Slot],
    waiting: &mut [AtomicU64],
    restored: Vec<(usize, Value)>,
) -> Vec<u32> {
    let graph = &plan.graph;
    let mut done = vec![false; graph.len()];
    for (node, value) in restored {
        done[node] = true;
        let record = Record::new(
            value,
            TaskStatus::Restored,
            [0, NEVER, NEVER, 0],
            None,
            Vec::new(),
        );
        let _ = slots[node].set(record);
    }
    let mut roots = Vec::new();
    for node in graph
        .nodes()
        .filter(|n| n.kind() != Kind::Param && !done[n.index()])
    {
        let pending = node
            .inputs()
            .filter(|&i| graph.kind(i) != Kind::Param && !done[i])
            .count();
        *waiting[node.index()].get_mut() = pending as u64;
        if pending == 0 {
            roots.push(node.index() as u32);
        }
    }
    roots
}

impl Shared {
    fn mode(&self, node: usize) -> Mode {
        let info = self.plan.graph.info(node);
        match info.kind {
            Kind::Cpu if info.timeout.is_none() => Mode::Rayon,
            Kind::FanOut | Kind::Workflow => Mode::Rayon,
            _ => Mode::Tokio,
        }
    }

    /// Hands a job to its pool. After a stop it still goes there, and [`admit`]
    /// records it cancelled (or lets a cleanup task run).
    ///
    /// [`admit`]: Shared::admit
    fn dispatch(self: &Arc<Self>, job: Job) {
        let run = Arc::clone(self);
        match self.mode(job.node) {
            Mode::Rayon => rayon::spawn(move || run.rayon_job(job)),
            Mode::Tokio => self.spawn(run.run_on_tokio(job)),
        }
    }

    /// Spawns a future of the scheduler on tokio, its panics caught.
    fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        self.run.tokio.spawn(Guarded {
            run: Arc::clone(&self.run),
            future: CatchUnwind(Box::pin(future)),
        });
    }

    /// A job on a rayon thread, its panics caught.
    fn rayon_job(self: Arc<Self>, job: Job) {
        let context = Arc::clone(&self.run);
        guard(&context, "the scheduler", move || self.run_on_rayon(job));
    }

    fn attempt_span(&self, job: &Job) -> tracing::Span {
        let graph = &self.plan.graph;
        tracing::info_span!(
            parent: &self.span,
            "task",
            task = graph.info(job.node).name,
            node = %graph.name_of(job.node),
            attempt = job.attempt,
        )
    }

    /// Runs a CPU node's attempts on this rayon thread, then any ready CPU successor it
    /// unlocks. A retry after a delay waits on tokio's timer, not on this thread.
    fn run_on_rayon(self: &Arc<Self>, mut job: Job) {
        let mut spill = Vec::new();
        loop {
            job = match self.admit(job) {
                Some(job) => job,
                None => return,
            };
            if let Call::FanOut(def) = &self.plan.calls[job.node] {
                return self.expand(job, def);
            }
            let started = self.begin(&mut job);
            let result = self
                .attempt_span(&job)
                .in_scope(|| self.call_cpu_here(job.node));
            let next = self.after_attempt(job, started, result, Caller::Rayon(&mut spill));
            self.spawn_on_rayon(&mut spill);
            job = match next {
                Next::Continue(next) => next,
                Next::Retry(next, delay) if delay.is_zero() => next,
                Next::Retry(next, delay) => {
                    let run = Arc::clone(self);
                    self.spawn(async move {
                        if run.sleep(next.node, delay).await {
                            rayon::spawn(move || run.rayon_job(next));
                        } else {
                            run.cancel(next, None, Vec::new());
                        }
                    });
                    return;
                }
                Next::Stop => return,
            }
        }
    }

    /// Hands ready CPU jobs to rayon: one job as a spawn, several as one parallel
    /// iteration, which rayon splits among idle threads by work stealing (cheaper than
    /// a spawn, an allocation and an `Arc` clone per job).
    fn spawn_on_rayon(self: &Arc<Self>, jobs: &mut Vec<Job>) {
        match jobs.pop() {
            None => {}
            Some(job) if jobs.is_empty() => self.dispatch(job),
            Some(job) => {
                jobs.push(job);
                let (run, jobs) = (Arc::clone(self), std::mem::take(jobs));
                rayon::spawn(move || {
                    let context = Arc::clone(&run.run);
                    guard(&context, "the scheduler", move || {
                        jobs.into_par_iter().for_each(|job| run.run_on_rayon(job));
                    });
                });
            }
        }
    }

    /// Runs an IO node's attempts (or a CPU node's with a timeout) in this tokio task,
    /// then any ready successor of the same mode it unlocks.
    async fn run_on_tokio(self: Arc<Self>, mut job: Job) {
        let mut spill = Vec::new();
        loop {
            job = match self.admit(job) {
                Some(job) => job,
                None => return,
            };
            let mut started = self.begin(&mut job);
            let span = self.attempt_span(&job);
            let result = match self.plan.graph.kind(job.node) {
                Kind::Io => self.call_io(job.node).instrument(span).await,
                _ => match Box::pin(self.call_cpu_supervised(&mut job, span)).await {
                    (Some(at), result) => {
                        started = at;
                        result
                    }
                    // The run stopped before rayon started the attempt: it never ran.
                    (None, _) => {
                        job.attempt -= 1;
                        if let (0, Some(progress)) = (job.attempt, &self.run.progress) {
                            progress.unstarted();
                        }
                        return self.cancel(job, None, Vec::new());
                    }
                },
            };
            let Some(result) = result else {
                return self.cancel(job, Some(started), Vec::new());
            };
            let next = self.after_attempt(job, started, result, Caller::Tokio(&mut spill));
            self.start_all(&mut spill).await;
            job = match next {
                Next::Continue(next) => next,
                Next::Retry(next, delay) => {
                    if !Box::pin(self.sleep(next.node, delay)).await {
                        return self.cancel(next, None, Vec::new());
                    }
                    next
                }
                Next::Stop => return,
            }
        }
    }

    /// Starts a job of tokio mode: polls it once right here (with the caller's
    /// context), and spawns it only if it has to wait. A task that finishes at once
    /// then costs no spawn and holds no memory while others are started.
    fn start(self: &Arc<Self>, job: Job, cx: &mut Context<'_>) {
        let mut task = Guarded {
            run: Arc::clone(&self.run),
            future: CatchUnwind(Box::pin(Arc::clone(self).run_on_tokio(job))),
        };
        let depth = INLINE_DEPTH.get();
        if depth < MAX_INLINE {
            INLINE_DEPTH.set(depth + 1);
            let poll = Pin::new(&mut task).poll(cx);
            INLINE_DEPTH.set(depth);
            if poll.is_ready() {
                return;
            }
        }
        // The spawned task polls it again, so its own waker is the one registered.
        self.run.tokio.spawn(task);
    }

    /// Starts every job in `jobs` (see [`Shared::start`]).
    async fn start_all(self: &Arc<Self>, jobs: &mut Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        std::future::poll_fn(|cx| {
            for job in jobs.drain(..) {
                self.start(job, cx);
            }
            Poll::Ready(())
        })
        .await;
    }

    fn limiter(&self, node: usize) -> Option<&Limiter> {
        let info = self.plan.graph.info(node);
        info.concurrency?;
        self.run.limits.get(info)
    }

    /// The job, allowed to run; `None` if the run stopped (the job is then recorded
    /// cancelled) or if the job must wait for a permit of its task's concurrency limit
    /// (a finishing node of the same task will dispatch it).
    fn admit(self: &Arc<Self>, job: Job) -> Option<Job> {
        if !self.may_start(job.node) {
            self.cancel(job, None, Vec::new());
            return None;
        }
        match self.limiter(job.node) {
            Some(limiter) if !job.permit => limiter.acquire(self, job),
            _ => Some(job),
        }
    }

    /// Gives back a finished job's permit, dispatching the job that waited for it (in
    /// whichever run, or fan-out item, it belongs to).
    fn give_back(&self, node: usize, permit: bool) {
        if !permit {
            return;
        }
        if let Some((run, next)) = self.limiter(node).and_then(Limiter::release) {
            run.dispatch(next);
        }
    }

    /// Counts a task node's end for the progress display.
    fn ended(&self, node: usize, was_running: bool) {
        if let Some(progress) = &self.run.progress
            && self.plan.graph.kind(node).is_task()
        {
            progress.ended(was_running);
        }
    }

    /// Retries a failed attempt if its policy allows, else resolves the node.
    fn after_attempt(
        self: &Arc<Self>,
        mut job: Job,
        started: Instant,
        result: Result<Value, TaskError>,
        caller: Caller<'_>,
    ) -> Next {
        let Err(error) = &result else {
            return self.resolved(job, started, result, caller);
        };
        if error.is_stopped_early() {
            // The run's stop told it to return early: it did not finish.
            self.cancel(job, Some(started), Vec::new());
            return Next::Stop;
        }
        let retry = &self.plan.graph.info(job.node).retry;
        if !retry.retries_after(job.attempt, error) {
            return self.resolved(job, started, result, caller);
        }
        job.failed_attempt(started, error.clone());
        if !self.may_start(job.node) {
            // Only the stop keeps it from retrying: it did not fail for good.
            self.cancel(job, None, Vec::new());
            return Next::Stop;
        }
        let delay = retry.delay_before(job.attempt);
        tracing::warn!(
            parent: &self.span, node = self.plan.graph.name_of(job.node), attempt = job.attempt, %error,
            "attempt failed; retrying in {delay:?}"
        );
        Next::Retry(job, delay)
    }

    /// Resolves the node with its last attempt's result.
    fn resolved(
        self: &Arc<Self>,
        job: Job,
        started: Instant,
        result: Result<Value, TaskError>,
        caller: Caller<'_>,
    ) -> Next {
        match self.resolve(job, started, result, caller, Vec::new()) {
            Some(next) => Next::Continue(next),
            None => Next::Stop,
        }
    }

    fn since(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.run.started).as_nanos() as u64
    }

    fn times(&self, job: &Job, last_started: Option<Instant>, finished: Instant) -> [u64; 4] {
        let since = |at: Option<Instant>| at.map_or(NEVER, |at| self.since(at));
        [
            self.since(job.ready),
            since(
                job.retries
                    .as_ref()
                    .map(|r| r.first_started)
                    .or(last_started),
            ),
            since(last_started),
            self.since(finished),
        ]
    }

    /// Records a node the run's stop kept from finishing (`started` is its interrupted
    /// attempt's start, if one ran), gives its permit back, and releases its
    /// successors: those it dooms are recorded in turn, cleanup tasks still run.
    fn cancel(self: &Arc<Self>, job: Job, started: Option<Instant>, items: Vec<Box<[Slot]>>) {
        let now = Instant::now();
        let times = self.times(&job, started, now);
        let value = (self.plan.unresolved[job.node])(None);
        let (node, permit, attempts) = (job.node, job.permit, job.attempt);
        self.ended(node, attempts > 0);
        let status = TaskStatus::Cancelled;
        let record = Record::with_items(value, status, times, None, job.into_failed(), items);
        if let (Some(sink), true) = (self.records(), attempts > 0) {
            self.record_end(sink, node, attempts, &record, None);
        }
        let _ = self.slots[node].set(record);
        self.give_back(node, permit);
        let mut spill = Vec::new();
        if let Some(next) = self.release(node, false, Caller::Rayon(&mut spill), now) {
            spill.push(next);
        }
        self.spawn_on_rayon(&mut spill);
    }

    /// Whether this is the run itself (not an item of a fan-out or a sub-workflow),
    /// and durable: only its own nodes are checkpointed and recorded.
    fn records(&self) -> Option<&Sink> {
        let top = matches!(self.completion, Some(Completion::Run(_)));
        self.run.sink.as_ref().filter(|_| top)
    }

    /// A succeeded node's checkpoint, if the plan checkpoints it. A value that cannot
    /// be encoded (its `Serialize` fails or panics) fails the task: a durable run must
    /// not go on with an output it could not save.
    fn checkpoint_of(
        &self,
        node: usize,
        attempts: u32,
        value: &Value,
    ) -> Result<Option<crate::store::Checkpoint>, TaskError> {
        let codec = self.plan.durable.as_ref().and_then(|d| d.codecs[node]);
        let Some(codec) = codec else { return Ok(None) };
        let encoded = catch_unwind(AssertUnwindSafe(|| (codec.encode)(value)))
            .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_message(&*panic))));
        let data = encoded.map_err(|error| {
            TaskError::permanent(TaskError::msg(format_args!(
                "cannot checkpoint its output: {error}"
            )))
        })?;
        Ok(Some(crate::store::Checkpoint {
            node: self.plan.graph.name_of(node).to_owned(),
            codec: crate::graph::CODEC.to_owned(),
            schema: crate::graph::SCHEMA,
            data,
            attempts,
        }))
    }

    /// Sends the writer a node's checkpoint, if it has one, and how it ended if it is
    /// a task (status, attempts and their errors, times), in one entry so that both
    /// land in the same commit.
    fn record_end(
        &self,
        sink: &Sink,
        node: usize,
        attempts: u32,
        record: &Record,
        checkpoint: Option<crate::store::Checkpoint>,
    ) {
        let end = self
            .plan
            .graph
            .kind(node)
            .is_task()
            .then(|| self.task_end(node, attempts, record));
        if checkpoint.is_some() || end.is_some() {
            sink.send(durable::Entry { checkpoint, end });
        }
    }

    fn task_end(&self, node: usize, attempts: u32, record: &Record) -> crate::store::TaskEnd {
        let mut errors: Vec<String> = record
            .retried()
            .iter()
            .map(|failed| failed.error.to_string())
            .collect();
        errors.extend(record.error().map(ToString::to_string));
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let span_ms = record.duration().map_or(0, |d| d.as_millis() as u64);
        crate::store::TaskEnd {
            node: self.plan.graph.name_of(node).to_owned(),
            status: record.status.to_string(),
            attempts,
            errors,
            started_ms: now_ms.saturating_sub(span_ms),
            duration_ms: span_ms,
        }
    }

    /// Records a node's final outcome and releases its successors. Returns one ready
    /// successor of `mode` for the caller to run next.
    fn resolve(
        self: &Arc<Self>,
        job: Job,
        started: Instant,
        result: Result<Value, TaskError>,
        caller: Caller<'_>,
        items: Vec<Box<[Slot]>>,
    ) -> Option<Job> {
        let node = job.node;
        // Only the run itself records, in a durable run: not its fan-outs' items.
        let sink = self.records();
        let mut checkpoint = None;
        let result = match (result, sink) {
            (Ok(value), Some(_)) => self.checkpoint_of(node, job.attempt, &value).map(|c| {
                checkpoint = c;
                value
            }),
            (result, _) => result,
        };
        let (value, status, error) = match result {
            Ok(value) => (value, TaskStatus::Succeeded, None),
            Err(error) => {
                let name = self.plan.graph.name_of(node);
                tracing::error!(parent: &self.span, node = name, attempts = job.attempt, %error, "task failed");
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
        self.ended(node, true);
        let finished = Instant::now();
        let times = self.times(&job, Some(started), finished);
        let (permit, attempts) = (job.permit, job.attempt);
        let record = Record::with_items(value, status, times, error, job.into_failed(), items);
        if let Some(sink) = sink {
            self.record_end(sink, node, attempts, &record, checkpoint);
        }
        let _ = self.slots[node].set(record);
        if !succeeded && self.run.options.fail_fast {
            self.run.stop.stop();
        }
        self.give_back(node, permit);
        self.release(node, succeeded, caller, finished)
    }

    /// Decrements the counters of `node`'s successors; dispatches those now ready,
    /// records those that will not run (skipped by an unsuccessful required input, or
    /// cancelled by the run's stop) and releases theirs in turn, and returns one ready
    /// successor of `mode` for the caller.
    fn release(
        self: &Arc<Self>,
        node: usize,
        succeeded: bool,
        mut caller: Caller<'_>,
        now: Instant,
    ) -> Option<Job> {
        let mut next = None;
        let mut unreached = Vec::new();
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
                let job = Job::new(successor, now);
                let mode = self.mode(successor);
                if before >= DOOMED || (!succeeded && required) || !self.may_start(successor) {
                    unreached.push(successor);
                } else if next.is_none() && mode == caller.mode() {
                    next = Some(job);
                } else if let (Caller::Tokio(spill), Mode::Tokio)
                | (Caller::Rayon(spill), Mode::Rayon) = (&mut caller, mode)
                {
                    spill.push(job);
                } else {
                    self.dispatch(job);
                }
            }
            let Some(unrun) = unreached.pop() else { break };
            let at = self.since(now);
            let value = (self.plan.unresolved[unrun])(None);
            let status = self.unreached_status(unrun);
            let record = Record::new(value, status, [at, NEVER, NEVER, at], None, Vec::new());
            let _ = self.slots[unrun].set(record);
            self.ended(unrun, false);
            resolved = (unrun, false);
        }
        next
    }

    /// Why a ready node will not run: `Skipped` if an input it requires failed or was
    /// skipped, else `Cancelled` (the run's stop kept it from starting).
    fn unreached_status(&self, node: usize) -> TaskStatus {
        let node = self.plan.graph.node(node);
        let tolerant: Vec<usize> = node.outcome_inputs().collect();
        let failed = node
            .inputs()
            .filter(|input| !tolerant.contains(input))
            .filter_map(|input| self.slots[input].get())
            .any(|record| {
                matches!(
                    record.status,
                    TaskStatus::Failed | TaskStatus::TimedOut | TaskStatus::Skipped
                )
            });
        if failed {
            TaskStatus::Skipped
        } else {
            TaskStatus::Cancelled
        }
    }
}
