//! A workflow a worker serves, and the slots its tasks' calls read: the run's
//! parameters and the task's inputs decoded, and nothing else.

use std::sync::{Arc, Mutex};

use super::items::{self, Parents};
use super::protocol::Input;
use crate::plan::{Call, Params, Plan};
use crate::task::TaskError;
use crate::value::{Slot, SlotView, Value, fill};

/// A workflow a worker serves: its plan, its fingerprint, and how its parameters are
/// decoded into a run's slots.
pub(crate) struct Served {
    pub(super) plan: Arc<Plan>,
    pub(super) fingerprint: String,
    params: Box<ParamsFn>,
    /// What the items of its runs' fan-outs read of their runs, decoded once.
    pub(super) parents: Parents,
}

/// Decodes a run's parameters into its slots.
type ParamsFn = dyn Fn(&[u8], &[Slot]) -> Result<(), String> + Send + Sync;

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

    /// Slots for a call of a node of the workflow: the run's parameters (`params`,
    /// encoded) and the call's `inputs` (nodes of the workflow), decoded.
    pub(super) fn workflow_slots(
        &self,
        params: &[u8],
        inputs: Vec<(usize, Input)>,
    ) -> Result<Slots, String> {
        let fill = |slots: &mut [Slot]| self.fill_params(params, slots);
        slots(&self.plan, (self.plan.params(), fill), inputs)
    }

    /// The run's parameters (`params`, encoded) in `slots`, made takeable where their
    /// reader takes them.
    pub(super) fn fill_params(&self, params: &[u8], slots: &mut [Slot]) -> Result<(), String> {
        (self.params)(params, slots)
            .map_err(|e| format!("cannot read the run's parameters: {e}"))?;
        self.plan.settle_params(slots);
        Ok(())
    }
}

/// Slots for a call of a node of `plan` (this workflow's, or a fan-out's body): its
/// parameters filled by `params` (the first `count` nodes), and its `inputs` decoded.
pub(super) fn slots(
    plan: &Plan,
    (count, params): (usize, impl FnOnce(&mut [Slot]) -> Result<(), String>),
    inputs: Vec<(usize, Input)>,
) -> Result<Slots, String> {
    let mut dense: Box<[Slot]> = (0..count).map(|_| Slot::new()).collect();
    params(&mut dense)?;
    let mut sparse: Vec<(u32, Slot)> = Vec::with_capacity(inputs.len());
    for (node, input) in inputs {
        let value = decode(plan, node, input)?;
        match dense.get(node) {
            Some(slot) => fill(slot, value),
            None => {
                let slot = Slot::new();
                fill(&slot, value);
                sparse.push((node as u32, slot));
            }
        }
    }
    sparse.sort_unstable_by_key(|&(node, _)| node);
    Ok(Slots { dense, sparse })
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

/// A call's slots: its parameters by node, then the nodes it reads (sorted).
pub(super) struct Slots {
    dense: Box<[Slot]>,
    sparse: Vec<(u32, Slot)>,
}

impl Slots {
    /// What the call reads.
    pub(super) fn view(&self) -> SlotView<'_> {
        SlotView::sparse(&self.dense, &self.sparse)
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
