//! The executor: a ready-queue scheduler over rayon (CPU tasks) and tokio (IO tasks).
//!
//! Each node has a counter of the task inputs it still waits for. A node that finishes
//! decrements its successors' counters; a successor that reaches zero is ready. A
//! finished CPU task runs one ready CPU successor itself (no round trip through any
//! queue) and spawns the others; IO successors go to tokio. The run's state is one
//! `Arc` shared by every running task. When the last task drops it, `Drop` hands the
//! results to the waiting run future: the reference count is the completion count, so
//! there is no extra counter, lock or race.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::Instrument as _;

use crate::error::{Error, TaskFailure};
use crate::graph::Plan;
use crate::report::{RunReport, TaskReport, TaskStatus};
use crate::task::{Kind, TaskError};

pub(crate) type Value = Box<dyn Any + Send + Sync>;

/// What calling a node gives: its result, or a future of it.
pub(crate) enum Step<'a> {
    Done(Result<Value, TaskError>),
    Pending(Pin<Box<dyn Future<Output = Result<Value, TaskError>> + Send + 'a>>),
}

/// What one node did in one run; written once, when it finishes.
pub struct Record {
    pub(crate) outcome: Result<Value, TaskError>,
    ready: Instant,
    started: Instant,
    finished: Instant,
}

/// A node's place in a run: empty until the node finishes.
pub type Slot = OnceLock<Record>;

pub(crate) fn fill(slot: &Slot, value: Value) {
    let now = Instant::now();
    let _ = slot.set(Record {
        outcome: Ok(value),
        ready: now,
        started: now,
        finished: now,
    });
}

struct Shared {
    plan: Arc<Plan>,
    slots: Box<[Slot]>,
    waiting: Box<[AtomicU32]>,
    tokio: tokio::runtime::Handle,
    span: tracing::Span,
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

/// The slots of a run that has ended, every task finished or skipped.
pub(crate) struct Finished {
    started: Instant,
    wall: Duration,
    slots: Box<[Slot]>,
}

/// Runs `plan` once: `store` fills the parameters' slots, then every task runs as soon
/// as its inputs exist.
pub(crate) async fn execute(
    plan: Arc<Plan>,
    store: impl FnOnce(&[Slot]),
) -> Result<Finished, Error> {
    let tokio = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime {
        workflow: plan.graph.name.to_string(),
    })?;
    let started = Instant::now();
    let span = tracing::info_span!("workflow", name = %plan.graph.name);
    let slots: Box<[Slot]> = (0..plan.calls.len()).map(|_| Slot::new()).collect();
    store(&slots);
    let waiting = plan.waits_for.iter().map(|&n| AtomicU32::new(n)).collect();
    let (done, finished) = oneshot::channel();
    let shared = Arc::new(Shared {
        plan: Arc::clone(&plan),
        slots,
        waiting,
        tokio,
        span,
        done: Some(done),
    });
    for &root in &plan.roots {
        shared.dispatch(root as usize, started);
    }
    drop(shared);
    let slots = finished
        .await
        .expect("aqueduct: the run's state was dropped without handing back its results");
    Ok(Finished {
        started,
        wall: started.elapsed(),
        slots,
    })
}

impl Shared {
    fn dispatch(self: &Arc<Self>, node: usize, ready: Instant) {
        let run = Arc::clone(self);
        match self.plan.graph.nodes[node].kind {
            Kind::Cpu => rayon::spawn(move || run.run_cpu(node, ready)),
            Kind::Io => {
                self.tokio.spawn(run.run_io(node, ready));
            }
            Kind::Param => unreachable!("parameters are filled before the run starts"),
        }
    }

    fn task_span(&self, node: usize) -> tracing::Span {
        let graph_node = &self.plan.graph.nodes[node];
        tracing::info_span!(
            parent: &self.span,
            "task",
            task = graph_node.task.unwrap_or_default(),
            node = %graph_node.name,
        )
    }

    /// Runs a CPU node on this rayon thread, then, while it unlocks one, a ready CPU
    /// successor after it.
    fn run_cpu(self: Arc<Self>, mut node: usize, mut ready: Instant) {
        loop {
            let started = Instant::now();
            let outcome = self.task_span(node).in_scope(|| {
                let call = self.plan.calls[node]
                    .as_ref()
                    .expect("a task node has a call");
                match catch_unwind(AssertUnwindSafe(|| call(&self.slots))) {
                    Ok(Step::Done(outcome)) => outcome,
                    Ok(Step::Pending(_)) => Err(TaskError::msg(
                        "a CPU task returned a future; declare it `async fn` to run it on tokio",
                    )),
                    Err(panic) => Err(TaskError::panicked(&*panic)),
                }
            });
            match self.finish(node, outcome, ready, started) {
                Some((next, at)) => (node, ready) = (next, at),
                None => return,
            }
        }
    }

