//! Reading a distributed run: its end (its output decoded, or its failures) and its
//! tasks' states.

use tokio_postgres::Client;

use super::protocol::Place;
use super::runs::Failure;
use super::{DistributedRun, DistributedRunSummary, DistributedTask};
use crate::error::{Error, TaskFailure};
use crate::plan::Plan;
use crate::store::postgres::NOW_MS;
use crate::task::TaskError;

/// A run that ended: how, and what it left.
pub(super) struct RunEnd {
    status: String,
    output: Option<(String, Vec<u8>)>,
    /// The tasks that did not succeed.
    tasks: Vec<Unsucceeded>,
}

/// A task of an ended run that did not succeed.
struct Unsucceeded {
    name: String,
    place: Place,
    task: String,
    state: String,
    attempts: i32,
    error: Option<String>,
    /// Whether a `match` handled its failure (`None` for a handled task of an item,
    /// which one process does not name when it names the handled failures).
    handled: Option<bool>,
}

/// Run `id`'s end, `None` while it runs.
pub(super) async fn ended(
    client: &Client,
    id: &str,
    output: usize,
    fingerprint: &str,
) -> Result<Option<RunEnd>, Failure> {
    let Some(row) = client
        .query_opt(
            "SELECT status, fingerprint FROM aqueduct_dist_runs WHERE id = $1",
            &[&id],
        )
        .await?
    else {
        return Err(Failure::Refused(Error::UnknownRun { run: id.to_owned() }));
    };
    if row.get::<_, String>(1) != fingerprint {
        return Err(Failure::Refused(Error::FingerprintMismatch {
            run: id.to_owned(),
            changes: "(the run was submitted by another build of the workflow)".into(),
        }));
    }
    let status: String = row.get(0);
    if status == "running" {
        return Ok(None);
    }
    let output = client
        .query_opt(
            "SELECT codec, data FROM aqueduct_dist_tasks
             WHERE run_id = $1 AND node = $2 AND item = -1 AND part = -1
               AND state = 'done' AND codec IS NOT NULL AND data IS NOT NULL",
            &[&id, &(output as i32)],
        )
        .await?
        .map(|row| (row.get(0), row.get(1)));
    let tasks = client
        .query(
            "SELECT name, task, state, attempt, error,
                    CASE WHEN NOT handled THEN false WHEN item = -1 THEN true END,
                    node, item, part
             FROM aqueduct_dist_tasks
             WHERE run_id = $1 AND state IN ('failed', 'skipped', 'cancelled', 'not_taken')
             ORDER BY node, item, part",
            &[&id],
        )
        .await?
        .iter()
        .map(|row| Unsucceeded {
            name: row.get(0),
            task: row.get(1),
            state: row.get(2),
            attempts: row.get(3),
            error: row.get(4),
            handled: row.get(5),
            place: Place {
                node: row.get::<_, i32>(6) as u32,
                item: row.get(7),
                part: row.get(8),
            },
        })
        .collect();
    Ok(Some(RunEnd {
        status,
        output,
        tasks,
    }))
}

impl RunEnd {
    /// The run's output, decoded, or its failure.
    pub(super) fn into_output<O: Send + Sync + 'static>(
        self,
        plan: &Plan,
        run: &str,
    ) -> Result<O, Error> {
        let workflow = plan.graph.name().to_owned();
        let unhandled = |task: &Unsucceeded| task.state == "failed" && task.handled == Some(false);
        let failed = self.tasks.iter().any(unhandled);
        if self.status == "cancelled" && !failed {
            let unfinished = self.tasks.into_iter();
            let unfinished = unfinished.filter(|task| task.state == "cancelled");
            return Err(Error::Cancelled {
                workflow,
                unfinished: unfinished.map(|task| task.name).collect(),
            });
        }
        if self.status != "succeeded" {
            let mut failures = Vec::new();
            let mut skipped = Vec::new();
            // As in one process: the failures no `match` handled, with the tasks they
            // skipped; if there are none, the handled ones, whose readers were skipped up
            // to the output.
            let listed =
                |task: &Unsucceeded| task.state == "failed" && task.handled == Some(!failed);
            // A fan-out whose items' tasks are listed is represented by them, named as
            // one process names them (`task[3]`).
            let failed_items: std::collections::BTreeSet<u32> = self
                .tasks
                .iter()
                .filter(|task| listed(task) && task.place.body().is_some())
                .map(|task| task.place.node)
                .collect();
            let output = Place::top(plan.graph.output());
            let output_not_taken =
                (self.tasks.iter()).any(|task| task.place == output && task.state == "not_taken");
            for task in self.tasks {
                if task.state == "skipped" || task.state == "cancelled" {
                    // As one process lists them: the workflow's own nodes.
                    if task.place.body().is_none() {
                        skipped.push(task.name);
                    }
                    continue;
                }
                if !listed(&task)
                    || (task.place.body().is_none() && failed_items.contains(&task.place.node))
                {
                    continue;
                }
                failures.push(TaskFailure {
                    node: failure_name(plan, &task),
                    task: task_name(plan, &task.task),
                    attempts: task.attempts.max(0) as u32,
                    error: TaskError::msg(task.error.unwrap_or_default()),
                });
            }
            if failures.is_empty() {
                let output = plan.graph.name_of(plan.graph.output());
                return Err(Error::output_missing(&workflow, output, output_not_taken));
            }
            if !failed {
                skipped.clear();
            }
            return Err(Error::Failed {
                workflow,
                failures,
                skipped,
            });
        }
        let node = plan.graph.output();
        let bad = |message: String| Error::Checkpoint {
            run: run.to_owned(),
            node: plan.graph.name_of(node).to_owned(),
            message,
        };
        let (codec, data) = self
            .output
            .ok_or_else(|| bad("the run has no output".into()))?;
        let format = crate::plan::readable(&codec, crate::plan::SCHEMA).map_err(bad)?;
        let decode = plan.codecs[node].ok_or_else(|| bad("the node is not checkpointed".into()))?;
        let value = (decode.decode)(&data, format).map_err(bad)?;
        let outcome = value
            .downcast::<crate::task::Outcome<O>>()
            .map_err(|_| bad("the output has another type".into()))?;
        match *outcome {
            crate::task::Outcome::Ok(output) => Ok(output),
            _ => Err(bad("the output did not succeed".into())),
        }
    }
}

