//! Typed fan-outs: a fused fan-out whose body `workflow!` also wrote out as a typed
//! chain (see `plan/chain.rs`) runs each item through that chain. The executor's side
//! is [`ChainHost`]: the run's stop, progress and fail-fast, and the rows of the items
//! that did not succeed, rebuilt from what the chain recorded (the other items keep
//! nothing, as in a fused fan-out).

use std::sync::{Mutex, PoisonError};

use super::fused::{Kept, Task, tasks};
use super::resolve::{failure, unreached_status};
use super::*;
use crate::plan::{ChainHost, Event, Typed};

/// The executor's side of one typed fan-out.
struct TypedRun<'f> {
    parent: &'f Arc<Shared>,
    def: &'f FanOutDef,
    /// The body's tasks in node order.
    tasks: Vec<Task<'f>>,
    /// The rows of the items that did not succeed.
    kept: Kept,
    started: Instant,
    /// Whether a `match` reads the fan-out's outcome: an item's failure does not stop a
    /// fail-fast run.
    handled: bool,
}

impl Shared {
    /// Runs fan-out `job` over the `count` items of the collection in node
    /// `collection` through its typed chain, then resolves its node.
    pub(super) fn expand_typed(
        self: &Arc<Self>,
        mut job: Job,
        def: &FanOutDef,
        typed: &Typed,
        collection: u32,
        count: usize,
    ) {
        let started = Instant::now();
        let name = self.plan.graph.name_of(job.node);
        tracing::debug!(parent: &self.span, node = name, items = count, "fan-out runs its typed chain");
        // One attempt, as a scheduled fan-out's end records it.
        job.attempt = job.attempt.max(1);
        if let Some(progress) = &self.run.progress {
            progress.add_total(count as u64 * task_count(&def.body));
        }
        let run = TypedRun {
            parent: self,
            def,
            tasks: tasks(def),
            kept: Mutex::new(Vec::new()),
            started,
            handled: self.handled_later(job.node),
        };
        // The chain catches the tasks' panics and the values' `Drop`s; anything else
        // is the executor's and fails the fan-out.
        let result = catch_unwind(AssertUnwindSafe(|| {
            typed(
                self.board.slots().into(),
                (collection, count),
                &def.imports,
                &run,
            )
        }))
        .unwrap_or_else(|panic| Err(TaskError::panicked(&*panic)));
        self.end_fused(job, started, result, run.kept, count);
    }
}

impl ChainHost for TypedRun<'_> {
    fn stopped(&self) -> bool {
        self.parent.run.stop.is_stopped()
    }

    fn signal(&self) -> (u64, &CancellationToken) {
        self.parent.run.halt_token(false)
    }

    fn shows_progress(&self) -> bool {
        self.parent.run.progress.is_some()
    }

    fn started(&self) {
        if let Some(progress) = &self.parent.run.progress {
            progress.started();
        }
    }

    fn ended(&self, ran: bool) {
        if let Some(progress) = &self.parent.run.progress {
            progress.ended(ran);
        }
    }

    fn failed(&self, node: u32, index: usize, error: &TaskError) {
        let parent = self.parent;
        let name = self.def.body.graph.name_of(node as usize);
        tracing::error!(parent: &parent.span, node = name, item = index, %error, "task failed");
        if parent.run.options.fail_fast && !self.handled {
            parent.run.stop.stop();
        }
    }

    fn keep(&self, index: usize, events: &[(u32, Event)]) -> Value {
        let body = &self.def.body;
        let mut slots = Board::new(body).take_slots();
        let start = self.parent.since(self.started);
        let mut tail = None;
        for task in &self.tasks {
            let event = events
                .iter()
                .find(|(node, _)| *node as usize == task.node)
                .map(|(_, event)| event);
            let record = match event {
                None => Record::new(
                    Box::new(()),
                    TaskStatus::Succeeded,
                    [start; 4],
                    None,
                    Vec::new(),
                ),
                Some(Event::Failed(error, at)) => {
                    let at = self.parent.since(*at);
                    let (_, status) = failure(body, task.node, error);
                    if task.node == body.graph.output() {
                        tail = Some(error.clone());
                    }
                    Record::new(
                        Box::new(()),
                        status,
                        [at; 4],
                        Some(error.clone()),
                        Vec::new(),
                    )
                }
                Some(Event::Cancelled(at)) => {
                    let at = self.parent.since(*at);
                    Record::new(
                        Box::new(()),
                        TaskStatus::Cancelled,
                        [at; 4],
                        None,
                        Vec::new(),
                    )
                }
                Some(Event::Unreached) => {
                    let required = task.required.iter().map(|&input| slots[input].get());
                    let status = unreached_status(required);
                    let times = [start, NEVER, NEVER, start];
                    Record::new(Box::new(()), status, times, None, Vec::new())
                }
            };
            slots[task.node] = OnceLock::from(record);
        }
        self.kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((index, slots));
        (body.unresolved[body.graph.output()])(tail)
    }

    fn fault(&self, panic: &(dyn Any + Send)) {
        self.parent.run.fault(format!(
            "a fused fan-out item panicked outside its tasks: {}",
            panic_message(panic)
        ));
    }
}
