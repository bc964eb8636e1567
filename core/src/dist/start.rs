//! Starting the attempts a worker claimed (or its commits took on): the worker's slots
//! as its loop and its committer share them, the attempts it holds (whose leases it
//! renews), and one attempt's run inside its run's spans, with its events.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::commit::{Ended, Ending};
use super::committer::ToCommit;
use super::protocol::Claimed;
use super::reading::{Read, RunParams, read_inputs};
use super::served::{Served, lock};
use super::worker::Counts;

/// The target of a worker's spans and events, whichever module makes them (users filter
/// on it).
const TARGET: &str = "aqueduct::dist::worker";

/// A worker's slots, as its claiming loop and its committer share them.
pub(super) struct Capacity {
    slots: usize,
    /// Attempts started and not ended.
    running: AtomicUsize,
    /// Slots reserved by a claim or a commit under way, or for tasks a commit took on
    /// that have not started yet.
    reserved: AtomicUsize,
    /// Set when the worker stops claiming: its commits take nothing on.
    stopping: AtomicBool,
}

impl Capacity {
    pub(super) fn new(slots: usize) -> Self {
        Self {
            slots,
            running: AtomicUsize::new(0),
            reserved: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
        }
    }

    /// Stops reserving; says whether nothing is reserved. Called again until it says
    /// so, it is the worker's sign that no commit can hand it a task any more: either
    /// a reservation under way sees the stop (SeqCst on both sides), or this sees it.
    pub(super) fn stopped(&self) -> bool {
        self.stopping.store(true, Ordering::SeqCst);
        self.reserved.load(Ordering::SeqCst) == 0
    }

    /// Reserves up to `most` free slots (for a claim, or a commit to fill); returns
    /// how many. None once the worker stops claiming.
    pub(super) fn reserve(&self, most: usize) -> usize {
        if self.stopping.load(Ordering::SeqCst) {
            return 0;
        }
        let mut taken = 0;
        let _ = self
            .reserved
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |reserved| {
                let busy = self.running.load(Ordering::SeqCst) + reserved;
                taken = self.slots.saturating_sub(busy).min(most);
                Some(reserved + taken)
            });
        // The worker may have stopped meanwhile, and seen nothing reserved: whatever is
        // reserved after it looked is given back (it looks again until none is).
        if self.stopping.load(Ordering::SeqCst) {
            self.unreserve(taken);
            return 0;
        }
        taken
    }

    /// Gives back `count` reserved slots.
    pub(super) fn unreserve(&self, count: usize) {
        self.reserved.fetch_sub(count, Ordering::SeqCst);
    }

    /// Turns `count` reserved slots into attempts running: never free in between.
    fn run(&self, count: usize) {
        self.running.fetch_add(count, Ordering::SeqCst);
        self.unreserve(count);
    }

    /// Slots neither running nor reserved.
    pub(super) fn free(&self) -> usize {
        let busy = self.running.load(Ordering::SeqCst) + self.reserved.load(Ordering::SeqCst);
        self.slots.saturating_sub(busy)
    }
}

/// What starting claimed attempts takes: the workflows served, their runs' parameters
/// read so far, the attempts held, where their ends go.
pub(super) struct Starting<'w> {
    pub(super) served: &'w [Arc<Served>],
    pub(super) params: &'w mut RunParams,
    pub(super) in_flight: &'w InFlight,
    /// `None` once the worker stopped and nothing more can start.
    pub(super) commits: Option<mpsc::UnboundedSender<ToCommit>>,
    pub(super) lease: Duration,
    pub(super) capacity: &'w Arc<Capacity>,
    pub(super) counts: &'w Counts,
}

impl Starting<'_> {
    /// Reads the inputs of the `claimed` tasks (on `client`) and starts their attempts
    /// in `running`, in the `reserved` slots held for them (those left are given back);
    /// their ends go to the committer. Their leases are renewed from here on.
    pub(super) async fn start(
        &mut self,
        client: &tokio_postgres::Client,
        (claimed, reserved): (Vec<Claimed>, usize),
        lookups: Option<&Arc<tokio_postgres::Client>>,
        running: &mut JoinSet<()>,
    ) {
        self.counts
            .claimed
            .fetch_add(claimed.len() as u64, Ordering::Relaxed);
        // Each one holds a slot until its attempt ends, whatever way (a panic too).
        self.capacity.run(claimed.len());
        self.capacity
            .unreserve(reserved.saturating_sub(claimed.len()));
        let (mut tasks, mut served, mut guards) = (Vec::new(), Vec::new(), Vec::new());
        for task in claimed {
            let held = (task.run.clone(), task.place, task.attempt as i32);
            lock(self.in_flight).insert(held.clone());
            let guard = (
                Held(Arc::clone(self.in_flight), held),
                Slot(Arc::clone(self.capacity)),
            );
            // A task of a build this worker does not serve (never claimed): its guards
            // go now.
            if let Some(of) = self
                .served
                .iter()
                .find(|s| s.fingerprint == task.fingerprint)
            {
                tasks.push(task);
                served.push(Arc::clone(of));
                guards.push(guard);
            }
        }
        let Some(commits) = &self.commits else {
            return;
        };
        let read = match read_inputs(client, &tasks, &served, self.params).await {
            Ok(read) => read,
            Err(error) => {
                // Not renewed, their leases expire and other attempts run them.
                tracing::warn!(target: TARGET, error = %super::explain(&error), "cannot read the inputs of claimed tasks");
                return;
            }
        };
        let started = tasks.into_iter().zip(served).zip(guards).zip(read);
        for (((task, served), (held, slot)), read) in started {
            let (commits, lease) = (commits.clone(), self.lease);
            let lookups = lookups.cloned();
            running.spawn(async move {
                let _slot = slot;
                let ending = attempt(served, task, read, lookups).await;
                // Its lease is renewed until its end commits.
                let deadline = tokio::time::Instant::now() + lease;
                let _ = commits.send(ToCommit {
                    ending,
                    deadline,
                    _held: held,
                });
            });
        }
    }
}

