//! The SQL of a worker's tasks: where a task is in its run, claiming tasks (with and
//! without concurrency limits), reading their inputs, parameters and cached results.
//! Every value is bound; every time is the server's clock.

use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::types::Type;

use crate::store::postgres::NOW_MS;

/// Where a task is in its run: a node of the workflow, or a node (`part`) of the body
/// of fan-out or sub-workflow `node`, in its item `item` (0 for a sub-workflow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Place {
    pub(super) node: u32,
    /// -1 for a node of the workflow.
    pub(super) item: i32,
    /// -1 for a node of the workflow.
    pub(super) part: i32,
}

impl Place {
    /// Node `node` of the workflow.
    pub(super) fn top(node: usize) -> Self {
        Self {
            node: node as u32,
            item: -1,
            part: -1,
        }
    }

    /// Body node `part` of item `item` of fan-out `node`.
    pub(super) fn in_item(node: usize, item: usize, part: usize) -> Self {
        Self {
            node: node as u32,
            item: item as i32,
            part: part as i32,
        }
    }

    /// Node `node` of the same graph: of the workflow, or of the same item's body.
    pub(super) fn beside(&self, node: usize) -> Self {
        match self.body() {
            Some((_, item)) => Self::in_item(self.node(), item, node),
            None => Self::top(node),
        }
    }

    /// The body node and item, for a task of a fan-out's item.
    pub(super) fn body(&self) -> Option<(usize, usize)> {
        (self.part >= 0).then_some((self.part as usize, self.item.max(0) as usize))
    }

    /// The node of the workflow it is, or whose item it is in.
    pub(super) fn node(&self) -> usize {
        self.node as usize
    }

    /// Its name in the run (as `show` lists it): the node's, or for a task of an
    /// item `fan[item].node` (`fan.node` in a sub-workflow).
    pub(super) fn name(&self, plan: &crate::plan::Plan) -> String {
        let fan = plan.graph.name_of(self.node());
        let Some((part, item)) = self.body() else {
            return fan.to_owned();
        };
        match &plan.calls[self.node()] {
            crate::plan::Call::FanOut(def) => {
                let name = def.body.graph.name_of(part);
                match def.collection {
                    Some(_) => format!("{fan}[{item}].{name}"),
                    None => format!("{fan}.{name}"),
                }
            }
            _ => format!("{fan}[{item}]"),
        }
    }

    /// The keys of tasks (their runs and places) as the columns a statement's `UNNEST`
    /// takes them: run ids, nodes, items, parts.
    pub(super) fn keys<'a>(
        tasks: impl IntoIterator<Item = (&'a str, Place)>,
    ) -> (Vec<&'a str>, Vec<i32>, Vec<i32>, Vec<i32>) {
        let (mut runs, mut nodes, mut items, mut parts) = (vec![], vec![], vec![], vec![]);
        for (run, place) in tasks {
            runs.push(run);
            nodes.push(place.node as i32);
            items.push(place.item);
            parts.push(place.part);
        }
        (runs, nodes, items, parts)
    }
}

/// A task a worker claimed: its run, place and the attempt it holds.
#[derive(Debug, Clone)]
pub(super) struct Claimed {
    pub(super) run: String,
    pub(super) place: Place,
    /// For a fan-out's own row: whether its items were made (it gathers them now).
    pub(super) expanded: bool,
    pub(super) attempt: u32,
    /// How many of its attempts were lost with their workers (not the task's failures:
    /// its retry policy does not count them).
    pub(super) reaped: u32,
    pub(super) fingerprint: String,
    /// When its run was submitted (with its id, what names the run's parameters: a
    /// run deleted and submitted again under its id is another run).
    pub(super) submitted_ms: i64,
}

