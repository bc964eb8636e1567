//! A worker's committer: commits the ends of its attempts, as many in one
//! transaction as ended since the last commit; tries a commit the database could not
//! take again while the attempts' leases may hold, and splits one it refuses.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use super::Cluster;
use super::commit::{self, Committed, Ended, Ending, TakeOn};
use super::protocol::{self, Claimed};
use super::start::{Capacity, Held};
use super::worker::Counts;

/// The most attempts committed in one transaction.
const MAX_BATCH: usize = 512;

/// The most bytes of outputs committed in one transaction (past it, with the last
/// one): a statement's parameters stay far below the server's 1 GiB message limit.
const MAX_BATCH_BYTES: usize = 64 << 20;

/// The bytes of output an ended attempt carries.
fn size(ended: &ToCommit) -> usize {
    match &ended.ending.ended {
        Ended::Done { data, .. } => data.len(),
        _ => 0,
    }
}

/// What to do about a commit that failed.
enum Trouble {
    /// Try it again (the database went away, or is busy): while leases may hold.
    Again,
    /// Commit its halves apart, to find the attempt at fault.
    Split,
    /// The one attempt's end is at fault (its output cannot be stored): it fails.
    Refused,
}

impl Trouble {
    fn of(error: &tokio_postgres::Error, closed: bool, batch: usize) -> Self {
        match error.code().map(|code| code.code()) {
            // A batch whose connection closed may be too big a message: halved.
            _ if closed && batch > 1 => Trouble::Split,
            _ if closed || protocol::transient(error) => Trouble::Again,
            _ if batch > 1 => Trouble::Split,
            // Not the server's (encoding a parameter), or a value it refuses.
            None => Trouble::Refused,
            Some(code) if code.starts_with("22") || code.starts_with("54") => Trouble::Refused,
            Some(_) => Trouble::Again,
        }
    }
}

/// An ended attempt on its way to be committed, with until when its lease may hold;
/// renewed until then.
pub(super) struct ToCommit {
    pub(super) ending: Ending,
    pub(super) deadline: tokio::time::Instant,
    pub(super) _held: Held,
}

/// Commits the ends of a worker's attempts, as many at once as have ended since the
/// last commit.
pub(super) struct Committer {
    pub(super) cluster: Cluster,
    pub(super) owner: String,
    pub(super) client: Option<tokio_postgres::Client>,
    pub(super) counts: Arc<Counts>,
    pub(super) committed: Arc<Notify>,
    /// The worker's free slots, some of which a commit may fill with the tasks it
    /// makes ready (claimed in the same transaction), handed to the worker here.
    pub(super) capacity: Arc<Capacity>,
    pub(super) handed: mpsc::UnboundedSender<Vec<Claimed>>,
    pub(super) lease: Duration,
}

