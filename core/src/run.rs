//! Configured runs: fail-fast, a run timeout, cancellation, and the report.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::error::Error;
use crate::executor::{Extras, RunOptions, Sink, Stop};
use crate::graph::{self, Params, Plan};
use crate::progress::Progress;
use crate::report::RunReport;
use crate::store::{RunRecord, Store};

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
    durable: Option<DurableRun<P>>,
    progress: OnceLock<Arc<Progress>>,
    _types: PhantomData<fn(P) -> O>,
}

/// Where a durable run records itself, and how its parameters are saved.
struct DurableRun<P> {
    store: Arc<dyn Store>,
    id: Option<String>,
    encode: fn(&P) -> Result<Vec<u8>, String>,
    decode: fn(&[u8]) -> Result<P, String>,
}

fn encode_input<P: serde::Serialize>(params: &P) -> Result<Vec<u8>, String> {
    serde_json::to_vec(params).map_err(|error| error.to_string())
}

fn decode_input<P: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<P, String> {
    serde_json::from_slice(bytes).map_err(|error| error.to_string())
}

/// A run id unlikely to repeat: the workflow, the time, and a few random bits.
fn new_run_id(workflow: &str) -> String {
    use std::hash::{BuildHasher, RandomState};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let salt = RandomState::new().hash_one(now) & 0xffff;
    format!("{workflow}-{}-{salt:04x}", now.as_millis())
}