/// The name one process gives a failure of `task` (`FanOutDef::item_naming`): a
/// node's name, `task[3]` in a `for`'s item, `sub.task` in a sub-workflow.
fn failure_name(plan: &Plan, task: &Unsucceeded) -> String {
    let (Some((part, item)), crate::plan::Call::FanOut(def)) =
        (task.place.body(), &plan.calls[task.place.node()])
    else {
        return task.name.clone();
    };
    let fan = plan.graph.name_of(task.place.node());
    let (prefix, suffix) = def.item_naming(("", ""), fan, item);
    format!("{prefix}{}{suffix}", def.body.graph.name_of(part))
}

/// The `&'static str` name of task `name` of `plan` or of its fan-outs' bodies (what
/// `TaskFailure` holds).
fn task_name(plan: &Plan, name: &str) -> &'static str {
    let found = (0..plan.graph.len())
        .map(|node| plan.graph.info(node).name)
        .find(|known| *known == name);
    found
        .or_else(|| {
            plan.calls.iter().find_map(|call| match call {
                crate::plan::Call::FanOut(def) => {
                    Some(task_name(&def.body, name)).filter(|found| *found != UNKNOWN)
                }
                _ => None,
            })
        })
        .unwrap_or(UNKNOWN)
}

const UNKNOWN: &str = "(unknown task)";

/// Run `id` and its tasks.
pub(super) async fn status(
    client: &Client,
    id: &str,
) -> Result<Option<DistributedRun>, tokio_postgres::Error> {
    let Some(run) = client
        .query_opt(
            "SELECT id, workflow, status FROM aqueduct_dist_runs WHERE id = $1",
            &[&id],
        )
        .await?
    else {
        return Ok(None);
    };
    let tasks = client
        .query(
            "SELECT name, state, attempt, workers, error, cached_from, handled
             FROM aqueduct_dist_tasks
             WHERE run_id = $1 ORDER BY node, item, part",
            &[&id],
        )
        .await?
        .iter()
        .map(|row| DistributedTask {
            node: row.get(0),
            state: row.get(1),
            attempts: row.get::<_, i32>(2).max(0) as u32,
            workers: row.get(3),
            error: row.get(4),
            cached_from: row.get(5),
            handled: row.get(6),
        })
        .collect();
    Ok(Some(DistributedRun {
        id: run.get(0),
        workflow: run.get(1),
        status: run.get(2),
        tasks,
    }))
}

/// The runs of `workflow` (of every workflow if `None`), the last submitted first.
pub(super) async fn runs(
    client: &Client,
    workflow: Option<&str>,
) -> Result<Vec<DistributedRunSummary>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT r.id, r.workflow, r.status, r.submitted_ms, r.ended_ms,
                        (SELECT count(*) FROM aqueduct_dist_tasks t WHERE t.run_id = r.id),
                        r.unfinished, r.failed,
                        (SELECT count(*) FROM aqueduct_dist_workers w
                         WHERE r.fingerprint = ANY(w.fingerprints)
                           AND w.seen_ms + w.lease_ms > {NOW_MS}),
                        r.fingerprint
                 FROM aqueduct_dist_runs r
                 WHERE $1::TEXT IS NULL OR r.workflow = $1
                 ORDER BY r.submitted_ms DESC, r.id"
            ),
            &[&workflow],
        )
        .await?;
    let count = |value: i64| u32::try_from(value.max(0)).unwrap_or(u32::MAX);
    Ok(rows
        .iter()
        .map(|row| DistributedRunSummary {
            id: row.get(0),
            workflow: row.get(1),
            status: row.get(2),
            submitted_ms: row.get::<_, i64>(3).max(0) as u64,
            ended_ms: row.get::<_, Option<i64>>(4).map(|ms| ms.max(0) as u64),
            tasks: count(row.get(5)),
            unfinished: count(row.get::<_, i32>(6).into()),
            failed: count(row.get::<_, i32>(7).into()),
            workers: count(row.get(8)),
            fingerprint: row.get(9),
        })
        .collect())
}
