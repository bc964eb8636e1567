//! Where durable runs keep their checkpoints: each finished task's output.
//!
//! [`Store`] is the interface; [`SqliteStore`] keeps everything in one SQLite file
//! (WAL, `synchronous = FULL`), with no server and no set-up. All SQL of a backend
//! lives in its own type, every value bound as a parameter.
//!
//! A run has one owner at a time: the runner that claimed it holds a *lease* (its
//! owner id and a heartbeat it renews) until the run ends. Another runner is refused
//! the run while the lease holds; see [`lease_holds`] for when it stops holding.

use std::fmt;
use std::time::{Duration, SystemTime};

mod lease;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use lease::millis;
#[cfg(feature = "durable")]
pub(crate) use lease::now_ms;
#[cfg(feature = "durable")]
pub(crate) use lease::{HEARTBEAT_EVERY, Lease, guarded, new_owner};
pub use lease::{LEASE_TTL, lease_holds};

#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::SqliteStore;

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::PostgresStore;

/// What a store knows of a run when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// The run's id: choose one to resume it later.
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// SHA-256 of the graph's shape and version, in hex.
    pub fingerprint: String,
    /// The graph's shape as text, one line per node: what the fingerprint covers.
    pub graph: String,
    /// The run's parameters, encoded.
    pub input: Vec<u8>,
}

/// One finished task's output, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The node's name in its workflow.
    pub node: String,
    /// How `data` is encoded (`"json"`).
    pub codec: String,
    /// The encoding's version, bumped when its layout changes.
    pub schema: u32,
    /// The encoded output.
    pub data: Vec<u8>,
    /// How many attempts the task made.
    pub attempts: u32,
}

/// How one task of a durable run ended, saved as it ends (with the checkpoints of its
/// batch), so that a run whose process died still tells what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEnd {
    /// The node's name in its workflow.
    pub node: String,
    /// `succeeded`, `failed`, `timed out` or `cancelled`.
    pub status: String,
    /// How many attempts the task made.
    pub attempts: u32,
    /// Each failed attempt's error, in order.
    pub errors: Vec<String>,
    /// When its first attempt started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// From its first attempt's start to its end.
    pub duration_ms: u64,
}

/// One line of a store's run history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunSummary {
    /// The run's id.
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// `running`, `succeeded`, `failed`, `cancelled` or `timed out`.
    pub status: String,
    /// When it first started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// How long its last attempt at running took, if it ended.
    pub duration_ms: Option<u64>,
    /// How many tasks have a checkpoint.
    pub checkpoints: u64,
}

/// One result of a cached task (`#[task(cache)]`), kept beside the runs: a later call
/// of the task with the same key loads it instead of running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResult {
    /// The task function's name.
    pub task: String,
    /// SHA-256 (hex) of the task's name, code hash, version and inputs.
    pub key: String,
    /// How `data` is encoded (`"json"`, `"postcard"`).
    pub codec: String,
    /// The encoding's version, bumped when its layout changes.
    pub schema: u32,
    /// The encoded result.
    pub data: Vec<u8>,
    /// The id of the run that computed it.
    pub run: String,
    /// When it was computed, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When it stops being used, in milliseconds since the Unix epoch; `None` for
    /// never.
    pub expires_ms: Option<u64>,
}

/// One line of a store's cache listing: a [`CachedResult`] without its data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CacheEntry {
    /// The task function's name.
    pub task: String,
    /// The result's key (hex).
    pub key: String,
    /// The id of the run that computed it.
    pub run: String,
    /// When it was computed, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When it stops being used, in milliseconds since the Unix epoch.
    pub expires_ms: Option<u64>,
    /// The size of its data, in bytes.
    pub bytes: u64,
}

/// What [`Store::claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The run was new: the record given was stored, owned by the claimant.
    Started,
    /// The run existed, and the claimant now owns it: its record.
    Taken(RunRecord),
    /// Another owner's lease still holds: the run was left alone.
    InUse {
        /// The owner holding the run (`host:pid:tag`).
        owner: String,
    },
    /// The store has no such run, and no record was given to start one.
    Unknown,
}

/// What [`Store::delete_before`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deleted {
    /// How many runs were deleted, with their checkpoints.
    pub deleted: usize,
    /// The ids of the runs old enough but left alone because their owner's lease
    /// still holds: they are running.
    pub skipped: Vec<String>,
}

/// A store could not do what was asked; nothing already stored is lost.
#[derive(Debug)]
pub struct StoreError {
    /// The store's location (a file, a URL).
    pub location: String,
    /// What failed and why.
    pub message: String,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store `{}`: {}", self.location, self.message)
    }
}

impl std::error::Error for StoreError {}

