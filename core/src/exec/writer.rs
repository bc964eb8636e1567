//! Durable runs: checkpoints go to a store from a writer thread, in batches. Only
//! with the `durable` feature.
//!
//! Tasks never wait for the store. Each finished task's value is encoded on the
//! task's thread and sent to the writer, which saves whatever has queued up since its
//! last commit in one transaction: the faster tasks finish, the bigger the batches. A
//! checkpoint is durable once its batch commits; a crash loses at most the batch being
//! written, whose tasks run again on resume (at least once).
//!
//! Cached tasks' results go through the same writer, saved after each batch; a run
//! with a cache but no record (an in-memory run given [`Runner::cache`]) has a writer
//! for them alone, with no lease. A cached result that cannot be saved is a warning,
//! never a failed run.
//!
//! [`Runner::cache`]: crate::Runner::cache
//!
//! The writer also keeps the run's lease: it renews the heartbeat when it has had
//! nothing to save for a while, and releases the lease itself if the run future was
//! dropped. The first failure of the store (an error, a panic, a lost lease) stops the
//! run, and the run fails with that error.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Instant;

use super::CacheWarnings;
use super::checkpoint::Entry;
use super::*;
use crate::store::{HEARTBEAT_EVERY, Lease, Store, StoreError, guarded};

/// The sending end: held by the run, closed when the run's last task is done.
#[derive(Clone)]
pub(crate) struct Sink {
    sender: mpsc::Sender<Entry>,
    /// Entries sent and not yet saved (or given up after a failure).
    pending: Arc<AtomicUsize>,
}

/// How many entries may wait for the writer before a recording fan-out stops starting
/// items: about one batch, so a crash loses about one batch of items.
pub(crate) const BACKLOG: usize = 4096;

/// Resolves when every checkpoint sent is saved, or with the store's first error;
/// with the lease (if the writer had one), for the run to record its end. A receive
/// error means the writer died: its checkpoints are not known to be saved.
pub(crate) type Flushed = oneshot::Receiver<(Result<(), StoreError>, Option<Lease>)>;

/// Stops the run if the writer thread unwinds.
struct StopOnUnwind(Stop);

impl Drop for StopOnUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.stop();
        }
    }
}

impl Sink {
    /// Starts the writer of the run `lease` holds. Its first failure stops the run
    /// through `stop`.
    pub(crate) fn start(
        lease: Lease,
        stop: Stop,
        warnings: Arc<CacheWarnings>,
    ) -> Result<(Self, Flushed), StoreError> {
        let store = Arc::clone(lease.store());
        Self::start_with(Some(lease), store, stop, warnings)
    }

    /// Starts a writer of cached results alone, to `store`, for a run with no record
    /// (or whose cache is another store). Nothing it does stops the run: a cache
    /// never fails a run.
    pub(crate) fn start_cache(
        store: Arc<dyn Store>,
        warnings: Arc<CacheWarnings>,
    ) -> Result<(Self, Flushed), StoreError> {
        Self::start_with(None, store, Stop::default(), warnings)
    }

    fn start_with(
        lease: Option<Lease>,
        store: Arc<dyn Store>,
        stop: Stop,
        warnings: Arc<CacheWarnings>,
    ) -> Result<(Self, Flushed), StoreError> {
        let (sender, receiver) = mpsc::channel::<Entry>();
        let (flushed, done) = oneshot::channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let saved = Arc::clone(&pending);
        let location = guarded(&*store, "location", || Ok(store.location()))
            .unwrap_or_else(|error| error.location);
        std::thread::Builder::new()
            .name("aqueduct-checkpoints".into())
            .spawn(move || {
                let _unwinding = StopOnUnwind(stop.clone());
                let result = write(lease.as_ref(), &*store, &receiver, &stop, &saved, &warnings);
                // The run future is gone if this fails: the lease is dropped with the
                // message, which releases it, so the run can be resumed at once.
                let _ = flushed.send((result, lease));
            })
            .map_err(|error| StoreError {
                location,
                message: format!("cannot start the checkpoint writer thread: {error}"),
            })?;
        Ok((Self { sender, pending }, done))
    }

    pub(crate) fn send(&self, entry: Entry) {
        // The writer only stops after the sender is dropped (or if it died, which the
        // run learns from `Flushed`).
        self.pending.fetch_add(1, Ordering::Relaxed);
        if self.sender.send(entry).is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// How many entries wait for the writer.
    pub(crate) fn backlog(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }
}

/// The writer's loop: saves batches and renews the lease until every sender is gone.
/// After the first failure it saves nothing more (the run is stopping: cleanup tasks
/// may still run), but it keeps the lease alive while the run's tasks end; if even
/// that fails (the lease was lost, or the store is gone), the run is stopped for good,
/// so that it never runs beside a new owner.
fn write(
    lease: Option<&Lease>,
    store: &dyn Store,
    receiver: &mpsc::Receiver<Entry>,
    stop: &Stop,
    pending: &AtomicUsize,
    warnings: &CacheWarnings,
) -> Result<(), StoreError> {
    let mut failure: Option<StoreError> = None;
    let (mut checkpoints, mut ends, mut cached) = (Vec::new(), Vec::new(), Vec::new());
    let mut renewed = Instant::now();
    loop {
        if let (Some(lease), true) = (lease, renewed.elapsed() >= HEARTBEAT_EVERY) {
            let (id, owner) = (lease.run(), lease.owner());
            if let Err(error) = guarded(store, "renew", || store.renew(id, owner)) {
                match failure {
                    None => {
                        failure = Some(error);
                        stop.stop();
                    }
                    Some(_) => stop.kill(),
                }
            }
            renewed = Instant::now();
        }
        let wait = match lease {
            Some(_) => HEARTBEAT_EVERY.saturating_sub(renewed.elapsed()),
            None => HEARTBEAT_EVERY,
        };
        match receiver.recv_timeout(wait) {
            Ok(first) => {
                let mut taken = 0;
                for entry in std::iter::once(first).chain(receiver.try_iter().take(BACKLOG - 1)) {
                    checkpoints.extend(entry.checkpoint);
                    ends.extend(entry.end);
                    cached.extend(entry.cached);
                    taken += 1;
                }
                let records = !checkpoints.is_empty() || !ends.is_empty();
                if let (Some(lease), None, true) = (lease, &failure, records) {
                    let (id, owner) = (lease.run(), lease.owner());
                    match guarded(store, "save", || store.save(id, owner, &checkpoints, &ends)) {
                        Ok(()) => renewed = Instant::now(),
                        Err(error) => {
                            failure = Some(error);
                            stop.stop();
                        }
                    }
                }
                // A run that lost its store (its lease, say) saves no more results.
                if !cached.is_empty()
                    && failure.is_none()
                    && let Err(error) = guarded(store, "save_cached", || store.save_cached(&cached))
                {
                    let lost = cached.len();
                    tracing::warn!(%error, results = lost, "cached results not saved; later runs compute them again");
                    warnings.push(format!(
                        "{lost} cached result(s) not saved ({error}); later runs compute them again"
                    ));
                }
                checkpoints.clear();
                ends.clear();
                cached.clear();
                pending.fetch_sub(taken, Ordering::Relaxed);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    failure.map_or(Ok(()), Err)
}
