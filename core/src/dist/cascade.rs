//! What a commit sets in motion: its tasks' successors counted (ready, or skipped in
//! turn), the items of fan-outs that expanded made, and the ends of runs whose last
//! task ended. Statements of the committer's transaction, one per wave of successors.

use std::collections::BTreeMap;

use tokio_postgres::Transaction;
use tokio_postgres::types::Type;

use super::commit::{Ended, Ending};
use super::protocol::Place;
use crate::plan::{Call, Plan};
use crate::store::postgres::NOW_MS;
use crate::task::Kind;

/// How many tasks of a run ended in a batch, how many of them failed, and how many
/// its fan-outs' items added.
#[derive(Default)]
pub(super) struct Ends {
    pub(super) finished: i32,
    pub(super) failed: i32,
    pub(super) added: i32,
}

/// Counts the `ended` tasks (run, plan, node, succeeded) in their successors, one
/// statement per wave: those whose last input arrived become ready, or skipped if one
/// they require did not succeed (and are counted in their own successors in the next
/// wave). Returns each run's ends (those given included) and whether any task became
/// ready.
pub(super) async fn release<'a>(
    transaction: &Transaction<'_>,
    mut ended: Vec<(&'a str, &'a Plan, Place, bool)>,
) -> Result<(BTreeMap<&'a str, Ends>, bool), tokio_postgres::Error> {
    let mut counts: BTreeMap<&str, Ends> = BTreeMap::new();
    let mut ready = false;
    let mut plans: BTreeMap<&str, &Plan> = BTreeMap::new();
    while !ended.is_empty() {
        // Per successor: how many of its inputs ended, how many of those it required
        // and they did not succeed.
        let mut arrivals: BTreeMap<(&str, Place), (i32, i32)> = BTreeMap::new();
        for &(run, plan, place, succeeded) in &ended {
            let ends = counts.entry(run).or_default();
            ends.finished += 1;
            ends.failed += i32::from(!succeeded);
            plans.insert(run, plan);
            for (successor, required) in successors(plan, place) {
                let arrival = arrivals.entry((run, successor)).or_default();
                arrival.0 += 1;
                arrival.1 += i32::from(required && !succeeded);
            }
        }
        ended.clear();
        if arrivals.is_empty() {
            break;
        }
        let runs: Vec<&str> = arrivals.keys().map(|(run, _)| *run).collect();
        let places: Vec<Place> = arrivals.keys().map(|(_, place)| *place).collect();
        let (nodes, items, parts) = Place::columns(&places);
        let arrived: Vec<i32> = arrivals.values().map(|a| a.0).collect();
        let dooms: Vec<i32> = arrivals.values().map(|a| a.1).collect();
        // The SET expressions read the row as it was.
        let rows = transaction
            .query_typed(
                &format!(
                    "UPDATE aqueduct_dist_tasks t SET pending = t.pending - e.arrived,
                         doomed = t.doomed + e.dooms,
                         state = CASE WHEN t.pending > e.arrived THEN t.state
                                      WHEN t.doomed + e.dooms > 0 THEN 'skipped'
                                      ELSE 'ready' END,
                         ended_ms = CASE WHEN t.pending = e.arrived AND t.doomed + e.dooms > 0
                                         THEN {NOW_MS} ELSE t.ended_ms END,
                         available_ms = CASE WHEN t.pending = e.arrived
                                              AND t.doomed + e.dooms = 0
                                             THEN {NOW_MS} ELSE t.available_ms END
                     FROM UNNEST($1::TEXT[], $2::INTEGER[], $3::INTEGER[], $4::INTEGER[],
                                 $5::INTEGER[], $6::INTEGER[])
                          AS e(run_id, node, item, part, arrived, dooms)
                     WHERE t.run_id = e.run_id AND t.node = e.node AND t.item = e.item
                       AND t.part = e.part AND t.state = 'waiting'
                     RETURNING t.run_id, t.node, t.item, t.part, t.state"
                ),
                &[
                    (&runs, Type::TEXT_ARRAY),
                    (&nodes, Type::INT4_ARRAY),
                    (&items, Type::INT4_ARRAY),
                    (&parts, Type::INT4_ARRAY),
                    (&arrived, Type::INT4_ARRAY),
                    (&dooms, Type::INT4_ARRAY),
                ],
            )
            .await?;
        for row in rows {
            match row.get::<_, &str>(4) {
                "ready" => ready = true,
                "skipped" => {
                    let run: &str = row.get(0);
                    // The run's id as the batch holds it (the row's borrows the row).
                    let Some((&run, &plan)) = plans.get_key_value(run) else {
                        continue;
                    };
                    let place = Place {
                        node: row.get::<_, i32>(1) as u32,
                        item: row.get(2),
                        part: row.get(3),
                    };
                    ended.push((run, plan, place, false));
                }
                _ => {}
            }
        }
    }
    Ok((counts, ready))
}

