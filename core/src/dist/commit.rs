//! Committing ended attempts, a batch per transaction: fenced by the attempt each
//! claimed, their outputs, their states, their successors' counts and those now ready
//! (or skipped, in turn), and the ends of runs whose last task ended.
//!
//! A batch takes the same number of statements whatever its size (each one an
//! `UNNEST` of arrays, sent without a separate prepare), which is what makes a worker
//! fast on small tasks: the cost of a round trip is shared by every task of the batch.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::types::Type;
use tokio_postgres::{Client, Transaction};

use super::cascade::{Claiming, End, Released, end_runs, expand, release};
use super::protocol::{Claimed, Input, Place};
use crate::plan::Plan;
use crate::store::postgres::NOW_MS;
/// How a claimed attempt ended.
pub(super) enum Ended {
    /// Its output, encoded.
    Done { codec: &'static str, data: Vec<u8> },
    /// It failed; `retry_in` if its policy retries it.
    Failed {
        error: String,
        retry_in: Option<Duration>,
    },
    /// A fan-out (or sub-workflow) found its items: their tasks are to be made, and
    /// it gathers them once every item's output ended.
    Expanded { items: usize },
    /// The value of an `if` or `match` whose taken arm gave none: skipped (the arm's
    /// task did not succeed), or not taken.
    Unreached { not_taken: bool },
}

/// What committing an attempt's end did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Committed {
    /// Committed.
    Yes,
    /// The attempt was not this worker's any more (its lease expired and the task was
    /// claimed again, or the run was deleted): nothing was written.
    Lost,
}

/// An ended attempt to commit: the task claimed, its plan, how it ended, and what it
/// did with the result cache.
pub(super) struct Ending {
    pub(super) plan: Arc<Plan>,
    pub(super) claimed: Claimed,
    pub(super) ended: Ended,
    pub(super) cache: Option<CacheNote>,
}

/// A cached task's use of the result cache.
pub(super) enum CacheNote {
    /// Its result was loaded: computed by this run.
    Loaded { from: String },
    /// Its result, if it succeeded, is saved under `key` for task `task`, kept for
    /// `ttl` (for ever if `None`).
    Save {
        task: &'static str,
        key: String,
        ttl: Option<Duration>,
    },
}

/// How many of the tasks a commit makes ready its worker takes on at once, and their
/// lease.
#[derive(Debug, Clone, Copy)]
pub(super) struct TakeOn {
    pub(super) limit: usize,
    pub(super) lease: Duration,
}

