//! A [`Worker`]: claims ready tasks of the workflows it serves, runs them, commits
//! their ends; renews its leases, returns expired ones to ready, and reconnects when
//! the database goes away.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::task::JoinSet;

use super::execute::Served;
use super::protocol::{self, Claimed, Committed};
use super::{Cluster, distributable};
use crate::error::Error;
use crate::plan::{Params, Workflow};
use crate::task::Kind;

/// A process's share of a [`Cluster`]'s work: it runs the tasks of the runs of the
/// workflows it serves (those whose fingerprint is its build's), at most
/// [`slots`](Self::slots) at once.
///
/// ```no_run
/// # use aqueduct::prelude::*;
/// # #[task] fn double(x: &u64) -> u64 { x * 2 }
/// # workflow! { #[durable] fn doubled(x: u64) -> u64 { double(&x) } }
/// # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
/// use aqueduct::dist::{Cluster, Worker};
/// let cluster = Cluster::connect("postgres://aqueduct@db/runs?sslmode=verify-full")?;
/// Worker::new(cluster)
///     .serve(doubled::workflow())?
///     .slots(8)
///     .run(async { tokio::signal::ctrl_c().await.ok(); })
///     .await?;
/// # Ok(()) }
/// ```
pub struct Worker {
    cluster: Cluster,
    served: Vec<Arc<Served>>,
    slots: usize,
    lease: Duration,
    poll: Duration,
    id: String,
}

/// What a [`Worker`] did, when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Attempts it claimed.
    pub claimed: u64,
    /// Attempts whose end it committed.
    pub committed: u64,
    /// Attempts whose end it could not commit because it had lost them (its lease
    /// expired and another worker claimed the task): their results were dropped.
    pub lost: u64,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Counts {
    claimed: AtomicU64,
    committed: AtomicU64,
    lost: AtomicU64,
}

impl Worker {
    /// A worker of `cluster` serving nothing yet, with as many slots as cores and a
    /// lease of 30 seconds.
    pub fn new(cluster: Cluster) -> Self {
        Self {
            cluster,
            served: Vec::new(),
            slots: std::thread::available_parallelism().map_or(2, |n| n.get()),
            lease: crate::store::LEASE_TTL,
            poll: Duration::from_millis(500),
            id: crate::store::new_owner(),
        }
    }

    /// Runs the tasks of `workflow`'s runs too.
    ///
    /// # Errors
    /// [`Error::NotDistributable`] for a workflow this version cannot distribute.
    pub fn serve<P, O>(mut self, workflow: &Workflow<P, O>) -> Result<Self, Error>
    where
        P: Params + serde::de::DeserializeOwned,
    {
        let fingerprint = distributable(&workflow.plan)?.to_owned();
        self.served.push(Arc::new(Served::new::<P>(
            Arc::clone(&workflow.plan),
            fingerprint,
        )));
        Ok(self)
    }

    /// At most `slots` tasks at once (at least 1).
    pub fn slots(mut self, slots: usize) -> Self {
        self.slots = slots.max(1);
        self
    }

    /// How long a claimed task is this worker's without a heartbeat (renewed every
    /// third of it): after that another worker may claim it. 30 seconds unless set.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(300));
        self
    }

    /// This worker's id (`host:pid:tag`), which the runs' tasks record.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Works until `stop` resolves, then claims nothing more, waits for the tasks it
    /// runs to end and commit, and returns what it did. A database that goes away is
    /// waited for (reconnecting with a growing pause); tasks whose commit it missed
    /// are run again by whoever claims them once their lease expires.
    ///
    /// # Errors
    /// [`Error::Store`] if the database cannot be reached when the worker starts.
    pub async fn run(self, stop: impl Future<Output = ()>) -> Result<WorkerStats, Error> {
        let counts = Arc::new(Counts::default());
        let fingerprints: Vec<String> = self.served.iter().map(|s| s.fingerprint.clone()).collect();
        let (claims, mut notes) = self.cluster.listening("aqueduct_ready").await?;
        let mut claims = Arc::new(claims);
        let commits = Arc::new(Mutex::new(self.cluster.client().await?));
        let mut running: JoinSet<()> = JoinSet::new();
        // The attempts running here (run, node, attempt): the only ones it renews.
        let in_flight: InFlight = Arc::default();
        let mut heartbeat = tokio::time::interval(self.lease / 3);
        let mut reap = tokio::time::interval(self.lease / 2);
        tokio::pin!(stop);
        let mut pause = Duration::from_millis(100);
        loop {
            tokio::select! {
                biased;
                () = &mut stop => break,
                _ = heartbeat.tick() => {
                    let held: Vec<(String, i32, i32)> = lock(&in_flight).iter().cloned().collect();
                    if let Err(error) = protocol::heartbeat(&claims, &self.id, self.lease, &held).await {
                        tracing::warn!(error = %super::explain(&error), "heartbeat failed");
                    }
                }
                _ = reap.tick() => {
                    if let Err(error) = protocol::reap(&claims).await {
                        tracing::warn!(error = %super::explain(&error), "reaping expired leases failed");
                    }
                }
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = notes.recv() => {}
                () = tokio::time::sleep(self.poll) => {}
            }
            if claims.is_closed() {
                // The database went away: reconnect, pausing longer each time.
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
                match self.cluster.listening("aqueduct_ready").await {
                    Ok((client, listener)) => {
                        (claims, notes) = (Arc::new(client), listener);
                        if let Ok(client) = self.cluster.client().await {
                            *commits.lock().await = client;
                        }
                        pause = Duration::from_millis(100);
                    }
                    Err(error) => tracing::warn!(%error, "cannot reach the cluster; retrying"),
                }
                continue;
            }
            let free = self.slots.saturating_sub(running.len());
            if free == 0 {
                continue;
            }
            let claimed =
                match protocol::claim(&claims, &self.id, &fingerprints, free as i64, self.lease)
                    .await
                {
                    Ok(claimed) => claimed,
                    Err(error) => {
                        tracing::warn!(error = %super::explain(&error), "claiming tasks failed");
                        continue;
                    }
                };
            counts
                .claimed
                .fetch_add(claimed.len() as u64, Ordering::Relaxed);
            for task in claimed {
                let Some(served) = self
                    .served
                    .iter()
                    .find(|s| s.fingerprint == task.fingerprint)
                    .cloned()
                else {
                    continue;
                };
                let (claims, commits, counts) = (
                    Arc::clone(&claims),
                    Arc::clone(&commits),
                    Arc::clone(&counts),
                );
                let (owner, cluster) = (self.id.clone(), self.cluster.clone());
                let held = (task.run.clone(), task.node as i32, task.attempt as i32);
                lock(&in_flight).insert(held.clone());
                let lease = self.lease;
                // Whatever way the attempt ends (a panic too), its lease is not renewed.
                let held = Held(Arc::clone(&in_flight), held);
                running.spawn(async move {
                    let _held = held;
                    let context = Attempt {
                        claims: &claims,
                        commits: &commits,
                        cluster: &cluster,
                        owner: &owner,
                        counts: &counts,
                        lease,
                    };
                    attempt(served, task, context).await;
                });
            }
        }
        // The attempts running finish and commit; their leases are renewed meanwhile.
        loop {
            tokio::select! {
                joined = running.join_next() => {
                    if joined.is_none() {
                        break;
                    }
                }
                _ = heartbeat.tick() => {
                    let held: Vec<(String, i32, i32)> = lock(&in_flight).iter().cloned().collect();
                    let _ = protocol::heartbeat(&claims, &self.id, self.lease, &held).await;
                }
            }
        }
        Ok(WorkerStats {
            claimed: counts.claimed.load(Ordering::Relaxed),
            committed: counts.committed.load(Ordering::Relaxed),
            lost: counts.lost.load(Ordering::Relaxed),
        })
    }
}

