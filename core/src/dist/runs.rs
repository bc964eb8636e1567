//! The SQL of runs as a whole: submitting one with its tasks, cancelling one, and the
//! schema a database holds. Every value is bound; every time is the server's clock.

use tokio_postgres::Client;

use crate::error::Error;
use crate::plan::Plan;
use crate::store::StoreError;
use crate::store::postgres::NOW_MS;
use crate::task::Kind;

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
    let limits: Vec<Option<i32>> = tasks
        .iter()
        .map(|&n| graph.info(n).concurrency.map(|max| max as i32))
        .collect();
    transaction
        .execute(
            "INSERT INTO aqueduct_dist_tasks (run_id, node, name, task, pending, state, concurrency)
             SELECT $1, * FROM UNNEST($2::INTEGER[], $3::TEXT[], $4::TEXT[], $5::INTEGER[],
                                      $6::TEXT[], $7::INTEGER[])",
            &[&id, &nodes, &names, &task_names, &pending, &states, &limits],
        )
        .await?;
    transaction
        .execute("SELECT pg_notify('aqueduct_ready', $1)", &[&id])
        .await?;
    Ok(transaction.commit().await?)
}

/// Gives the planner statistics of the tasks' table if it has none (a new database):
/// without them it estimates one ready row, and each claim reads and sorts every ready
/// task of a run before its limit instead of scanning the ready index in order, until
/// autovacuum analyzes the table (up to a minute). Best effort: a role that may not
/// analyze the table leaves it to autovacuum. Once it has looked, `analyzed` spares
/// later submissions the look.
pub(super) async fn analyze_once(client: &Client, analyzed: &std::sync::atomic::AtomicBool) {
    use std::sync::atomic::Ordering::Relaxed;
    if analyzed.load(Relaxed) {
        return;
    }
    let unanalyzed = client
        .query_one(
            "SELECT COALESCE((SELECT last_analyze IS NULL AND last_autoanalyze IS NULL
                              FROM pg_stat_user_tables
                              WHERE relid = 'aqueduct_dist_tasks'::regclass), false)",
            &[],
        )
        .await;
    let Ok(row) = unanalyzed else { return };
    if row.get::<_, bool>(0)
        && let Err(error) = client.batch_execute("ANALYZE aqueduct_dist_tasks").await
    {
        tracing::debug!(error = %super::explain(&error), "cannot analyze the tasks' table");
        return;
    }
    analyzed.store(true, Relaxed);
}

/// The database's store schema, if a newer build migrated it past this one's.
pub(super) async fn newer_schema(client: &Client) -> Result<Option<i32>, tokio_postgres::Error> {
    let version: i32 = client
        .query_one("SELECT version FROM aqueduct_schema", &[])
        .await?
        .get(0);
    Ok((version > crate::store::postgres::schema::VERSION).then_some(version))
}

/// Cancels run `id` if it runs: its tasks not started are `cancelled` (nothing more
/// starts; the attempts running end and commit), and the run ends `cancelled`.
/// Returns whether it did.
pub(super) async fn cancel(client: &mut Client, id: &str) -> Result<bool, tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    let running = transaction
        .query_opt(
            "SELECT 1 FROM aqueduct_dist_runs WHERE id = $1 AND status = 'running' FOR UPDATE",
            &[&id],
        )
        .await?
        .is_some();
    if !running {
        transaction.commit().await?;
        return Ok(false);
    }
    let cancelled = transaction
        .execute(
            &format!(
                "UPDATE aqueduct_dist_tasks SET state = 'cancelled', ended_ms = {NOW_MS},
                     lease_owner = NULL, lease_ms = NULL
                 WHERE run_id = $1 AND state IN ('waiting', 'ready')"
            ),
            &[&id],
        )
        .await?;
    if cancelled == 0 {
        // Nothing left to cancel: its last attempts are running, and it ends as they do.
        transaction.rollback().await?;
        return Ok(false);
    }
    transaction
        .execute(
            &format!(
                "UPDATE aqueduct_dist_runs SET status = 'cancelled', ended_ms = {NOW_MS},
                     unfinished = unfinished - $2
                 WHERE id = $1"
            ),
            &[&id, &(cancelled as i32)],
        )
        .await?;
    transaction
        .execute("SELECT pg_notify('aqueduct_done', $1)", &[&id])
        .await?;
    transaction.commit().await?;
    Ok(true)
}

/// Deletes the runs of `workflow` that ended before `before_ms` (the server's clock),
/// with their tasks and outputs; a run still running stays. Returns how many went.
pub(super) async fn delete_ended(
    client: &Client,
    workflow: &str,
    before_ms: i64,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "DELETE FROM aqueduct_dist_runs
             WHERE workflow = $1 AND status <> 'running' AND ended_ms < $2",
            &[&workflow, &before_ms],
        )
        .await
}
