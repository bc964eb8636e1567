//! Fused fan-outs: the items of a fan-out whose body is CPU tasks only (one attempt
//! each, no timeout, no concurrency limit) and which is not capped run without any
//! scheduling of their own. Rayon's threads take the items in chunks; each runs one
//! item's chain depth-first, in node order, in a buffer of slots it reuses for the
//! next item, and writes the item's result straight into its place in the gathered
//! `Vec`. No child run, no `Arc`, no allocation per item but the tasks' outputs.
//!
//! The semantics are the scheduled path's: an input that did not succeed skips what
//! requires it, a cleanup task still runs, a panic fails its task, fail-fast and the
//! run's stop are checked before every task. The report keeps the rows of the items
//! that did not succeed (or of every item, with `Runner::item_rows`), and a summary.

use std::sync::{Mutex, PoisonError};

use super::attempt::call_cpu;
use super::fanout::{OwnedItems, fill_imports, forget_values};
use super::resolve::{failure, unreached_status};
use super::*;
use crate::contain::{drop_all, drop_contained, drop_record, drop_slots};
use crate::plan::{FusedItem, Items};
use crate::value::{Import, Slots};

/// The rows a fused fan-out keeps for the report, by item.
pub(super) type Kept = Mutex<Vec<(usize, Box<[Slot]>)>>;

/// What the items of one fused fan-out share.
struct FusedRun<'f> {
    parent: &'f Arc<Shared>,
    def: &'f FanOutDef,
    /// For a fan-out that took its collection: each item, until it runs.
    owned: OwnedItems,
    /// Items kept for the report: those that did not succeed, or every one.
    kept: Kept,
    every_row: bool,
    /// When the fan-out started.
    started: Instant,
    /// The body's tasks in node order (a topological order), read once.
    tasks: Vec<Task<'f>>,
    /// Whether one of them is a cleanup task (it runs after a soft stop).
    has_cleanup: bool,
    /// The body's parameters: the item, then the imports.
    params: usize,
    /// Whether a `match` reads the fan-out's outcome: an item's failure does not stop a
    /// fail-fast run.
    handled: bool,
}

/// One task of the body, as every item runs it.
pub(super) struct Task<'f> {
    pub(super) node: usize,
    call: &'f crate::plan::NodeFn,
    /// Whether it takes an input as an outcome (it runs after a soft stop).
    cleanup: bool,
    /// The inputs it requires that are tasks of the body (parameters always exist).
    pub(super) required: Vec<usize>,
}

/// A rayon thread's slots for one item at a time, reused while its items succeed.
struct Buffer(Box<[Slot]>);

impl Drop for Buffer {
    /// A thread's buffer is dropped with the last item it ran (a by-value item, its
    /// imports): a value's panicking `Drop` is contained there too.
    fn drop(&mut self) {
        drop_slots(&mut self.0, |_| "a fan-out item's parameter");
    }
}

impl Shared {
    /// Runs fan-out `job` fused (see the module's docs) over its `count` items (`owned`
    /// if it took its collection), then resolves its node.
    pub(super) fn expand_fused(
        self: &Arc<Self>,
        mut job: Job,
        def: &FanOutDef,
        fused: crate::plan::Fused,
        count: usize,
        owned: Vec<Value>,
    ) {
        let started = Instant::now();
        // One attempt, as a scheduled fan-out's end records it.
        job.attempt = job.attempt.max(1);
        if let Some(progress) = &self.run.progress {
            progress.add_total(count as u64 * task_count(&def.body));
        }
        let tasks = tasks(def);
        let run = FusedRun {
            parent: self,
            def,
            owned: OwnedItems::new(owned),
            kept: Mutex::new(Vec::new()),
            every_row: self.run.options.item_rows,
            started,
            has_cleanup: tasks.iter().any(|task| task.cleanup),
            tasks,
            params: def.params(),
            handled: self.handled_later(job.node),
        };
        let item: &FusedItem<'_> = &|state, index| run.item(state, index);
        let result = fused(count, item);
        let kept = run.kept;
        self.end_fused(job, started, result, kept, count);
    }

