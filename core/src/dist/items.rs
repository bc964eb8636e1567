//! Fan-outs and sub-workflows, item by item: a fan-out's row, once its inputs ended,
//! is claimed to find its items (`expand`), each item's body tasks become rows of
//! their own that any worker runs (`item_slots` gives a call its item and imports),
//! and once every item's output ended the fan-out's row is claimed again to gather
//! them into its value (`gather`), as one process would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::commit::Ended;
use super::execute::{encode, permanent};
use super::protocol::{Input, Place};
use super::served::{Served, Slots, decode, lock};
use crate::plan::{Call, FanOutDef, Items};
use crate::task::TaskError;
use crate::value::{Import, Slot, Value, fill};

/// What the items of fan-outs read of their runs, decoded once per worker: by run
/// (id, submission) and fan-out node.
#[derive(Default)]
pub(crate) struct Parents(Mutex<HashMap<(String, i64, usize), Arc<Parent>>>);

/// How many fan-outs' parents a worker keeps per workflow.
const KEPT_PARENTS: usize = 64;

impl Parents {
    /// What run `run`'s fan-out `fan` reads, if this worker holds it (its items'
    /// tasks need not read it again).
    pub(super) fn get(&self, run: &(String, i64), fan: usize) -> Option<Arc<Parent>> {
        lock(&self.0).get(&(run.0.clone(), run.1, fan)).cloned()
    }

    fn keep(&self, run: (String, i64), fan: usize, parent: &Arc<Parent>) {
        let mut kept = lock(&self.0);
        if kept.len() >= KEPT_PARENTS {
            kept.clear();
        }
        kept.insert((run.0, run.1, fan), Arc::clone(parent));
    }
}

/// A task's run (its id and submission) and, for a task of an item, what its fan-out
/// reads of the run if this worker held it when the task was claimed.
pub(super) type Run = ((String, i64), Option<Arc<Parent>>);

/// What a fan-out's items read of its run: the run's parameters and the fan-out's
/// inputs (its collection, its imports), decoded into slots of the workflow.
pub(crate) struct Parent {
    slots: Slots,
    /// For a fan-out that takes its collection (`for item in items`): the items taken
    /// out of it, each until an item's task takes it.
    owned: Mutex<Option<Vec<Option<Value>>>>,
    /// What it was decoded from, to decode it again for an item taken already (an
    /// item's second task that reads it, or a retry).
    params: Arc<[u8]>,
    inputs: Vec<(Place, Input)>,
}

impl crate::value::Slots for Parent {
    fn slots(&self) -> crate::value::SlotView<'_> {
        self.slots.view()
    }
}

/// Fan-out `fan`'s definition in `served`'s workflow.
fn def_of(served: &Served, fan: usize) -> Result<&FanOutDef, TaskError> {
    match &served.plan.calls[fan] {
        Call::FanOut(def) => Ok(def),
        _ => Err(permanent("only fan-outs have items".into())),
    }
}

impl Parent {
    /// Decodes the run's parameters and fan-out `fan`'s `inputs` (nodes of the
    /// workflow) into slots as long as the workflow's last one it reads.
    fn new(
        served: &Served,
        fan: usize,
        params: &Arc<[u8]>,
        inputs: Vec<(Place, Input)>,
    ) -> Result<Self, String> {
        let graph = &served.plan.graph;
        let read = inputs
            .iter()
            .filter(|(place, _)| place.body().is_none())
            .map(|(place, input)| (place.node(), input.clone()))
            .collect();
        let slots = served.workflow_slots(params, read)?;
        let view = slots.view();
        if let Some(missing) = graph.node(fan).inputs().find(|&n| view.record(n).is_none()) {
            // Not read with the task (a worker holding it passes it on instead).
            return Err(format!(
                "the fan-out's input `{}` was not read",
                graph.name_of(missing)
            ));
        }
        Ok(Self {
            slots,
            owned: Mutex::new(None),
            params: Arc::clone(params),
            inputs,
        })
    }

    /// How many items `def` has here (taking them, for a fan-out that takes its
    /// collection).
    fn count(&self, def: &FanOutDef) -> usize {
        match (def.collection, def.items) {
            (Some(collection), Items::Borrowed { len, .. }) => len(self.slots.view(), collection),
            (Some(collection), Items::Owned(take)) => {
                let mut owned = lock(&self.owned);
                owned
                    .get_or_insert_with(|| {
                        take(self.slots.view(), collection)
                            .into_iter()
                            .map(Some)
                            .collect()
                    })
                    .len()
            }
            _ => 1,
        }
    }

    /// Item `index` of a fan-out that takes its collection, taken out.
    fn take_item(
        self: &Arc<Self>,
        served: &Served,
        fan: usize,
        def: &FanOutDef,
        index: usize,
    ) -> Result<Value, String> {
        self.count(def);
        if let Some(item) = lock(&self.owned)
            .as_mut()
            .and_then(|items| items.get_mut(index))
            .and_then(Option::take)
        {
            return Ok(item);
        }
        // Taken already: from a copy of its own.
        let again = Arc::new(Parent::new(served, fan, &self.params, self.inputs.clone())?);
        again.count(def);
        lock(&again.owned)
            .as_mut()
            .and_then(|items| items.get_mut(index))
            .and_then(Option::take)
            .ok_or_else(|| format!("the collection has no item {index}"))
    }
}

