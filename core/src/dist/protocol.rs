//! The SQL of distributed runs: submitting a run, claiming tasks, committing their
//! ends (fenced by the attempt claimed), leases, and reading a run's end. Every value
//! is bound; every time is the server's clock.

use std::time::Duration;

use tokio_postgres::{Client, Transaction};

use crate::error::Error;
use crate::plan::Plan;
use crate::store::StoreError;
use crate::task::Kind;

use crate::store::postgres::NOW_MS;

/// Why a protocol step failed: the database, or a refusal in the user's terms.
pub(super) enum Failure {
    Sql(tokio_postgres::Error),
    Refused(Error),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(error: tokio_postgres::Error) -> Self {
        Failure::Sql(error)
    }
}

impl Failure {
    pub(super) fn into_error(self, location: &str, _run: &str) -> Error {
        match self {
            Failure::Refused(error) => error,
            Failure::Sql(error) => Error::Store(StoreError {
                location: location.to_owned(),
                message: super::explain(&error),
            }),
        }
    }
}

/// Records run `id` and its tasks, the roots ready, in one transaction; nothing if the
/// run was submitted before with the same build and parameters.
pub(super) async fn submit(
    client: &mut Client,
    plan: &Plan,
    fingerprint: &str,
    id: &str,
    input: &[u8],
) -> Result<(), Failure> {
    let graph = &plan.graph;
    let transaction = client.transaction().await?;
    let tasks: Vec<usize> = (0..graph.len())
        .filter(|&node| graph.kind(node) != Kind::Param)
        .collect();
    let inserted = transaction
        .execute(
            &format!(
                "INSERT INTO aqueduct_dist_runs
                     (id, workflow, fingerprint, input, status, submitted_ms, unfinished, failed)
                 VALUES ($1, $2, $3, $4, 'running', {NOW_MS}, $5, 0)
                 ON CONFLICT (id) DO NOTHING"
            ),
            &[
                &id,
                &graph.name(),
                &fingerprint,
                &input,
                &(tasks.len() as i32),
            ],
        )
        .await?;
    if inserted == 0 {
        let row = transaction
            .query_one(
                "SELECT fingerprint, input FROM aqueduct_dist_runs WHERE id = $1",
                &[&id],
            )
            .await?;
        let (known, given): (String, Vec<u8>) = (row.get(0), row.get(1));
        if known != fingerprint {
            return Err(Failure::Refused(Error::FingerprintMismatch {
                run: id.to_owned(),
                changes: "(the run was submitted by another build of the workflow)".into(),
            }));
        }
        if !crate::run::same_input(&given, input) {
            return Err(Failure::Refused(Error::InputChanged { run: id.to_owned() }));
        }
        return Ok(transaction.commit().await?);
    }
    let nodes: Vec<i32> = tasks.iter().map(|&n| n as i32).collect();
    let names: Vec<&str> = tasks.iter().map(|&n| graph.name_of(n)).collect();
    let task_names: Vec<&str> = tasks.iter().map(|&n| graph.info(n).name).collect();
    let pending: Vec<i32> = tasks.iter().map(|&n| plan.waits_for[n] as i32).collect();
    let states: Vec<&str> = pending
        .iter()
        .map(|&p| if p == 0 { "ready" } else { "waiting" })
        .collect();
    transaction
        .execute(
            "INSERT INTO aqueduct_dist_tasks (run_id, node, name, task, pending, state)
             SELECT $1, * FROM UNNEST($2::INTEGER[], $3::TEXT[], $4::TEXT[], $5::INTEGER[], $6::TEXT[])",
            &[&id, &nodes, &names, &task_names, &pending, &states],
        )
        .await?;
    transaction
        .execute("SELECT pg_notify('aqueduct_ready', $1)", &[&id])
        .await?;
    Ok(transaction.commit().await?)
}

/// A task a worker claimed: its run, node and the attempt it holds.
#[derive(Debug, Clone)]
pub(super) struct Claimed {
    pub(super) run: String,
    pub(super) node: usize,
    pub(super) attempt: u32,
    /// How many of its attempts were lost with their workers (not the task's failures:
    /// its retry policy does not count them).
    pub(super) reaped: u32,
    pub(super) fingerprint: String,
}

