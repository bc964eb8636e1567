//! Configured runs: fail-fast, a run timeout, cancellation, and the report.
//!
//! A [`Runner`] is in one of two states, told by its third type parameter: without a
//! store ([`InMemory`], the default) it runs in memory; given one
//! ([`Runner::store`], state [`Stored`]) its runs are recorded and can be resumed.
//! What only makes sense for a recorded run ([`Runner::run_id`], [`Runner::resume`])
//! exists only in the [`Stored`] state, so using it without a store does not compile.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::error::Error;
use crate::exec::{Extras, RunOptions, Stop};
use crate::plan::{Params, Plan};
use crate::progress::Progress;
use crate::report::RunReport;
#[cfg(feature = "durable")]
use crate::store::Store;

#[cfg(feature = "durable")]
mod cache;
#[cfg(feature = "postgres")]
pub(crate) use durable::same_input;
mod blocking;
#[cfg(feature = "durable")]
mod durable;
#[cfg(feature = "durable")]
mod nested;
mod workflow;

/// A run waiting to start, with its options. Made by
/// [`Workflow::runner`](crate::Workflow::runner).
///
/// ```
/// use std::time::Duration;
/// use aqueduct::prelude::*;
///
/// #[task]
/// fn double(x: &u64) -> u64 { x * 2 }
///
/// workflow! { fn doubled(x: u64) -> u64 { double(&x) } }
///
/// # #[tokio::main] async fn main() {
/// let runner = doubled::workflow().runner().fail_fast(true).timeout(Duration::from_secs(5));
/// let cancel = runner.cancel_handle(); // e.g. for a Ctrl-C handler
/// let outcome = runner.run((21,)).await;
/// assert_eq!(outcome.result.unwrap(), 42);
/// println!("{}", outcome.report);
/// # drop(cancel); }
/// ```
///
/// `S` is the runner's state: [`InMemory`] until it is given a [`store`](Self::store),
/// [`Stored`] after. A run id and `resume` belong to stored runs only, so asking for
/// them without a store is a compile error, not a panic:
///
/// ```compile_fail,E0599
/// # use aqueduct::prelude::*;
/// # #[task] fn double(x: &u64) -> u64 { x * 2 }
/// # workflow! { #[durable] fn doubled(x: u64) -> u64 { double(&x) } }
/// // error[E0599]: no method named `resume` found for `Runner<(u64,), u64>`
/// let _ = doubled::workflow().runner().resume();
/// ```
///
/// ```compile_fail,E0599
/// # use aqueduct::prelude::*;
/// # #[task] fn double(x: &u64) -> u64 { x * 2 }
/// # workflow! { #[durable] fn doubled(x: u64) -> u64 { double(&x) } }
/// // error[E0599]: no method named `run_id` found: it comes after `store`
/// let _ = doubled::workflow().runner().run_id("night-1");
/// ```
pub struct Runner<P, O, S = InMemory> {
    plan: Arc<Plan>,
    options: RunOptions,
    stop: Stop,
    state: S,
    progress: OnceLock<Arc<Progress>>,
    /// Where an in-memory run's cached tasks keep their results ([`Runner::cache`]).
    #[cfg(feature = "durable")]
    cache: Option<Arc<dyn Store>>,
    /// The workflow's resources, if it has any ([`Workflow::runner_with`]).
    resources: Option<crate::exec::Provide>,
    _types: PhantomData<fn(P) -> O>,
}

/// Resources `resources` of a workflow whose other parameters are `P`: their slots
/// follow the parameters'.
pub(crate) fn provide<P: Params, R: Params>(resources: R) -> crate::exec::Provide {
    Box::new(move |slots| resources.store(slots.get(P::LEN..).unwrap_or_default()))
}

/// A workflow without resources: one with them runs with what it needs.
#[diagnostic::on_unimplemented(
    message = "this workflow needs its resources `{Self}` to run",
    label = "a workflow with `#[resource]` parameters is given them for each run",
    note = "give them with `run_with(params, resources)`, `runner_with(resources)`, \
            `run_blocking_with(params, resources)` or `Cli::with_resources(workflow, || \
            resources)`, or call the workflow's function with every argument"
)]
pub trait NoResources {}

