//! The bottom layer: type-erased values, the slot each node's [`Record`] is written
//! to, imports of an outer run's values, and typed reads of them.
//!
//! A node's value is an `Outcome<T>` in a `Box<dyn Any>`; a node reads its inputs in
//! place, by reference, with one downcast each.

use std::any::Any;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use quanta::Instant;

use crate::report::TaskStatus;
use crate::task::{Outcome, TaskError};

/// A node's value: an `Outcome<T>`, boxed; or an [`Import`] in a nested run's
/// parameters.
pub(crate) type Value = Box<dyn Any + Send + Sync>;

/// What one node did in one run; written once, when it is resolved.
///
/// Kept small (64 bytes): a run holds one per node.
pub struct Record {
    /// An `Outcome<T>`, boxed.
    pub(crate) value: Value,
    /// Nanoseconds from the run's start: ready, first start, last start, end; a start
    /// that did not happen is [`NEVER`].
    pub(crate) times: [u64; 4],
    /// Only for a task that failed or was retried.
    pub(crate) history: Option<Box<History>>,
    pub(crate) status: TaskStatus,
}

pub(crate) const NEVER: u64 = u64::MAX;

pub(crate) struct History {
    /// The last attempt's error.
    pub(crate) error: Option<TaskError>,
    /// The attempts before the last one, each of which failed.
    pub(crate) retried: Vec<FailedAttempt>,
    /// For a fan-out, its items' runs.
    pub(crate) items: ItemRuns,
    /// For a cached task whose result was loaded, the run that computed it.
    pub(crate) cached_from: Option<Box<str>>,
}

impl Record {
    pub(crate) fn new(
        value: Value,
        status: TaskStatus,
        times: [u64; 4],
        error: Option<TaskError>,
        retried: Vec<FailedAttempt>,
    ) -> Self {
        Self::with_items(value, status, times, error, retried, ItemRuns::default())
    }

    /// The record of a success at the first attempt: no history.
    pub(crate) fn succeeded(value: Value, times: [u64; 4]) -> Self {
        Self {
            value,
            times,
            history: None,
            status: TaskStatus::Succeeded,
        }
    }

    pub(crate) fn with_items(
        value: Value,
        status: TaskStatus,
        times: [u64; 4],
        error: Option<TaskError>,
        retried: Vec<FailedAttempt>,
        items: ItemRuns,
    ) -> Self {
        let history = (error.is_some() || !retried.is_empty() || items.count > 0).then(|| {
            Box::new(History {
                error,
                retried,
                items,
                cached_from: None,
            })
        });
        Self {
            value,
            times,
            history,
            status,
        }
    }

    /// Marks a cached task's result as loaded, computed by run `run`.
    pub(crate) fn set_cached_from(&mut self, run: Box<str>) {
        let history = self.history.get_or_insert_with(|| {
            Box::new(History {
                error: None,
                retried: Vec::new(),
                items: ItemRuns::default(),
                cached_from: None,
            })
        });
        history.cached_from = Some(run);
    }

    /// For a cached task whose result was loaded, the run that computed it.
    pub(crate) fn cached_from(&self) -> Option<&str> {
        self.history.as_ref()?.cached_from.as_deref()
    }

    pub(crate) fn error(&self) -> Option<&TaskError> {
        self.history.as_ref()?.error.as_ref()
    }

    pub(crate) fn retried(&self) -> &[FailedAttempt] {
        self.history.as_ref().map_or(&[], |h| &h.retried)
    }

    /// Each item's slots, for a fan-out (an item a fused fan-out did not keep has
    /// none: an empty entry).
    pub(crate) fn items(&self) -> &[Box<[Slot]>] {
        self.history.as_ref().map_or(&[], |h| &h.items.rows)
    }

    /// For a fan-out that had items: how many, how they ran, which it kept.
    pub(crate) fn item_runs(&self) -> Option<&ItemRuns> {
        self.history
            .as_ref()
            .map(|h| &h.items)
            .filter(|i| i.count > 0)
    }

    pub(crate) fn time(&self, which: usize) -> Option<Duration> {
        (self.times[which] != NEVER).then(|| Duration::from_nanos(self.times[which]))
    }

    /// From the first attempt's start to the end; `None` if it never started.
    pub(crate) fn duration(&self) -> Option<Duration> {
        Some(self.time(END)?.saturating_sub(self.time(FIRST_START)?))
    }
}

/// What a fan-out's record keeps of its items.
#[derive(Default)]
pub(crate) struct ItemRuns {
    /// Whether the items ran fused.
    pub(crate) fused: bool,
    /// Each item's slots, in input order. A fused fan-out keeps only the items that did
    /// not succeed (the others' entries are empty), or none when all succeeded, unless
    /// the run asked for every row.
    pub(crate) rows: Vec<Box<[Slot]>>,
    /// How many items there were.
    pub(crate) count: usize,
}

