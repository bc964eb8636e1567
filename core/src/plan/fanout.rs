//! Fan-outs and sub-workflows as the plan holds them: what a `for` iterates
//! ([`Collection`]), how to reach each item and gather the results, and why a fan-out
//! failed ([`ItemsFailed`]).

use std::fmt;
use std::sync::Arc;

use super::chain::ItemsOf;
use super::{Handle, Plan};
use crate::contain::{drop_all, drop_contained};
use crate::task::{Outcome, TaskError};
use crate::value::{ItemOf, Slot, SlotView, Value, ok, take, value};

/// What a workflow `for` can iterate over: a `Vec`, an array, a boxed slice or an
/// `Arc<[T]>`. Items are read in place, by index; nothing is cloned.
#[diagnostic::on_unimplemented(
    message = "cannot fan out over `{Self}`",
    label = "a workflow `for` iterates over a `Vec`, an array, a boxed slice or an `Arc<[T]>`",
    note = "have the task that produces it return a `Vec` of the items"
)]
pub trait Collection: Send + Sync + 'static {
    /// One item.
    type Item: Send + Sync + 'static;
    /// Every item, in order.
    fn items(&self) -> &[Self::Item];
}

/// What a `for` of `workflow!` fans out over: a [`Collection`] (its one impl, which
/// rustc does not recommend). A type that is not one is told so at the collection's
/// token by [`fan_over`], without the list of every collection type; and what
/// `fan_over` gives it has an item type of its own, so the fan-out and its body are
/// not reported again for it.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "cannot fan out over `{Self}`",
    label = "a workflow `for` iterates over a `Vec`, an array, a boxed slice or an `Arc<[T]>`",
    note = "have the task that produces it return a `Vec` of the items"
)]
pub trait FanOver {
    /// One item.
    type Item: Send + Sync + 'static;
    /// The collection `handle` points at, checked.
    fn checked(handle: Handle<Self>) -> Checked<Self::Item>
    where
        Self: Sized;
}

#[diagnostic::do_not_recommend]
impl<C: Collection> FanOver for C {
    type Item = C::Item;
    fn checked(handle: Handle<C>) -> Checked<C::Item> {
        Checked {
            builder: handle.builder,
            node: handle.id,
            items: Items::Borrowed {
                len: collection_len::<C>,
                item: collection_item::<C>,
            },
            items_of: collection_items::<C>,
        }
    }
}

/// A `for`'s collection, checked to be one: where it is and how to reach its `I`s,
/// whatever its type.
#[doc(hidden)]
pub struct Checked<I> {
    pub(super) builder: u32,
    pub(super) node: u32,
    pub(super) items: Items,
    pub(super) items_of: ItemsOf<I>,
}

impl<I> Clone for Checked<I> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<I> Copy for Checked<I> {}

/// The collection of a `for` of `workflow!`, checked at the user's token.
#[doc(hidden)]
pub fn fan_over<C: FanOver<Item = I>, I>(collection: Handle<C>) -> Checked<I> {
    C::checked(collection)
}

impl<T: Send + Sync + 'static> Collection for Vec<T> {
    type Item = T;
    fn items(&self) -> &[T] {
        self
    }
}

impl<T: Send + Sync + 'static> Collection for Box<[T]> {
    type Item = T;
    fn items(&self) -> &[T] {
        self
    }
}

impl<T: Send + Sync + 'static> Collection for Arc<[T]> {
    type Item = T;
    fn items(&self) -> &[T] {
        self
    }
}

impl<T: Send + Sync + 'static, const N: usize> Collection for [T; N] {
    type Item = T;
    fn items(&self) -> &[T] {
        self
    }
}

/// A fan-out: the body's plan, and how to reach the collection's items and gather the
/// results, monomorphised for the collection's and the result's types.
pub(crate) struct FanOutDef {
    pub(crate) body: Arc<Plan>,
    /// The node holding the collection; `None` for a sub-workflow, run once.
    pub(crate) collection: Option<u32>,
    /// The parent nodes the body imports, as its parameters after the item (a
    /// sub-workflow's parameters are all imports).
    pub(crate) imports: Vec<u32>,
    /// How the items are reached.
    pub(crate) items: Items,
    /// Moves every item's result out of its slots into one `Outcome<Vec<T>>`.
    pub(crate) assemble: Assemble,
    /// Drops the fan-out's value: a `for`'s `Vec` item by item ([`drop_gathered`]).
    pub(crate) drop_value: fn(&str, Value),
    /// At most this many items run at once.
    pub(crate) at_once: Option<u32>,
    /// For a body of CPU tasks only, without retries, timeouts or limits: how its items
    /// run fused (see `exec/fused.rs`), unless the fan-out is capped.
    pub(crate) fused: Option<Fused>,
    /// For a fused body of task calls whose inputs are all values, the typed chain
    /// `workflow!` wrote for it (see `plan/chain.rs`).
    pub(crate) typed: Option<super::Typed>,
}