impl NoResources for () {}

/// The state of a [`Runner`] without a store: its run is not recorded.
#[derive(Debug, Clone, Copy, Default)]
pub struct InMemory;

/// The state of a [`Runner`] given a [`Store`] by [`Runner::store`]: its run is
/// recorded, checkpointed, and can be resumed by its id.
#[cfg_attr(docsrs, doc(cfg(feature = "durable")))]
#[cfg(feature = "durable")]
pub struct Stored {
    store: Arc<dyn Store>,
    id: Option<String>,
    format: crate::plan::CheckpointFormat,
}

#[cfg(feature = "durable")]
impl fmt::Debug for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stored").field("id", &self.id).finish()
    }
}

impl<P: Params, O: Send + Sync + 'static, S> Runner<P, O, S> {
    /// On the first task that fails for good, stop: start nothing more, drop running
    /// async tasks, and return. By default independent branches run to their end.
    pub fn fail_fast(mut self, fail_fast: bool) -> Self {
        self.options.fail_fast = fail_fast;
        self
    }

    /// Stops the run, as a cancel would, if it has not ended after `limit`. A deadline
    /// that passes once every task has ended (while the run drops its values) is not
    /// a timeout.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.options.timeout = Some(limit);
        self
    }

    /// How long cleanup tasks (tasks taking an input as `&Outcome<T>`) may still run
    /// after the run is cancelled, times out or fails fast; then the stop is hard and
    /// they are dropped too. 30 seconds unless set.
    pub fn cleanup_grace(mut self, grace: Duration) -> Self {
        self.options.grace = Some(grace);
        self
    }

    /// Reports every item of every fan-out. By default a fan-out that ran fused (a
    /// body of CPU tasks that make one attempt each, with no timeout, concurrency limit
    /// or cap) reports only its items that did not succeed, and a summary
    /// ([`TaskReport::items`](crate::TaskReport::items)); with this, every item's
    /// tasks appear in [`RunReport::tasks`](crate::RunReport::tasks), as they do for a
    /// scheduled fan-out. It costs each item's slots. (The printed report still sums
    /// up a body task's rows beyond 20 items in one line, then lists the items that
    /// failed or were skipped.)
    pub fn item_rows(mut self, every: bool) -> Self {
        self.options.item_rows = every;
        self
    }

    /// A handle that cancels this run from anywhere (a signal handler, another task).
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle(self.stop.clone())
    }

    /// Live counts of this run's tasks (done, running, total), for a progress bar. A
    /// run nobody asked this of counts nothing.
    pub fn progress(&self) -> Arc<Progress> {
        Arc::clone(self.progress.get_or_init(Arc::default))
    }

    /// The resources its run is given.
    pub(crate) fn provided(mut self, resources: crate::exec::Provide) -> Self {
        self.resources = Some(resources);
        self
    }

    #[cfg(feature = "durable")]
    fn with_state<T>(self, state: T) -> Runner<P, O, T> {
        Runner {
            plan: self.plan,
            options: self.options,
            stop: self.stop,
            state,
            progress: self.progress,
            cache: self.cache,
            resources: self.resources,
            _types: PhantomData,
        }
    }
}