impl From<Vec<Box<[Slot]>>> for ItemRuns {
    fn from(rows: Vec<Box<[Slot]>>) -> Self {
        Self {
            fused: false,
            count: rows.len(),
            rows,
        }
    }
}

pub(crate) const READY: usize = 0;
pub(crate) const FIRST_START: usize = 1;
pub(crate) const LAST_START: usize = 2;
pub(crate) const END: usize = 3;

pub(crate) struct FailedAttempt {
    pub(crate) started: Instant,
    pub(crate) finished: Instant,
    pub(crate) error: TaskError,
}

/// A node's place in a run: empty until the node is resolved.
pub type Slot = OnceLock<Record>;

/// The slots a node's call reads, by node: every node's of a run (one process), or a
/// distributed task's own: its run's parameters by index, then the few nodes it reads,
/// sorted by node (a task of a big workflow must not make a slot for every node up to
/// its last input).
#[derive(Clone, Copy)]
pub struct SlotView<'a> {
    dense: &'a [Slot],
    sparse: &'a [(u32, Slot)],
}

impl<'a> SlotView<'a> {
    /// Every node's slot, by index.
    pub(crate) fn dense(slots: &'a [Slot]) -> Self {
        Self {
            dense: slots,
            sparse: &[],
        }
    }

    /// Nodes `0..dense.len()` by index, and the nodes of `sparse` (sorted, past those).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn sparse(dense: &'a [Slot], sparse: &'a [(u32, Slot)]) -> Self {
        Self { dense, sparse }
    }

    /// Node `node`'s slot, if the view holds it.
    #[inline]
    pub(crate) fn get(self, node: usize) -> Option<&'a Slot> {
        match self.dense.get(node) {
            Some(slot) => Some(slot),
            None => self.find(node),
        }
    }

    /// Node `node`'s record, if the view holds the node and it is resolved.
    #[inline]
    pub(crate) fn record(self, node: usize) -> Option<&'a Record> {
        self.get(node).and_then(OnceLock::get)
    }

    #[cold]
    #[inline(never)]
    fn find(self, node: usize) -> Option<&'a Slot> {
        let found = (self.sparse).binary_search_by_key(&node, |&(n, _)| n as usize);
        found.ok().map(|i| &self.sparse[i].1)
    }
}

impl<'a> From<&'a [Slot]> for SlotView<'a> {
    fn from(slots: &'a [Slot]) -> Self {
        Self::dense(slots)
    }
}

pub(crate) fn fill(slot: &Slot, value: Value) {
    let _ = slot.set(Record::new(
        value,
        TaskStatus::Succeeded,
        [0, NEVER, NEVER, 0],
        None,
        Vec::new(),
    ));
}

/// A succeeded node's value.
pub(crate) fn ok<T: Send + Sync + 'static>(value: T) -> Value {
    Box::new(Outcome::Ok(value))
}

/// The value of a node that did not succeed: `Outcome::Failed` or `Outcome::Skipped`.
pub(crate) fn unresolved<T: Send + Sync + 'static>(error: Option<TaskError>) -> Value {
    Box::new(error.map_or(Outcome::<T>::Skipped, Outcome::Failed))
}

fn resolved(slots: SlotView<'_>, id: u32) -> &Value {
    &slots
        .record(id as usize)
        .expect("aqueduct: a node ran before its input was resolved")
        .value
}

/// The outcome of node `id`, following an import of a fan-out's body to its parent.
pub(crate) fn outcome<T: 'static>(slots: SlotView<'_>, id: u32) -> &Outcome<T> {
    let value = resolved(slots, id);
    match value.downcast_ref() {
        Some(outcome) => outcome,
        None => imported_outcome(slots, value),
    }
}

/// The value of node `id`, following an import of a fan-out's body to its parent or
/// to its item.
pub(crate) fn value<T: 'static>(slots: SlotView<'_>, id: u32) -> &T {
    let value = resolved(slots, id);
    match value.downcast_ref::<Outcome<T>>() {
        Some(outcome) => outcome
            .value()
            .expect("aqueduct: a node ran although an input it requires did not succeed"),
        None => imported_value(slots, value),
    }
}

/// A run whose slots a nested run imports from: the executor's run state.
pub(crate) trait Slots: Send + Sync {
    /// Every node's slot.
    fn slots(&self) -> SlotView<'_>;
}

/// Reads item `index` of the collection held by a node (maybe an import of an outer
/// run, for a loop over another loop's item).
pub(crate) type ItemOf = for<'a> fn(SlotView<'a>, u32, usize) -> &'a (dyn Any + Send + Sync);