/// Claims the rows a statement's `picked` holds (run, node, item, part) of its `live`
/// runs (id, fingerprint, submitted_ms; materialized once, not scanned per row):
/// running, an attempt more, leased to `$1` for `$4` ms from now (the server's clock),
/// its worker recorded; returns what [`claimed`] reads.
const CLAIM_PICKED: &str = "UPDATE aqueduct_dist_tasks t
    SET state = 'running', attempt = t.attempt + 1, lease_owner = $1,
        lease_ms = now.ms + $4, workers = t.workers || $1,
        started_ms = COALESCE(t.started_ms, now.ms)
    FROM picked, now, live r
    WHERE t.run_id = picked.run_id AND t.node = picked.node
      AND t.item = picked.item AND t.part = picked.part AND r.id = t.run_id
    RETURNING t.run_id, t.node, t.attempt, t.reaped, r.fingerprint, r.submitted_ms,
              t.item, t.part, t.expanded";

/// Claims up to `limit` ready tasks with no concurrency limit of runs of the
/// `fingerprints` for `owner`, each leased for `lease`.
pub(super) async fn claim(
    client: &Client,
    owner: &str,
    fingerprints: &[String],
    limit: i64,
    lease: Duration,
) -> Result<Vec<Claimed>, tokio_postgres::Error> {
    let lease = lease.as_millis() as i64;
    let rows = client
        .query_typed(
            &format!(
                "WITH now AS (SELECT {NOW_MS} AS ms),
                 live AS MATERIALIZED (
                     SELECT id, fingerprint, submitted_ms FROM aqueduct_dist_runs
                     WHERE status = 'running' AND fingerprint = ANY($2)),
                 picked AS (
                     SELECT t.run_id, t.node, t.item, t.part FROM aqueduct_dist_tasks t, now
                     WHERE t.state = 'ready' AND t.available_ms <= now.ms
                       AND t.concurrency IS NULL AND t.run_id IN (SELECT id FROM live)
                     -- The index's order alone: the scan stops at the limit.
                     ORDER BY t.available_ms
                     LIMIT $3
                     FOR UPDATE OF t SKIP LOCKED)
                 {CLAIM_PICKED}"
            ),
            &[
                (&owner, Type::TEXT),
                (&fingerprints, Type::TEXT_ARRAY),
                (&limit, Type::INT8),
                (&lease, Type::INT8),
            ],
        )
        .await?;
    Ok(rows.iter().map(claimed).collect())
}

/// Claims up to `limit` ready tasks with a concurrency limit, as [`claim`] does, each
/// only while fewer attempts of its task than its limit run in its run, on any
/// worker. The runs' rows are locked first (those another worker holds are skipped):
/// claims of limited tasks of a run, and commits of its tasks, take turns.
pub(super) async fn claim_limited(
    client: &mut Client,
    owner: &str,
    fingerprints: &[String],
    limit: i64,
    lease: Duration,
) -> Result<Vec<Claimed>, tokio_postgres::Error> {
    let lease = lease.as_millis() as i64;
    let transaction = client.transaction().await?;
    let runs: Vec<String> = transaction
        .query_typed(
            &format!(
                "SELECT id FROM aqueduct_dist_runs WHERE id IN (
                     SELECT DISTINCT t.run_id FROM aqueduct_dist_tasks t
                     JOIN aqueduct_dist_runs r ON r.id = t.run_id
                     WHERE t.state = 'ready' AND t.concurrency IS NOT NULL
                       AND t.available_ms <= {NOW_MS} AND r.fingerprint = ANY($1)
                       AND r.status = 'running')
                 ORDER BY id LIMIT 64 FOR UPDATE SKIP LOCKED"
            ),
            &[(&fingerprints, Type::TEXT_ARRAY)],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if runs.is_empty() {
        transaction.commit().await?;
        return Ok(Vec::new());
    }
    // Each ready task ranked within its run and task; it is claimed if its rank, with
    // the attempts of its task running, stays within the limit.
    let rows = transaction
        .query_typed(
            &format!(
                "WITH now AS (SELECT {NOW_MS} AS ms),
                 live AS MATERIALIZED (
                     SELECT id, fingerprint, submitted_ms FROM aqueduct_dist_runs
                     WHERE id = ANY($2) AND status = 'running'),
                 running AS (
                     SELECT run_id, task, count(*) AS n FROM aqueduct_dist_tasks
                     WHERE run_id = ANY($2) AND state = 'running' AND concurrency IS NOT NULL
                     GROUP BY run_id, task),
                 ranked AS (
                     SELECT t.run_id, t.node, t.item, t.part, t.concurrency,
                            COALESCE(running.n, 0) AS n,
                            row_number() OVER (PARTITION BY t.run_id, t.task
                                               ORDER BY t.available_ms, t.node, t.item, t.part)
                                AS rank
                     FROM aqueduct_dist_tasks t
                     LEFT JOIN running ON running.run_id = t.run_id AND running.task = t.task,
                          now
                     WHERE t.run_id = ANY($2) AND t.state = 'ready'
                       AND t.concurrency IS NOT NULL AND t.available_ms <= now.ms),
                 picked AS (
                     SELECT run_id, node, item, part FROM ranked WHERE rank + n <= concurrency
                     ORDER BY rank LIMIT $3)
                 {CLAIM_PICKED}"
            ),
            &[
                (&owner, Type::TEXT),
                (&runs, Type::TEXT_ARRAY),
                (&limit, Type::INT8),
                (&lease, Type::INT8),
            ],
        )
        .await?;
    transaction.commit().await?;
    Ok(rows.iter().map(claimed).collect())
}