impl FanOutDef {
    /// How the names of item `index`'s tasks are made, given how the fan-out's own
    /// run names its tasks (`prefix`, `suffix`) and the fan-out's name `node`: a `for`'s
    /// item appends its index (`task[3]`), a sub-workflow prefixes its name
    /// (`sub.task`). Reports, failures and distributed runs all name tasks so.
    pub(crate) fn item_naming(
        &self,
        (prefix, suffix): (&str, &str),
        node: &str,
        index: usize,
    ) -> (String, String) {
        match self.collection {
            Some(_) => (prefix.to_owned(), format!("{suffix}[{index}]")),
            None => (format!("{prefix}{node}."), suffix.to_owned()),
        }
    }

    /// How many parameters its body has: the item (if it has a collection), then the
    /// imports.
    pub(crate) fn params(&self) -> usize {
        usize::from(self.collection.is_some()) + self.imports.len()
    }

    /// Whether its items run fused (see `exec/fused.rs`).
    pub(crate) fn runs_fused(&self) -> bool {
        self.fused.is_some() && self.at_once.is_none()
    }
}

/// Runs `count` items of a fused fan-out and gathers their results in input order:
/// `item(state, index)` runs item `index` to its end on the calling rayon thread, with
/// that thread's reusable `state`, and gives the value of the body's output.
pub(crate) type Fused = fn(usize, &FusedItem<'_>) -> Result<Value, TaskError>;

/// One item of a fused fan-out, run to its end (see [`Fused`]).
pub(crate) type FusedItem<'a> =
    dyn Fn(&mut Option<Box<dyn std::any::Any + Send>>, usize) -> Value + Sync + 'a;

/// [`Fused`] for a body whose output is a `T`: the items run on rayon's threads, which
/// write each result straight into its place in the gathered `Vec`.
pub(super) fn fused<T: Send + Sync + 'static>(
    count: usize,
    item: &FusedItem<'_>,
) -> Result<Value, TaskError> {
    use rayon::iter::{IntoParallelIterator, ParallelIterator};
    let outcomes: Vec<Outcome<T>> = (0..count)
        .into_par_iter()
        .map_init(
            || None,
            |state, index| {
                item(state, index)
                    .downcast::<Outcome<T>>()
                    .map_or(Outcome::Skipped, |outcome| *outcome)
            },
        )
        .collect();
    gathered(outcomes)
}

/// How a fan-out reaches its items.
#[derive(Clone, Copy)]
pub(crate) enum Items {
    /// In place, by reference (`for item in &collection`): how many, and item `index`
    /// of the collection in `slots[node]`.
    Borrowed {
        len: fn(SlotView<'_>, u32) -> usize,
        item: ItemOf,
    },
    /// Moved out of the collection (`for item in collection`), which the fan-out takes:
    /// every item, boxed as a succeeded value.
    Owned(fn(SlotView<'_>, u32) -> Vec<Value>),
    /// A sub-workflow: one run, no item.
    One,
}

/// Gathers the items of a fan-out (each item's slots) given the body's output node.
pub(crate) type Assemble = fn(&mut [Box<[Slot]>], usize) -> Result<Value, TaskError>;

/// Drops the value of a fan-out node `node` whose items are `T`s: the `Vec` the
/// library gathered from the items' own values, item by item, so that two items whose
/// `Drop` panics do not abort the process (see `contain::drop_all`).
pub(crate) fn drop_gathered<T: Send + Sync + 'static>(node: &str, value: Value) {
    match value.downcast::<Outcome<Vec<T>>>() {
        Ok(outcome) => match *outcome {
            Outcome::Ok(items) => drop_all(items.into_iter().enumerate(), |_| node),
            other => drop_contained(node, other),
        },
        // Made takeable by its one reader (`Moved`), which did not take it.
        Err(value) => match crate::value::unmoved::<Vec<T>>(value) {
            Ok(items) => drop_all(items.into_iter().flatten().enumerate(), |_| node),
            Err(value) => drop_contained(node, value),
        },
    }
}

/// Every item of the collection in `slots[node]`, taken from it (the fan-out is the
/// collection's one reader).
pub(super) fn owned_items<C>(slots: SlotView<'_>, node: u32) -> Vec<Value>
where
    C: IntoIterator + Send + Sync + 'static,
    C::Item: Send + Sync + 'static,
{
    take::<C>(slots, node).into_iter().map(ok).collect()
}

fn collection_items<C: Collection>(slots: SlotView<'_>, node: u32) -> &[C::Item] {
    value::<C>(slots, node).items()
}

fn collection_len<C: Collection>(slots: SlotView<'_>, node: u32) -> usize {
    value::<C>(slots, node).items().len()
}

fn collection_item<C: Collection>(
    slots: SlotView<'_>,
    node: u32,
    index: usize,
) -> &(dyn std::any::Any + Send + Sync) {
    &value::<C>(slots, node).items()[index]
}

/// Gathers each item's tail into a `Vec`, in input order; an error names how many
/// items did not succeed (each item's own failure is in the run's report and error).
pub(super) fn assemble<T: Send + Sync + 'static>(
    items: &mut [Box<[Slot]>],
    tail: usize,
) -> Result<Value, TaskError> {
    let outcomes: Vec<Outcome<T>> = items
        .iter_mut()
        .map(|slots| take_tail(slots, tail).unwrap_or(Outcome::Skipped))
        .collect();
    gathered(outcomes)
}

/// What became of an item's tail (see [`crate::value::take_outcome`]); `None` if the
/// item kept no slots (a fused item that succeeded gives its value straight away).
fn take_tail<T: 'static>(slots: &mut [Slot], tail: usize) -> Option<Outcome<T>> {
    (tail < slots.len())
        .then(|| crate::value::take_outcome(slots, tail))
        .flatten()
}

/// The node whose value an item's tail holds (see [`crate::value::aliased`]); the tail
/// itself if the item kept no slots.
fn aliased_tail(slots: &[Slot], tail: usize) -> usize {
    if tail < slots.len() {
        crate::value::aliased(slots, tail)
    } else {
        tail
    }
}

/// The fan-out's value: every item's, if all succeeded; else what became of each.
pub(super) fn gathered<T: Send + Sync + 'static>(
    outcomes: Vec<Outcome<T>>,
) -> Result<Value, TaskError> {
    if outcomes.iter().all(|outcome| outcome.value().is_some()) {
        let values = outcomes.into_iter().filter_map(|outcome| match outcome {
            Outcome::Ok(value) => Some(value),
            _ => None,
        });
        return Ok(ok::<Vec<T>>(values.collect()));
    }
    Err(TaskError::items(ItemsFailed { outcomes }))
}