impl<P: Params, O: Send + Sync + 'static> Runner<P, O, InMemory> {
    pub(crate) fn new(plan: Arc<Plan>) -> Self {
        Self {
            plan,
            options: RunOptions::default(),
            stop: Stop::default(),
            state: InMemory,
            progress: OnceLock::new(),
            #[cfg(feature = "durable")]
            cache: None,
            resources: None,
            _types: PhantomData,
        }
    }

    /// Makes the run durable: it records itself and a checkpoint of every finished task
    /// in `store`, so that a run with the same id later (see [`run_id`](Self::run_id),
    /// [`resume`](Self::resume)) loads what finished instead of running it again. The
    /// workflow must be `#[durable]` (else the run fails with
    /// [`Error::NotDurable`]), and its parameters serialisable.
    #[cfg_attr(docsrs, doc(cfg(feature = "durable")))]
    #[cfg(feature = "durable")]
    pub fn store(self, store: Arc<dyn Store>) -> Runner<P, O, Stored>
    where
        P: serde::Serialize + serde::de::DeserializeOwned,
    {
        self.with_state(Stored {
            store,
            id: None,
            format: crate::plan::CheckpointFormat::default(),
        })
    }

    /// Keeps the results of the workflow's cached tasks (`#[task(cache)]`) in `store`
    /// (its cache table, beside any runs), so this run loads what an earlier run with
    /// the same code and inputs computed, and saves what it computes; the run itself is
    /// not recorded (the results it saves name it `<workflow>-<time>-<hex> (in
    /// memory)`). A durable run ([`store`](Self::store)) keeps them in its own store
    /// unless it is given this first. Without a cache a cached task runs every time.
    ///
    /// The cache never fails a run: a store that cannot be read or written, or a result
    /// that cannot be read back, is a warning (a `tracing` event, and a line of
    /// [`RunReport::warnings`]), and the task runs.
    #[cfg_attr(docsrs, doc(cfg(feature = "durable")))]
    #[cfg(feature = "durable")]
    pub fn cache(mut self, store: Arc<dyn Store>) -> Self {
        self.cache = Some(store);
        self
    }

    /// Runs the workflow; the outcome holds its result and its report, whatever happened.
    ///
    /// Cancelling (by the handle, the timeout, fail-fast, or dropping this future)
    /// starts no more tasks and drops running async tasks. A running CPU task cannot be
    /// preempted: [`aqueduct::task::cancelled`](crate::task::cancelled) turns true for
    /// it, and the run ends when it returns.
    pub fn run(self, params: P) -> impl Future<Output = RunOutcome<O>> + Send + use<P, O> {
        let Runner {
            plan,
            options,
            stop,
            progress,
            resources,
            #[cfg(feature = "durable")]
            cache,
            ..
        } = self;
        let progress = progress.into_inner();
        async move {
            // Results it computes are saved as computed by `<id> (in memory)`: an id
            // no store has a run of.
            let run_id = crate::run_id::new_run_id(plan.graph.name());
            #[cfg(feature = "durable")]
            let (cache, finishing) =
                cache::Cache::own(&plan, cache, format!("{run_id} (in memory)"));
            let extras = Extras {
                run_id: Some(run_id),
                resources,
                progress,
                #[cfg(feature = "durable")]
                cache,
                ..Extras::default()
            };
            let run = workflow::run_plan(Arc::clone(&plan), options, stop, params, true, extras);
            let (result, report, end) = run.await;
            #[allow(unused_mut)]
            let mut report = report.unwrap_or_else(|| RunReport::not_started(plan.graph.name()));
            #[cfg(feature = "durable")]
            let result = {
                let ending = Ending(Some(result));
                if let Some(finishing) = finishing {
                    finishing.finish(&mut report).await;
                }
                ending.into_result()
            };
            if let Some(end) = end {
                end.log(&result);
            }
            RunOutcome {
                result,
                report,
                run_id: None,
            }
        }
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "durable")))]
#[cfg(feature = "durable")]
impl<P, O> Runner<P, O, Stored>
where
    P: Params + serde::Serialize + serde::de::DeserializeOwned,
    O: Send + Sync + 'static,
{
    /// The id of this durable run: a new id starts a run, a known one resumes it (with
    /// the same parameters). Without it a durable run gets a fresh id, in
    /// [`RunOutcome::run_id`].
    pub fn run_id(mut self, id: impl Into<String>) -> Self {
        self.state.id = Some(id.into());
        self
    }

    /// How this run encodes its checkpoints: JSON (the default, readable in any SQLite
    /// browser) or, with the `postcard` feature, postcard (compact binary). A resumed
    /// run reads every checkpoint in the format it was written in, whatever it writes.
    pub fn checkpoint_format(mut self, format: crate::plan::CheckpointFormat) -> Self {
        self.state.format = format;
        self
    }

    /// Runs the workflow, recorded in the store: a new run, or, for a known
    /// [`run_id`](Self::run_id) started with the same parameters, the rest of it.
    ///
    /// The run is refused before anything runs if the store holds the id for another
    /// shape or version of the workflow ([`Error::FingerprintMismatch`]), other
    /// parameters ([`Error::InputChanged`]), or a run another runner is running now
    /// ([`Error::RunInUse`]). It fails with [`Error::Store`] if any checkpoint could
    /// not be saved: a run whose checkpoints are not all committed never succeeds.
    /// Cancelling works as for [`Runner::run`] in memory.
    pub fn run(self, params: P) -> impl Future<Output = RunOutcome<O>> + Send + use<P, O> {
        self.start(Some(params))
    }

    /// Resumes the run given by [`run_id`](Self::run_id), with the parameters it was
    /// started with: what had finished is loaded, the rest runs. A checkpoint is loaded
    /// only if every input its task read is loaded too (parameters are): a task that
    /// read an input which runs again runs again, so the result is what an
    /// uninterrupted run would return. Without a run id, or for an id the store does
    /// not know, the run fails with [`Error::NoRunId`] or [`Error::UnknownRun`].
    pub fn resume(self) -> impl Future<Output = RunOutcome<O>> + Send + use<P, O> {
        self.start(None)
    }

    fn start(self, params: Option<P>) -> impl Future<Output = RunOutcome<O>> + Send + use<P, O> {
        durable::run(self, params)
    }
}

