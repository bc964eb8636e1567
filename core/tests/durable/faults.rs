//! Stores that fail: a run whose checkpoints were not all committed never succeeds,
//! and the store's first failure stops the run with the store's error.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aqueduct::prelude::*;
use aqueduct::store::{
    CacheEntry, CachedResult, Checkpoint, Claim, Deleted, RunRecord, RunSummary, Store, StoreError,
    TaskEnd,
};

use super::scratch::TempDir;
use super::{open_store, small, start};

/// How a [`Faulty`] store's `save` goes wrong.
#[derive(Clone, Copy)]
enum Fault {
    /// An error, as from a full disk.
    DiskFull,
    /// A panic with a message.
    Panics,
    /// A panic whose payload panics again when dropped: it takes the writer thread
    /// down with it.
    KillsTheWriter,
}

/// A store that works but for saving checkpoints.
struct Faulty(Arc<dyn Store>, Fault);

/// A panic payload that panics when dropped.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("the panic payload went off");
    }
}

impl Store for Faulty {
    fn location(&self) -> String {
        "runs.db".into()
    }
    fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.0.run(id)
    }
    fn claim(&self, id: &str, owner: &str, new: Option<&RunRecord>) -> Result<Claim, StoreError> {
        self.0.claim(id, owner, new)
    }
    fn renew(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        self.0.renew(id, owner)
    }
    fn release(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        self.0.release(id, owner)
    }
    fn checkpoints(&self, id: &str) -> Result<Vec<Checkpoint>, StoreError> {
        self.0.checkpoints(id)
    }
    fn save(&self, _: &str, _: &str, _: &[Checkpoint], _: &[TaskEnd]) -> Result<(), StoreError> {
        match self.1 {
            Fault::DiskFull => Err(StoreError {
                location: "runs.db".into(),
                message: "cannot save checkpoints: database or disk is full".into(),
            }),
            Fault::Panics => panic!("the disk controller is on fire"),
            Fault::KillsTheWriter => std::panic::panic_any(Bomb),
        }
    }
    fn discard(&self, id: &str, owner: &str, nodes: &[String]) -> Result<(), StoreError> {
        self.0.discard(id, owner, nodes)
    }
    fn task_ends(&self, id: &str) -> Result<Vec<TaskEnd>, StoreError> {
        self.0.task_ends(id)
    }
    fn finish(
        &self,
        id: &str,
        owner: &str,
        status: &str,
        duration: Duration,
        report: &str,
    ) -> Result<(), StoreError> {
        self.0.finish(id, owner, status, duration, report)
    }
    fn runs(&self) -> Result<Vec<RunSummary>, StoreError> {
        self.0.runs()
    }
    fn report(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.0.report(id)
    }
    fn delete_before(&self, before: std::time::SystemTime) -> Result<Deleted, StoreError> {
        self.0.delete_before(before)
    }
    fn cached(&self, task: &str, key: &str) -> Result<Option<CachedResult>, StoreError> {
        self.0.cached(task, key)
    }
    fn save_cached(&self, results: &[CachedResult]) -> Result<(), StoreError> {
        self.0.save_cached(results)
    }
    fn cache_entries(&self) -> Result<Vec<CacheEntry>, StoreError> {
        self.0.cache_entries()
    }
    fn clear_cache(
        &self,
        task: Option<&str>,
        expired_by: Option<u64>,
    ) -> Result<usize, StoreError> {
        self.0.clear_cache(task, expired_by)
    }
}

static LATE: AtomicUsize = AtomicUsize::new(0);

#[task]
fn first_step(x: &u64) -> u64 {
    x + 1
}

#[task]
async fn slow_step(x: &u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(300)).await;
    x + 1
}

#[task]
fn late_step(x: &u64) -> u64 {
    LATE.fetch_add(1, Ordering::SeqCst);
    x + 1
}

workflow! {
    #[durable]
    fn three_steps(x: u64) -> u64 {
        let one = first_step(&x);
        let two = slow_step(&one);
        late_step(&two)
    }
}

#[tokio::test]
async fn a_run_whose_checkpoints_cannot_be_saved_stops_with_the_stores_error() {
    let dir = TempDir::new("durable-full");
    let inner = open_store(&dir);
    let full: Arc<dyn Store> = Arc::new(Faulty(Arc::clone(&inner), Fault::DiskFull));
    let outcome = start(three_steps::workflow(), &full, "r", (2,)).await;
    let message = outcome.result.unwrap_err().to_string();
    assert!(
        message.contains("store `runs.db`: cannot save checkpoints: database or disk is full"),
        "{message}"
    );
    assert_eq!(
        LATE.load(Ordering::SeqCst),
        0,
        "the first failed save stopped the run: nothing more started"
    );
    // The run is recorded as failed, so it is not mistaken for a finished one.
    assert_eq!(inner.runs().unwrap()[0].status, "failed");
    assert!(inner.checkpoints("r").unwrap().is_empty());
}