/// What a parameter of a fan-out's body holds: a way to its value in the parent run,
/// which it keeps alive; or what the value of an `if` or `match` holds: the node of
/// the arm it took, in the same run. Reading it costs one failed downcast, and only
/// there.
pub(crate) enum Import {
    /// Node `0` of the same run: the value of the arm a branch took, shared in place.
    Local(u32),
    /// A node of the parent run.
    Node { run: Arc<dyn Slots>, node: u32 },
    /// Item `index` of the collection in the parent run's node `collection`.
    Item {
        run: Arc<dyn Slots>,
        collection: u32,
        index: usize,
        item: ItemOf,
    },
}

// Out of line: the common read is a value of this run, not an import or an alias.
#[cold]
#[inline(never)]
fn imported_value<'s, T: 'static>(slots: SlotView<'s>, value: &'s Value) -> &'s T {
    match value.downcast_ref::<Import>() {
        Some(Import::Local(node)) => self::value(slots, *node),
        Some(Import::Node { run, node }) => self::value(run.slots(), *node),
        Some(Import::Item {
            run,
            collection,
            index,
            item,
        }) => item(run.slots(), *collection, *index)
            .downcast_ref()
            .expect("aqueduct: an item has its collection's item type"),
        None if value.is::<Moved<T>>() => panic!("{BORROWED_MOVED}"),
        None => panic!("aqueduct: a node's value has another type than its handle's"),
    }
}

/// A borrow of a value handed to one reader by value (`Builder::moved`).
const BORROWED_MOVED: &str = "aqueduct: this input is moved into another task (`Builder::moved`), \
                              so it has no other reader; read it by reference everywhere, or \
                              move it only into one task";

#[cold]
#[inline(never)]
fn imported_outcome<'s, T: 'static>(slots: SlotView<'s>, value: &'s Value) -> &'s Outcome<T> {
    match value.downcast_ref::<Import>() {
        Some(Import::Local(node)) => outcome(slots, *node),
        Some(Import::Node { run, node }) => outcome(run.slots(), *node),
        None if value.is::<Moved<T>>() => panic!("{BORROWED_MOVED}"),
        _ => panic!("aqueduct: the item of a `for` is never read as an outcome"),
    }
}

/// The value of a node whose one reader takes it (a by-value input): behind a lock, so
/// the reader can move it out of the run's shared slots.
pub(crate) struct Moved<T> {
    cell: Mutex<Moving<T>>,
}

struct Moving<T> {
    value: Option<T>,
    /// How many times the reader has read it (one per attempt).
    reads: u32,
}

/// The value a [`Moved`] `T` still holds (its reader did not take it), or `value` back
/// if it is no `Moved<T>`.
pub(crate) fn unmoved<T: 'static>(value: Value) -> Result<Option<T>, Value> {
    let moved = value.downcast::<Moved<T>>()?;
    let moving = moved
        .cell
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    Ok(moving.value)
}

/// A succeeded node's value made takeable by its one reader; any other outcome (the
/// reader does not run then) as it is.
pub(crate) fn movable<T: Send + Sync + 'static>(value: Value) -> Value {
    match value.downcast::<Outcome<T>>() {
        Ok(outcome) => match *outcome {
            Outcome::Ok(value) => Box::new(Moved {
                cell: Mutex::new(Moving {
                    value: Some(value),
                    reads: 0,
                }),
            }),
            other => Box::new(other),
        },
        Err(value) => value,
    }
}

fn moved<T: 'static>(slots: SlotView<'_>, id: u32) -> std::sync::MutexGuard<'_, Moving<T>> {
    resolved(slots, aliased(slots, id as usize) as u32)
        .downcast_ref::<Moved<T>>()
        .expect("aqueduct: a by-value input was not marked moved when the graph was built")
        .cell
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Runs `read` on the value of node `id` that its one reader will take, before it does
/// (a cached task's key); `None` if it is gone.
pub(crate) fn peek_slot<T: 'static, R>(
    slots: SlotView<'_>,
    id: u32,
    read: impl FnOnce(&T) -> R,
) -> Option<R> {
    peek_moved(resolved(slots, aliased(slots, id as usize) as u32), read)
}

/// The node whose value node `node` holds: itself, or for the value of an `if` or
/// `match`, the node of the arm it took (following nested branches).
pub(crate) fn aliased<'a>(slots: impl Into<SlotView<'a>>, mut node: usize) -> usize {
    let slots = slots.into();
    while let Some(Import::Local(next)) = slots
        .record(node)
        .and_then(|record| record.value.downcast_ref::<Import>())
    {
        node = *next as usize;
    }
    node
}