/// How many of a task's attempts may be lost with their workers before it fails.
const MAX_LOST: u32 = 3;

/// An attempt running here: removed from the renewed set when dropped.
struct Held(InFlight, (String, i32, i32));

type InFlight = Arc<std::sync::Mutex<HashSet<(String, i32, i32)>>>;

impl Drop for Held {
    fn drop(&mut self) {
        lock(&self.0).remove(&self.1);
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What an attempt needs of its worker.
struct Attempt<'w> {
    claims: &'w tokio_postgres::Client,
    commits: &'w Mutex<tokio_postgres::Client>,
    cluster: &'w Cluster,
    owner: &'w str,
    counts: &'w Counts,
    lease: Duration,
}

/// Runs one claimed attempt and commits how it ended; a commit the database could
/// not take (it went away) is tried again, on a new connection, while the attempt's
/// lease may still hold.
async fn attempt(served: Arc<Served>, task: Claimed, worker: Attempt<'_>) {
    let Attempt {
        claims,
        commits,
        cluster,
        owner,
        counts,
        lease,
    } = worker;
    let plan = Arc::clone(&served.plan);
    let inputs: Vec<usize> = plan
        .graph
        .node(task.node)
        .inputs()
        .filter(|&input| plan.graph.kind(input) != Kind::Param)
        .collect();
    let (params, inputs) = match protocol::inputs(claims, &task.run, &inputs).await {
        Ok(read) => read,
        Err(error) => {
            // Its lease expires and another attempt runs it.
            tracing::warn!(run = %task.run, node = task.node, error = %super::explain(&error), "cannot read a task's inputs");
            return;
        }
    };
    let tries = task.attempt.saturating_sub(task.reaped).max(1);
    // A task whose workers keep dying with it (an abort, a stack overflow, an
    // out-of-memory kill) is not handed to every worker in turn: it fails.
    let mut ended = if task.reaped >= MAX_LOST {
        protocol::Ended::Failed {
            error: format!(
                "its worker was lost {} times while running it (killed, or crashed by the \
                 task): it is not run again",
                task.reaped
            ),
            retry_in: None,
        }
    } else {
        super::execute::run(Arc::clone(&served), task.node, tries, params, inputs).await
    };
    let deadline = tokio::time::Instant::now() + lease;
    let mut pause = Duration::from_millis(100);
    let committed = loop {
        let result = {
            let mut client = commits.lock().await;
            if client.is_closed()
                && let Ok(again) = cluster.client().await
            {
                *client = again;
            }
            protocol::commit(&mut client, &plan, &task, owner, &ended).await
        };
        match result {
            Err(error) if protocol::transient(&error) && tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %super::explain(&error), "commit failed; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            // The database refuses this end itself (an output too big to store, say):
            // the task fails with why, once, so that the run can end.
            Err(error) if matches!(ended, protocol::Ended::Done { .. }) => {
                let why = format!("cannot save its output: {}", super::explain(&error));
                ended = protocol::Ended::Failed {
                    error: protocol::text(&why),
                    retry_in: None,
                };
            }
            result => break result,
        }
    };
    match committed {
        Ok(Committed::Yes) => {
            counts.committed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Committed::Lost) => {
            counts.lost.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                run = %task.run, node = plan.graph.name_of(task.node), attempt = task.attempt,
                "this worker lost the task (its lease expired and another worker claimed it): its result is dropped"
            );
        }
        Err(error) => {
            tracing::warn!(
                run = %task.run, node = plan.graph.name_of(task.node), error = %super::explain(&error),
                "cannot commit a task's end: it runs again once its lease expires"
            );
        }
    }
}