impl Committer {
    pub(super) async fn run(mut self, mut ended: mpsc::UnboundedReceiver<ToCommit>) {
        let mut batch: Vec<ToCommit> = Vec::new();
        while let Some(first) = ended.recv().await {
            let mut bytes = size(&first);
            batch.push(first);
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match ended.try_recv() {
                    Ok(next) => {
                        bytes += size(&next);
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            self.commit(std::mem::take(&mut batch), &ended).await;
            self.committed.notify_one();
        }
    }

    /// Commits `batch`; a commit the database could not take (it went away) is tried
    /// again, on a new connection, for the attempts whose leases may still hold. One
    /// the database refuses is split, to find the attempt it refuses.
    async fn commit(
        &mut self,
        mut batch: Vec<ToCommit>,
        ended: &mpsc::UnboundedReceiver<ToCommit>,
    ) {
        let mut pause = Duration::from_millis(100);
        loop {
            let result = match connected(&self.cluster, &mut self.client).await {
                Some(client) => {
                    let endings: Vec<&Ending> = batch.iter().map(|c| &c.ending).collect();
                    // A worker that stopped claiming takes nothing on.
                    let limit = match ended.is_closed() {
                        true => 0,
                        false => self.capacity.reserve(successors(&endings)),
                    };
                    let take_on = TakeOn {
                        limit,
                        lease: self.lease,
                    };
                    let result = commit::commit(client, &self.owner, &endings, take_on).await;
                    let taken = result.as_ref().map_or(0, |(_, claimed)| claimed.len());
                    // The cascade takes on at most `limit` (a wrap would corrupt the count).
                    debug_assert!(taken <= limit, "took on {taken} of {limit}");
                    self.capacity.unreserve(limit.saturating_sub(taken));
                    result.map(|(committed, claimed)| {
                        if !claimed.is_empty() {
                            // The worker runs them (it keeps receiving until this ends).
                            let _ = self.handed.send(claimed);
                        }
                        committed
                    })
                }
                // The database is away: the attempts are kept past their leases, which
                // their heartbeats renew once it is back (the reaper leaves a restarted
                // server's lapsed leases to them for a lease); unless the worker is
                // stopping (nothing more is sent), which waits no longer than a lease.
                None => {
                    if !wait(&mut pause, &mut batch, ended.is_closed()).await {
                        return;
                    }
                    continue;
                }
            };
            let error = match result {
                Ok(committed) => {
                    for (c, committed) in batch.iter().zip(committed) {
                        let count = match committed {
                            Committed::Yes => &self.counts.committed,
                            Committed::Lost => {
                                lost(&c.ending);
                                &self.counts.lost
                            }
                        };
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                Err(error) => error,
            };
            let closed = self.client.as_ref().is_none_or(|c| c.is_closed());
            match Trouble::of(&error, closed, batch.len()) {
                Trouble::Again => {
                    tracing::warn!(error = %super::explain(&error), "commit failed; trying again");
                    if !wait(&mut pause, &mut batch, true).await {
                        return;
                    }
                    continue;
                }
                Trouble::Split => {
                    let half = batch.split_off(batch.len() / 2);
                    Box::pin(self.commit(batch, ended)).await;
                    return Box::pin(self.commit(half, ended)).await;
                }
                Trouble::Refused => {}
            }
            // The database refuses this end itself (an output too big to store, say):
            // the task fails with why, once, so that the run can end.
            let ending = &mut batch[0].ending;
            if !matches!(ending.ended, Ended::Done { .. }) {
                tracing::warn!(
                    run = %ending.claimed.run, node = name_of(ending),
                    error = %super::explain(&error),
                    "cannot commit a task's end: it runs again once its lease expires"
                );
                return;
            }
            let why = format!("cannot save its output: {}", super::explain(&error));
            ending.ended = Ended::Failed {
                error: protocol::text(&why),
                retry_in: None,
            };
        }
    }
}

/// How many tasks a commit of `endings` may make ready at once: the successors of
/// those that succeeded (the most it may take on).
fn successors(endings: &[&Ending]) -> usize {
    let done = endings
        .iter()
        .filter(|ending| matches!(ending.ended, Ended::Done { .. }));
    done.map(|ending| super::cascade::successors(&ending.plan, ending.claimed.place).len())
        .sum()
}

/// `client`, opened again if it closed; none if the database is away.
async fn connected<'c>(
    cluster: &Cluster,
    client: &'c mut Option<tokio_postgres::Client>,
) -> Option<&'c mut tokio_postgres::Client> {
    if client.as_ref().is_none_or(|c| c.is_closed()) {
        *client = cluster.client().await.ok();
    }
    client.as_mut()
}

/// Pauses before trying `batch` again (longer each time); with `lapse`, keeps only the
/// attempts whose leases may still hold. `false` if none is left.
async fn wait(pause: &mut Duration, batch: &mut Vec<ToCommit>, lapse: bool) -> bool {
    tokio::time::sleep(*pause).await;
    *pause = (*pause * 2).min(Duration::from_secs(2));
    if lapse {
        batch.retain(|c| keep(&c.ending, c.deadline));
    }
    !batch.is_empty()
}

/// Whether to try again to commit `ending`: while its lease may hold. Says why not.
fn keep(ending: &Ending, deadline: tokio::time::Instant) -> bool {
    let keep = tokio::time::Instant::now() < deadline;
    if !keep {
        tracing::warn!(
            run = %ending.claimed.run, node = name_of(ending),
            "cannot commit a task's end: it runs again once its lease expires"
        );
    }
    keep
}

fn lost(ending: &Ending) {
    tracing::warn!(
        run = %ending.claimed.run, node = name_of(ending),
        attempt = ending.claimed.attempt,
        "this worker lost the task (its lease expired and another worker claimed it): its result is dropped"
    );
}

/// The name of the task `ending` ended, as the run shows it.
fn name_of(ending: &Ending) -> String {
    ending.claimed.place.name(&ending.plan)
}