/// Commits `endings` (attempts `owner` claimed) in one transaction; says for each
/// whether it was committed or had been lost, and returns the tasks it made ready
/// that `owner` claimed (up to `take_on`'s limit). Fails, committing nothing, if the
/// database fails.
pub(super) async fn commit(
    client: &mut Client,
    owner: &str,
    endings: &[&Ending],
    take_on: TakeOn,
) -> Result<(Vec<Committed>, Vec<Claimed>), tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    // A task's end need not wait for the disk: if the server crashes before it is
    // flushed, it is lost with every later commit (never one without an earlier
    // one), and the task runs again. The end of a run does wait (below): whoever
    // waits for the run is told only what lasts.
    // Every statement here finds its rows by key: a planner with a new database's empty
    // statistics must not scan the tasks' table once per row of a batch (it did, and a
    // commit took a second).
    transaction
        .batch_execute("SET LOCAL synchronous_commit = off; SET LOCAL enable_seqscan = off")
        .await?;
    // The runs' rows first, in one order: commits of a run (and a cancel) queue there,
    // so their cascades over its tasks never deadlock one another and a cancel waits
    // its turn. (Key-share locks, letting a run's commits go side by side, measured
    // 6-20% faster, but a cancel could then starve behind overlapping commits, and
    // cascades through skipped tasks could deadlock.)
    let mut runs: Vec<&str> = endings.iter().map(|e| e.claimed.run.as_str()).collect();
    runs.sort_unstable();
    runs.dedup();
    // A run cancelled meanwhile: an attempt of it that would run again (a retry, a
    // fan-out's items) is cancelled instead.
    let cancelled: std::collections::HashSet<String> = transaction
        .query_typed(
            "SELECT id, status FROM aqueduct_dist_runs WHERE id = ANY($1) ORDER BY id
             FOR UPDATE",
            &[(&runs, Type::TEXT_ARRAY)],
        )
        .await?
        .iter()
        .filter(|row| row.get::<_, &str>(1) == "cancelled")
        .map(|row| row.get(0))
        .collect();
    let stops = |ending: &Ending| {
        cancelled.contains(&ending.claimed.run)
            && matches!(
                ending.ended,
                Ended::Failed {
                    retry_in: Some(_),
                    ..
                } | Ended::Expanded { .. }
            )
    };
    let stopped: Vec<bool> = endings.iter().map(|e| stops(e)).collect();
    let committed = fence(&transaction, owner, endings, &stopped).await?;
    let outcomes: Vec<Committed> = (0..endings.len())
        .map(|i| {
            if committed[i] {
                Committed::Yes
            } else {
                Committed::Lost
            }
        })
        .collect();
    save_cached(&transaction, endings, &committed).await?;
    let expanding: Vec<bool> = committed
        .iter()
        .zip(&stopped)
        .map(|(committed, stopped)| *committed && !stopped)
        .collect();
    let added = expand(&transaction, endings, &expanding).await?;
    // Each run's tasks that ended here (a retried attempt did not, nor a fan-out that
    // made its items), and whether each succeeded.
    let mut ended: Vec<super::cascade::TaskEnd<'_>> = Vec::new();
    let mut cancelled_ends: Vec<&str> = Vec::new();
    for ((ending, _), stopped) in endings
        .iter()
        .zip(&committed)
        .zip(&stopped)
        .filter(|((_, c), _)| **c)
    {
        if *stopped {
            cancelled_ends.push(&ending.claimed.run);
            continue;
        }
        let place = ending.claimed.place;
        let end = match &ending.ended {
            Ended::Done { codec, data } => End::Done {
                arm: arm_of(&ending.plan, place, codec, data),
            },
            Ended::Failed {
                retry_in: Some(_), ..
            }
            | Ended::Expanded { .. } => continue,
            Ended::Failed { .. } => End::Failed,
            Ended::Unreached { not_taken } => End::unreached(*not_taken),
        };
        ended.push((&ending.claimed.run, &*ending.plan, place, end));
    }
    // A retried task is ready again, and the end of a limited task's attempt may let
    // another attempt of its task start.
    let claimable = endings.iter().zip(&committed).any(|(e, c)| {
        let limited = super::execute::Target::of(e.claimed.place)
            .call(&e.plan)
            .is_some_and(|(plan, node)| plan.graph.info(node).concurrency.is_some());
        *c && (limited
            || matches!(
                e.ended,
                Ended::Failed {
                    retry_in: Some(_),
                    ..
                }
            ))
    });
    let claiming = Claiming {
        owner,
        lease_ms: take_on.lease.as_millis() as i64,
        limit: take_on.limit,
        // The runs of the attempts committed (one that was lost may be of a run
        // deleted and submitted again).
        runs: endings
            .iter()
            .zip(&committed)
            .filter(|(_, committed)| **committed)
            .map(|(e, _)| {
                let claimed = &e.claimed;
                (
                    claimed.run.as_str(),
                    (claimed.fingerprint.as_str(), claimed.submitted_ms),
                )
            })
            .collect(),
    };
    let Released {
        mut counts,
        ready,
        claimed,
    } = release(&transaction, ended, &claiming).await?;
    for run in cancelled_ends {
        counts.entry(run).or_default().finished += 1;
    }
    for (run, tasks) in added {
        counts.entry(run).or_default().added += tasks;
    }
    for ending in endings {
        if let Some(ends) = counts.get_mut(ending.claimed.run.as_str()) {
            ends.output = ending.plan.graph.output() as i32;
        }
    }
    let finished = end_runs(&transaction, &counts).await?;
    // Claims wait for the disk: a claim lost in a crash would hand the task's next
    // claim the same attempt number, which the fence could not tell from this one.
    if !finished.is_empty() || !claimed.is_empty() {
        transaction
            .batch_execute("SET LOCAL synchronous_commit = on")
            .await?;
    }
    // Wake the idle workers, and whoever waits for a run that ended.
    let mut channels: Vec<&str> = Vec::new();
    let mut payloads: Vec<&str> = Vec::new();
    if ready || claimable || counts.values().any(|c| c.added > 0) {
        channels.push("aqueduct_ready");
        payloads.push("");
    }
    for run in &finished {
        channels.push("aqueduct_done");
        payloads.push(run);
    }
    if !channels.is_empty() {
        transaction
            .query_typed(
                "SELECT pg_notify(c, p) FROM UNNEST($1::TEXT[], $2::TEXT[]) AS n(c, p)",
                &[(&channels, Type::TEXT_ARRAY), (&payloads, Type::TEXT_ARRAY)],
            )
            .await?;
    }
    transaction.commit().await?;
    Ok((outcomes, claimed))
}

