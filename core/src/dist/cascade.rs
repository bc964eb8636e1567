//! What a commit sets in motion: its tasks' successors counted (ready, or skipped in
//! turn), the items of fan-outs that expanded made, and the ends of runs whose last
//! task ended. Statements of the committer's transaction, one per wave of successors.

use std::collections::BTreeMap;

use tokio_postgres::Transaction;
use tokio_postgres::types::Type;

use super::commit::{Ended, Ending};
use super::protocol::{Claimed, Place};
use crate::plan::{Call, Plan};
use crate::store::postgres::NOW_MS;
use crate::task::Kind;

/// How many tasks of a run ended in a batch, how many of them failed (less the
/// failures a `match` handled), how many its fan-outs' items added, and its output
/// node (the run succeeds only if that ended `done`).
#[derive(Default)]
pub(super) struct Ends {
    pub(super) finished: i32,
    pub(super) failed: i32,
    pub(super) added: i32,
    pub(super) output: i32,
}

/// How a task ended, as its successors and its run count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// It succeeded; a decision says which arm it took.
    Done { arm: Option<u32> },
    /// It failed (its run fails, unless a `match` reads the failure).
    Failed,
    /// It did not run: an input it requires did not succeed.
    Skipped,
    /// It did not run: it is in an arm of an `if` or `match` that was not taken, or
    /// requires a task that is.
    NotTaken,
}

impl End {
    /// The state of a task that ended so, as its row holds it.
    pub(super) fn state(self) -> &'static str {
        match self {
            End::Done { .. } => "done",
            End::Failed => "failed",
            End::Skipped => "skipped",
            End::NotTaken => "not_taken",
        }
    }

    /// How a task that did not run ended: not taken, or skipped.
    pub(super) fn unreached(not_taken: bool) -> Self {
        if not_taken {
            End::NotTaken
        } else {
            End::Skipped
        }
    }

    /// How a task whose row is in `state` ended.
    pub(super) fn of_state(state: &str) -> Self {
        match state {
            "skipped" => End::Skipped,
            "not_taken" => End::NotTaken,
            "failed" => End::Failed,
            _ => End::Done { arm: None },
        }
    }
}

/// A task that ended: its run, its run's plan, where it is, how it ended.
pub(super) type TaskEnd<'a> = (&'a str, &'a Plan, Place, End);

/// The committing worker's claim on the tasks its commit makes ready: up to `limit`
/// of them become its attempts at once (`running`, leased for `lease_ms`), saving a
/// claim and a row version each. `runs` gives each run's fingerprint and submission,
/// for the claimed tasks.
pub(super) struct Claiming<'c> {
    pub(super) owner: &'c str,
    pub(super) lease_ms: i64,
    pub(super) limit: usize,
    pub(super) runs: BTreeMap<&'c str, (&'c str, i64)>,
}

/// What a commit's cascade did: each run's ends, whether a task became ready, and the
/// tasks it claimed for the committing worker.
pub(super) struct Released<'a> {
    pub(super) counts: BTreeMap<&'a str, Ends>,
    pub(super) ready: bool,
    pub(super) claimed: Vec<Claimed>,
}

