//! A [`Worker`]: claims ready tasks of the workflows it serves, runs them, commits
//! their ends; renews its leases, returns expired ones to ready, and reconnects when
//! the database goes away.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

use super::committer::Committer;
use super::protocol;
use super::reading::RunParams;
use super::served::{Served, lock};
use super::start::{Capacity, InFlight, Starting};
use super::{Cluster, distributable};
use crate::error::Error;
use crate::plan::{Call, Params, Workflow};

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
pub(super) struct Counts {
    pub(super) claimed: AtomicU64,
    pub(super) committed: AtomicU64,
    pub(super) lost: AtomicU64,
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
        if workflow.plan.resources > 0 {
            return Err(Error::NotDistributable {
                workflow: workflow.plan.graph.name().to_owned(),
                reason: "it has resources: serve it with `serve_with`, which gives them".into(),
            });
        }
        self.served.push(Arc::new(Served::new::<P>(
            Arc::clone(&workflow.plan),
            fingerprint,
        )));
        Ok(self)
    }

    /// [`serve`](Self::serve) for a workflow with resources (`#[resource]`
    /// parameters): this worker's tasks of its runs read `resources` (each task a
    /// clone: share a pool or a client through an `Arc`, or a type that is one).
    pub fn serve_with<P, O, R>(
        mut self,
        workflow: &Workflow<P, O, R>,
        resources: R,
    ) -> Result<Self, Error>
    where
        P: Params + serde::de::DeserializeOwned,
        R: Params + Clone + Sync,
    {
        let fingerprint = distributable(&workflow.plan)?.to_owned();
        self.served.push(Arc::new(Served::with_resources::<P, R>(
            Arc::clone(&workflow.plan),
            fingerprint,
            resources,
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
        // Told after each commit: slots it held may be claimed again.
        let committed = Arc::new(Notify::new());
        let fingerprints: Vec<String> = self.served.iter().map(|s| s.fingerprint.clone()).collect();
        // Whether it serves tasks with concurrency limits, which it claims apart.
        let limited = self.served.iter().any(|served| limits_any(&served.plan));
        let (mut claims, mut notes) = self.cluster.listening("aqueduct_ready").await?;
        let capacity = Arc::new(Capacity::new(self.slots));
        // The tasks its commits claim for it.
        let (handing, mut handed) = mpsc::unbounded_channel();
        let (commits, mut committing) = {
            let client = self.cluster.client().await?;
            let (sent, received) = mpsc::unbounded_channel();
            let committer = Committer {
                cluster: self.cluster.clone(),
                owner: self.id.clone(),
                client: Some(client),
                counts: Arc::clone(&counts),
                committed: Arc::clone(&committed),
                capacity: Arc::clone(&capacity),
                handed: handing,
                lease: self.lease,
            };
            (sent, tokio::spawn(committer.run(received)))
        };
        // Where cached tasks look their results up, if it serves any.
        let cached = self.served.iter().any(|served| served.plan.caches_any);
        let mut lookups = match cached {
            true => Some(Arc::new(self.cluster.client().await?)),
            false => None,
        };
        let mut running: JoinSet<()> = JoinSet::new();
        // The attempts running here (run, node, attempt): the only ones it renews.
        let in_flight: InFlight = Arc::default();
        let (stop_leases, leases_stopped) = tokio::sync::watch::channel(false);
        let leases = tokio::spawn(super::lease::keep(
            self.cluster.clone(),
            self.id.clone(),
            fingerprints.clone(),
            self.lease,
            Arc::clone(&in_flight),
            leases_stopped,
        ));
        let mut params = RunParams::default();
        let mut starting = Starting {
            served: &self.served,
            params: &mut params,
            in_flight: &in_flight,
            commits: Some(commits),
            lease: self.lease,
            capacity: &capacity,
            counts: &counts,
        };
        tokio::pin!(stop);
        let mut pause = Duration::from_millis(100);
        loop {
            tokio::select! {
                biased;
                () = &mut stop => break,
                Some(claimed) = handed.recv() => {
                    let reserved = claimed.len();
                    starting.start(&claims, (claimed, reserved), lookups.as_ref(), &mut running).await;
                    continue;
                }
                Some(_) = running.join_next(), if !running.is_empty() => {
                    // Every attempt that ended meanwhile frees its slot before claiming.
                    while running.try_join_next().is_some() {}
                }
                _ = notes.recv() => {}
                () = committed.notified() => {}
                () = tokio::time::sleep(self.poll) => {}
            }
            if lookups.as_ref().is_some_and(|client| client.is_closed()) {
                // A lookup on a closed connection fails and the task runs: open another.
                if let Ok(client) = self.cluster.client().await {
                    lookups = Some(Arc::new(client));
                }
            }
            if claims.is_closed() {
                // The database went away: reconnect, pausing longer each time.
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
                match self.cluster.listening("aqueduct_ready").await {
                    Ok(listening) => {
                        (claims, notes) = listening;
                        pause = Duration::from_millis(100);
                        // A newer build may have migrated the database meanwhile: its
                        // tables are not this build's to write.
                        if let Ok(Some(newer)) = super::runs::newer_schema(&claims).await {
                            running.shutdown().await;
                            return Err(Error::Store(self.cluster.store_error(format!(
                                "the database was migrated to store schema {newer} by a \
                                 newer build while this worker ran: it stops (tasks it held \
                                 run again elsewhere once their leases expire)"
                            ))));
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot reach the cluster; retrying"),
                }
                continue;
            }
            // Attempts whose ends wait for their commit count too, past as many again:
            // a worker whose commits lag claims less.
            let busy = self.slots - capacity.free();
            let uncommitted = lock(&in_flight).len().saturating_sub(running.len());
            let most = (2 * self.slots).saturating_sub(busy + uncommitted);
            // Reserved while it claims, so that a commit meanwhile does not fill them.
            let free = capacity.reserve(most);
            if free == 0 {
                continue;
            }
            let reserved = free;
            let claimed =
                match protocol::claim(&claims, &self.id, &fingerprints, free as i64, self.lease)
                    .await
                {
                    Ok(claimed) => claimed,
                    Err(error) => {
                        capacity.unreserve(reserved);
                        tracing::warn!(error = %super::explain(&error), "claiming tasks failed");
                        continue;
                    }
                };
            let mut claimed = claimed;
            let free = free - claimed.len();
            if limited && free > 0 {
                match protocol::claim_limited(
                    &mut claims,
                    &self.id,
                    &fingerprints,
                    free as i64,
                    self.lease,
                )
                .await
                {
                    Ok(more) => claimed.extend(more),
                    Err(error) => {
                        tracing::warn!(error = %super::explain(&error), "claiming tasks failed");
                    }
                }
            }
            starting
                .start(&claims, (claimed, reserved), lookups.as_ref(), &mut running)
                .await;
        }
        // The attempts running finish and commit (their leases renewed meanwhile), and
        // so do those that commits under way claim for it.
        loop {
            if capacity.stopped() && running.is_empty() {
                // Nothing more can be handed to it: the committer ends once it
                // committed what it was sent.
                starting.commits = None;
            }
            tokio::select! {
                biased;
                Some(claimed) = handed.recv() => {
                    let reserved = claimed.len();
                    starting.start(&claims, (claimed, reserved), lookups.as_ref(), &mut running).await;
                }
                Some(_) = running.join_next(), if !running.is_empty() => {}
                () = committed.notified() => {}
                _ = &mut committing => break,
                // A commit tried again (the database away) gives its reservation back
                // without a word: look again.
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        drop(starting);
        let _ = stop_leases.send(true);
        let _ = leases.await;
        if let Err(error) = super::lease::absent(&claims, &self.id).await {
            tracing::warn!(error = %super::explain(&error), "cannot record that this worker stopped");
        }
        Ok(WorkerStats {
            claimed: counts.claimed.load(Ordering::Relaxed),
            committed: counts.committed.load(Ordering::Relaxed),
            lost: counts.lost.load(Ordering::Relaxed),
        })
    }
}

/// Whether a task of `plan`, or of its fan-outs' bodies, has a concurrency limit.
fn limits_any(plan: &crate::plan::Plan) -> bool {
    let graph = &plan.graph;
    (0..graph.len()).any(|node| graph.info(node).concurrency.is_some())
        || plan.calls.iter().any(|call| match call {
            Call::FanOut(def) => limits_any(&def.body),
            _ => false,
        })
}