/// The output of a sub-workflow's single run.
pub(super) fn assemble_one<T: Send + Sync + 'static>(
    items: &mut [Box<[Slot]>],
    tail: usize,
) -> Result<Value, TaskError> {
    let outcome = items.first_mut().and_then(|slots| take_tail(slots, tail));
    match outcome {
        Some(Outcome::Ok(value)) => Ok(ok::<T>(value)),
        Some(Outcome::Failed(error)) => Err(error),
        // An `if` or `match` whose arm gave one of the workflow's parameters (their
        // slots, imports of the caller's values, are emptied at the run's end): they are
        // the caller's, shared, and cannot be given back as a value of its own.
        None if items.first().is_some_and(|slots| {
            let target = aliased_tail(slots, tail);
            target != tail && slots.get(target).is_some_and(|slot| slot.get().is_none())
        }) =>
        {
            Err(TaskError::msg(
                "the workflow's output is one of its parameters (an arm's value), which a \
                 workflow run as a node shares with its caller and cannot give back",
            ))
        }
        _ => Err(TaskError::msg("the workflow's output was not produced")),
    }
}

/// Why a fan-out failed: what became of each item, in input order. A task taking the
/// fan-out's result as `&Outcome<Vec<T>>` reads it with [`Outcome::items`].
pub struct ItemsFailed<T> {
    outcomes: Vec<Outcome<T>>,
}

impl<T> ItemsFailed<T> {
    /// Each item's outcome, in input order.
    pub fn outcomes(&self) -> &[Outcome<T>] {
        &self.outcomes
    }
}

impl<T> Drop for ItemsFailed<T> {
    /// The items' values are the user's, and this error is dropped wherever the library
    /// lets go of it: a panic in a value's `Drop` is contained there, as for any value
    /// (see `contain::drop_all`; while the thread unwinds they are leaked instead).
    fn drop(&mut self) {
        let outcomes = std::mem::take(&mut self.outcomes).into_iter().enumerate();
        drop_all(outcomes, |_| "an item of a failed fan-out");
    }
}

impl<T> fmt::Display for ItemsFailed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failed = self.outcomes.iter().filter(|o| o.value().is_none()).count();
        write!(
            f,
            "{failed} of {} items did not succeed",
            self.outcomes.len()
        )
    }
}

impl<T> fmt::Debug for ItemsFailed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ItemsFailed({self})")
    }
}

impl<T> std::error::Error for ItemsFailed<T> {}

impl<T: Send + Sync + 'static> Outcome<Vec<T>> {
    /// What became of each item of a fan-out's result, in input order: every item's
    /// value if the fan-out succeeded; if it failed, each item's value or failure.
    /// Empty if the fan-out never ran.
    pub fn items(&self) -> Vec<Outcome<&T>> {
        match self {
            Outcome::Ok(values) => values.iter().map(Outcome::Ok).collect(),
            Outcome::Failed(error) => error
                .downcast_ref::<ItemsFailed<T>>()
                .map(|failed| failed.outcomes.iter().map(Outcome::as_ref).collect())
                .unwrap_or_default(),
            Outcome::Skipped => Vec::new(),
        }
    }
}