/// The most task rows one fan-out's items may make (their counts are 32-bit).
const MAX_ROWS: usize = 1 << 30;

/// Claimed for the first time, fan-out `fan` finds its items (from its `inputs`):
/// made as rows by the commit; none makes its (empty) value straight away.
pub(super) fn expand(
    served: &Arc<Served>,
    fan: usize,
    params: &Arc<[u8]>,
    inputs: Vec<(Place, Input)>,
) -> Result<Ended, TaskError> {
    let def = def_of(served, fan)?;
    let parent = Parent::new(served, fan, params, inputs).map_err(permanent)?;
    let items = parent.count(def);
    let parts = def.body.graph.len().saturating_sub(def.params()).max(1);
    if items.saturating_mul(parts) > MAX_ROWS {
        return Err(permanent(format!(
            "its {items} items of {parts} tasks each are more than a distributed run \
             holds ({MAX_ROWS} rows per fan-out)"
        )));
    }
    if items > 0 {
        return Ok(Ended::Expanded { items });
    }
    let value = (def.assemble)(&mut [], def.body.graph.output())?;
    Ok(Ended::Done {
        codec: "json",
        data: encode(&served.plan, fan, &value)?,
    })
}

/// Claimed again once every item's output ended, fan-out `fan` gathers them (`tails`,
/// each item's output's end) into its value, encoded; or fails as one process fails
/// it (naming how many items did not succeed).
pub(super) fn gather(
    served: &Arc<Served>,
    fan: usize,
    tails: Vec<(Place, Input)>,
) -> Result<Vec<u8>, TaskError> {
    let def = def_of(served, fan)?;
    let value = assemble(def, tails).map_err(permanent)??;
    encode(&served.plan, fan, &value)
}

/// The value of fan-out `def` from each item's output's end (`tails`, by item), as
/// one process assembles it: the `Vec`, or why it failed (`ItemsFailed`, each item's
/// outcome). `Err` if the ends cannot be read.
pub(super) fn assemble(
    def: &FanOutDef,
    tails: Vec<(Place, Input)>,
) -> Result<Result<Value, TaskError>, String> {
    let body = &def.body;
    let tail = body.graph.output();
    let mut items: Vec<Box<[Slot]>> = Vec::with_capacity(tails.len());
    for (place, input) in tails {
        let index = place.item.max(0) as usize;
        if index != items.len() {
            return Err(format!("item {} of the fan-out has no row", items.len()));
        }
        let slots: Box<[Slot]> = (0..=tail).map(|_| Slot::new()).collect();
        fill(&slots[tail], decode(body, tail, input)?);
        items.push(slots);
    }
    Ok((def.assemble)(&mut items, tail))
}

/// The slots of a call of body node `part` of item `item` of fan-out `fan`: the item
/// (if it reads it) and the imports (from what the item reads of its run: `parent`,
/// held by this worker when the task was claimed, or `inputs` of the workflow) and
/// its inputs in the item.
pub(super) fn item_slots(
    served: &Arc<Served>,
    (run, parent): Run,
    (fan, item, part): (usize, usize, usize),
    params: &Arc<[u8]>,
    inputs: Vec<(Place, Input)>,
) -> Result<Slots, String> {
    let def = def_of(served, fan).map_err(|e| e.to_string())?;
    let (outer, inner): (Vec<_>, Vec<_>) = inputs
        .into_iter()
        .partition(|(place, _)| place.body().is_none());
    let parent = match parent {
        Some(parent) => parent,
        None => {
            let parent = Arc::new(Parent::new(served, fan, params, outer)?);
            served.parents.keep(run, fan, &parent);
            parent
        }
    };
    // Only a task that reads the item gets it: an owned item taken out of its
    // collection is for its one reader.
    let reads_item = def.body.graph.node(part).inputs().any(|input| input == 0);
    let fill_params = |slots: &mut [Slot]| -> Result<(), String> {
        let mut params = slots.iter();
        if let Some(collection) = def.collection {
            let slot = params
                .next()
                .ok_or("a body's first parameter is its item")?;
            let value: Option<Value> = match def.items {
                Items::Borrowed { item: of, .. } => Some(Box::new(Import::Item {
                    run: Arc::clone(&parent) as Arc<dyn crate::value::Slots>,
                    collection,
                    index: item,
                    item: of,
                })),
                _ if reads_item => {
                    let taken = parent.take_item(served, fan, def, item)?;
                    Some(def.body.settle(0, taken))
                }
                _ => None,
            };
            if let Some(value) = value {
                fill(slot, value);
            }
        }
        for (slot, &node) in params.zip(&def.imports) {
            let import = Import::Node {
                run: Arc::clone(&parent) as Arc<dyn crate::value::Slots>,
                node,
            };
            fill(slot, Box::new(import));
        }
        Ok(())
    };
    let inner = inner
        .into_iter()
        .filter_map(|(place, input)| Some((place.body()?.0, input)))
        .collect();
    super::served::slots(&def.body, (def.params(), fill_params), inner)
}
