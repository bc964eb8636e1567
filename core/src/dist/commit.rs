//! Committing ended attempts, a batch per transaction: fenced by the attempt each
//! claimed, their outputs, their states, their successors' counts and those now ready
//! (or skipped, in turn), and the ends of runs whose last task ended.
//!
//! A batch takes the same number of statements whatever its size (each one an
//! `UNNEST` of arrays, sent without a separate prepare), which is what makes a worker
//! fast on small tasks: the cost of a round trip is shared by every task of the batch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::types::Type;
use tokio_postgres::{Client, Transaction};

use super::protocol::{Claimed, Place};
use crate::plan::{Call, Plan};
use crate::store::postgres::NOW_MS;
use crate::task::Kind;

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

/// Commits `endings` (attempts `owner` claimed) in one transaction; says for each
/// whether it was committed or had been lost. Fails, committing nothing, if the
/// database fails.
pub(super) async fn commit(
    client: &mut Client,
    owner: &str,
    endings: &[&Ending],
) -> Result<Vec<Committed>, tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    // A task's end need not wait for the disk: if the server crashes before it is
    // flushed, it is lost with every later commit (never one without an earlier
    // one), and the task runs again. The end of a run does wait (below): whoever
    // waits for the run is told only what lasts.
    transaction
        .batch_execute("SET LOCAL synchronous_commit = off")
        .await?;
    // The runs' rows first, in one order: commits touching a run queue there, so their
    // cascades over its tasks (in any order) never deadlock one another.
    let mut runs: Vec<&str> = endings.iter().map(|e| e.claimed.run.as_str()).collect();
    runs.sort_unstable();
    runs.dedup();
    // A run cancelled meanwhile: an attempt of it that would run again (a retry, a
    // fan-out's items) is cancelled instead.
    let cancelled: std::collections::HashSet<String> = transaction
        .query_typed(
            "SELECT id, status FROM aqueduct_dist_runs WHERE id = ANY($1) ORDER BY id FOR UPDATE",
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
    save_outputs(&transaction, endings, &committed).await?;
    save_cached(&transaction, endings, &committed).await?;
    let expanding: Vec<bool> = committed
        .iter()
        .zip(&stopped)
        .map(|(committed, stopped)| *committed && !stopped)
        .collect();
    let added = expand(&transaction, endings, &expanding).await?;
    // Each run's tasks that ended here (a retried attempt did not, nor a fan-out that
    // made its items), and whether each succeeded.
    let mut ended: Vec<(&str, &Plan, Place, bool)> = Vec::new();
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
        let succeeded = match &ending.ended {
            Ended::Done { .. } => true,
            Ended::Failed {
                retry_in: Some(_), ..
            }
            | Ended::Expanded { .. } => continue,
            Ended::Failed { .. } => false,
        };
        let place = ending.claimed.place;
        ended.push((&ending.claimed.run, &*ending.plan, place, succeeded));
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
    let (mut counts, ready) = release(&transaction, ended).await?;
    for run in cancelled_ends {
        counts.entry(run).or_default().finished += 1;
    }
    for (run, tasks) in added {
        counts.entry(run).or_default().added += tasks;
    }
    let finished = end_runs(&transaction, &counts).await?;
    if !finished.is_empty() {
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
    Ok(outcomes)
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
    let runs: Vec<&str> = endings.iter().map(|e| e.claimed.run.as_str()).collect();
    let places: Vec<Place> = endings.iter().map(|e| e.claimed.place).collect();
    let (nodes, items, parts) = Place::columns(&places);
    let attempts: Vec<i32> = endings.iter().map(|e| e.claimed.attempt as i32).collect();
    let indexes: Vec<i32> = (0..count as i32).collect();
    let (mut states, mut errors, mut delays, mut pending) = (
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
    );
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
            Ended::Expanded { items } => ("waiting", None, 0, Some(*items as i32)),
        };
        states.push(state);
        errors.push(error);
        delays.push(delay);
        pending.push(waits);
    }
    let rows = transaction
        .query_typed(
            &format!(
                "UPDATE aqueduct_dist_tasks t SET state = e.state, error = e.error,
                     lease_owner = NULL, lease_ms = NULL,
                     ended_ms = CASE WHEN e.state IN ('ready', 'waiting') THEN t.ended_ms
                                     ELSE {NOW_MS} END,
                     available_ms = CASE WHEN e.state = 'ready' THEN {NOW_MS} + e.delay
                                         ELSE t.available_ms END,
                     pending = COALESCE(e.pending, t.pending),
                     expanded = t.expanded OR e.pending IS NOT NULL,
                     cached_from = e.cached_from
                 FROM UNNEST($2::TEXT[], $3::INTEGER[], $4::INTEGER[], $5::INTEGER[],
                             $6::INTEGER[], $7::TEXT[], $8::TEXT[], $9::BIGINT[], $10::INTEGER[],
                             $11::TEXT[], $12::INTEGER[])
                      AS e(run_id, node, item, part, attempt, state, error, delay, pending,
                           cached_from, i)
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
            ],
        )
        .await?;
    let mut committed = vec![false; count];
    for row in rows {
        committed[row.get::<_, i32>(0) as usize] = true;
    }
    Ok(committed)
}

/// Inserts the outputs of the attempts that were `committed` and succeeded.
async fn save_outputs(
    transaction: &Transaction<'_>,
    endings: &[&Ending],
    committed: &[bool],
) -> Result<(), tokio_postgres::Error> {
    let (mut runs, mut places, mut codecs, mut datas) = (vec![], vec![], vec![], vec![]);
    for (ending, _) in endings.iter().zip(committed).filter(|(_, c)| **c) {
        if let Ended::Done { codec, data } = &ending.ended {
            runs.push(ending.claimed.run.as_str());
            places.push(ending.claimed.place);
            codecs.push(*codec);
            datas.push(data.as_slice());
        }
    }
    if runs.is_empty() {
        return Ok(());
    }
    let (nodes, items, parts) = Place::columns(&places);
    transaction
        .execute_typed(
            "INSERT INTO aqueduct_dist_outputs (run_id, node, item, part, codec, data)
             SELECT * FROM UNNEST($1::TEXT[], $2::INTEGER[], $3::INTEGER[], $4::INTEGER[],
                                  $5::TEXT[], $6::BYTEA[])
             ON CONFLICT (run_id, node, item, part) DO NOTHING",
            &[
                (&runs, Type::TEXT_ARRAY),
                (&nodes, Type::INT4_ARRAY),
                (&items, Type::INT4_ARRAY),
                (&parts, Type::INT4_ARRAY),
                (&codecs, Type::TEXT_ARRAY),
                (&datas, Type::BYTEA_ARRAY),
            ],
        )
        .await?;
    Ok(())
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

/// How many tasks of a run ended in a batch, how many of them failed, and how many
/// its fan-outs' items added.
#[derive(Default)]
struct Ends {
    finished: i32,
    failed: i32,
    added: i32,
}

/// Counts the `ended` tasks (run, plan, node, succeeded) in their successors, one
/// statement per wave: those whose last input arrived become ready, or skipped if one
/// they require did not succeed (and are counted in their own successors in the next
/// wave). Returns each run's ends (those given included) and whether any task became
/// ready.
async fn release<'a>(
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
fn successors(plan: &Plan, place: Place) -> Vec<(Place, bool)> {
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
async fn expand<'a>(
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
async fn end_runs(
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
