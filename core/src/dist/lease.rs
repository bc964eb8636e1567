//! A worker's leases, on a connection of their own: the heartbeat that renews the
//! attempts it runs (and records that the worker is at work), and the reaper that
//! returns expired leases to ready. Apart from the claiming loop, so that a long read
//! or a slow claim never lets the worker's leases lapse. And their SQL.

use std::time::Duration;

use tokio::sync::watch;

use tokio_postgres::Client;
use tokio_postgres::types::Type;

use super::Cluster;
use super::protocol::Place;
use super::start::InFlight;
use crate::store::postgres::NOW_MS;

/// Renews the leases of the attempts in `in_flight` every third of `lease`, and
/// reaps expired ones every half, until `stop` turns true; reconnects when the
/// database went away.
pub(super) async fn keep(
    cluster: Cluster,
    owner: String,
    fingerprints: Vec<String>,
    lease: Duration,
    in_flight: InFlight,
    mut stop: watch::Receiver<bool>,
) {
    let mut client: Option<tokio_postgres::Client> = None;
    let mut beats = tokio::time::interval(lease / 3);
    let mut reaps = tokio::time::interval(lease / 2);
    loop {
        let beat = tokio::select! {
            _ = beats.tick() => true,
            _ = reaps.tick() => false,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        if client
            .as_ref()
            .is_none_or(tokio_postgres::Client::is_closed)
        {
            client = cluster.client().await.ok();
        }
        let Some(connected) = &client else {
            tracing::warn!("cannot reach the cluster to renew leases; retrying");
            continue;
        };
        if beat {
            let held: Vec<Held> = super::served::lock(&in_flight).iter().cloned().collect();
            let renewed = async {
                heartbeat(connected, &owner, lease, &held).await?;
                present(connected, &owner, &fingerprints, lease).await
            };
            if let Err(error) = renewed.await {
                tracing::warn!(error = %super::explain(&error), "heartbeat failed");
            }
        } else if let Err(error) = reap(connected, lease).await {
            tracing::warn!(error = %super::explain(&error), "reaping expired leases failed");
        }
    }
}

/// An attempt a worker runs: its run, its place, its attempt.
pub(super) type Held = (String, Place, i32);

/// Extends the leases of the attempts `owner` is running (`running`: run, node,
/// attempt) — only those: an attempt whose commit it gave up on must expire, so that
/// another worker runs it.
pub(super) async fn heartbeat(
    client: &Client,
    owner: &str,
    lease: Duration,
    running: &[Held],
) -> Result<u64, tokio_postgres::Error> {
    if running.is_empty() {
        return Ok(0);
    }
    let (runs, nodes, items, parts) =
        Place::keys(running.iter().map(|(run, place, _)| (run.as_str(), *place)));
    let attempts: Vec<i32> = running.iter().map(|(_, _, attempt)| *attempt).collect();
    client
        .execute(
            &format!(
                "UPDATE aqueduct_dist_tasks t SET lease_ms = {NOW_MS} + $2
                 WHERE (t.run_id, t.node, t.item, t.part) IN (
                     SELECT t.run_id, t.node, t.item, t.part FROM aqueduct_dist_tasks t
                     JOIN UNNEST($3::TEXT[], $4::INTEGER[], $5::INTEGER[], $6::INTEGER[],
                                 $7::INTEGER[])
                          AS r(run_id, node, item, part, attempt)
                       ON t.run_id = r.run_id AND t.node = r.node AND t.item = r.item
                      AND t.part = r.part AND t.attempt = r.attempt
                     WHERE t.lease_owner = $1 AND t.state = 'running'
                     -- A row a commit holds is ending: it needs no renewal, and waiting
                     -- for it could deadlock with that commit.
                     FOR UPDATE SKIP LOCKED)"
            ),
            &[
                &owner,
                &(lease.as_millis() as i64),
                &runs,
                &nodes,
                &items,
                &parts,
                &attempts,
            ],
        )
        .await
}

/// Makes the tasks whose lease expired (their worker died or stalled) ready again;
/// idempotent, run by any worker. Returns how many.
///
/// Not within a lease of the server's start (the lease of the worker that holds it, as
/// it recorded itself, else `grace`, the reaper's own): leases that lapsed while the
/// server was down are their workers' to renew once they reconnect, which they do
/// within a third of a lease. An outage is not a worker lost: reaped, the attempts
/// would run twice and count towards a task's lost workers. (A server that recovered
/// from a crash for longer than a lease, or a replica promoted, gives no such grace.)
pub(super) async fn reap(client: &Client, grace: Duration) -> Result<u64, tokio_postgres::Error> {
    let reaped = client
        .execute(
            &format!(
                "UPDATE aqueduct_dist_tasks SET state = 'ready', lease_owner = NULL,
                     lease_ms = NULL, available_ms = {NOW_MS}, reaped = reaped + 1
                 WHERE (run_id, node, item, part) IN (
                     SELECT t.run_id, t.node, t.item, t.part FROM aqueduct_dist_tasks t
                     WHERE t.state = 'running' AND t.lease_ms < {NOW_MS}
                       -- A cancelled run's attempts are not run again.
                       AND t.run_id IN (SELECT id FROM aqueduct_dist_runs
                                        WHERE status = 'running')
                       AND {NOW_MS} > (extract(epoch FROM pg_postmaster_start_time())
                                       * 1000)::BIGINT
                           + COALESCE((SELECT w.lease_ms FROM aqueduct_dist_workers w
                                       WHERE w.id = t.lease_owner), $1)
                     FOR UPDATE OF t SKIP LOCKED)"
            ),
            &[&(grace.as_millis() as i64)],
        )
        .await?;
    if reaped > 0 {
        client
            .execute("SELECT pg_notify('aqueduct_ready', 'reaped')", &[])
            .await?;
    }
    Ok(reaped)
}

/// Records that worker `owner` (serving `fingerprints`, leasing for `lease`) is at
/// work, now; what `runs` reads to say whether a run has a worker of its build.
pub(super) async fn present(
    client: &Client,
    owner: &str,
    fingerprints: &[String],
    lease: Duration,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute_typed(
            &format!(
                "INSERT INTO aqueduct_dist_workers (id, fingerprints, seen_ms, lease_ms)
                 VALUES ($1, $2, {NOW_MS}, $3)
                 ON CONFLICT (id) DO UPDATE SET seen_ms = EXCLUDED.seen_ms"
            ),
            &[
                (&owner, Type::TEXT),
                (&fingerprints, Type::TEXT_ARRAY),
                (&(lease.as_millis() as i64), Type::INT8),
            ],
        )
        .await?;
    Ok(())
}

/// Records that worker `owner` stopped; forgets the workers gone for a day.
pub(super) async fn absent(client: &Client, owner: &str) -> Result<(), tokio_postgres::Error> {
    client
        .execute_typed(
            &format!(
                "DELETE FROM aqueduct_dist_workers
                 WHERE id = $1 OR seen_ms + lease_ms < {NOW_MS} - 86400000"
            ),
            &[(&owner, Type::TEXT)],
        )
        .await?;
    Ok(())
}