    /// Runs an IO node on tokio, then, while it unlocks one, a ready IO successor.
    async fn run_io(self: Arc<Self>, mut node: usize, mut ready: Instant) {
        loop {
            let started = Instant::now();
            let span = self.task_span(node);
            let call = self.plan.calls[node]
                .as_ref()
                .expect("a task node has a call");
            let outcome = match catch_unwind(AssertUnwindSafe(|| call(&self.slots))) {
                Ok(Step::Pending(future)) => CatchUnwind(future).instrument(span).await,
                Ok(Step::Done(outcome)) => outcome,
                Err(panic) => Err(TaskError::panicked(&*panic)),
            };
            match self.finish(node, outcome, ready, started) {
                Some((next, at)) => (node, ready) = (next, at),
                None => return,
            }
        }
    }

    /// Records a node's outcome and releases its successors. Returns one ready
    /// successor of the same kind for the caller to run next.
    fn finish(
        self: &Arc<Self>,
        node: usize,
        outcome: Result<Value, TaskError>,
        ready: Instant,
        started: Instant,
    ) -> Option<(usize, Instant)> {
        let finished = Instant::now();
        if let Err(error) = &outcome {
            tracing::warn!(parent: &self.span, node = %self.plan.graph.nodes[node].name, %error, "task failed");
        }
        let succeeded = outcome.is_ok();
        let _ = self.slots[node].set(Record {
            outcome,
            ready,
            started,
            finished,
        });
        if !succeeded {
            return None;
        }
        let kind = self.plan.graph.nodes[node].kind;
        let mut next = None;
        for &successor in self.plan.successors(node) {
            let successor = successor as usize;
            if self.waiting[successor].fetch_sub(1, Ordering::AcqRel) == 1 {
                if next.is_none() && self.plan.graph.nodes[successor].kind == kind {
                    next = Some((successor, finished));
                } else {
                    self.dispatch(successor, finished);
                }
            }
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
    /// Splits the run into its output (or its failures) and its report.
    pub(crate) fn into_output<O: 'static>(self, plan: &Plan) -> (Result<O, Error>, RunReport) {
        let report = self.report(plan);
        let mut records: Vec<Option<Record>> = self
            .slots
            .into_vec()
            .into_iter()
            .map(OnceLock::into_inner)
            .collect();
        let graph = &plan.graph;
        let mut failures = Vec::new();
        for (node, record) in records.iter_mut().enumerate() {
            if matches!(
                record,
                Some(Record {
                    outcome: Err(_),
                    ..
                })
            ) {
                let Some(Record {
                    outcome: Err(error),
                    ..
                }) = record.take()
                else {
                    unreachable!()
                };
                failures.push(TaskFailure {
                    node: graph.nodes[node].name.to_string(),
                    task: graph.nodes[node].task.unwrap_or_default(),
                    error,
                });
            }
        }
        if !failures.is_empty() {
            let skipped = report
                .tasks
                .iter()
                .filter(|t| t.status == TaskStatus::Skipped)
                .map(|t| t.node.clone())
                .collect();
            let error = Error::Failed {
                workflow: graph.name.to_string(),
                failures,
                skipped,
            };
            return (Err(error), report);
        }
        let output = records[graph.output]
            .take()
            .and_then(|record| record.outcome.ok())
            .and_then(|value| value.downcast::<O>().ok())
            .expect("aqueduct: a run without failures has its output");
        (Ok(*output), report)
    }

    fn report(&self, plan: &Plan) -> RunReport {
        let graph = &plan.graph;
        let tasks = graph
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| node.kind != Kind::Param)
            .map(|(i, node)| {
                let record = self.slots[i].get();
                let status = match record.map(|r| r.outcome.is_ok()) {
                    Some(true) => TaskStatus::Succeeded,
                    Some(false) => TaskStatus::Failed,
                    None => TaskStatus::Skipped,
                };
                TaskReport {
                    node: node.name.to_string(),
                    task: node.task.unwrap_or_default().to_string(),
                    kind: node.kind,
                    status,
                    started_at: record.map(|r| r.started.saturating_duration_since(self.started)),
                    queue_wait: record.map_or(Duration::ZERO, |r| r.started - r.ready),
                    duration: record.map_or(Duration::ZERO, |r| r.finished - r.started),
                    error: record
                        .and_then(|r| r.outcome.as_ref().err())
                        .map(ToString::to_string),
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
        let duration = |i: usize| {
            self.slots[i]
                .get()
                .map_or(Duration::ZERO, |r| r.finished - r.started)
        };
        // Nodes are in topological order, so one forward pass finds every longest path.
        let mut longest = vec![(Duration::ZERO, None::<usize>); nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            let before = node
                .inputs
                .iter()
                .map(|&j| (longest[j].0, Some(j)))
                .max_by_key(|(d, _)| *d);
            let (base, previous) = before.unwrap_or((Duration::ZERO, None));
            longest[i] = (base + duration(i), previous);
        }
        let mut at = (0..nodes.len()).max_by_key(|&i| longest[i].0);
        let mut path = Vec::new();
        while let Some(i) = at {
            if nodes[i].kind != Kind::Param {
                path.push(nodes[i].name.to_string());
            }
            at = longest[i].1;
        }
        path.reverse();
        path
    }
}
