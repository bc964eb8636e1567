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
///
/// Kept small (64 bytes): a run holds one per node.
pub struct Record {
    /// An `Outcome<T>`, boxed.
    pub(crate) value: Value,
    /// Nanoseconds from the run's start: ready, first start, last start, end; a start
    /// that did not happen is [`NEVER`].
    times: [u64; 4],
    /// Only for a task that failed or was retried.
    history: Option<Box<History>>,
    status: TaskStatus,
}

const NEVER: u64 = u64::MAX;

struct History {
    /// The last attempt's error.
    error: Option<TaskError>,
    /// The attempts before the last one, each of which failed.
    retried: Vec<FailedAttempt>,
    /// For a fan-out, every item's slots, in input order.
    items: Vec<Box<[Slot]>>,
}

impl Record {
    fn new(
        value: Value,
        status: TaskStatus,
        times: [u64; 4],
        error: Option<TaskError>,
        retried: Vec<FailedAttempt>,
    ) -> Self {
        Self::with_items(value, status, times, error, retried, Vec::new())
    }

    fn with_items(
        value: Value,
        status: TaskStatus,
        times: [u64; 4],
        error: Option<TaskError>,
        retried: Vec<FailedAttempt>,
        items: Vec<Box<[Slot]>>,
    ) -> Self {
        let history = (error.is_some() || !retried.is_empty() || !items.is_empty()).then(|| {
            Box::new(History {
                error,
                retried,
                items,
            })
        });
        Self {
            value,
            times,
            history,
            status,
        }
    }

    fn error(&self) -> Option<&TaskError> {
        self.history.as_ref()?.error.as_ref()
    }

    fn retried(&self) -> &[FailedAttempt] {
        self.history.as_ref().map_or(&[], |h| &h.retried)
    }

    fn items(&self) -> &[Box<[Slot]>] {
        self.history.as_ref().map_or(&[], |h| &h.items)
    }

    fn time(&self, which: usize) -> Option<Duration> {
        (self.times[which] != NEVER).then(|| Duration::from_nanos(self.times[which]))
    }

    /// From the first attempt's start to the end; `None` if it never started.
    fn duration(&self) -> Option<Duration> {
        Some(self.time(END)?.saturating_sub(self.time(FIRST_START)?))
    }
}

const READY: usize = 0;
const FIRST_START: usize = 1;
const LAST_START: usize = 2;
const END: usize = 3;

struct FailedAttempt {
    started: Instant,
    finished: Instant,
    error: TaskError,
}

/// A node's place in a run: empty until the node is resolved.
pub type Slot = OnceLock<Record>;

/// What a parameter of a fan-out's body holds: a way to its value in the parent run,
/// which it keeps alive. Reading it costs one failed downcast, and only in bodies.
pub(crate) enum Import {
    /// A node of the parent run.
    Node { run: Arc<Shared>, node: u32 },
    /// Item `index` of the collection in the parent run's node `collection`.
    Item {
        run: Arc<Shared>,
        collection: u32,
        index: usize,
        item: crate::graph::ItemOf,
    },
}

pub(crate) fn imported_value<T: 'static>(value: &Value) -> &T {
    match value.downcast_ref::<Import>() {
        Some(Import::Node { run, node }) => crate::graph::value(&run.slots, *node),
        Some(Import::Item {
            run,
            collection,
            index,
            item,
        }) => item(&run.slots, *collection, *index)
            .downcast_ref()
            .expect("aqueduct: an item has its collection's item type"),
        None => panic!("aqueduct: a node's value has another type than its handle's"),
    }
}

pub(crate) fn imported_outcome<T: 'static>(value: &Value) -> &crate::task::Outcome<T> {
    match value.downcast_ref::<Import>() {
        Some(Import::Node { run, node }) => crate::graph::outcome(&run.slots, *node),
        _ => panic!("aqueduct: the item of a `for` is never read as an outcome"),
    }
}

pub(crate) fn fill(slot: &Slot, value: Value) {
    let _ = slot.set(Record::new(
        value,
        TaskStatus::Succeeded,
        [0, NEVER, NEVER, 0],
        None,
        Vec::new(),
    ));
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

/// A run's stop signal: an atomic flag for the hot path (the token's own
/// `is_cancelled` takes a mutex), and a token to wake what waits on it.
#[derive(Clone, Default)]
pub(crate) struct Stop(Arc<StopInner>);

#[derive(Default)]
struct StopInner {
    stopped: std::sync::atomic::AtomicBool,
    token: CancellationToken,
}

impl Stop {
    pub(crate) fn stop(&self) {
        self.0.stopped.store(true, Ordering::Release);
        self.0.token.cancel();
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::Acquire)
    }

    fn stopped(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.0.token.cancelled()
    }

    fn token(&self) -> &CancellationToken {
        &self.0.token
    }
}