/// Ends each attempt that is still the one its task's row holds (`running`, its
/// attempt, `owner`'s lease): done, failed, or ready again after a retry's delay.
/// Says which were.
async fn fence(
    transaction: &Transaction<'_>,
    owner: &str,
    endings: &[&Ending],
    stopped: &[bool],
) -> Result<Vec<bool>, tokio_postgres::Error> {
    let count = endings.len();
    let (runs, nodes, items, parts) = Place::keys(
        endings
            .iter()
            .map(|e| (e.claimed.run.as_str(), e.claimed.place)),
    );
    let attempts: Vec<i32> = endings.iter().map(|e| e.claimed.attempt as i32).collect();
    let indexes: Vec<i32> = (0..count as i32).collect();
    let (mut states, mut errors, mut delays, mut pending) = (
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
    );
    let (mut codecs, mut datas) = (Vec::with_capacity(count), Vec::with_capacity(count));
    let loaded: Vec<Option<&str>> = endings
        .iter()
        .map(|e| match &e.cache {
            Some(CacheNote::Loaded { from }) => Some(from.as_str()),
            _ => None,
        })
        .collect();
    for (ending, stopped) in endings.iter().zip(stopped) {
        let (state, error, delay, waits) = match &ending.ended {
            _ if *stopped => ("cancelled", None, 0, None),
            Ended::Done { .. } => ("done", None, 0, None),
            Ended::Failed {
                error,
                retry_in: Some(delay),
            } => (
                "ready",
                Some(error.as_str()),
                delay.as_millis() as i64,
                None,
            ),
            Ended::Failed { error, .. } => ("failed", Some(error.as_str()), 0, None),
            Ended::Unreached { not_taken } => (End::unreached(*not_taken).state(), None, 0, None),
            Ended::Expanded { items } => ("waiting", None, 0, Some(*items as i32)),
        };
        let output = match &ending.ended {
            Ended::Done { codec, data } if !stopped => Some((*codec, data.as_slice())),
            _ => None,
        };
        codecs.push(output.map(|(codec, _)| codec));
        datas.push(output.map(|(_, data)| data));
        states.push(state);
        errors.push(error);
        delays.push(delay);
        pending.push(waits);
    }
    let rows = transaction
        .query_typed(
            &format!(
                "UPDATE aqueduct_dist_tasks t SET state = e.state,
                     error = CASE WHEN e.state = 'done' THEN t.error ELSE e.error END,
                     lease_owner = NULL, lease_ms = NULL,
                     ended_ms = CASE WHEN e.state IN ('ready', 'waiting') THEN t.ended_ms
                                     ELSE {NOW_MS} END,
                     available_ms = CASE WHEN e.state = 'ready' THEN {NOW_MS} + e.delay
                                         ELSE t.available_ms END,
                     pending = COALESCE(e.pending, t.pending),
                     expanded = t.expanded OR e.pending IS NOT NULL,
                     cached_from = e.cached_from, codec = e.codec, data = e.data
                 FROM UNNEST($2::TEXT[], $3::INTEGER[], $4::INTEGER[], $5::INTEGER[],
                             $6::INTEGER[], $7::TEXT[], $8::TEXT[], $9::BIGINT[], $10::INTEGER[],
                             $11::TEXT[], $12::INTEGER[], $13::TEXT[], $14::BYTEA[])
                      AS e(run_id, node, item, part, attempt, state, error, delay, pending,
                           cached_from, i, codec, data)
                 WHERE t.run_id = e.run_id AND t.node = e.node AND t.item = e.item
                   AND t.part = e.part AND t.attempt = e.attempt
                   AND t.state = 'running' AND t.lease_owner = $1
                 RETURNING e.i"
            ),
            &[
                (&owner, Type::TEXT),
                (&runs, Type::TEXT_ARRAY),
                (&nodes, Type::INT4_ARRAY),
                (&items, Type::INT4_ARRAY),
                (&parts, Type::INT4_ARRAY),
                (&attempts, Type::INT4_ARRAY),
                (&states, Type::TEXT_ARRAY),
                (&errors, Type::TEXT_ARRAY),
                (&delays, Type::INT8_ARRAY),
                (&pending, Type::INT4_ARRAY),
                (&loaded, Type::TEXT_ARRAY),
                (&indexes, Type::INT4_ARRAY),
                (&codecs, Type::TEXT_ARRAY),
                (&datas, Type::BYTEA_ARRAY),
            ],
        )
        .await?;
    let mut committed = vec![false; count];
    for row in rows {
        committed[row.get::<_, i32>(0) as usize] = true;
    }
    Ok(committed)
}