/// A claimed task, as [`CLAIM_PICKED`] returns it.
fn claimed(row: &tokio_postgres::Row) -> Claimed {
    Claimed {
        run: row.get(0),
        place: Place {
            node: row.get::<_, i32>(1) as u32,
            item: row.get(6),
            part: row.get(7),
        },
        expanded: row.get(8),
        attempt: row.get::<_, i32>(2) as u32,
        reaped: row.get::<_, i32>(3).max(0) as u32,
        fingerprint: row.get(4),
        submitted_ms: row.get(5),
    }
}

/// What became of one input of a claimed task.
#[derive(Clone)]
pub(super) enum Input {
    /// Its output: codec and bytes.
    Done(String, Vec<u8>),
    /// Its last attempt's error.
    Failed(String),
    /// A fan-out that failed (its error), and each item's output's end: read as one
    /// process gives it, each item's outcome.
    FailedItems(String, Vec<(Place, Input)>),
    Skipped,
    /// In an arm of an `if` or `match` that was not taken.
    NotTaken,
}

/// The ends of the tasks at `wanted[i]`, the inputs of each claimed task
/// `claimed[i]`, in one statement: `inputs[i]` for `claimed[i]`.
pub(super) async fn inputs(
    client: &Client,
    claimed: &[Claimed],
    wanted: &[Vec<Place>],
) -> Result<Vec<Vec<(Place, Input)>>, tokio_postgres::Error> {
    let (mut keys, mut of) = (Vec::new(), Vec::new());
    for (i, (task, wanted)) in claimed.iter().zip(wanted).enumerate() {
        for &place in wanted {
            keys.push((task.run.as_str(), place));
            of.push(i as i32);
        }
    }
    let mut inputs: Vec<Vec<(Place, Input)>> =
        wanted.iter().map(|w| Vec::with_capacity(w.len())).collect();
    if keys.is_empty() {
        return Ok(inputs);
    }
    let (runs, nodes, items, parts) = Place::keys(keys);
    let rows = client
        .query_typed(
            "SELECT w.i, t.node, t.item, t.part, t.state, t.error, t.codec, t.data
             FROM UNNEST($1::TEXT[], $2::INTEGER[], $3::INTEGER[], $4::INTEGER[], $5::INTEGER[])
                  AS w(run_id, node, item, part, i)
             JOIN aqueduct_dist_tasks t ON t.run_id = w.run_id AND t.node = w.node
                                       AND t.item = w.item AND t.part = w.part",
            &[
                (&runs, Type::TEXT_ARRAY),
                (&nodes, Type::INT4_ARRAY),
                (&items, Type::INT4_ARRAY),
                (&parts, Type::INT4_ARRAY),
                (&of, Type::INT4_ARRAY),
            ],
        )
        .await?;
    for row in rows {
        let place = Place {
            node: row.get::<_, i32>(1) as u32,
            item: row.get(2),
            part: row.get(3),
        };
        inputs[row.get::<_, i32>(0) as usize].push((place, input(&row, 4)));
    }
    Ok(inputs)
}

