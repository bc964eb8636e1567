//! A capped `for` (`#[concurrency = N] for`) across workers: its items past the first
//! N wait for a place (one more `pending` on their first tasks, made by the
//! expansion); each item whose output ends counts on the fan-out's row
//! (`items_ended`) and lets the next item in order start.

use std::collections::BTreeMap;

use tokio_postgres::Transaction;
use tokio_postgres::types::Type;

use super::protocol::Place;
use crate::plan::{Call, Plan};

/// The cap of the fan-out whose item's output is at `place`, if that fan-out is capped.
pub(super) fn item_of_capped(plan: &Plan, place: Place) -> Option<u32> {
    let (part, _) = place.body()?;
    let Call::FanOut(def) = &plan.calls[place.node()] else {
        return None;
    };
    def.at_once.filter(|_| part == def.body.graph.output())
}

/// Counts the `ended` items of capped fan-outs (run, node: how many, the cap) on their
/// rows; returns the first tasks of the items that may start now (one item for each
/// that ended, in order), each to be counted as an arrival.
pub(super) async fn next_items<'a>(
    transaction: &Transaction<'_>,
    ended: &BTreeMap<(&'a str, u32), (i32, u32)>,
    plans: &BTreeMap<&'a str, &Plan>,
) -> Result<Vec<(&'a str, Place)>, tokio_postgres::Error> {
    if ended.is_empty() {
        return Ok(Vec::new());
    }
    let runs: Vec<&str> = ended.keys().map(|(run, _)| *run).collect();
    let nodes: Vec<i32> = ended.keys().map(|(_, node)| *node as i32).collect();
    let counts: Vec<i32> = ended.values().map(|(count, _)| *count).collect();
    let rows = transaction
        .query_typed(
            "UPDATE aqueduct_dist_tasks t SET items_ended = t.items_ended + e.count
             FROM UNNEST($1::TEXT[], $2::INTEGER[], $3::INTEGER[]) AS e(run_id, node, count)
             WHERE t.run_id = e.run_id AND t.node = e.node AND t.item = -1 AND t.part = -1
             RETURNING t.run_id, t.node, t.items_ended",
            &[
                (&runs, Type::TEXT_ARRAY),
                (&nodes, Type::INT4_ARRAY),
                (&counts, Type::INT4_ARRAY),
            ],
        )
        .await?;
    let mut next = Vec::new();
    for row in rows {
        let node = row.get::<_, i32>(1) as u32;
        let Some((&run, &plan)) = plans.get_key_value(row.get::<_, &str>(0)) else {
            continue;
        };
        let (Some(&(count, cap)), Call::FanOut(def)) =
            (ended.get(&(run, node)), &plan.calls[node as usize])
        else {
            continue;
        };
        let ended_now = row.get::<_, i32>(2).max(0) as usize;
        let (cap, count) = (cap as usize, count as usize);
        // Items `cap + ended before` on wait for these; rows past the last item match
        // nothing.
        for item in cap + ended_now.saturating_sub(count)..cap + ended_now {
            // An item starts with its body's roots (the tasks that wait for no other).
            for &part in &def.body.roots {
                next.push((run, Place::in_item(node as usize, item, part as usize)));
            }
        }
    }
    Ok(next)
}