/// A running attempt's slot, freed when dropped.
struct Slot(Arc<Capacity>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How many of a task's attempts may be lost with their workers before it fails.
const MAX_LOST: u32 = 3;

/// An attempt running here: removed from the renewed set when dropped.
pub(super) struct Held(InFlight, super::lease::Held);

pub(super) type InFlight = Arc<std::sync::Mutex<HashSet<super::lease::Held>>>;

impl Drop for Held {
    fn drop(&mut self) {
        lock(&self.0).remove(&self.1);
    }
}

/// Runs one claimed attempt with its parameters and inputs; says how it ended.
async fn attempt(
    served: Arc<Served>,
    task: Claimed,
    read: Read,
    lookups: Option<Arc<tokio_postgres::Client>>,
) -> Ending {
    let tries = task.attempt.saturating_sub(task.reaped).max(1);
    // As in one process: the run's span, and the attempt's inside it.
    let id = Arc::new(super::current::AttemptId {
        run_id: task.run.clone(),
        node: task.place.name(&served.plan),
        attempt: task.attempt,
    });
    let name = super::execute::Target::of(task.place)
        .call(&served.plan)
        .map_or("", |(plan, node)| plan.graph.info(node).name);
    let span = tracing::info_span!(target: TARGET, "workflow", name = %served.plan.graph.name(), run = %task.run);
    // A task of a fan-out's item runs in the item's span, as in one process.
    let span = match task.place.body() {
        Some((_, index)) => tracing::info_span!(target: TARGET, parent: &span, "item", index),
        None => span,
    };
    let span = tracing::info_span!(
        target: TARGET,
        parent: &span,
        "task",
        task = name,
        node = %id.node,
        attempt = task.attempt,
    );
    let started = std::time::Instant::now();
    let run = async {
        tracing::debug!(target: TARGET, node = %id.node, attempt = task.attempt, "task started");
        // A task whose workers keep dying with it (an abort, a stack overflow, an
        // out-of-memory kill) is not handed to every worker in turn: it fails.
        let (ended, cache) = if task.reaped >= MAX_LOST {
            let ended = Ended::Failed {
                error: format!(
                    "its worker was lost {} times while running it (killed, or crashed by \
                     the task): it is not run again",
                    task.reaped
                ),
                retry_in: None,
            };
            (ended, None)
        } else {
            super::execute::run(
                Arc::clone(&served),
                &task,
                (tries, Arc::clone(&id)),
                read.params,
                read.inputs,
                (lookups.as_deref(), read.parent),
            )
            .await
        };
        // How the attempt ended here; its commit may still find it lost, or its output
        // too big to save.
        let status = match &ended {
            Ended::Done { .. } => "succeeded",
            Ended::Expanded { .. } => "expanded",
            Ended::Failed {
                retry_in: Some(_), ..
            } => "failed, to be retried",
            Ended::Failed { retry_in: None, .. } => "failed",
            Ended::Unreached { not_taken: false } => "skipped",
            Ended::Unreached { not_taken: true } => "not taken",
        };
        tracing::debug!(
            target: TARGET,
            node = %id.node,
            status,
            attempt = task.attempt,
            duration_ms = started.elapsed().as_secs_f64() * 1e3,
            "task ended"
        );
        if let Ended::Failed {
            error,
            retry_in: None,
        } = &ended
        {
            tracing::error!(target: TARGET, node = %id.node, attempts = task.attempt, %error, "task failed");
        }
        (ended, cache)
    };
    let (ended, cache) = tracing::Instrument::instrument(run, span).await;
    Ending {
        plan: Arc::clone(&served.plan),
        claimed: task,
        ended,
        cache,
    }
}