/// Claims up to `limit` ready tasks of runs of the `fingerprints` for `owner`, each
/// leased for `lease`.
pub(super) async fn claim(
    client: &Client,
    owner: &str,
    fingerprints: &[String],
    limit: i64,
    lease: Duration,
) -> Result<Vec<Claimed>, tokio_postgres::Error> {
    let lease = lease.as_millis() as i64;
    let rows = client
        .query(
            &format!(
                "WITH now AS (SELECT {NOW_MS} AS ms),
                 picked AS (
                     SELECT t.run_id, t.node FROM aqueduct_dist_tasks t
                     JOIN aqueduct_dist_runs r ON r.id = t.run_id, now
                     WHERE t.state = 'ready' AND t.available_ms <= now.ms
                       AND r.fingerprint = ANY($2)
                     ORDER BY t.available_ms, t.run_id, t.node
                     LIMIT $3
                     FOR UPDATE OF t SKIP LOCKED)
                 UPDATE aqueduct_dist_tasks t
                 SET state = 'running', attempt = t.attempt + 1, lease_owner = $1,
                     lease_ms = now.ms + $4, worker = $1,
                     started_ms = COALESCE(t.started_ms, now.ms)
                 FROM picked, now
                 WHERE t.run_id = picked.run_id AND t.node = picked.node
                 RETURNING t.run_id, t.node, t.attempt, t.reaped,
                           (SELECT fingerprint FROM aqueduct_dist_runs WHERE id = t.run_id)"
            ),
            &[&owner, &fingerprints, &limit, &lease],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| Claimed {
            run: row.get(0),
            node: row.get::<_, i32>(1) as usize,
            attempt: row.get::<_, i32>(2) as u32,
            reaped: row.get::<_, i32>(3).max(0) as u32,
            fingerprint: row.get(4),
        })
        .collect())
}

/// What became of one input of a claimed task.
pub(super) enum Input {
    /// Its output: codec and bytes.
    Done(String, Vec<u8>),
    /// Its last attempt's error.
    Failed(String),
    Skipped,
}

/// The run's parameters (encoded) and the given input nodes' ends.
pub(super) async fn inputs(
    client: &Client,
    run: &str,
    nodes: &[usize],
) -> Result<(Vec<u8>, Vec<(usize, Input)>), tokio_postgres::Error> {
    let params: Vec<u8> = client
        .query_one(
            "SELECT input FROM aqueduct_dist_runs WHERE id = $1",
            &[&run],
        )
        .await?
        .get(0);
    let wanted: Vec<i32> = nodes.iter().map(|&n| n as i32).collect();
    let rows = client
        .query(
            "SELECT t.node, t.state, t.error, o.codec, o.data
             FROM aqueduct_dist_tasks t
             LEFT JOIN aqueduct_dist_outputs o ON o.run_id = t.run_id AND o.node = t.node
             WHERE t.run_id = $1 AND t.node = ANY($2)",
            &[&run, &wanted],
        )
        .await?;
    let inputs = rows
        .iter()
        .map(|row| {
            let node = row.get::<_, i32>(0) as usize;
            let state: String = row.get(1);
            let input = match (state.as_str(), row.get::<_, Option<String>>(3)) {
                ("done", Some(codec)) => Input::Done(codec, row.get(4)),
                ("failed", _) => Input::Failed(row.get::<_, Option<String>>(2).unwrap_or_default()),
                _ => Input::Skipped,
            };
            (node, input)
        })
        .collect();
    Ok((params, inputs))
}

/// How a claimed attempt ended.
pub(super) enum Ended {
    /// Its output, encoded.
    Done { codec: &'static str, data: Vec<u8> },
    /// It failed; `retry_in` if its policy retries it.
    Failed {
        error: String,
        retry_in: Option<Duration>,
    },
}

/// What committing an attempt's end did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Committed {
    /// Committed.
    Yes,
    /// The attempt was not this worker's any more (its lease expired and the task was
    /// claimed again, or the run was deleted): nothing was written.
    Lost,
}