    /// Resolves a fused fan-out's node, with the rows of the items it `kept`.
    pub(super) fn end_fused(
        self: &Arc<Self>,
        job: Job,
        started: Instant,
        result: Result<Value, TaskError>,
        kept: Kept,
        count: usize,
    ) {
        let kept = kept.into_inner().unwrap_or_else(PoisonError::into_inner);
        let mut rows: Vec<Box<[Slot]>> = Vec::new();
        if !kept.is_empty() {
            rows.resize_with(count, Box::default);
            for (index, slots) in kept {
                rows[index] = slots;
            }
        }
        let items = ItemRuns {
            fused: true,
            rows,
            count,
        };
        self.end_fan_out(job, started, result, items);
    }
}

impl FusedRun<'_> {
    /// Runs item `index` to its end with this thread's buffer; gives the value of the
    /// body's output.
    fn item(&self, state: &mut Option<Box<dyn std::any::Any + Send>>, index: usize) -> Value {
        let body = &self.def.body;
        let params = self.params;
        // After a stop, an item with no cleanup task to run ends before it starts: no
        // buffer, and no row unless every row is asked for.
        if !self.every_row && self.parent.run.stop.is_stopped() && !self.has_cleanup {
            drop_contained(body.graph.name_of(0), self.owned.take(index));
            return (body.unresolved[body.graph.output()])(None);
        }
        // The thread's buffer stays in its box from item to item: no allocation.
        let buffer = match state
            .as_mut()
            .and_then(|state| state.downcast_mut::<Buffer>())
        {
            Some(buffer) => buffer,
            None => state
                .insert(Box::new(Buffer(self.fresh())))
                .downcast_mut()
                .expect("a buffer"),
        };
        let slots = &mut buffer.0;
        self.set_item(slots, index);
        let succeeded = self.chain(slots, index);
        let tail = body.graph.output();
        let value = slots[tail]
            .get_mut()
            .map(|record| std::mem::replace(&mut record.value, Box::new(())))
            .unwrap_or_else(|| (body.unresolved[tail])(None));
        if succeeded && !self.every_row {
            // Values' `Drop` is the user's code: a panic there is contained, as at a
            // scheduled item's end, and the buffer stays whole (each slot is emptied
            // before its value drops).
            let values = slots
                .iter_mut()
                .map(OnceLock::take)
                .enumerate()
                .skip(params);
            drop_all(values, |node| body.graph.name_of(node));
        } else {
            // Kept for the report (the next item makes a fresh buffer). Its parameters
            // hold the parent run, which must not wait for its own report.
            let mut slots = std::mem::take(slots);
            *state = None;
            guard(&self.parent.run, "a fused fan-out item's end", || {
                forget_values(self.def, &mut slots);
                self.kept
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((index, slots));
            });
        }
        value
    }

    /// A buffer with the body's imports filled in (every item reads the same ones).
    fn fresh(&self) -> Box<[Slot]> {
        let slots = Board::new(&self.def.body).take_slots();
        let first = usize::from(self.def.collection.is_some());
        fill_imports(&slots[first..], self.parent, &self.def.imports);
        slots
    }

    /// Puts item `index` in the body's first parameter: for a borrowed item, the
    /// buffer's import is pointed at it; a taken item is moved in.
    fn set_item(&self, slots: &mut [Slot], index: usize) {
        let Some(collection) = self.def.collection else {
            return;
        };
        match self.def.items {
            Items::Borrowed { item, .. } => {
                let current = slots[0].get_mut().and_then(|record| {
                    match record.value.downcast_mut::<Import>() {
                        Some(Import::Item { index: at, .. }) => Some(at),
                        _ => None,
                    }
                });
                match current {
                    Some(at) => *at = index,
                    None => {
                        let import = Import::Item {
                            run: Arc::clone(self.parent) as Arc<dyn Slots>,
                            collection,
                            index,
                            item,
                        };
                        drop_record(self.def.body.graph.name_of(0), slots[0].take());
                        crate::value::fill(&slots[0], Box::new(import));
                    }
                }
            }
            Items::Owned(_) => {
                let value = self
                    .owned
                    .take(index)
                    .map(|value| self.def.body.settle(0, value));
                drop_record(self.def.body.graph.name_of(0), slots[0].take());
                if let Some(value) = value {
                    crate::value::fill(&slots[0], value);
                }
            }
            Items::One => {}
        }
    }

    /// Runs the item's tasks in node order (a topological order); `true` if every one
    /// succeeded.
    fn chain(&self, slots: &mut [Slot], index: usize) -> bool {
        let parent = self.parent;
        let body = &self.def.body;
        let graph = &body.graph;
        let mut all = true;
        // Depth-first on one thread: a task is ready, and starts, when the one before
        // it ends: one clock reading per task, when the report will show every item.
        // Otherwise only a failure reads the clock (a kept item's tasks are reported
        // from the fan-out's start): two readings per task were a fifth of an item.
        let timed = self.every_row;
        let mut ready = if timed { Instant::now() } else { self.started };
        for &Task {
            node,
            call,
            cleanup,
            ref required,
        } in &self.tasks
        {
            let stop = &parent.run.stop;
            let blocked = required.iter().any(|&input| {
                !matches!(
                    slots[input].get().map(|record| record.status),
                    Some(TaskStatus::Succeeded | TaskStatus::Restored)
                )
            });
            if blocked || !stop.may_start(cleanup) {
                let at = parent.since(ready);
                let status = unreached_status(required.iter().map(|&input| slots[input].get()));
                let value = (body.unresolved[node])(None);
                let record = Record::new(value, status, [at, NEVER, NEVER, at], None, Vec::new());
                slots[node] = OnceLock::from(record);
                if let Some(progress) = &parent.run.progress {
                    progress.ended(false);
                }
                all = false;
                continue;
            }
            if let Some(progress) = &parent.run.progress {
                progress.started();
            }
            let started = ready;
            let (signal, token) = parent.run.halt_token(cleanup);
            let result = call_cpu(call, slots, signal, token);
            let times = if timed {
                let finished = Instant::now();
                ready = finished;
                let start = parent.since(started);
                [start, start, start, parent.since(finished)]
            } else if result.is_err() {
                // Untimed: a failure is stamped when it is seen, its duration unknown.
                let at = parent.since(Instant::now());
                [at, at, at, at]
            } else {
                let at = parent.since(started);
                [at, at, at, at]
            };
            let record = match result {
                Ok(value) => Record::new(
                    body.settle(node, value),
                    TaskStatus::Succeeded,
                    times,
                    None,
                    Vec::new(),
                ),
                Err(error) if error.is_stopped_early() => {
                    all = false;
                    let value = (body.unresolved[node])(None);
                    Record::new(value, TaskStatus::Cancelled, times, None, Vec::new())
                }
                Err(error) => {
                    tracing::error!(parent: &parent.span, node = graph.name_of(node), item = index, %error, "task failed");
                    all = false;
                    if parent.run.options.fail_fast && !self.handled {
                        stop.stop();
                    }
                    let (value, status) = failure(body, node, &error);
                    Record::new(value, status, times, Some(error), Vec::new())
                }
            };
            // The buffer is this thread's: no lock to take.
            slots[node] = OnceLock::from(record);
            if let Some(progress) = &parent.run.progress {
                progress.ended(true);
            }
        }
        all
    }
}

/// The body's tasks, each with the inputs it requires among them.
pub(super) fn tasks(def: &FanOutDef) -> Vec<Task<'_>> {
    let body = &def.body;
    let graph = &body.graph;
    (0..graph.len())
        .filter_map(|node| {
            let Call::Task(call) = &body.calls[node] else {
                return None;
            };
            let required = graph
                .node(node)
                .edges()
                .filter(|&(input, tolerant)| !tolerant && graph.kind(input) != Kind::Param)
                .map(|(input, _)| input)
                .collect();
            Some(Task {
                node,
                call: &**call,
                cleanup: graph.info(node).is_cleanup(),
                required,
            })
        })
        .collect()
}