/// Counts the `ended` tasks in their successors, one wave at a time: those whose last
/// input arrived become ready, or skipped (not taken) if one they require did not
/// succeed (was not taken), and are counted in their own successors in the next wave.
/// A decision's end also ends at once the tasks of the arms it did not take, and
/// marks the failures it read as handled. Tasks whose every input arrived at once
/// may be claimed for the committing worker (`claiming`).
pub(super) async fn release<'a>(
    transaction: &Transaction<'_>,
    mut ended: Vec<TaskEnd<'a>>,
    claiming: &Claiming<'_>,
) -> Result<Released<'a>, tokio_postgres::Error> {
    let mut counts: BTreeMap<&str, Ends> = BTreeMap::new();
    let mut ready = false;
    let mut claimed: Vec<Claimed> = Vec::new();
    let mut plans: BTreeMap<&str, &Plan> = BTreeMap::new();
    while !ended.is_empty() {
        // Per successor: how many of its inputs ended, how many of those it required
        // and they did not succeed, and how many it required and they were not taken.
        let mut arrivals: BTreeMap<(&str, Place), [i32; 3]> = BTreeMap::new();
        let mut decided = super::decided::Decided::default();
        // Per capped fan-out: how many of its items ended, and its cap.
        let mut capped: BTreeMap<(&str, u32), (i32, u32)> = BTreeMap::new();
        for &(run, plan, place, end) in &ended {
            let ends = counts.entry(run).or_default();
            ends.finished += 1;
            ends.failed += i32::from(end == End::Failed);
            plans.insert(run, plan);
            decided.note(run, plan, place, end);
            if let Some(cap) = super::capped::item_of_capped(plan, place) {
                capped.entry((run, place.node)).or_insert((0, cap)).0 += 1;
            }
            for (successor, required) in successors(plan, place) {
                let arrival = arrivals.entry((run, successor)).or_default();
                arrival[0] += 1;
                arrival[1] += i32::from(required && matches!(end, End::Failed | End::Skipped));
                arrival[2] += i32::from(required && end == End::NotTaken);
            }
        }
        ended.clear();
        // The arms not taken end before the arrivals count: a task in one never runs,
        // whatever else it waits for.
        for (run, place, end) in decided.end_arms(transaction).await? {
            if let Some((&run, &plan)) = plans.get_key_value(run.as_str()) {
                ended.push((run, plan, place, end));
            }
        }
        for run in decided.handle(transaction).await? {
            if let Some(ends) = counts.get_mut(run.as_str()) {
                ends.failed -= 1;
            }
        }
        // Each item that ended under a cap lets the next waiting one start.
        for (run, place) in super::capped::next_items(transaction, &capped, &plans).await? {
            arrivals.entry((run, place)).or_default()[0] += 1;
        }
        if arrivals.is_empty() {
            continue;
        }
        let (runs, nodes, items, parts) = Place::keys(arrivals.keys().copied());
        let arrived: Vec<i32> = arrivals.values().map(|a| a[0]).collect();
        let dooms: Vec<i32> = arrivals.values().map(|a| a[1]).collect();
        let untaken: Vec<i32> = arrivals.values().map(|a| a[2]).collect();
        // Claimed here: the tasks sure to become ready (all their inputs arrived now,
        // each succeeded), with no concurrency limit (claimed apart), up to the limit.
        let mut room = claiming.limit.saturating_sub(claimed.len());
        let claims: Vec<bool> = arrivals
            .iter()
            .map(|(&(run, place), a)| {
                let sure = a[1] == 0
                    && a[2] == 0
                    && plans
                        .get(run)
                        .is_some_and(|plan| readies_freely(plan, place, a[0]));
                let claim = sure && room > 0;
                room -= usize::from(claim);
                claim
            })
            .collect();
        // The SET expressions read the row as it was.
        let rows = transaction
            .query_typed(
                &format!(
                    "UPDATE aqueduct_dist_tasks t SET pending = t.pending - e.arrived,
                         doomed = t.doomed + e.dooms,
                         untaken = t.untaken + e.untaken,
                         state = CASE WHEN t.pending > e.arrived THEN t.state
                                      WHEN t.doomed + e.dooms > 0 THEN 'skipped'
                                      WHEN t.untaken + e.untaken > 0 THEN 'not_taken'
                                      WHEN {CLAIMED} THEN 'running'
                                      ELSE 'ready' END,
                         attempt = t.attempt + ({CLAIMED})::INTEGER,
                         lease_owner = CASE WHEN {CLAIMED} THEN $8 ELSE t.lease_owner END,
                         lease_ms = CASE WHEN {CLAIMED} THEN {NOW_MS} + $9
                                         ELSE t.lease_ms END,
                         workers = CASE WHEN {CLAIMED} THEN t.workers || $8 ELSE t.workers END,
                         started_ms = CASE WHEN {CLAIMED} THEN COALESCE(t.started_ms, {NOW_MS})
                                           ELSE t.started_ms END,
                         ended_ms = CASE WHEN t.pending = e.arrived
                                          AND t.doomed + e.dooms + t.untaken + e.untaken > 0
                                         THEN {NOW_MS} ELSE t.ended_ms END,
                         available_ms = CASE WHEN t.pending = e.arrived
                                              AND t.doomed + e.dooms + t.untaken + e.untaken = 0
                                             THEN {NOW_MS} ELSE t.available_ms END
                     FROM UNNEST($1::TEXT[], $2::INTEGER[], $3::INTEGER[], $4::INTEGER[],
                                 $5::INTEGER[], $6::INTEGER[], $7::INTEGER[], $10::BOOLEAN[])
                          AS e(run_id, node, item, part, arrived, dooms, untaken, claim)
                     WHERE t.run_id = e.run_id AND t.node = e.node AND t.item = e.item
                       AND t.part = e.part AND t.state = 'waiting'
                     RETURNING t.run_id, t.node, t.item, t.part, t.state, t.attempt, t.reaped,
                               t.expanded"
                ),
                &[
                    (&runs, Type::TEXT_ARRAY),
                    (&nodes, Type::INT4_ARRAY),
                    (&items, Type::INT4_ARRAY),
                    (&parts, Type::INT4_ARRAY),
                    (&arrived, Type::INT4_ARRAY),
                    (&dooms, Type::INT4_ARRAY),
                    (&untaken, Type::INT4_ARRAY),
                    (&claiming.owner, Type::TEXT),
                    (&claiming.lease_ms, Type::INT8),
                    (&claims, Type::BOOL_ARRAY),
                ],
            )
            .await?;
        for row in rows {
            let end = match row.get::<_, &str>(4) {
                "ready" => {
                    ready = true;
                    continue;
                }
                "running" => {
                    let run: &str = row.get(0);
                    if let Some(&(fingerprint, submitted_ms)) = claiming.runs.get(run) {
                        claimed.push(Claimed {
                            run: run.to_owned(),
                            place: place_of(&row),
                            expanded: row.get(7),
                            attempt: row.get::<_, i32>(5) as u32,
                            reaped: row.get::<_, i32>(6).max(0) as u32,
                            fingerprint: fingerprint.to_owned(),
                            submitted_ms,
                        });
                    }
                    continue;
                }
                "waiting" => continue,
                state => End::of_state(state),
            };
            // The run's id as the batch holds it (the row's borrows the row).
            let Some((&run, &plan)) = plans.get_key_value(row.get::<_, &str>(0)) else {
                continue;
            };
            ended.push((run, plan, place_of(&row), end));
        }
    }
    Ok(Released {
        counts,
        ready,
        claimed,
    })
}

