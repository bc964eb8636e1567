//! What a worker reads for the tasks it claimed, in a statement or two per batch:
//! their runs' parameters (once per run), their inputs' ends, a gathering fan-out's
//! items, and what a fan-out's items read of their run (unless the worker holds it).

use std::collections::HashMap;
use std::sync::Arc;

use super::items::Parent;
use super::protocol::{self, Claimed, Place};
use super::served::Served;
use crate::plan::Call;
use crate::task::Kind;

/// The parameters of the runs this worker ran tasks of, by run id and submission
/// time: read once per run, not per task.
#[derive(Default)]
pub(super) struct RunParams(HashMap<(String, i64), Arc<[u8]>>);

/// How many runs' parameters a worker keeps.
const KEPT_PARAMS: usize = 1024;

/// The parameters and inputs of each of the `claimed` tasks (of `served[i]`'s
/// workflows): two statements at most, whatever their number.
pub(super) async fn read_inputs(
    client: &tokio_postgres::Client,
    claimed: &[Claimed],
    served: &[Arc<Served>],
    params: &mut RunParams,
) -> Result<Vec<Read>, tokio_postgres::Error> {
    let key = |task: &Claimed| (task.run.clone(), task.submitted_ms);
    if params.0.len() + claimed.len() > KEPT_PARAMS {
        // Before finding what is missing: every claimed task's run is read again.
        params.0.clear();
    }
    let mut missing: Vec<&str> = claimed
        .iter()
        .filter(|task| !params.0.contains_key(&key(task)))
        .map(|task| task.run.as_str())
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        let submitted: HashMap<&str, i64> = claimed
            .iter()
            .map(|task| (task.run.as_str(), task.submitted_ms))
            .collect();
        for (run, input) in protocol::params(client, &missing).await? {
            let submitted_ms = submitted[run.as_str()];
            params.0.insert((run, submitted_ms), input.into());
        }
    }
    let (wanted, parents): (Vec<Vec<Place>>, Vec<Option<Arc<Parent>>>) = claimed
        .iter()
        .zip(served)
        .map(|(task, served)| wanted(served, task))
        .unzip();
    let mut inputs = protocol::inputs(client, claimed, &wanted).await?;
    // A fan-out that gathers its items reads each item's output; so does a tolerant
    // reader of a fan-out that failed, to see what became of each item.
    for ((task, served), inputs) in claimed.iter().zip(served).zip(&mut inputs) {
        for (place, input) in inputs.iter_mut() {
            let (None, Call::FanOut(def), protocol::Input::Failed(error)) =
                (place.body(), &served.plan.calls[place.node()], &*input)
            else {
                continue;
            };
            let tail = def.body.graph.output();
            let tails = protocol::items(client, &task.run, place.node(), tail).await?;
            if !tails.is_empty() {
                let tails = tails
                    .into_iter()
                    .map(|(item, end)| (Place::in_item(place.node(), item, tail), end))
                    .collect();
                *input = protocol::Input::FailedItems(error.clone(), tails);
            }
        }
        if let (true, Call::FanOut(def)) = (task.expanded, &served.plan.calls[task.place.node()]) {
            let node = task.place.node();
            let tail = def.body.graph.output();
            let tails = protocol::items(client, &task.run, node, tail).await?;
            *inputs = tails
                .into_iter()
                .map(|(item, input)| (Place::in_item(node, item, tail), input))
                .collect();
        }
    }
    Ok(claimed
        .iter()
        .zip(inputs)
        .zip(parents)
        // A run deleted since its task was claimed: its commit will find nothing.
        .map(|((task, inputs), parent)| Read {
            params: params
                .0
                .get(&key(task))
                .cloned()
                .unwrap_or_else(|| Arc::from([])),
            inputs,
            parent,
        })
        .collect())
}

/// What a claimed task reads: its run's parameters, its inputs' ends, and for a
/// task of an item what its fan-out reads of the run, if this worker holds it.
pub(super) struct Read {
    pub(super) params: Arc<[u8]>,
    pub(super) inputs: Vec<(Place, protocol::Input)>,
    pub(super) parent: Option<Arc<Parent>>,
}

/// The tasks whose ends `task` reads: a task's inputs in the workflow or in its item
/// (and for an item's task, what its fan-out reads of the run, unless `served` holds
/// it); for a fan-out, its inputs (gathering, its items' outputs: read apart).
pub(super) fn wanted(served: &Served, task: &Claimed) -> (Vec<Place>, Option<Arc<Parent>>) {
    let plan = &served.plan;
    let graph = &plan.graph;
    let fan = task.place.node();
    let outer = |node: usize| -> Vec<Place> {
        graph
            .node(node)
            .inputs()
            .filter(|&input| graph.kind(input) != Kind::Param)
            .map(Place::top)
            .collect()
    };
    let Some((part, _)) = task.place.body() else {
        let wanted = if task.expanded {
            Vec::new()
        } else {
            outer(fan)
        };
        return (wanted, None);
    };
    let Call::FanOut(def) = &plan.calls[fan] else {
        return (Vec::new(), None);
    };
    let body = &def.body.graph;
    let mut wanted: Vec<Place> = body
        .node(part)
        .inputs()
        .filter(|&input| body.kind(input) != Kind::Param)
        .map(|input| task.place.beside(input))
        .collect();
    let parent = served
        .parents
        .get(&(task.run.clone(), task.submitted_ms), fan);
    if parent.is_none() {
        wanted.extend(outer(fan));
    }
    (wanted, parent)
}