/// Where a durable run's record and checkpoints go.
///
/// A run is *owned* by one runner at a time, named by an owner id `host:pid:tag`:
/// [`claim`](Store::claim) takes the lease, [`save`](Store::save) and
/// [`renew`](Store::renew) refresh its heartbeat, [`finish`](Store::finish) and
/// [`release`](Store::release) give it up. Every call that writes for an owner fails
/// if the run is no longer that owner's, so a runner that lost its lease stops.
///
/// Implementations must make a checkpoint durable when `save` returns, and keep one
/// checkpoint per node and run: a later checkpoint of a node replaces the earlier one
/// (a resumed run ran the node again because an input it read ran again). The runner
/// calls the methods that do IO from threads where blocking is fine (tokio's blocking
/// pool, the run's checkpoint writer), never from an async task, and turns a panic in
/// any of them into an [`Error::Store`](crate::Error::Store).
pub trait Store: Send + Sync + 'static {
    /// Where the store is (a file, a URL), for error messages.
    fn location(&self) -> String;
    /// The run `id`, if it was started before.
    fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError>;
    /// Claims run `id` for `owner`, in one atomic step: records `new` as a new run
    /// owned by `owner` if the store has no run `id` ([`Claim::Started`]), takes an
    /// existing run over if no lease on it holds (no owner, or
    /// [`lease_holds`] is false for its owner and heartbeat: [`Claim::Taken`]), and
    /// otherwise changes nothing ([`Claim::InUse`]). Without `new`, an unknown id is
    /// [`Claim::Unknown`]. A claim sets the heartbeat to now.
    fn claim(&self, id: &str, owner: &str, new: Option<&RunRecord>) -> Result<Claim, StoreError>;
    /// Sets the heartbeat of `owner`'s lease on run `id` to now. Fails, naming the
    /// current owner, if the run is no longer `owner`'s.
    fn renew(&self, id: &str, owner: &str) -> Result<(), StoreError>;
    /// Gives up `owner`'s lease on run `id` without recording an end, so that the run
    /// can be resumed at once. Does nothing if the run is not `owner`'s.
    fn release(&self, id: &str, owner: &str) -> Result<(), StoreError>;
    /// Every checkpoint of run `id`.
    fn checkpoints(&self, id: &str) -> Result<Vec<Checkpoint>, StoreError>;
    /// Saves a batch of checkpoints and task ends of run `id` for its owner `owner`,
    /// all or none, and renews the lease as [`renew`](Store::renew) does. A checkpoint
    /// or a task end replaces the node's earlier one (a resumed run ran it again).
    /// Fails, saving nothing, if the run is no longer `owner`'s.
    fn save(
        &self,
        id: &str,
        owner: &str,
        batch: &[Checkpoint],
        ends: &[TaskEnd],
    ) -> Result<(), StoreError>;
    /// Deletes the checkpoints of `nodes` in run `id`, for its owner `owner`, all or
    /// none: a resumed run does not restore them (an input they were computed from
    /// runs again), so they must never be restored later either. Fails, deleting
    /// nothing, if the run is no longer `owner`'s.
    fn discard(&self, id: &str, owner: &str, nodes: &[String]) -> Result<(), StoreError>;
    /// How each task of run `id` that ended so far ended, in the order they ended.
    fn task_ends(&self, id: &str) -> Result<Vec<TaskEnd>, StoreError>;
    /// Records how run `id` ended and its report (JSON), and gives up `owner`'s lease,
    /// in one write. Fails, recording nothing, if the run is no longer `owner`'s.
    fn finish(
        &self,
        id: &str,
        owner: &str,
        status: &str,
        duration: Duration,
        report: &str,
    ) -> Result<(), StoreError>;
    /// The run history, most recent first.
    fn runs(&self) -> Result<Vec<RunSummary>, StoreError>;
    /// The report (JSON) of run `id`'s last attempt, if it ended.
    fn report(&self, id: &str) -> Result<Option<String>, StoreError>;
    /// Deletes the runs started before `before`, with their checkpoints, but for those
    /// whose lease holds (they are running): those are listed in
    /// [`Deleted::skipped`].
    fn delete_before(&self, before: SystemTime) -> Result<Deleted, StoreError>;
    /// The cached result of task `task` under `key`, expired or not (the runner checks
    /// [`CachedResult::expires_ms`]).
    ///
    /// The four cache methods have defaults for a store that keeps no cache: nothing is
    /// ever found, saved, listed or cleared, so cached tasks always run.
    fn cached(&self, task: &str, key: &str) -> Result<Option<CachedResult>, StoreError> {
        let _ = (task, key);
        Ok(None)
    }
    /// Saves cached results, all or none; each replaces the result of the same task and
    /// key (an expired one, or one that could not be read back).
    fn save_cached(&self, results: &[CachedResult]) -> Result<(), StoreError> {
        let _ = results;
        Ok(())
    }
    /// Every cached result, without its data, by task and then newest first.
    fn cache_entries(&self) -> Result<Vec<CacheEntry>, StoreError> {
        Ok(Vec::new())
    }
    /// Deletes cached results: those of task `task` (every task's if `None`), and only
    /// those expired by `expired_by` (in milliseconds since the Unix epoch) if given.
    /// Returns how many went.
    fn clear_cache(
        &self,
        task: Option<&str>,
        expired_by: Option<u64>,
    ) -> Result<usize, StoreError> {
        let _ = (task, expired_by);
        Ok(0)
    }
}
