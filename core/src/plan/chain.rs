//! Typed chains: a fused fan-out's body written out as plain Rust by `workflow!`.
//!
//! A fused fan-out (see `exec/fused.rs`) runs each item's tasks one after the other
//! on one rayon thread. It still calls them through the plan's type-erased closures,
//! which read their inputs from slots and box their outputs. For a body of task calls
//! only, `workflow!` also writes the body as one closure ([`Builder::chain`]): each
//! binding is an `Option` of its task's output (`None` once it did not succeed), each
//! call reads its inputs from the bindings before it. Per item there is then no slot,
//! no box and no record; [`Chain`] records only what did not succeed, and the executor
//! turns that into the item's rows of the report.

use quanta::Instant;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Handle;
use super::fanout::gathered;
use crate::contain::drop_contained;
use crate::task::{Outcome, TaskError};
use crate::value::{SlotView, Value, value};

/// A body as `workflow!` writes it out: item `&I` and the imports in, the tail's
/// output out (`None` if it did not succeed).
pub(crate) type TypedBody<I, T> =
    Arc<dyn for<'c, 'r> Fn(&mut Chain<'c>, &'r I, &Imports<'r>) -> Option<T> + Send + Sync>;

/// A collection's items, given the parent's slots and the collection's node.
pub(crate) type ItemsOf<I> = for<'s> fn(SlotView<'s>, u32) -> &'s [I];

/// Runs every item of a fused fan-out through its typed body, given the parent's
/// slots, the collection's node and its length when the fan-out counted it, the
/// imported nodes and the executor's side of it; gives the gathered results (see
/// [`super::fanout::assemble`]).
pub(crate) type Typed = Box<
    dyn Fn(SlotView<'_>, (u32, usize), &[u32], &dyn ChainHost) -> Result<Value, TaskError>
        + Send
        + Sync,
>;

/// What happened to a task of an item that did not succeed.
pub(crate) enum Event {
    /// It failed (its error, or its panic), when it was seen.
    Failed(TaskError, Instant),
    /// It returned after [`crate::task::cancelled`] told it to stop.
    Cancelled(Instant),
    /// It did not start: an input did not succeed, or the run stopped.
    Unreached,
}

/// The executor's side of a typed fan-out.
pub(crate) trait ChainHost: Sync {
    /// Whether the run stopped (a chain's tasks are never cleanup tasks).
    fn stopped(&self) -> bool;
    /// What [`crate::task::cancelled`] reads in the items' tasks.
    fn signal(&self) -> (u64, &CancellationToken);
    /// Whether the run shows progress; then [`started`](Self::started) and
    /// [`ended`](Self::ended) are called for every task.
    fn shows_progress(&self) -> bool;
    fn started(&self);
    fn ended(&self, ran: bool);
    /// Task `node` of item `index` failed: it is logged, and a fail-fast run stops.
    fn failed(&self, node: u32, index: usize, error: &TaskError);
    /// Keeps the rows of item `index`, whose tasks in `events` did not succeed (the
    /// others did); gives the value of its tail, an unresolved outcome.
    fn keep(&self, index: usize, events: &[(u32, Event)]) -> Value;
    /// The item's code panicked outside its tasks and its values' `Drop`s: the run
    /// stops for good.
    fn fault(&self, panic: &(dyn std::any::Any + Send));
}

/// One item's run through a typed body: what `workflow!`'s closure calls for each task.
#[doc(hidden)]
pub struct Chain<'c> {
    host: &'c dyn ChainHost,
    /// The tasks of this item that did not succeed, in order.
    events: &'c mut Vec<(u32, Event)>,
    index: usize,
    progress: bool,
}