impl<P, O, S: fmt::Debug> fmt::Debug for Runner<P, O, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("options", &self.options)
            .field("state", &self.state)
            .finish()
    }
}

/// Cancels a run. Cheap to clone; cancelling twice is harmless.
#[derive(Clone)]
pub struct CancelHandle(Stop);

impl CancelHandle {
    /// Stops the run: nothing more starts and running async tasks are dropped, but for
    /// cleanup tasks (tasks taking an input as `&Outcome<T>` whose required inputs
    /// succeeded), which still run, like a `finally`, within the runner's
    /// [`cleanup_grace`](Runner::cleanup_grace).
    pub fn cancel(&self) {
        self.0.stop();
    }

    /// Stops the run at once, cleanup tasks included: nothing more starts, every
    /// running async task is dropped. (A running CPU task cannot be preempted; the run
    /// ends when it returns.) What a second Ctrl-C does in [`aqueduct::cli`](crate).
    pub fn kill(&self) {
        self.0.kill();
    }

    /// Whether the run was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.is_stopped()
    }
}

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelHandle")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// How a run ended: its result and its report.
#[derive(Debug)]
#[non_exhaustive]
pub struct RunOutcome<O> {
    /// The workflow's output, or why there is none.
    pub result: Result<O, Error>,
    /// What every task did.
    pub report: RunReport,
    /// A durable run's id, to resume it or look it up in its store.
    pub run_id: Option<String>,
}

/// A run's result while its future still awaits the run's end (its cache's saves, its
/// checkpoints flushed, its end recorded). Dropped meanwhile (the run future dropped),
/// its output goes behind the boundary (`contain::drop_contained`), not in the code that
/// dropped the future.
#[cfg(feature = "durable")]
struct Ending<O>(Option<Result<O, Error>>);

#[cfg(feature = "durable")]
impl<O> Ending<O> {
    fn result(&mut self) -> &mut Result<O, Error> {
        self.0.get_or_insert_with(|| Err(handed_back()))
    }

    fn into_result(mut self) -> Result<O, Error> {
        self.0.take().unwrap_or_else(|| Err(handed_back()))
    }
}

#[cfg(feature = "durable")]
impl<O> Drop for Ending<O> {
    fn drop(&mut self) {
        if let Some(Ok(output)) = self.0.take() {
            crate::contain::drop_contained("the output of a run dropped as it ended", output);
        }
    }
}

/// What [`Ending`] holds once its result was taken: never read.
#[cfg(feature = "durable")]
fn handed_back() -> Error {
    Error::Fault {
        workflow: String::new(),
        message: "the run's result was already handed back".into(),
    }
}
