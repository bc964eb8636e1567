//! Blocking entry points: a run from a plain `fn main`, on a tokio runtime of its own.

use std::future::Future;

use super::{InMemory, NoResources, RunOutcome, Runner};
use crate::error::Error;
use crate::plan::{Params, Workflow};
use crate::report::RunReport;

/// Runs `run` to its end on a new multi-threaded tokio runtime (IO tasks run on its
/// threads, CPU tasks on rayon's), refused inside a runtime, whose thread it would
/// block.
fn block_on<T>(workflow: &str, run: impl Future<Output = T>) -> Result<T, Error> {
    // On rayon's threads (a CPU task) the run's own CPU tasks could wait forever for
    // the threads it blocks.
    if tokio::runtime::Handle::try_current().is_ok() || rayon::current_thread_index().is_some() {
        return Err(Error::BlockingInRuntime {
            workflow: workflow.to_owned(),
        });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("aqueduct-io")
        .build()
        .map_err(|error| Error::Fault {
            workflow: workflow.to_owned(),
            message: format!("its tokio runtime could not start: {error}"),
        })?;
    Ok(runtime.block_on(run))
}

/// A run that could not start: its error, and a report of nothing.
fn unstarted<O>(workflow: &str, error: Error) -> RunOutcome<O> {
    RunOutcome {
        result: Err(error),
        report: RunReport::not_started(workflow),
        run_id: None,
    }
}

impl<P: Params, O: Send + Sync + 'static, R: Params> Workflow<P, O, R> {
    /// [`run`](Self::run) for synchronous code: starts a tokio runtime, runs the
    /// workflow on it, and returns when the run ends.
    ///
    /// ```
    /// use aqueduct::prelude::*;
    ///
    /// #[task]
    /// fn double(x: &u64) -> u64 {
    ///     x * 2
    /// }
    ///
    /// workflow! {
    ///     fn doubled(x: u64) -> u64 {
    ///         double(&x)
    ///     }
    /// }
    ///
    /// fn main() {
    ///     assert_eq!(doubled::workflow().run_blocking((21,)).unwrap(), 42);
    /// }
    /// ```
    ///
    /// Inside a tokio runtime (an `async fn`, `#[tokio::main]`) it would block one of
    /// the runtime's threads: it returns [`Error::BlockingInRuntime`] instead; `.await`
    /// [`run`](Self::run) there.
    pub fn run_blocking(&self, params: P) -> Result<O, Error>
    where
        R: NoResources,
    {
        block_on(self.plan.graph.name(), self.run(params)).and_then(|result| result)
    }

    /// [`run_blocking`](Self::run_blocking) for a workflow with resources (see
    /// [`run_with`](Self::run_with)).
    pub fn run_blocking_with(&self, params: P, resources: R) -> Result<O, Error> {
        block_on(self.plan.graph.name(), self.run_with(params, resources)).and_then(|r| r)
    }
}

impl<P: Params, O: Send + Sync + 'static> Runner<P, O, InMemory> {
    /// [`run`](Self::run) for synchronous code, on a tokio runtime of its own (see
    /// [`Workflow::run_blocking`]).
    pub fn run_blocking(self, params: P) -> RunOutcome<O> {
        let name = self.plan.graph.name().to_owned();
        block_on(&name, self.run(params)).unwrap_or_else(|error| unstarted(&name, error))
    }
}

#[cfg(feature = "durable")]
impl<P, O> Runner<P, O, super::Stored>
where
    P: Params + serde::Serialize + serde::de::DeserializeOwned,
    O: Send + Sync + 'static,
{
    /// [`run`](Self::run) for synchronous code, on a tokio runtime of its own (see
    /// [`Workflow::run_blocking`]).
    pub fn run_blocking(self, params: P) -> RunOutcome<O> {
        let name = self.plan.graph.name().to_owned();
        block_on(&name, self.run(params)).unwrap_or_else(|error| unstarted(&name, error))
    }

    /// [`resume`](Self::resume) for synchronous code, on a tokio runtime of its own
    /// (see [`Workflow::run_blocking`]).
    pub fn resume_blocking(self) -> RunOutcome<O> {
        let name = self.plan.graph.name().to_owned();
        block_on(&name, self.resume()).unwrap_or_else(|error| unstarted(&name, error))
    }
}