/// The end of a task as `row` holds it from column `at`: its state, its error, its
/// output's codec and data.
fn input(row: &tokio_postgres::Row, at: usize) -> Input {
    let state: &str = row.get(at);
    let output = (row.get::<_, Option<String>>(at + 2)).zip(row.get::<_, Option<Vec<u8>>>(at + 3));
    match (state, output) {
        ("done", Some((codec, data))) => Input::Done(codec, data),
        ("failed", _) => Input::Failed(row.get::<_, Option<String>>(at + 1).unwrap_or_default()),
        ("not_taken", _) => Input::NotTaken,
        _ => Input::Skipped,
    }
}

/// The end of body node `tail` in each item of fan-out `node` of run `run`, by item.
pub(super) async fn items(
    client: &Client,
    run: &str,
    node: usize,
    tail: usize,
) -> Result<Vec<(usize, Input)>, tokio_postgres::Error> {
    let rows = client
        .query_typed(
            "SELECT t.item, t.state, t.error, t.codec, t.data
             FROM aqueduct_dist_tasks t
             WHERE t.run_id = $1 AND t.node = $2 AND t.part = $3 AND t.item >= 0
             ORDER BY t.item",
            &[
                (&run, Type::TEXT),
                (&(node as i32), Type::INT4),
                (&(tail as i32), Type::INT4),
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| (row.get::<_, i32>(0).max(0) as usize, input(row, 1)))
        .collect())
}

/// The parameters (encoded) of each of `runs`, those still recorded.
pub(super) async fn params(
    client: &Client,
    runs: &[&str],
) -> Result<Vec<(String, Vec<u8>)>, tokio_postgres::Error> {
    let rows = client
        .query_typed(
            "SELECT id, input FROM aqueduct_dist_runs WHERE id = ANY($1)",
            &[(&runs, Type::TEXT_ARRAY)],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Whether `error` may pass if the statement is tried again: the connection broke or
/// the server is going away (08…, 57P01–57P03), a deadlock or serialisation failure
/// (40P01, 40001), a lock or statement that waited too long (55P03, 57014: a stalled
/// worker held a run's row), the server out of a resource (53…: disk, memory,
/// connections).
pub(super) fn transient(error: &tokio_postgres::Error) -> bool {
    let Some(code) = error.code() else {
        return true;
    };
    let code = code.code();
    code.starts_with("08")
        || matches!(
            code,
            "40P01" | "40001" | "57P01" | "57P02" | "57P03" | "55P03" | "57014"
        )
        || code.starts_with("53")
}

/// An error's text as PostgreSQL's TEXT takes it (no NUL).
pub(super) fn text(error: &str) -> String {
    error.replace('\0', "\\0")
}

/// Task `task`'s cached result under `key`, unless it expired (by the server's clock).
pub(super) async fn cached(
    client: &Client,
    task: &str,
    key: &str,
) -> Result<Option<crate::store::CachedResult>, tokio_postgres::Error> {
    let row = client
        .query_typed_opt(
            &format!(
                "SELECT codec, schema, data, run_id, created_ms, expires_ms FROM aqueduct_cache
                 WHERE task = $1 AND key = $2 AND (expires_ms IS NULL OR expires_ms > {NOW_MS})"
            ),
            &[(&task, Type::TEXT), (&key, Type::TEXT)],
        )
        .await?;
    Ok(row.map(|row| crate::store::postgres::cached_result(task, key, &row)))
}
