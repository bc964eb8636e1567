//! A workflow a worker serves, and the slots its tasks' calls read: the run's
//! parameters and the task's inputs decoded, in arrays reused from one attempt to the
//! next.

use std::sync::{Arc, Mutex};

use super::items::{self, Parents};
use super::protocol::Input;
use crate::plan::{Call, Params, Plan};
use crate::task::TaskError;
use crate::value::{Slot, Value, fill};

/// A workflow a worker serves: its plan, its fingerprint, and how its parameters are
/// decoded into a run's slots.
pub(crate) struct Served {
    pub(super) plan: Arc<Plan>,
    pub(super) fingerprint: String,
    params: Box<ParamsFn>,
    /// Slot arrays of attempts that ended, emptied: an attempt's array has a slot per
    /// node up to the last it reads, too many to make for each task of a big workflow.
    spare: Mutex<Spare>,
    /// What the items of its runs' fan-outs read of their runs, decoded once.
    pub(super) parents: Parents,
}

/// Emptied slot arrays, and how many slots they hold together (kept, not summed on
/// every attempt's end).
#[derive(Default)]
struct Spare {
    arrays: Vec<Box<[Slot]>>,
    slots: usize,
}

/// Decodes a run's parameters into its slots.
type ParamsFn = dyn Fn(&[u8], &[Slot]) -> Result<(), String> + Send + Sync;

/// How many slots a served workflow keeps in emptied arrays (about 72 bytes each).
const SPARE_SLOTS: usize = 1 << 20;

/// How many emptied arrays it keeps (an attempt scans them for one long enough).
const SPARE_ARRAYS: usize = 512;

impl Served {
    pub(super) fn new<P>(plan: Arc<Plan>, fingerprint: String) -> Self
    where
        P: Params + serde::de::DeserializeOwned,
    {
        Self {
            plan,
            fingerprint,
            params: Box::new(|bytes, slots| {
                let params: P = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
                params.store(slots);
                Ok(())
            }),
            spare: Mutex::default(),
            parents: Parents::default(),
        }
    }

    /// [`new`](Self::new) for a workflow with resources: every task's slots get a clone
    /// of `resources` after the run's parameters.
    pub(super) fn with_resources<P, R>(plan: Arc<Plan>, fingerprint: String, resources: R) -> Self
    where
        P: Params + serde::de::DeserializeOwned,
        R: Params + Clone + Sync,
    {
        Self {
            params: Box::new(move |bytes, slots| {
                let params: P = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
                params.store(slots);
                let rest = slots.get(P::LEN..).unwrap_or_default();
                if rest.len() < R::LEN {
                    return Err("the task's slots hold no room for the resources".into());
                }
                resources.clone().store(rest);
                Ok(())
            }),
            ..Self::new::<P>(plan, fingerprint)
        }
    }

    /// The run's parameters (`params`, encoded) in `slots`, made takeable where their
    /// reader takes them.
    pub(super) fn fill_params(&self, params: &[u8], slots: &mut [Slot]) -> Result<(), String> {
        (self.params)(params, slots)
            .map_err(|e| format!("cannot read the run's parameters: {e}"))?;
        self.plan.settle_params(slots);
        Ok(())
    }

    /// Slots for a call of `node` of `plan` (this workflow's, or a fan-out's body):
    /// its parameters filled by `params` (the first `count`), and its `inputs`, ready
    /// for the call. As many as the call reads (its inputs come before it).
    pub(super) fn slots(
        self: &Arc<Self>,
        plan: &Plan,
        node: usize,
        (count, params): (usize, impl FnOnce(&mut [Slot]) -> Result<(), String>),
        inputs: Vec<(usize, Input)>,
    ) -> Result<Slots, String> {
        let needed = reach(plan, node).max(count);
        let spare = {
            let mut spare = lock(&self.spare);
            let found = spare.arrays.iter().position(|slots| slots.len() >= needed);
            found.map(|i| {
                let slots = spare.arrays.swap_remove(i);
                spare.slots -= slots.len();
                slots
            })
        };
        let mut slots = Slots {
            slots: spare.unwrap_or_else(|| (0..needed).map(|_| Slot::new()).collect()),
            filled: (0..count)
                .chain(inputs.iter().map(|&(node, _)| node))
                .collect(),
            served: Arc::clone(self),
        };
        params(&mut slots.slots)?;
        for (node, input) in inputs {
            fill(&slots.slots[node], decode(plan, node, input)?);
        }
        Ok(slots)
    }
}

/// How many slots a call of `node` of `plan` reads: up to its last input.
pub(super) fn reach(plan: &Plan, node: usize) -> usize {
    plan.graph
        .node(node)
        .inputs()
        .map(|n| n + 1)
        .max()
        .unwrap_or(0)
}

/// Node `node`'s end as a value of `plan`'s: its output decoded, or its failure.
pub(super) fn decode(plan: &Plan, node: usize, input: Input) -> Result<Value, String> {
    Ok(match input {
        Input::Done(codec, data) => {
            let format = crate::plan::readable(&codec, crate::plan::SCHEMA)
                .map_err(|e| format!("input `{}`: {e}", plan.graph.name_of(node)))?;
            let codec = plan.codecs[node].ok_or("an input is not checkpointed")?;
            let value = (codec.decode)(&data, format)
                .map_err(|e| format!("cannot read input `{}`: {e}", plan.graph.name_of(node)))?;
            plan.settle(node, value)
        }
        Input::Failed(error) => (plan.unresolved[node])(Some(TaskError::msg(error))),
        Input::FailedItems(error, tails) => {
            let failed = match &plan.calls[node] {
                Call::FanOut(def) => match items::assemble(def, tails)? {
                    Err(failed) => failed,
                    Ok(_) => TaskError::msg(error),
                },
                _ => TaskError::msg(error),
            };
            (plan.unresolved[node])(Some(failed))
        }
        Input::Skipped | Input::NotTaken => (plan.unresolved[node])(None),
    })
}

/// An attempt's slots: emptied and kept for another attempt when dropped.
pub(super) struct Slots {
    slots: Box<[Slot]>,
    /// The slots it filled.
    filled: Vec<usize>,
    served: Arc<Served>,
}

impl std::ops::Deref for Slots {
    type Target = [Slot];

    fn deref(&self) -> &[Slot] {
        &self.slots
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        for node in self.filled.drain(..) {
            self.slots[node].take();
        }
        let mut spare = lock(&self.served.spare);
        if spare.slots + self.slots.len() <= SPARE_SLOTS && spare.arrays.len() < SPARE_ARRAYS {
            spare.slots += self.slots.len();
            spare.arrays.push(std::mem::take(&mut self.slots));
        }
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
