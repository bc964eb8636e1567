//! Running a [`Workflow`]: [`Workflow::run`] and [`Workflow::runner`], and the typed
//! half of every run, which hands the parameters to the executor and takes its output.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{NoResources, Runner, provide};
use crate::error::Error;
use crate::exec::{self, Extras, RunEnd, RunOptions, Stop};
use crate::plan::{Params, Plan, Workflow};
use crate::report::RunReport;
use crate::value::Slot;

impl<P: Params, O: Send + Sync + 'static, R: Params> Workflow<P, O, R> {
    /// Runs the workflow to its end and returns its output, or why there is none.
    ///
    /// Must be polled inside a tokio runtime: IO tasks are spawned on it. CPU tasks
    /// run on rayon's global pool. Dropping the future cancels the run. A workflow
    /// with resources runs with [`run_with`](Self::run_with).
    pub fn run(&self, params: P) -> Pin<Box<dyn Future<Output = Result<O, Error>> + Send>>
    where
        R: NoResources,
    {
        // Boxed, not `impl Future`: a workflow with resources is then told once, at
        // this call, that it needs them (an opaque type repeats the bound's error at
        // the expression and at its `.await`).
        Box::pin(self.start(params, None))
    }

    /// [`run`](Self::run) for a workflow with resources (`#[resource]` parameters):
    /// `resources` are this run's, never saved.
    pub fn run_with(
        &self,
        params: P,
        resources: R,
    ) -> impl Future<Output = Result<O, Error>> + Send + use<P, O, R> {
        self.start(params, Some(provide::<P, R>(resources)))
    }

    fn start(
        &self,
        params: P,
        resources: Option<exec::Provide>,
    ) -> impl Future<Output = Result<O, Error>> + Send + use<P, O, R> {
        let extras = Extras {
            resources,
            ..Extras::default()
        };
        let run = run_plan(
            Arc::clone(&self.plan),
            RunOptions::default(),
            Stop::default(),
            params,
            false,
            extras,
        );
        async move {
            let (result, _, end) = run.await;
            if let Some(end) = end {
                end.log(&result);
            }
            result
        }
    }

    /// A configured run: fail-fast, a timeout, a cancel handle, and the run's report.
    /// A workflow with resources is configured with
    /// [`runner_with`](Self::runner_with).
    pub fn runner(&self) -> Runner<P, O>
    where
        R: NoResources,
    {
        Runner::new(Arc::clone(&self.plan))
    }

    /// [`runner`](Self::runner) for a workflow with resources: its run (or resume)
    /// is given `resources`.
    pub fn runner_with(&self, resources: R) -> Runner<P, O> {
        Runner::new(Arc::clone(&self.plan)).provided(provide::<P, R>(resources))
    }
}

/// Runs `plan` once with `options`; the typed half of [`Runner::run`]. The caller logs
/// the run's end (the [`RunEnd`] of a run that started) once its result is final.
pub(crate) async fn run_plan<P: Params, O: 'static>(
    plan: Arc<Plan>,
    options: RunOptions,
    stop: Stop,
    params: P,
    with_report: bool,
    extras: Extras,
) -> (Result<O, Error>, Option<RunReport>, Option<RunEnd>) {
    let store = move |slots: &[Slot]| params.store(slots);
    match exec::execute(Arc::clone(&plan), options, stop, store, extras).await {
        Ok(finished) => {
            let report = with_report.then(|| finished.report(&plan));
            let end = finished.end();
            (finished.into_output::<O>(&plan), report, Some(end))
        }
        Err(error) => (
            Err(error),
            with_report.then(|| RunReport::not_started(plan.graph.name())),
            None,
        ),
    }
}
