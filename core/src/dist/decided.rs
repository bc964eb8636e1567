//! What the end of an `if`'s or `match`'s decision sets in motion in a commit: the
//! tasks of the arms it did not take end at once (`not_taken`, or `skipped` if it
//! failed), and the failures it read (a `match` on an outcome) are handled.

use tokio_postgres::Transaction;
use tokio_postgres::types::Type;

use super::cascade::{End, place_of};
use super::protocol::Place;
use crate::plan::Plan;
use crate::store::postgres::NOW_MS;
use crate::task::Kind;

/// What the decisions that ended in a wave set in motion: the tasks of the arms they
/// did not take, to end at once, and the failures they read, now handled.
#[derive(Default)]
pub(super) struct Decided<'a> {
    /// Tasks to end (if still waiting), and how: not taken, or skipped (their decision
    /// failed).
    unreached: Vec<(&'a str, Place, End)>,
    /// Failures a `match` that succeeded read: a node of the workflow (with its items,
    /// for a fan-out), or a task of an item.
    handled: Vec<(&'a str, Place)>,
}

impl<'a> Decided<'a> {
    /// Notes the task at `place` of `run` that ended with `end`, if it is a decision.
    pub(super) fn note(&mut self, run: &'a str, plan: &Plan, place: Place, end: End) {
        let Some((scope, node)) = super::execute::Target::of(place).call(plan) else {
            return;
        };
        if scope.graph.kind(node) != Kind::Decision {
            return;
        }
        let (taken, unreached) = match end {
            End::Done { arm } => (arm, End::NotTaken),
            End::NotTaken => (None, End::NotTaken),
            End::Failed | End::Skipped => (None, End::Skipped),
        };
        for &(member, arm) in scope.arms_of.get(&(node as u32)).into_iter().flatten() {
            if taken != Some(arm) {
                self.unreached
                    .push((run, place.beside(member as usize), unreached));
            }
        }
        if taken.is_some() {
            let read = scope
                .graph
                .node(node)
                .edges()
                .filter(|&(_, tolerant)| tolerant);
            for (input, _) in read {
                if scope.graph.kind(input) != Kind::Param {
                    self.handled.push((run, place.beside(input)));
                }
            }
        }
    }

    /// Ends the tasks of arms not taken that still wait; returns them, as they ended.
    pub(super) async fn end_arms(
        &self,
        transaction: &Transaction<'_>,
    ) -> Result<Vec<(String, Place, End)>, tokio_postgres::Error> {
        if self.unreached.is_empty() {
            return Ok(Vec::new());
        }
        let (runs, nodes, items, parts) = Place::keys(self.unreached.iter().map(|u| (u.0, u.1)));
        let states: Vec<&str> = self.unreached.iter().map(|u| u.2.state()).collect();
        let rows = transaction
            .query_typed(
                &format!(
                    "UPDATE aqueduct_dist_tasks t SET state = e.state, ended_ms = {NOW_MS}
                     FROM UNNEST($1::TEXT[], $2::INTEGER[], $3::INTEGER[], $4::INTEGER[],
                                 $5::TEXT[]) AS e(run_id, node, item, part, state)
                     WHERE t.run_id = e.run_id AND t.node = e.node AND t.item = e.item
                       AND t.part = e.part AND t.state = 'waiting'
                     RETURNING t.run_id, t.node, t.item, t.part, t.state"
                ),
                &[
                    (&runs, Type::TEXT_ARRAY),
                    (&nodes, Type::INT4_ARRAY),
                    (&items, Type::INT4_ARRAY),
                    (&parts, Type::INT4_ARRAY),
                    (&states, Type::TEXT_ARRAY),
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let end = End::of_state(row.get(4));
                (row.get(0), place_of(row), end)
            })
            .collect())
    }

    /// Marks the failures read by a `match` handled (a fan-out's with its items');
    /// returns the run of each, once per failure.
    pub(super) async fn handle(
        &self,
        transaction: &Transaction<'_>,
    ) -> Result<Vec<String>, tokio_postgres::Error> {
        if self.handled.is_empty() {
            return Ok(Vec::new());
        }
        let (runs, nodes, items, parts) = Place::keys(self.handled.iter().copied());
        let rows = transaction
            .query_typed(
                "UPDATE aqueduct_dist_tasks t SET handled = true
                 FROM UNNEST($1::TEXT[], $2::INTEGER[], $3::INTEGER[], $4::INTEGER[])
                      AS e(run_id, node, item, part)
                 WHERE t.run_id = e.run_id AND t.node = e.node
                   AND t.state = 'failed' AND NOT t.handled
                   -- The task read; or for a node of the workflow, the node, and its
                   -- items' tasks if it is a fan-out that failed (as one process counts
                   -- them: a fan-out that succeeded keeps its items' failures).
                   AND ((t.item = e.item AND t.part = e.part)
                        OR (e.part = -1 AND EXISTS (
                            SELECT 1 FROM aqueduct_dist_tasks f
                            WHERE f.run_id = t.run_id AND f.node = t.node AND f.item = -1
                              AND f.part = -1 AND f.state = 'failed')))
                 RETURNING t.run_id",
                &[
                    (&runs, Type::TEXT_ARRAY),
                    (&nodes, Type::INT4_ARRAY),
                    (&items, Type::INT4_ARRAY),
                    (&parts, Type::INT4_ARRAY),
                ],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }
}