/// The arm a succeeded decision node picked.
pub(crate) fn arm_of(record: &Record) -> Option<u32> {
    arm_in(&record.value)
}

/// The arm a decision's value (`Outcome<u32>`) says it picked, if it succeeded.
pub(crate) fn arm_in(value: &Value) -> Option<u32> {
    value
        .downcast_ref::<Outcome<u32>>()
        .and_then(Outcome::value)
        .copied()
}

/// The value `value` stands for: for the value of an `if` or `match`, which shares the
/// taken arm's in place, that arm's value in its slot (if it has one); else itself.
pub(crate) fn shared<'v>(slots: SlotView<'v>, value: &'v Value) -> Option<&'v Value> {
    match value.downcast_ref::<Import>() {
        Some(Import::Local(tail)) => {
            let tail = aliased(slots, *tail as usize);
            slots.record(tail).map(|record| &record.value)
        }
        _ => Some(value),
    }
}

/// Takes what became of node `node` out of `slots` (a run that has ended), following
/// the value of an `if` or `match` to the arm it took; its record stays, without a
/// value. `None` if the node has no record or its value is not an `Outcome<T>` (an
/// import of an outer run's value, which is not this run's to give).
pub(crate) fn take_outcome<T: 'static>(slots: &mut [Slot], node: usize) -> Option<Outcome<T>> {
    let node = aliased(&*slots, node);
    let record = slots.get_mut(node)?.get_mut()?;
    let value = std::mem::replace(&mut record.value, Box::new(()));
    value.downcast::<Outcome<T>>().ok().map(|outcome| *outcome)
}

/// The value of a node that is another's: `Import::Local(node)`.
pub(crate) fn alias(node: usize) -> Value {
    Box::new(Import::Local(node as u32))
}

/// Runs `read` on the value a moved node still holds, if it does (the checkpoint of a
/// value that a branch took and whose reader will take it).
pub(crate) fn peek_moved<T: 'static, R>(value: &Value, read: impl FnOnce(&T) -> R) -> Option<R> {
    let moved = value.downcast_ref::<Moved<T>>()?;
    let moving = moved.cell.lock().unwrap_or_else(PoisonError::into_inner);
    moving.value.as_ref().map(read)
}

/// Takes the value of node `id` for its one reader.
///
/// # Panics
/// If it was taken already: the graph gave the value two readers by value, which
/// `workflow!` refuses at compile time.
pub(crate) fn take<T: 'static>(slots: SlotView<'_>, id: u32) -> T {
    let mut moving = moved::<T>(slots, id);
    moving.reads += 1;
    moving
        .value
        .take()
        .expect("aqueduct: a value moved into a task was read again")
}

/// The value of node `id` for attempt `reads` of its one reader, which makes at most
/// `attempts`: a clone, but for the last attempt, which takes it.
pub(crate) fn take_or_clone<T: Clone + 'static>(slots: SlotView<'_>, id: u32, attempts: u32) -> T {
    let mut moving = moved::<T>(slots, id);
    moving.reads += 1;
    if moving.reads >= attempts {
        moving.value.take()
    } else {
        moving.value.clone()
    }
    .expect("aqueduct: a value moved into a task was read after its last attempt")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(value: u64) -> Slot {
        let slot = Slot::new();
        fill(&slot, ok(value));
        slot
    }

    fn read(view: SlotView<'_>, node: usize) -> Option<u64> {
        let record = view.record(node)?;
        record
            .value
            .downcast_ref::<Outcome<u64>>()?
            .value()
            .copied()
    }

    #[test]
    fn a_sparse_view_reads_its_parameters_by_index_and_its_inputs_by_node() {
        let params = [filled(10), filled(11)];
        let inputs = [(5, filled(50)), (9_000, filled(9_000)), (70_000, filled(7))];
        let view = SlotView::sparse(&params, &inputs);
        assert_eq!(read(view, 0), Some(10));
        assert_eq!(read(view, 1), Some(11));
        assert_eq!(read(view, 5), Some(50));
        assert_eq!(read(view, 9_000), Some(9_000));
        assert_eq!(read(view, 70_000), Some(7));
        // A node it does not hold reads as unresolved, never as another node's value.
        for missing in [2, 4, 6, 8_999, 9_001, 70_001] {
            assert_eq!(read(view, missing), None, "node {missing}");
            assert!(view.get(missing).is_none(), "node {missing} has no slot");
        }
    }

    #[test]
    fn a_dense_view_reads_every_node_by_index() {
        let slots = [filled(1), Slot::new(), filled(3)];
        let view = SlotView::dense(&slots);
        assert_eq!(
            (read(view, 0), read(view, 1), read(view, 2), read(view, 3)),
            (Some(1), None, Some(3), None)
        );
    }
}