/// Stops the run if the run future is dropped before it ends.
struct StopOnDrop(Option<Stop>);

impl StopOnDrop {
    fn disarm(mut self) {
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
static SIGNALS: AtomicU64 = AtomicU64::new(0);

fn signal_id() -> u64 {
    SIGNALS.fetch_add(1, Ordering::Relaxed)
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
    started: Instant,
    /// The id of `stop` for [`task::with_cancel`].
    signal: u64,
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

/// Hands the CPU roots of new item runs to rayon together.
fn spawn_roots(mut roots: Vec<(Arc<Shared>, Job)>) {
    match roots.len() {
        0 => {}
        1 => {
            let (run, job) = roots.pop().expect("one root");
            run.dispatch(job);
        }
        _ => rayon::spawn(move || {
            roots
                .into_par_iter()
                .for_each(|(run, job)| run.run_on_rayon(job));
        }),
    }
}

impl FanOut {
    fn def(&self) -> &FanOutDef {
        match &self.parent.plan.calls[self.node] {
            Call::FanOut(def) => def,
            _ => unreachable!("a fan-out's node is a fan-out"),
        }
    }

    /// Starts item `index`: a run of the body with the item and the imports as its
    /// parameters. Its CPU roots go to `cpu_root`, its IO roots are dispatched.
    fn start_item(
        self: &Arc<Self>,
        index: usize,
        def: &FanOutDef,
        cpu_root: &mut dyn FnMut(Arc<Shared>, Job),
    ) {
        let parent = &self.parent;
        let completion = Completion::Item {
            fan: Arc::clone(self),
            index,
        };
        let child = Arc::new(parent.child(&def.body, completion, index));
        let mut params = child.slots.iter();
        if let Some(collection) = def.collection {
            let item = Import::Item {
                run: Arc::clone(parent),
                collection,
                index,
                item: def.item,
            };
            fill(
                params.next().expect("a body's first parameter is its item"),
                Box::new(item),
            );
        }
        for (slot, &node) in params.zip(&def.imports) {
            let import = Import::Node {
                run: Arc::clone(parent),
                node,
            };
            fill(slot, Box::new(import));
        }
        let now = Instant::now();
        for &root in &def.body.roots {
            let root = Job::new(root as usize, now);
            match child.mode(root.node) {
                Mode::Rayon => cpu_root(Arc::clone(&child), root),
                Mode::Tokio => child.dispatch(root),
            }
        }
    }

    /// An item ended: under a cap, start the next one waiting.
    fn item_ended(self: &Arc<Self>) {
        let def = self.def();
        if def.at_once.is_none() || self.parent.run.stop.is_stopped() {
            return;
        }
        let next = self.next.fetch_add(1, Ordering::AcqRel);
        if next < self.items.len() {
            let mut cpu_roots = Vec::new();
            self.start_item(next, def, &mut |run, job| cpu_roots.push((run, job)));
            spawn_roots(cpu_roots);
        }
    }
}

/// One running fan-out: collects each item's slots as the item ends. When the last
/// item drops it, `Drop` gathers the results and resolves the fan-out's node.
struct FanOut {
    parent: Arc<Shared>,
    node: usize,
    /// The body's parameters: the item, then the imports.
    params: usize,
    ready: Instant,
    started: Instant,
    /// The body's output node.
    tail: usize,
    assemble: Assemble,
    items: Box<[OnceLock<Box<[Slot]>>]>,
    /// Under a cap, the next item to start.
    next: AtomicUsize,
}

impl Drop for FanOut {
    fn drop(&mut self) {
        let mut items: Vec<Box<[Slot]>> = self
            .items
            .iter_mut()
            .map(|item| item.take().unwrap_or_default())
            .collect();
        // The imports hold the parent run; kept in the parent's record they would keep
        // it alive forever.
        for slots in &mut items {
            slots
                .iter_mut()
                .take(self.params)
                .for_each(|slot| drop(slot.take()));
        }
        let result = (self.assemble)(&mut items, self.tail);
        let job = Job {
            node: self.node,
            ready: self.ready,
            attempt: 1,
            permit: false,
            retries: None,
        };
        let run = &self.parent;
        if result.is_err() && run.run.stop.is_stopped() {
            return run.record_cancelled(job, self.started, items);
        }
        let mut spill = Vec::new();
        let next = run.resolve(job, self.started, result, Caller::Rayon(&mut spill), items);
        if let Some(next) = next {
            spill.push(next);
        }
        run.spawn_on_rayon(&mut spill);
    }
}

/// Every task with a concurrency limit in `plan` and in its fan-outs' bodies.
fn limits(plan: &Plan, into: &mut HashMap<TaskInfo, Limiter>) {
    for info in plan.graph.infos() {
        if let Some(max) = info.concurrency {
            into.entry(*info).or_insert_with(|| Limiter {
                max,
                state: Default::default(),
            });
        }
    }
    for call in &plan.calls {
        if let Call::FanOut(def) = call {
            limits(&def.body, into);
        }
    }
}

/// The nodes of one task that may run at once. Only tasks with a limit pay for its
/// lock; a node over the limit waits in the queue, holding no thread.
struct Limiter {
    max: u32,
    state: std::sync::Mutex<Permits>,
}

#[derive(Default)]
struct Permits {
    running: u32,
    waiting: std::collections::VecDeque<Job>,
}

impl Limiter {
    /// The job back with a permit, or `None` if it now waits for one.
    fn acquire(&self, mut job: Job) -> Option<Job> {
        let mut permits = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if permits.running < self.max {
            permits.running += 1;
            job.permit = true;
            Some(job)
        } else {
            permits.waiting.push_back(job);
            None
        }
    }

    /// Gives a permit back: to the first waiting job, which is returned to be run.
    fn release(&self) -> Option<Job> {
        let mut permits = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match permits.waiting.pop_front() {
            Some(mut job) => {
                job.permit = true;
                Some(job)
            }
            None => {
                permits.running -= 1;
                None
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let slots = std::mem::take(&mut self.slots);
        match self.completion.take() {
            // The receiver is gone only if the run future was dropped: nobody to tell.
            Some(Completion::Run(done)) => drop(done.send(slots)),
            Some(Completion::Item { fan, index }) => {
                let _ = fan.items[index].set(slots);
                fan.item_ended();
            }
            None => {}
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

/// The slots of a run that has ended.
pub(crate) struct Finished {
    started: Instant,
    wall: Duration,
    slots: Box<[Slot]>,
    timed_out: Option<Duration>,
    cancelled: bool,
}

/// Runs `plan` once: `store` fills the parameters' slots, then every task runs as soon
/// as its inputs exist. Stopping `stop`, or dropping this future, stops the run.
pub(crate) async fn execute(
    plan: Arc<Plan>,
    options: RunOptions,
    stop: Stop,
    store: impl FnOnce(&[Slot]),
) -> Result<Finished, Error> {
    let tokio = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime {
        workflow: plan.graph.name().to_string(),
    })?;
    let stop_on_drop = StopOnDrop(Some(stop.clone()));
    let started = Instant::now();
    let span = tracing::info_span!("workflow", name = %plan.graph.name());
    let (slots, waiting) = empty_slots(&plan);
    store(&slots);
    let (done, mut finished) = oneshot::channel();
    let mut limited = HashMap::new();
    limits(&plan, &mut limited);
    let shared = Arc::new(Shared {
        plan: Arc::clone(&plan),
        run: Arc::new(RunContext {
            started,
            signal: signal_id(),
            tokio,
            stop: stop.clone(),
            options,
            limits: limited,
        }),
        slots,
        waiting,
        span,
        completion: Some(Completion::Run(done)),
    });
    // CPU roots first, so they compute while IO roots are started.
    let roots = plan
        .roots
        .iter()
        .map(|&root| Job::new(root as usize, started));
    let (mut cpu, mut io): (Vec<Job>, Vec<Job>) =
        roots.partition(|job| shared.mode(job.node) == Mode::Rayon);
    shared.spawn_on_rayon(&mut cpu);
    shared.start_all(&mut io).await;
    drop(shared);
    let mut timed_out = None;
    let slots = match options.timeout {
        None => finished.await,
        Some(limit) => tokio::select! {
            slots = &mut finished => slots,
            () = tokio::time::sleep(limit) => {
                timed_out = Some(limit);
                stop.stop();
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
        cancelled: stop.is_stopped(),
    })
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

    fn dispatch(self: &Arc<Self>, job: Job) {
        if self.run.stop.is_stopped() {
            return;
        }
        let run = Arc::clone(self);
        match self.mode(job.node) {
            Mode::Rayon => rayon::spawn(move || run.run_on_rayon(job)),
            Mode::Tokio => {
                self.run.tokio.spawn(run.run_on_tokio(job));
            }
        }
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
                .in_scope(|| self.call_cpu(job.node, self.run.signal, self.run.stop.token()));
            let next = self.after_attempt(job, started, result, Caller::Rayon(&mut spill));
            self.spawn_on_rayon(&mut spill);
            job = match next {
                Next::Continue(next) => next,
                Next::Retry(next, delay) if delay.is_zero() => next,
                Next::Retry(next, delay) => {
                    let run = Arc::clone(self);
                    self.run.tokio.spawn(async move {
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

    /// Starts a fan-out: one child run of the body per item, each with the item and the
    /// imported values as its parameters, all sharing this run's stop, limits and clock.
    /// The fan-out's node resolves when the last item ends (see [`FanOut`]).
    fn expand(self: &Arc<Self>, job: Job, def: &FanOutDef) {
        let count = def
            .collection
            .map_or(1, |collection| (def.len)(&self.slots, collection));
        let first = def.at_once.map_or(count, |cap| count.min(cap as usize));
        let fan = Arc::new(FanOut {
            parent: Arc::clone(self),
            node: job.node,
            params: usize::from(def.collection.is_some()) + def.imports.len(),
            ready: job.ready,
            started: Instant::now(),
            tail: def.body.graph.output(),
            assemble: def.assemble,
            items: (0..count).map(|_| OnceLock::new()).collect(),
            next: AtomicUsize::new(first),
        });
        // Rayon's threads start the items and run each item's CPU roots right away, so
        // an item's state lives only while it runs, whatever the number of items.
        (0..first).into_par_iter().for_each(|index| {
            fan.start_item(index, def, &mut |run, job| run.run_on_rayon(job));
        });
        // With no items, this resolves the node right here.
        drop(fan);
    }

    /// The run of one item of a fan-out of this run.
    fn child(self: &Arc<Self>, plan: &Arc<Plan>, completion: Completion, index: usize) -> Shared {
        let (slots, waiting) = empty_slots(plan);
        Shared {
            plan: Arc::clone(plan),
            run: Arc::clone(&self.run),
            slots,
            waiting,
            span: tracing::info_span!(parent: &self.span, "item", index),
            completion: Some(completion),
        }
    }

    /// Hands ready CPU jobs to rayon: one job as a spawn, several as one parallel
    /// iteration, which rayon splits among idle threads by work stealing (cheaper than
    /// a spawn, an allocation and an `Arc` clone per job).
    fn spawn_on_rayon(self: &Arc<Self>, jobs: &mut Vec<Job>) {
        match jobs.len() {
            0 => {}
            1 => self.dispatch(jobs.pop().expect("one job")),
            _ => {
                let (run, jobs) = (Arc::clone(self), std::mem::take(jobs));
                rayon::spawn(move || jobs.into_par_iter().for_each(|job| run.run_on_rayon(job)));
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
            let started = self.begin(&mut job);
            let span = self.attempt_span(&job);
            let result = match self.plan.graph.kind(job.node) {
                Kind::Io => self.call_io(job.node).instrument(span).await,
                _ => Box::pin(self.call_cpu_supervised(job.node, span)).await,
            };
            let Some(result) = result else {
                return self.record_cancelled(job, started, Vec::new());
            };
            let next = self.after_attempt(job, started, result, Caller::Tokio(&mut spill));
            self.start_all(&mut spill).await;
            job = match next {
                Next::Continue(next) => next,
                Next::Retry(next, delay) => {
                    if !Box::pin(self.sleep(delay)).await {
                        return;
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
        let mut task = Box::pin(Arc::clone(self).run_on_tokio(job));
        let depth = INLINE_DEPTH.get();
        if depth < MAX_INLINE {
            INLINE_DEPTH.set(depth + 1);
            let poll = task.as_mut().poll(cx);
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

    /// The job, allowed to run; `None` if the run stopped or if the job must wait for
    /// a permit of its task's concurrency limit (a finishing node of the same task will
    /// dispatch it).
    fn admit(&self, job: Job) -> Option<Job> {
        if self.run.stop.is_stopped() {
            return None;
        }
        match self.limiter(job.node) {
            Some(limiter) if !job.permit => limiter.acquire(job),
            _ => Some(job),
        }
    }

    /// Gives back a finished job's permit, dispatching the job that waited for it.
    fn give_back(self: &Arc<Self>, node: usize, permit: bool) {
        if let Some(next) = permit
            .then(|| self.limiter(node))
            .flatten()
            .and_then(Limiter::release)
        {
            self.dispatch(next);
        }
    }

    fn begin(&self, job: &mut Job) -> Instant {
        let now = Instant::now();
        job.attempt += 1;
        now
    }

    /// Sleeps unless the run stops first; `false` if it did.
    async fn sleep(&self, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = self.run.stop.stopped() => false,
        }
    }

    fn call_cpu(
        &self,
        node: usize,
        signal: u64,
        cancel: &CancellationToken,
    ) -> Result<Value, TaskError> {
        let Call::Task(call) = &self.plan.calls[node] else {
            unreachable!("only task nodes are called")
        };
        let outcome = task::with_cancel(signal, cancel, || {
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
        let limit = self
            .plan
            .graph
            .info(node)
            .timeout
            .expect("supervised tasks have a timeout");
        let attempt = self.run.stop.token().child_token();
        let (sender, receiver) = oneshot::channel();
        let (run, token) = (Arc::clone(self), attempt.clone());
        rayon::spawn(move || {
            let _ = sender.send(span.in_scope(|| run.call_cpu(node, signal_id(), &token)));
        });
        let result = tokio::select! {
            result = receiver => result.unwrap_or_else(|_| Err(TaskError::msg("the attempt's thread went away"))),
            () = tokio::time::sleep(limit) => Err(TaskError::timed_out(limit)),
            () = self.run.stop.stopped() => return None,
        };
        attempt.cancel();
        Some(result)
    }

    /// One attempt of an IO task, bounded by its timeout. `None` if the run stopped.
    async fn call_io(&self, node: usize) -> Option<Result<Value, TaskError>> {
        let Call::Task(call) = &self.plan.calls[node] else {
            unreachable!("only task nodes are called")
        };
        let future = match catch_unwind(AssertUnwindSafe(|| call(&self.slots))) {
            Ok(Step::Pending(future)) => CatchUnwind(future),
            Ok(Step::Done(result)) => return Some(result),
            Err(panic) => return Some(Err(TaskError::panicked(&*panic))),
        };
        // `biased`: a task that finishes on its first poll never registers a waiter.
        // The timer lives in a box of its own, so a task without a timeout (the common
        // case) keeps its spawned future small.
        match self.plan.graph.info(node).timeout {
            None => tokio::select! {
                biased;
                result = future => Some(result),
                () = self.run.stop.stopped() => None,
            },
            Some(limit) => {
                let bounded = Box::pin(async move {
                    tokio::time::timeout(limit, future)
                        .await
                        .unwrap_or_else(|_| Err(TaskError::timed_out(limit)))
                });
                tokio::select! {
                    biased;
                    result = bounded => Some(result),
                    () = self.run.stop.stopped() => None,
                }
            }
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
        let retry = &self.plan.graph.info(job.node).retry;
        if let Err(error) = &result
            && retry.retries_after(job.attempt, error)
            && !self.run.stop.is_stopped()
        {
            let delay = retry.delay_before(job.attempt);
            tracing::warn!(
                parent: &self.span, node = self.plan.graph.name_of(job.node), attempt = job.attempt, %error,
                "attempt failed; retrying in {delay:?}"
            );
            let retries = job.retries.get_or_insert_with(|| {
                Box::new(Retries {
                    first_started: started,
                    failed: Vec::new(),
                })
            });
            retries.failed.push(FailedAttempt {
                started,
                finished: Instant::now(),
                error: error.clone(),
            });
            return Next::Retry(job, delay);
        }
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

    /// Records a node whose attempt the run's stop interrupted.
    fn record_cancelled(self: &Arc<Self>, job: Job, started: Instant, items: Vec<Box<[Slot]>>) {
        let times = self.times(&job, Some(started), Instant::now());
        let value = (self.plan.unresolved[job.node])(None);
        let (node, permit) = (job.node, job.permit);
        let status = TaskStatus::Cancelled;
        let record = Record::with_items(value, status, times, None, job.into_failed(), items);
        let _ = self.slots[node].set(record);
        self.give_back(node, permit);
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
        let finished = Instant::now();
        let times = self.times(&job, Some(started), finished);
        let permit = job.permit;
        let record = Record::with_items(value, status, times, error, job.into_failed(), items);
        let _ = self.slots[node].set(record);
        if !succeeded && self.run.options.fail_fast {
            self.run.stop.stop();
        }
        self.give_back(node, permit);
        self.release(node, succeeded, caller, finished)
    }

    /// Decrements the counters of `node`'s successors; dispatches those now ready,
    /// skips those an unsuccessful required input dooms, and returns one ready
    /// successor of `mode` for the caller.
    fn release(
        self: &Arc<Self>,
        node: usize,
        succeeded: bool,
        mut caller: Caller<'_>,
        now: Instant,
    ) -> Option<Job> {
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
                let job = Job::new(successor, now);
                let mode = self.mode(successor);
                if before >= DOOMED || (!succeeded && required) {
                    skipped.push(successor);
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
            let Some(skip) = skipped.pop() else { break };
            let at = self.since(now);
            let value = (self.plan.unresolved[skip])(None);
            let record = Record::new(
                value,
                TaskStatus::Skipped,
                [at, NEVER, NEVER, at],
                None,
                Vec::new(),
            );
            let _ = self.slots[skip].set(record);
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

/// How the tasks of a nested run are named in reports and errors: a fan-out's items
/// `task[index]`, a sub-workflow's tasks `node.task`.
#[derive(Clone, Copy)]
struct Naming<'a> {
    prefix: &'a str,
    suffix: &'a str,
}

impl Naming<'_> {
    fn name(&self, node: &str) -> String {
        format!("{}{node}{}", self.prefix, self.suffix)
    }

    /// Calls `each` with the naming of every nested run of `node` (a fan-out's items,
    /// a sub-workflow's single run) and its slots.
    fn nested(
        &self,
        def: &FanOutDef,
        node: &str,
        record: &Record,
        mut each: impl FnMut(Naming<'_>, &[Slot]),
    ) {
        for (index, item) in record.items().iter().enumerate() {
            let (prefix, suffix) = match def.collection {
                Some(_) => (self.prefix.to_owned(), format!("{}[{index}]", self.suffix)),
                None => (format!("{}{node}.", self.prefix), self.suffix.to_owned()),
            };
            each(
                Naming {
                    prefix: &prefix,
                    suffix: &suffix,
                },
                item,
            );
        }
    }
}

/// Every task of `slots` (a run of `plan`) that failed; a fan-out or sub-workflow whose
/// own tasks failed is represented by those tasks.
fn collect_failures(plan: &Plan, slots: &[Slot], naming: Naming<'_>, out: &mut Vec<TaskFailure>) {
    let graph = &plan.graph;
    for (node, slot) in slots.iter().enumerate() {
        let Some(record) = slot.get() else { continue };
        let before = out.len();
        if let Call::FanOut(def) = &plan.calls[node] {
            naming.nested(def, graph.name_of(node), record, |inner, item| {
                collect_failures(&def.body, item, inner, out);
            });
        }
        if let Some(error) = record.error().filter(|_| out.len() == before) {
            out.push(TaskFailure {
                node: naming.name(graph.name_of(node)),
                task: graph.info(node).name,
                attempts: record.retried().len() as u32 + 1,
                error: error.clone(),
            });
        }
    }
}

impl Finished {
    /// Splits the run into its output (or why there is none) and its report.
    pub(crate) fn into_output<O: 'static>(self, plan: &Plan) -> Result<O, Error> {
        let graph = &plan.graph;
        let mut failures = Vec::new();
        let top = Naming {
            prefix: "",
            suffix: "",
        };
        collect_failures(plan, &self.slots, top, &mut failures);
        let names = |status| {
            (0..graph.len())
                .filter(|&node| graph.kind(node) != Kind::Param && self.status(node) == status)
                .map(|node| graph.name_of(node).to_owned())
                .collect()
        };
        let workflow = graph.name().to_owned();
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
        } else if self.cancelled && self.status(graph.output()) != TaskStatus::Succeeded {
            Some(Error::Cancelled {
                workflow,
                unfinished: names(TaskStatus::Cancelled),
            })
        } else {
            None
        };
        if let Some(error) = error {
            return Err(error);
        }
        let mut slots = self.slots.into_vec();
        let output = slots
            .swap_remove(graph.output())
            .into_inner()
            .and_then(|record| record.value.downcast::<task::Outcome<O>>().ok())
            .and_then(|outcome| match *outcome {
                task::Outcome::Ok(value) => Some(value),
                _ => None,
            })
            .expect("aqueduct: a run without failures has its output");
        Ok(output)
    }

    fn status(&self, node: usize) -> TaskStatus {
        self.slots[node]
            .get()
            .map_or(TaskStatus::Cancelled, |r| r.status)
    }

    /// What every task did.
    pub(crate) fn report(&self, plan: &Plan) -> RunReport {
        let mut tasks = Vec::new();
        let top = Naming {
            prefix: "",
            suffix: "",
        };
        self.task_reports(plan, &self.slots, top, &mut tasks);
        RunReport {
            workflow: plan.graph.name().to_owned(),
            wall: self.wall,
            tasks,
            critical_path: self.critical_path(plan),
            cores: crate::report::cores(),
        }
    }

    /// The reports of the tasks of `slots` (a run of `plan`), each named with `suffix`,
    /// followed for a fan-out by its items' tasks, named `node[index]`.
    fn task_reports(
        &self,
        plan: &Plan,
        slots: &[Slot],
        naming: Naming<'_>,
        out: &mut Vec<TaskReport>,
    ) {
        let since = |at: Instant| at.saturating_duration_since(self.started);
        for node in plan.graph.nodes().filter(|node| node.kind() != Kind::Param) {
            let record = slots[node.index()].get();
            let mut attempts: Vec<AttemptReport> = record
                .into_iter()
                .flat_map(Record::retried)
                .map(|a| AttemptReport {
                    started_at: since(a.started),
                    duration: a.finished - a.started,
                    error: Some(a.error.to_string()),
                })
                .collect();
            if let Some((record, started)) = record.and_then(|r| Some((r, r.time(LAST_START)?))) {
                attempts.push(AttemptReport {
                    started_at: started,
                    duration: record.time(END).unwrap_or_default().saturating_sub(started),
                    error: record.error().map(ToString::to_string),
                });
            }
            let started = record.and_then(|r| r.time(FIRST_START));
            let ready = record.and_then(|r| r.time(READY));
            out.push(TaskReport {
                node: naming.name(node.name()),
                task: node.task().unwrap_or_default().to_owned(),
                kind: node.kind(),
                status: record.map_or(TaskStatus::Cancelled, |r| r.status),
                started_at: started,
                queue_wait: started
                    .zip(ready)
                    .map_or(Duration::ZERO, |(s, r)| s.saturating_sub(r)),
                duration: record.and_then(Record::duration).unwrap_or_default(),
                error: record.and_then(Record::error).map(ToString::to_string),
                attempts,
            });
            if let (Call::FanOut(def), Some(record)) = (&plan.calls[node.index()], record) {
                naming.nested(def, node.name(), record, |inner, item| {
                    self.task_reports(&def.body, item, inner, out);
                });
            }
        }
    }

    /// The chain of tasks, each an input of the next, whose durations add up to the
    /// most: no schedule can finish the run sooner.
    fn critical_path(&self, plan: &Plan) -> Vec<String> {
        let graph = &plan.graph;
        let ran = |i: usize| self.slots[i].get().and_then(Record::duration);
        // Nodes are in topological order, so one forward pass finds every longest path.
        let mut longest: Vec<Option<(Duration, Option<usize>)>> = vec![None; graph.len()];
        for node in graph.nodes() {
            let i = node.index();
            let Some(duration) = ran(i) else { continue };
            let before = node
                .inputs()
                .filter_map(|j| Some((longest[j]?.0, Some(j))))
                .max_by_key(|(d, _)| *d);
            let (base, previous) = before.unwrap_or((Duration::ZERO, None));
            longest[i] = Some((base + duration, previous));
        }
        let mut at = (0..graph.len())
            .filter_map(|i| Some((longest[i]?.0, i)))
            .max_by_key(|(d, _)| *d)
            .map(|(_, i)| i);
        let mut path = Vec::new();
        while let Some(i) = at {
            path.push(graph.name_of(i).to_owned());
            at = longest[i].and_then(|(_, previous)| previous);
        }
        path.reverse();
        path
    }
}