/// In the arrivals' `UPDATE`: the row becomes the committing worker's attempt.
const CLAIMED: &str = "t.pending = e.arrived AND t.doomed + e.dooms + t.untaken + e.untaken = 0
                       AND e.claim";

/// Whether the task at `place` of `plan` becomes ready when `arrived` of its inputs
/// arrive at once (all it waits for), and may be claimed without a limit's count.
fn readies_freely(plan: &Plan, place: Place, arrived: i32) -> bool {
    let Some((scope, node)) = super::execute::Target::of(place).call(plan) else {
        return false;
    };
    scope.waits_for[node] as i32 == arrived && scope.graph.info(node).concurrency.is_none()
}

/// The task a row returned (`node`, `item`, `part` from its second column).
pub(super) fn place_of(row: &tokio_postgres::Row) -> Place {
    Place {
        node: row.get::<_, i32>(1) as u32,
        item: row.get(2),
        part: row.get(3),
    }
}

/// The tasks that wait for the task at `place` of `plan`, each with whether it
/// requires it to succeed: a node's successors in the workflow, or in its item; and
/// for the output of an item, its fan-out (which gathers failed items too).
pub(super) fn successors(plan: &Plan, place: Place) -> Vec<(Place, bool)> {
    let Some((part, _)) = place.body() else {
        return plan
            .successors(place.node())
            .iter()
            .map(|&(s, required)| (Place::top(s as usize), required))
            .collect();
    };
    let Call::FanOut(def) = &plan.calls[place.node()] else {
        return Vec::new();
    };
    let mut waiting: Vec<(Place, bool)> = def
        .body
        .successors(part)
        .iter()
        .map(|&(s, required)| (place.beside(s as usize), required))
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
    let mut keys = Vec::new();
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
        // Under a cap, the items past the first ones wait for a place too.
        let open = def.at_once.map_or(items, |cap| cap as usize);
        for item in 0..items {
            for &part in &parts {
                keys.push((
                    ending.claimed.run.as_str(),
                    Place::in_item(node, item, part),
                ));
                names.push(Place::in_item(node, item, part).name(&ending.plan));
                let info = body.graph.info(part);
                tasks.push(info.name);
                let waits = body.waits_for[part] as i32
                    + i32::from(item >= open && body.waits_for[part] == 0);
                pending.push(waits);
                states.push(if waits == 0 { "ready" } else { "waiting" });
                limits.push(info.concurrency.map(|max| max as i32));
            }
        }
        added.push((ending.claimed.run.as_str(), (items * parts.len()) as i32));
    }
    if keys.is_empty() {
        return Ok(added);
    }
    let (runs, nodes, items, parts) = Place::keys(keys);
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
/// (failed if a task failed and no `match` handled it, or if its output did not
/// succeed). Returns the runs that ended.
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
    let outputs: Vec<i32> = counts.values().map(|c| c.output).collect();
    let rows = transaction
        .query_typed(
            &format!(
                "UPDATE aqueduct_dist_runs r SET unfinished = r.unfinished - e.finished,
                     failed = r.failed + e.failed,
                     status = CASE WHEN r.unfinished - e.finished > 0
                                     OR r.status = 'cancelled' THEN r.status
                                   WHEN r.failed + e.failed > 0 THEN 'failed'
                                   WHEN EXISTS (SELECT 1 FROM aqueduct_dist_tasks o
                                                WHERE o.run_id = r.id AND o.node = e.output
                                                  AND o.item = -1 AND o.part = -1
                                                  AND o.state = 'done')
                                       THEN 'succeeded'
                                   ELSE 'failed' END,
                     ended_ms = CASE WHEN r.status = 'cancelled' THEN r.ended_ms
                                     WHEN r.unfinished - e.finished > 0 THEN NULL
                                     ELSE {NOW_MS} END
                 FROM UNNEST($1::TEXT[], $2::INTEGER[], $3::INTEGER[], $4::INTEGER[])
                      AS e(id, finished, failed, output)
                 WHERE r.id = e.id
                 RETURNING r.id, r.unfinished, r.status"
            ),
            &[
                (&runs, Type::TEXT_ARRAY),
                (&finished, Type::INT4_ARRAY),
                (&failed, Type::INT4_ARRAY),
                (&outputs, Type::INT4_ARRAY),
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