/// Commits the end of `claimed` for `owner` in one transaction: fenced by the attempt
/// claimed, the output, the task's state, its successors' counts and those now ready
/// (or skipped, in turn), and the run's end when its last task ends.
pub(super) async fn commit(
    client: &mut Client,
    plan: &Plan,
    claimed: &Claimed,
    owner: &str,
    ended: &Ended,
) -> Result<Committed, tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    let (run, node) = (claimed.run.as_str(), claimed.node as i32);
    let attempt = claimed.attempt as i32;
    // The run's row first: commits of one run queue here, so their cascades over
    // successors (in any order) never deadlock one another.
    transaction
        .execute(
            "SELECT 1 FROM aqueduct_dist_runs WHERE id = $1 FOR UPDATE",
            &[&run],
        )
        .await?;
    let fence = "WHERE run_id = $1 AND node = $2 AND attempt = $3 AND state = 'running'
                   AND lease_owner = $4";
    let (succeeded, changed) = match ended {
        Ended::Done { .. } => (
            true,
            transaction
                .execute(
                    &format!(
                        "UPDATE aqueduct_dist_tasks SET state = 'done', ended_ms = {NOW_MS},
                             lease_owner = NULL, lease_ms = NULL, error = NULL {fence}"
                    ),
                    &[&run, &node, &attempt, &owner],
                )
                .await?,
        ),
        Ended::Failed {
            error,
            retry_in: Some(delay),
        } => {
            let delay = delay.as_millis() as i64;
            let changed = transaction
                .execute(
                    &format!(
                        "UPDATE aqueduct_dist_tasks SET state = 'ready',
                             available_ms = {NOW_MS} + $6, lease_owner = NULL, lease_ms = NULL,
                             error = $5 {fence}"
                    ),
                    &[&run, &node, &attempt, &owner, error, &delay],
                )
                .await?;
            if changed == 1 {
                transaction
                    .execute("SELECT pg_notify('aqueduct_ready', $1)", &[&run])
                    .await?;
                transaction.commit().await?;
                return Ok(Committed::Yes);
            }
            (false, changed)
        }
        Ended::Failed { error, .. } => (
            false,
            transaction
                .execute(
                    &format!(
                        "UPDATE aqueduct_dist_tasks SET state = 'failed', ended_ms = {NOW_MS},
                             lease_owner = NULL, lease_ms = NULL, error = $5 {fence}"
                    ),
                    &[&run, &node, &attempt, &owner, error],
                )
                .await?,
        ),
    };
    if changed != 1 {
        // A zombie's late end: another attempt owns the task now.
        transaction.rollback().await?;
        return Ok(Committed::Lost);
    }
    if let Ended::Done { codec, data } = ended {
        transaction
            .execute(
                "INSERT INTO aqueduct_dist_outputs (run_id, node, codec, data)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (run_id, node) DO NOTHING",
                &[&run, &node, codec, data],
            )
            .await?;
    }
    let (finished, failed, ready) =
        release(&transaction, plan, run, claimed.node, succeeded).await?;
    if ready {
        transaction
            .execute("SELECT pg_notify('aqueduct_ready', $1)", &[&run])
            .await?;
    }
    // Last: the run's row, whose lock is then held only until the commit.
    let left: Option<i32> = transaction
        .query_opt(
            &format!(
                "UPDATE aqueduct_dist_runs SET unfinished = unfinished - $2, failed = failed + $3,
                     status = CASE WHEN unfinished - $2 > 0 THEN status
                                   WHEN failed + $3 > 0 THEN 'failed' ELSE 'succeeded' END,
                     ended_ms = CASE WHEN unfinished - $2 > 0 THEN NULL ELSE {NOW_MS} END
                 WHERE id = $1 RETURNING unfinished"
            ),
            &[&run, &finished, &failed],
        )
        .await?
        .map(|row| row.get(0));
    if left == Some(0) {
        transaction
            .execute("SELECT pg_notify('aqueduct_done', $1)", &[&run])
            .await?;
    }
    transaction.commit().await?;
    Ok(Committed::Yes)
}