/// The tasks that wait for the task at `place` of `plan`, each with whether it
/// requires it to succeed: a node's successors in the workflow, or in its item; and
/// for the output of an item, its fan-out (which gathers failed items too).
pub(super) fn successors(plan: &Plan, place: Place) -> Vec<(Place, bool)> {
    let Some((part, item)) = place.body() else {
        return plan
            .successors(place.node())
            .map(|(&s, &required)| (Place::top(s as usize), required))
            .collect();
    };
    let Call::FanOut(def) = &plan.calls[place.node()] else {
        return Vec::new();
    };
    let mut waiting: Vec<(Place, bool)> = def
        .body
        .successors(part)
        .map(|(&s, &required)| (Place::in_item(place.node(), item, s as usize), required))
        .collect();
    if part == def.body.graph.output() {
        waiting.push((Place::top(place.node()), false));
    }
    waiting
}

/// Makes the tasks of the items of the fan-outs that `committed` as expanded, waiting
/// or ready as their bodies say. Returns how many tasks each run gained.
pub(super) async fn expand<'a>(
    transaction: &Transaction<'_>,
    endings: &[&'a Ending],
    committed: &[bool],
) -> Result<Vec<(&'a str, i32)>, tokio_postgres::Error> {
    let mut added = Vec::new();
    let (mut runs, mut places) = (Vec::new(), Vec::new());
    let (mut names, mut tasks, mut pending, mut states, mut limits) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (ending, _) in endings.iter().zip(committed).filter(|(_, c)| **c) {
        let Ended::Expanded { items } = ending.ended else {
            continue;
        };
        let node = ending.claimed.place.node();
        let Call::FanOut(def) = &ending.plan.calls[node] else {
            continue;
        };
        let body = &def.body;
        let parts: Vec<usize> = (0..body.graph.len())
            .filter(|&part| body.graph.kind(part) != Kind::Param)
            .collect();
        for item in 0..items {
            for &part in &parts {
                runs.push(ending.claimed.run.as_str());
                places.push(Place::in_item(node, item, part));
                names.push(Place::in_item(node, item, part).name(&ending.plan));
                let info = body.graph.info(part);
                tasks.push(info.name);
                pending.push(body.waits_for[part] as i32);
                states.push(if body.waits_for[part] == 0 {
                    "ready"
                } else {
                    "waiting"
                });
                limits.push(info.concurrency.map(|max| max as i32));
            }
        }
        added.push((ending.claimed.run.as_str(), (items * parts.len()) as i32));
    }
    if runs.is_empty() {
        return Ok(added);
    }
    let (nodes, items, parts) = Place::columns(&places);
    transaction
        .execute_typed(
            &format!(
                "INSERT INTO aqueduct_dist_tasks
                     (run_id, node, item, part, name, task, pending, state, concurrency,
                      available_ms)
                 SELECT *, {NOW_MS} FROM UNNEST($1::TEXT[], $2::INTEGER[], $3::INTEGER[],
                     $4::INTEGER[], $5::TEXT[], $6::TEXT[], $7::INTEGER[], $8::TEXT[],
                     $9::INTEGER[])
                 ON CONFLICT DO NOTHING"
            ),
            &[
                (&runs, Type::TEXT_ARRAY),
                (&nodes, Type::INT4_ARRAY),
                (&items, Type::INT4_ARRAY),
                (&parts, Type::INT4_ARRAY),
                (&names, Type::TEXT_ARRAY),
                (&tasks, Type::TEXT_ARRAY),
                (&pending, Type::INT4_ARRAY),
                (&states, Type::TEXT_ARRAY),
                (&limits, Type::INT4_ARRAY),
            ],
        )
        .await?;
    Ok(added)
}

/// Counts each run's ends in its row; a run whose last task ended gets its status
/// (failed if any task failed). Returns the runs that ended.
pub(super) async fn end_runs(
    transaction: &Transaction<'_>,
    counts: &BTreeMap<&str, Ends>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    if counts.is_empty() {
        return Ok(Vec::new());
    }
    let runs: Vec<&str> = counts.keys().copied().collect();
    let finished: Vec<i32> = counts.values().map(|c| c.finished - c.added).collect();
    let failed: Vec<i32> = counts.values().map(|c| c.failed).collect();
    let rows = transaction
        .query_typed(
            &format!(
                "UPDATE aqueduct_dist_runs r SET unfinished = r.unfinished - e.finished,
                     failed = r.failed + e.failed,
                     status = CASE WHEN r.unfinished - e.finished > 0
                                     OR r.status = 'cancelled' THEN r.status
                                   WHEN r.failed + e.failed > 0 THEN 'failed'
                                   ELSE 'succeeded' END,
                     ended_ms = CASE WHEN r.status = 'cancelled' THEN r.ended_ms
                                     WHEN r.unfinished - e.finished > 0 THEN NULL
                                     ELSE {NOW_MS} END
                 FROM UNNEST($1::TEXT[], $2::INTEGER[], $3::INTEGER[]) AS e(id, finished, failed)
                 WHERE r.id = e.id
                 RETURNING r.id, r.unfinished, r.status"
            ),
            &[
                (&runs, Type::TEXT_ARRAY),
                (&finished, Type::INT4_ARRAY),
                (&failed, Type::INT4_ARRAY),
            ],
        )
        .await?;
    Ok(rows
        .iter()
        // A cancelled run was told ended when it was cancelled.
        .filter(|row| row.get::<_, i32>(1) == 0 && row.get::<_, &str>(2) != "cancelled")
        .map(|row| row.get(0))
        .collect())
}
