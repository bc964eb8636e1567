//! Configured runs: fail-fast, a run timeout, cancellation, and the report.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::executor::{RunOptions, Stop};
use crate::graph::{self, Params, Plan};
use crate::report::RunReport;

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
pub struct Runner<P, O> {
    plan: Arc<Plan>,
    options: RunOptions,
    stop: Stop,
    _types: PhantomData<fn(P) -> O>,
}

impl<P: Params, O: Send + Sync + 'static> Runner<P, O> {
    pub(crate) fn new(plan: Arc<Plan>) -> Self {
        Self {
            plan,
            options: RunOptions::default(),
            stop: Stop::default(),
            _types: PhantomData,
        }
    }

    /// On the first task that fails for good, stop: start nothing more, drop running
    /// async tasks, and return. By default independent branches run to their end.
    pub fn fail_fast(mut self, fail_fast: bool) -> Self {
        self.options.fail_fast = fail_fast;
        self
    }

    /// Stops the run, as a cancel would, if it has not ended after `limit`.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.options.timeout = Some(limit);
        self
    }

    /// A handle that cancels this run from anywhere (a signal handler, another task).
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle(self.stop.clone())
    }

    /// Runs the workflow; the outcome holds its result and its report, whatever happened.
    ///
    /// Cancelling (by the handle, the timeout, fail-fast, or dropping this future)
    /// starts no more tasks and drops running async tasks. A running CPU task cannot be
    /// preempted: [`aqueduct::task::cancelled`](crate::task::cancelled) turns true for
    /// it, and the run ends when it returns.
    pub fn run(self, params: P) -> impl Future<Output = RunOutcome<O>> + Send + use<P, O> {
        let run = graph::run_plan(self.plan, self.options, self.stop, params, true);
        async move {
            let (result, report) = run.await;
            RunOutcome {
                result,
                report: report.expect("a runner's run has a report"),
            }
        }
    }
}

impl<P, O> fmt::Debug for Runner<P, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("options", &self.options)
            .finish()
    }
}

/// Cancels a run. Cheap to clone; cancelling twice is harmless.
#[derive(Clone)]
pub struct CancelHandle(Stop);

impl CancelHandle {
    /// Stops the run: nothing more starts, running async tasks are dropped.
    pub fn cancel(&self) {
        self.0.stop();
    }

    /// Whether the run was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.is_stopped()
    }
}

/// How a run ended: its result and its report.
#[derive(Debug)]
pub struct RunOutcome<O> {
    /// The workflow's output, or why there is none.
    pub result: Result<O, Error>,
    /// What every task did.
    pub report: RunReport,
}

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelHandle")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}