/// Counts `node`'s end (`succeeded` or not) in its successors; those whose last input
/// arrived become ready, or skipped if one they require did not succeed (and count in
/// their own successors, in turn). Returns how many tasks ended (this one included),
/// how many failed, and whether any became ready.
async fn release(
    transaction: &Transaction<'_>,
    plan: &Plan,
    run: &str,
    node: usize,
    succeeded: bool,
) -> Result<(i32, i32, bool), tokio_postgres::Error> {
    let (mut finished, failed) = (1, i32::from(!succeeded));
    let mut ready = false;
    let mut ended = vec![(node, succeeded)];
    while let Some((node, succeeded)) = ended.pop() {
        for (&successor, &required) in plan.successors(node) {
            let dooms = i32::from(required && !succeeded);
            // One statement: the count, and the state it leads to (the SET expressions
            // read the row as it was).
            let row = transaction
                .query_opt(
                    &format!(
                        "UPDATE aqueduct_dist_tasks SET pending = pending - 1,
                             doomed = doomed + $3,
                             state = CASE WHEN pending > 1 THEN state
                                          WHEN doomed + $3 > 0 THEN 'skipped' ELSE 'ready' END,
                             ended_ms = CASE WHEN pending = 1 AND doomed + $3 > 0
                                             THEN {NOW_MS} ELSE ended_ms END,
                             available_ms = CASE WHEN pending = 1 AND doomed + $3 = 0
                                                 THEN {NOW_MS} ELSE available_ms END
                         WHERE run_id = $1 AND node = $2 AND state = 'waiting'
                         RETURNING state"
                    ),
                    &[&run, &(successor as i32), &dooms],
                )
                .await?;
            match row.as_ref().map(|row| row.get::<_, &str>(0)) {
                Some("skipped") => {
                    finished += 1;
                    ended.push((successor as usize, false));
                }
                Some("ready") => ready = true,
                _ => {}
            }
        }
    }
    Ok((finished, failed, ready))
}

/// Whether `error` may pass if the statement is tried again: the connection broke or
/// the server is going away (08…, 57P01–57P03), a deadlock or serialisation failure
/// (40P01, 40001), too many connections (53300).
pub(super) fn transient(error: &tokio_postgres::Error) -> bool {
    let Some(code) = error.code() else {
        return true;
    };
    let code = code.code();
    code.starts_with("08")
        || matches!(
            code,
            "40P01" | "40001" | "57P01" | "57P02" | "57P03" | "53300"
        )
}

/// An error's text as PostgreSQL's TEXT takes it (no NUL).
pub(super) fn text(error: &str) -> String {
    error.replace('\0', "\\0")
}

/// Extends the leases of the attempts `owner` is running (`running`: run, node,
/// attempt) — only those: an attempt whose commit it gave up on must expire, so that
/// another worker runs it.
pub(super) async fn heartbeat(
    client: &Client,
    owner: &str,
    lease: Duration,
    running: &[(String, i32, i32)],
) -> Result<u64, tokio_postgres::Error> {
    if running.is_empty() {
        return Ok(0);
    }
    let runs: Vec<&str> = running.iter().map(|(run, _, _)| run.as_str()).collect();
    let nodes: Vec<i32> = running.iter().map(|(_, node, _)| *node).collect();
    let attempts: Vec<i32> = running.iter().map(|(_, _, attempt)| *attempt).collect();
    client
        .execute(
            &format!(
                "UPDATE aqueduct_dist_tasks t SET lease_ms = {NOW_MS} + $2
                 FROM UNNEST($3::TEXT[], $4::INTEGER[], $5::INTEGER[]) AS r(run_id, node, attempt)
                 WHERE t.run_id = r.run_id AND t.node = r.node AND t.attempt = r.attempt
                   AND t.lease_owner = $1 AND t.state = 'running'"
            ),
            &[
                &owner,
                &(lease.as_millis() as i64),
                &runs,
                &nodes,
                &attempts,
            ],
        )
        .await
}

/// Makes the tasks whose lease expired (their worker died or stalled) ready again;
/// idempotent, run by any worker. Returns how many.
pub(super) async fn reap(client: &Client) -> Result<u64, tokio_postgres::Error> {
    let reaped = client
        .execute(
            &format!(
                "UPDATE aqueduct_dist_tasks SET state = 'ready', lease_owner = NULL,
                     lease_ms = NULL, available_ms = {NOW_MS}, reaped = reaped + 1
                 WHERE (run_id, node) IN (
                     SELECT run_id, node FROM aqueduct_dist_tasks
                     WHERE state = 'running' AND lease_ms < {NOW_MS}
                     FOR UPDATE SKIP LOCKED)"
            ),
            &[],
        )
        .await?;
    if reaped > 0 {
        client
            .execute("SELECT pg_notify('aqueduct_ready', 'reaped')", &[])
            .await?;
    }
    Ok(reaped)
}
