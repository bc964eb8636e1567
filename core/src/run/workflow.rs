//! Running a [`Workflow`]: [`Workflow::run`] and [`Workflow::runner`], and the typed
//! half of every run, which hands the parameters to the executor and takes its output.

use std::future::Future;
use std::sync::Arc;

use super::Runner;
use crate::error::Error;
use crate::exec::{self, Extras, RunOptions, Stop};
use crate::plan::{Params, Plan, Workflow};
use crate::report::RunReport;
use crate::value::Slot;

impl<P: Params, O: Send + Sync + 'static> Workflow<P, O> {
    /// Runs the workflow to its end and returns its output, or why there is none.
    ///
    /// Must be polled inside a tokio runtime: IO tasks are spawned on it. CPU tasks
    /// run on rayon's global pool. Dropping the future cancels the run.
    pub fn run(&self, params: P) -> impl Future<Output = Result<O, Error>> + Send + use<P, O> {
        let run = run_plan(
            Arc::clone(&self.plan),
            RunOptions::default(),
            Stop::default(),
            params,
            false,
            Extras::default(),
        );
        async move { run.await.0 }
    }

    /// A configured run: fail-fast, a timeout, a cancel handle, and the run's report.
    pub fn runner(&self) -> Runner<P, O> {
        Runner::new(Arc::clone(&self.plan))
    }
}

/// Runs `plan` once with `options`; the typed half of [`Runner::run`].
pub(crate) async fn run_plan<P: Params, O: 'static>(
    plan: Arc<Plan>,
    options: RunOptions,
    stop: Stop,
    params: P,
    with_report: bool,
    extras: Extras,
) -> (Result<O, Error>, Option<RunReport>) {
    let store = move |slots: &[Slot]| params.store(slots);
    match exec::execute(Arc::clone(&plan), options, stop, store, extras).await {
        Ok(finished) => {
            let report = with_report.then(|| finished.report(&plan));
            let end = finished.end();
            let result = finished.into_output::<O>(&plan);
            end.log(&result);
            (result, report)
        }
        Err(error) => (
            Err(error),
            with_report.then(|| RunReport::not_started(plan.graph.name())),
        ),
    }
}