impl<P: Params, O: Send + Sync + 'static> Runner<P, O> {
    pub(crate) fn new(plan: Arc<Plan>) -> Self {
        Self {
            plan,
            options: RunOptions::default(),
            stop: Stop::default(),
            durable: None,
            progress: OnceLock::new(),
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

    /// Makes the run durable: it records itself and a checkpoint of every finished task
    /// in `store`, so that a run with the same id later (see [`run_id`](Self::run_id),
    /// [`resume`](Self::resume)) loads what finished instead of running it again. The
    /// workflow must be `#[durable]`, and its parameters serialisable.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self
    where
        P: serde::Serialize + serde::de::DeserializeOwned,
    {
        self.durable = Some(DurableRun {
            store,
            id: self.durable.and_then(|d| d.id),
            encode: encode_input::<P>,
            decode: decode_input::<P>,
        });
        self
    }

    /// The id of a durable run: a new id starts a run, a known one resumes it (with
    /// the same parameters). Without it a durable run gets a fresh id, in
    /// [`RunOutcome::run_id`].
    ///
    /// # Panics
    /// If no [`store`](Self::store) was given before.
    pub fn run_id(mut self, id: impl Into<String>) -> Self {
        let durable = self.durable.as_mut().expect("`run_id` comes after `store`");
        durable.id = Some(id.into());
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

    /// Runs the workflow; the outcome holds its result and its report, whatever happened.
    ///
    /// Cancelling (by the handle, the timeout, fail-fast, or dropping this future)
    /// starts no more tasks and drops running async tasks. A running CPU task cannot be
    /// preempted: [`aqueduct::task::cancelled`](crate::task::cancelled) turns true for
    /// it, and the run ends when it returns.
    pub fn run(self, params: P) -> impl Future<Output = RunOutcome<O>> + Send + use<P, O> {
        self.start(Some(params))
    }

    /// Resumes the durable run given by [`store`](Self::store) and
    /// [`run_id`](Self::run_id), with the parameters it was started with: what had
    /// finished is loaded, the rest runs.
    pub fn resume(self) -> impl Future<Output = RunOutcome<O>> + Send + use<P, O> {
        self.start(None)
    }

    fn start(self, params: Option<P>) -> impl Future<Output = RunOutcome<O>> + Send + use<P, O> {
        let Runner {
            plan,
            options,
            stop,
            durable,
            progress,
            ..
        } = self;
        let progress = progress.into_inner();
        async move {
            let Some(durable) = durable else {
                let params = params.expect("only a durable run resumes");
                let extras = Extras {
                    progress,
                    ..Extras::default()
                };
                let run = graph::run_plan(plan, options, stop, params, true, extras);
                let (result, report) = run.await;
                return RunOutcome {
                    result,
                    report: report.expect("a runner's run has a report"),
                    run_id: None,
                };
            };
            let id = durable
                .id
                .clone()
                .unwrap_or_else(|| new_run_id(plan.graph.name()));
            let refused = |error| RunOutcome {
                result: Err(error),
                report: RunReport::not_started(plan.graph.name()),
                run_id: Some(id.clone()),
            };
            let (params, restored) = match prepare(&plan, &durable, &id, params) {
                Ok(prepared) => prepared,
                Err(error) => return refused(error),
            };
            let (sink, flushed) = Sink::start(Arc::clone(&durable.store), id.clone());
            let extras = Extras {
                restored,
                sink: Some(sink),
                progress,
            };
            let (mut result, report) =
                graph::run_plan(Arc::clone(&plan), options, stop, params, true, extras).await;
            let report = report.expect("a runner's run has a report");
            if let Ok(Err(error)) = flushed.await {
                result = Err(Error::Store(error));
            }
            let status = run_status(&result);
            let json = serde_json::to_string(&report).unwrap_or_default();
            if let Err(error) = durable.store.finish(&id, status, report.wall, &json) {
                result = result.and(Err(Error::Store(error)));
            }
            RunOutcome {
                result,
                report,
                run_id: Some(id),
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
#[non_exhaustive]
pub struct RunOutcome<O> {
    /// The workflow's output, or why there is none.
    pub result: Result<O, Error>,
    /// What every task did.
    pub report: RunReport,
    /// A durable run's id, to resume it or look it up in its store.
    pub run_id: Option<String>,
}

fn run_status<O>(result: &Result<O, Error>) -> &'static str {
    match result {
        Ok(_) => "succeeded",
        Err(Error::Cancelled { .. }) => "cancelled",
        Err(Error::TimedOut { .. }) => "timed out",
        Err(_) => "failed",
    }
}

/// Checks a durable run against its store and loads what it can resume from: the
/// parameters (given, or saved when resuming) and the value of every checkpointed node.
/// Any mismatch refuses the run before anything runs or is written.
fn prepare<P>(
    plan: &Plan,
    durable: &DurableRun<P>,
    id: &str,
    params: Option<P>,
) -> Result<(P, Vec<(usize, crate::graph::Value)>), Error> {
    let graph = &plan.graph;
    let workflow = graph.name().to_owned();
    let Some(shape) = &plan.durable else {
        return Err(Error::NotDurable { workflow });
    };
    let fingerprint = shape.fingerprint.clone();
    let store = &durable.store;
    let existing = store.run(id).map_err(Error::Store)?;
    let Some(existing) = existing else {
        let params = params.ok_or_else(|| Error::UnknownRun { run: id.to_owned() })?;
        let input = (durable.encode)(&params).map_err(|message| Error::Checkpoint {
            run: id.to_owned(),
            node: "(parameters)".into(),
            message,
        })?;
        let record = RunRecord {
            id: id.to_owned(),
            workflow,
            fingerprint,
            input,
            graph: shape.shape.clone(),
        };
        store.start(&record).map_err(Error::Store)?;
        return Ok((params, Vec::new()));
    };
    if existing.fingerprint != fingerprint {
        return Err(Error::FingerprintMismatch {
            run: id.to_owned(),
            changes: crate::graph::shape_diff(&existing.graph, &shape.shape),
        });
    }
    let params = match params {
        Some(params) => {
            if (durable.encode)(&params).ok().as_deref() != Some(existing.input.as_slice()) {
                return Err(Error::InputChanged { run: id.to_owned() });
            }
            params
        }
        None => (durable.decode)(&existing.input).map_err(|message| Error::Checkpoint {
            run: id.to_owned(),
            node: "(parameters)".into(),
            message,
        })?,
    };
    let codecs = &plan.durable.as_ref().expect("checked above").codecs;
    let mut restored = Vec::new();
    for checkpoint in store.checkpoints(id).map_err(Error::Store)? {
        let bad = |message: String| Error::Checkpoint {
            run: id.to_owned(),
            node: checkpoint.node.clone(),
            message,
        };
        let node = (0..graph.len())
            .find(|&i| graph.name_of(i) == checkpoint.node)
            .ok_or_else(|| bad("no node of that name".into()))?;
        let codec = codecs[node].ok_or_else(|| bad("the node is not checkpointed".into()))?;
        if checkpoint.codec != crate::graph::CODEC || checkpoint.schema != crate::graph::SCHEMA {
            return Err(bad(format!(
                "saved as {} v{}, this build reads {} v{}",
                checkpoint.codec,
                checkpoint.schema,
                crate::graph::CODEC,
                crate::graph::SCHEMA
            )));
        }
        let value = (codec.decode)(&checkpoint.data).map_err(bad)?;
        restored.push((node, value));
    }
    Ok((params, restored))
}

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelHandle")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}
