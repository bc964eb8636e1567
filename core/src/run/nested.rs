//! A resumed run's checkpoints of nested runs — fan-out items (`each[17].sum`) and
//! durable sub-workflows (`stats.total`) — decided before anything runs, at every
//! depth, by the rule of the top level: a nested run's checkpoints hold only if the
//! fan-out or sub-workflow it belongs to runs again on inputs that are all restored
//! (in the run around it), and within the nested run, a node is restored only if every
//! input it read is. Those that do not hold are stale, discarded with the top level's.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Error;
use crate::exec::Nested;
use crate::plan::{self, Call, Plan};
use crate::store::Checkpoint;
use crate::value::Value;

/// The nested rows of run `id`, being sorted into restored and stale.
pub(super) struct NestedRows<'a> {
    id: &'a str,
    /// By name, so that a nested run's rows are one range.
    rows: BTreeMap<String, Checkpoint>,
    /// Per nested run's path (`each[17].`), the nodes it restores, decoded.
    pub(super) restored: Nested,
    /// The names of the rows that do not hold.
    pub(super) stale: Vec<String>,
}

impl<'a> NestedRows<'a> {
    pub(super) fn new(id: &'a str, rows: Vec<Checkpoint>) -> Self {
        Self {
            id,
            rows: rows
                .into_iter()
                .map(|row| (row.node.clone(), row))
                .collect(),
            restored: Nested::new(),
            stale: Vec::new(),
        }
    }

    /// Sorts the rows of the fan-outs and sub-workflows of `plan`, a run at `path`
    /// whose nodes `restored` says are restored (its parameters included).
    pub(super) fn walk(&mut self, plan: &Plan, path: &str, restored: &[bool]) -> Result<(), Error> {
        let graph = &plan.graph;
        for node in 0..graph.len() {
            let Call::FanOut(def) = &plan.calls[node] else {
                continue;
            };
            // A restored fan-out's items never run: their rows are not needed.
            if restored[node] {
                continue;
            }
            let prefix = format!("{path}{}", graph.name_of(node));
            let runs = self.runs(&prefix, def.collection.is_some());
            if !graph.node(node).inputs().all(|input| restored[input]) {
                for run in runs {
                    self.discard_under(&run);
                }
                continue;
            }
            for run in runs {
                self.nested_run(&def.body, run)?;
            }
        }
        Ok(())
    }

    /// One nested run at `run` (a path): restores what holds, recursively.
    fn nested_run(&mut self, body: &Plan, run: String) -> Result<(), Error> {
        let graph = &body.graph;
        let name = |node: usize| format!("{run}{}", graph.name_of(node));
        let rows = std::cell::RefCell::new(&mut self.rows);
        let mut stale = Vec::new();
        let id = self.id;
        let (values, restored) = plan::restore(
            body,
            |node| body.codecs[node].is_some() && rows.borrow().contains_key(&name(node)),
            |node| {
                let row = rows.borrow_mut().remove(&name(node)).expect("checked");
                let codec = body.codecs[node].expect("checked");
                decode(id, &row, |format| (codec.decode)(&row.data, format))
            },
            |node| stale.push(name(node)),
        )?;
        self.stale.extend(stale);
        self.walk(body, &run, &restored)?;
        self.restored.insert(run, values);
        Ok(())
    }

    /// The paths of the nested runs of a fan-out (`each[3].`, `each[17].`) or of a
    /// sub-workflow (`stats.`) named `prefix` that have rows.
    fn runs(&self, prefix: &str, items: bool) -> Vec<String> {
        if !items {
            let run = format!("{prefix}.");
            let has_rows = self.under(&run).next().is_some();
            return if has_rows { vec![run] } else { Vec::new() };
        }
        let open = format!("{prefix}[");
        let indices: BTreeSet<usize> = self
            .under(&open)
            .filter_map(|name| name[open.len()..].split(']').next()?.parse().ok())
            .collect();
        indices
            .into_iter()
            .map(|index| format!("{prefix}[{index}]."))
            .collect()
    }

    /// The names of the rows under `prefix`.
    fn under<'r>(&'r self, prefix: &'r str) -> impl Iterator<Item = &'r String> + 'r {
        self.rows
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .map(|(name, _)| name)
            .take_while(move |name| name.starts_with(prefix))
    }

    /// Every row under `run` is stale.
    fn discard_under(&mut self, run: &str) {
        let names: Vec<String> = self.under(run).cloned().collect();
        for name in names {
            self.rows.remove(&name);
            self.stale.push(name);
        }
    }
}

/// Decodes `row` in the format it was written in, or refuses the resume naming it.
pub(super) fn decode(
    id: &str,
    row: &Checkpoint,
    decode: impl FnOnce(plan::CheckpointFormat) -> Result<Value, String>,
) -> Result<Value, Error> {
    let bad = |message: String| Error::Checkpoint {
        run: id.to_owned(),
        node: row.node.clone(),
        message,
    };
    let format = plan::readable(&row.codec, row.schema).map_err(bad)?;
    decode(format).map_err(|message| {
        // postcard is not self-describing: say what cannot be read back, and the way out.
        if format.name() == "postcard" {
            bad(format!(
                "{message}; postcard cannot read back a type that needs `deserialize_any` \
                 (an untagged or internally tagged enum, `serde_json::Value`, \
                 `#[serde(flatten)]`): run such a workflow with JSON checkpoints, and start \
                 this one again under a new run id"
            ))
        } else {
            bad(message)
        }
    })
}