/// The arm a decision at `place` of `plan` took, from its output (`None` for any
/// other task, or an output it cannot read: its arms then all end not taken).
fn arm_of(plan: &Plan, place: Place, codec: &str, data: &[u8]) -> Option<u32> {
    let (scope, node) = super::execute::Target::of(place).call(plan)?;
    if scope.graph.kind(node) != crate::task::Kind::Decision {
        return None;
    }
    let decided = Input::Done(codec.to_owned(), data.to_owned());
    crate::value::arm_in(&super::served::decode(scope, node, decided).ok()?)
}

/// Saves the results of the cached tasks that `committed` with a result, for later
/// runs (replacing what their keys held).
async fn save_cached(
    transaction: &Transaction<'_>,
    endings: &[&Ending],
    committed: &[bool],
) -> Result<(), tokio_postgres::Error> {
    let (mut tasks, mut keys, mut codecs, mut datas, mut runs, mut ttls) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    // One row per key: two calls of a batch with one key (the same inputs) computed
    // the same result.
    let mut seen = std::collections::HashSet::new();
    for (ending, _) in endings.iter().zip(committed).filter(|(_, c)| **c) {
        if let (Ended::Done { codec, data }, Some(CacheNote::Save { task, key, ttl })) =
            (&ending.ended, &ending.cache)
            && seen.insert((*task, key.as_str()))
        {
            tasks.push(*task);
            keys.push(key.as_str());
            codecs.push(*codec);
            datas.push(data.as_slice());
            runs.push(ending.claimed.run.as_str());
            ttls.push(ttl.map(|ttl| ttl.as_millis() as i64));
        }
    }
    if tasks.is_empty() {
        return Ok(());
    }
    transaction
        .execute_typed(
            &format!(
                "INSERT INTO aqueduct_cache
                     (task, key, codec, schema, data, run_id, created_ms, expires_ms)
                 SELECT c.task, c.key, c.codec, $7, c.data, c.run_id, {NOW_MS},
                        {NOW_MS} + c.ttl
                 FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BYTEA[], $5::TEXT[],
                             $6::BIGINT[]) AS c(task, key, codec, data, run_id, ttl)
                 ON CONFLICT (task, key) DO UPDATE SET codec = EXCLUDED.codec,
                     schema = EXCLUDED.schema, data = EXCLUDED.data, run_id = EXCLUDED.run_id,
                     created_ms = EXCLUDED.created_ms, expires_ms = EXCLUDED.expires_ms"
            ),
            &[
                (&tasks, Type::TEXT_ARRAY),
                (&keys, Type::TEXT_ARRAY),
                (&codecs, Type::TEXT_ARRAY),
                (&datas, Type::BYTEA_ARRAY),
                (&runs, Type::TEXT_ARRAY),
                (&ttls, Type::INT8_ARRAY),
                (&(crate::plan::SCHEMA as i32), Type::INT4),
            ],
        )
        .await?;
    Ok(())
}