impl Chain<'_> {
    /// Runs task `node` of the item, unless the run stopped: `call` calls the task
    /// (`None` for an async task, which a typed body never holds).
    #[inline]
    pub fn call<T>(
        &mut self,
        node: Handle<T>,
        call: impl FnOnce() -> Option<Result<T, TaskError>>,
    ) -> Option<T> {
        let node = node.id;
        if self.host.stopped() {
            return self.skip_at(node);
        }
        if self.progress {
            self.host.started();
        }
        crate::task::clear_told();
        let result = catch_unwind(AssertUnwindSafe(call));
        if self.ran() && crate::task::was_told() {
            // It may have returned a partial value because it was told to stop.
            drop_contained(std::any::type_name::<T>(), result);
            self.events.push((node, Event::Cancelled(Instant::now())));
            return None;
        }
        let error = match result {
            Ok(Some(Ok(value))) => return Some(value),
            Ok(Some(Err(error))) => error,
            Ok(None) => TaskError::permanent(TaskError::msg(
                "aqueduct: an async task cannot run in a fused fan-out",
            )),
            Err(panic) => TaskError::panicked(&*panic),
        };
        self.host.failed(node, self.index, &error);
        self.events
            .push((node, Event::Failed(error, Instant::now())));
        None
    }

    /// Task `node` of the item does not start: an input it requires did not succeed.
    #[inline]
    pub fn skip<T>(&mut self, node: Handle<T>) -> Option<T> {
        self.skip_at(node.id)
    }

    /// A task that ran ended: counts it for the progress bar; always `true`.
    fn ran(&self) -> bool {
        if self.progress {
            self.host.ended(true);
        }
        true
    }

    fn skip_at<T>(&mut self, node: u32) -> Option<T> {
        self.events.push((node, Event::Unreached));
        if self.progress {
            self.host.ended(false);
        }
        None
    }
}

/// A binding of a typed chain: its task's output, if it succeeded. A panic in its
/// value's `Drop` is contained (see [`drop_contained`]), as at the end of a scheduled
/// item: the item keeps its output.
#[doc(hidden)]
pub struct ChainValue<T>(pub Option<T>);

impl<T> Drop for ChainValue<T> {
    fn drop(&mut self) {
        if let Some(value) = self.0.take() {
            drop_contained(std::any::type_name::<T>(), value);
        }
    }
}

/// The values a typed body imports from the run around its fan-out.
#[doc(hidden)]
pub struct Imports<'r> {
    slots: SlotView<'r>,
    /// Per body parameter after the item, the parent's node.
    nodes: &'r [u32],
}

impl<'r> Imports<'r> {
    /// The value of the body's parameter `param` (an import: the item is the first).
    pub fn get<T: 'static>(&self, param: Handle<T>) -> Option<&'r T> {
        let node = self.nodes.get((param.id as usize).checked_sub(1)?)?;
        Some(value::<T>(self.slots, *node))
    }
}

/// [`Typed`] for a fan-out over a collection of `I`s (reached with `items_of`) whose
/// body gives a `T`.
pub(super) fn typed<I, T>(items_of: ItemsOf<I>, body: TypedBody<I, T>) -> Typed
where
    I: Send + Sync + 'static,
    T: Send + Sync + 'static,
{
    Box::new(move |slots, (collection, count), imports, host| {
        use rayon::iter::{IndexedParallelIterator, IntoParallelRefIterator, ParallelIterator};
        // `Collection` is the user's: the items must be those the fan-out counted.
        let items = items_of(slots, collection);
        if items.len() != count {
            return Err(TaskError::permanent(TaskError::msg(format!(
                "the collection had {count} items, then {}: `Collection::items` must give \
                 the same items every time",
                items.len()
            ))));
        }
        let imports = Imports {
            slots,
            nodes: imports,
        };
        let (signal, token) = host.signal();
        let progress = host.shows_progress();
        let outcomes: Vec<Outcome<T>> = items
            .par_iter()
            .enumerate()
            .map_init(
                || (crate::task::CancelScope::enter(signal, token), Vec::new()),
                |(_, events), (index, item)| {
                    // After a stop, an item ends before it starts, with no row.
                    if host.stopped() {
                        return Outcome::Skipped;
                    }
                    let mut chain = Chain {
                        host,
                        events,
                        index,
                        progress,
                    };
                    // The body's own code is the user's only in values' `Drop`, which
                    // its bindings contain ([`ChainValue`]): a panic that still gets
                    // here is the library's, and faults the run.
                    let value =
                        match catch_unwind(AssertUnwindSafe(|| body(&mut chain, item, &imports))) {
                            Ok(value) => value,
                            Err(panic) => {
                                host.fault(&*panic);
                                events.clear();
                                return Outcome::Skipped;
                            }
                        };
                    if events.is_empty() {
                        return value.map_or(Outcome::Skipped, Outcome::Ok);
                    }
                    let tail = host.keep(index, events);
                    events.clear();
                    match value {
                        Some(value) => Outcome::Ok(value),
                        None => tail
                            .downcast::<Outcome<T>>()
                            .map_or(Outcome::Skipped, |outcome| *outcome),
                    }
                },
            )
            .collect();
        gathered(outcomes)
    })
}