#[tokio::test]
async fn a_store_whose_save_panics_fails_the_run_with_the_panic() {
    let dir = TempDir::new("durable-panics");
    let inner = open_store(&dir);
    let store: Arc<dyn Store> = Arc::new(Faulty(Arc::clone(&inner), Fault::Panics));
    let outcome = start(small::workflow(), &store, "r", (2,)).await;
    let message = outcome.result.unwrap_err().to_string();
    assert_eq!(
        message,
        "store `runs.db`: the store panicked in `save`: the disk controller is on fire"
    );
    assert_eq!(inner.runs().unwrap()[0].status, "failed");
}

#[tokio::test]
async fn a_run_whose_checkpoint_writer_died_never_succeeds() {
    let dir = TempDir::new("durable-writer-dies");
    let inner = open_store(&dir);
    let store: Arc<dyn Store> = Arc::new(Faulty(Arc::clone(&inner), Fault::KillsTheWriter));
    let outcome = start(small::workflow(), &store, "r", (2,)).await;
    let message = outcome.result.unwrap_err().to_string();
    assert!(
        message.contains("the checkpoint writer died before confirming"),
        "{message}"
    );
    assert_ne!(inner.runs().unwrap()[0].status, "succeeded");
    // Its lease was released as the writer went down: the run can be resumed.
    let again = super::resume(small::workflow(), &inner, "r").await;
    assert_eq!(again.result.unwrap(), 4);
}

/// A store that panics wherever it is called.
struct Panicking;

impl Store for Panicking {
    fn location(&self) -> String {
        "panicking.db".into()
    }
    fn run(&self, _: &str) -> Result<Option<RunRecord>, StoreError> {
        panic!("run")
    }
    fn claim(&self, _: &str, _: &str, _: Option<&RunRecord>) -> Result<Claim, StoreError> {
        panic!("the claim went wrong")
    }
    fn renew(&self, _: &str, _: &str) -> Result<(), StoreError> {
        panic!("renew")
    }
    fn release(&self, _: &str, _: &str) -> Result<(), StoreError> {
        panic!("release")
    }
    fn checkpoints(&self, _: &str) -> Result<Vec<Checkpoint>, StoreError> {
        panic!("checkpoints")
    }
    fn save(&self, _: &str, _: &str, _: &[Checkpoint], _: &[TaskEnd]) -> Result<(), StoreError> {
        panic!("save")
    }
    fn discard(&self, _: &str, _: &str, _: &[String]) -> Result<(), StoreError> {
        panic!("discard")
    }
    fn task_ends(&self, _: &str) -> Result<Vec<TaskEnd>, StoreError> {
        panic!("task_ends")
    }
    fn finish(&self, _: &str, _: &str, _: &str, _: Duration, _: &str) -> Result<(), StoreError> {
        panic!("finish")
    }
    fn runs(&self) -> Result<Vec<RunSummary>, StoreError> {
        panic!("runs")
    }
    fn report(&self, _: &str) -> Result<Option<String>, StoreError> {
        panic!("report")
    }
    fn delete_before(&self, _: std::time::SystemTime) -> Result<Deleted, StoreError> {
        panic!("delete_before")
    }
    fn cached(&self, _: &str, _: &str) -> Result<Option<CachedResult>, StoreError> {
        panic!("cached")
    }
    fn save_cached(&self, _: &[CachedResult]) -> Result<(), StoreError> {
        panic!("save_cached")
    }
    fn cache_entries(&self) -> Result<Vec<CacheEntry>, StoreError> {
        panic!("cache_entries")
    }
    fn clear_cache(&self, _: Option<&str>, _: Option<u64>) -> Result<usize, StoreError> {
        panic!("clear_cache")
    }
}

#[tokio::test]
async fn a_store_that_panics_when_the_run_starts_is_a_store_error() {
    let store: Arc<dyn Store> = Arc::new(Panicking);
    let outcome = start(small::workflow(), &store, "r", (2,)).await;
    let error = outcome.result.unwrap_err();
    assert!(matches!(error, Error::Store(_)), "{error:?}");
    let message = error.to_string();
    assert_eq!(
        message,
        "store `panicking.db`: the store panicked in `claim`: the claim went wrong"
    );
}
