//! One owner per run: a lease claimed in the store, renewed while the run goes on, and
//! given up when it ends; and store work that never blocks the async runtime.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aqueduct::prelude::*;
use aqueduct::{Error, TaskStatus};

use super::scratch::TempDir;
use super::{open_store, resume, small, start};

/// The parameters whose gate is open: `wait_for_gate(x)` returns once `x` is here.
static OPEN: Mutex<Vec<u64>> = Mutex::new(Vec::new());
/// The parameters whose gated task has started.
static STARTED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

fn open_gate(x: u64) {
    OPEN.lock().unwrap().push(x);
}

async fn until(what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn started(x: u64) {
    until("the gated task to start", || {
        STARTED.lock().unwrap().contains(&x)
    })
    .await;
}

#[task]
async fn wait_for_gate(x: &u64) -> u64 {
    STARTED.lock().unwrap().push(*x);
    while !OPEN.lock().unwrap().contains(x) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    x + 1
}

#[task]
fn plus_one(x: &u64) -> u64 {
    x + 1
}

workflow! {
    #[durable]
    fn gated(x: u64) -> u64 {
        let waited = wait_for_gate(&x);
        plus_one(&waited)
    }
}

/// The owner column of run `id`, read behind the store's back.
fn owner_of(dir: &TempDir, id: &str) -> Option<String> {
    let db = rusqlite::Connection::open(dir.db()).unwrap();
    db.query_row("SELECT owner FROM runs WHERE id = ?1", [id], |row| {
        row.get(0)
    })
    .unwrap()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_resume_of_a_live_run_is_refused_and_names_its_owner() {
    let dir = TempDir::new("durable-in-use");
    let store = open_store(&dir);
    let first = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { start(gated::workflow(), &store, "busy", (101,)).await })
    };
    started(101).await;
    let second = resume(gated::workflow(), &store, "busy").await;
    let pid = format!(":{}:", std::process::id());
    match &second.result {
        Err(Error::RunInUse { run, owner }) => {
            assert_eq!(run, "busy");
            assert!(owner.contains(&pid), "{owner}");
        }
        other => panic!("not refused as in use: {other:?}"),
    }
    let message = second.result.unwrap_err().to_string();
    assert!(
        message.starts_with("run `busy` is in use: `") && message.contains(&pid),
        "{message}"
    );
    assert!(second.report.tasks.is_empty(), "nothing of it ran");

    open_gate(101);
    assert_eq!(first.await.unwrap().result.unwrap(), 103);
    assert_eq!(owner_of(&dir, "busy"), None, "its end gave the lease up");
    let third = resume(gated::workflow(), &store, "busy").await;
    assert_eq!(third.result.unwrap(), 103);
    assert!(
        third
            .report
            .tasks
            .iter()
            .all(|t| t.status == TaskStatus::Restored)
    );
}

#[tokio::test]
async fn a_lease_whose_heartbeat_is_stale_is_taken_over_by_a_resume() {
    let dir = TempDir::new("durable-stale");
    let store = open_store(&dir);
    start(small::workflow(), &store, "r", (2,))
        .await
        .result
        .unwrap();
    // A process on another host claimed it, then went quiet.
    let db = rusqlite::Connection::open(dir.db()).unwrap();
    let claimed = |heartbeat: i64| {
        db.execute(
            "UPDATE runs SET owner = 'far-away:77:abc', heartbeat_ms = ?1 WHERE id = 'r'",
            [heartbeat],
        )
        .unwrap();
    };
    claimed(now_ms());
    let refused = resume(small::workflow(), &store, "r").await;
    let message = refused.result.unwrap_err().to_string();
    assert!(
        message.contains("`far-away:77:abc` (host:pid:tag) is running it"),
        "{message}"
    );
    claimed(now_ms() - 31_000);
    let taken = resume(small::workflow(), &store, "r").await;
    assert_eq!(taken.result.unwrap(), 4);
    assert_eq!(owner_of(&dir, "r"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_run_releases_its_lease_so_it_can_be_resumed_at_once() {
    let dir = TempDir::new("durable-dropped");
    let store = open_store(&dir);
    let run = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { start(gated::workflow(), &store, "dropped", (102,)).await })
    };
    started(102).await;
    assert!(owner_of(&dir, "dropped").is_some());
    run.abort(); // drops the run future
    assert!(run.await.unwrap_err().is_cancelled());
    until("the writer to release the lease", || {
        owner_of(&dir, "dropped").is_none()
    })
    .await;
    open_gate(102);
    let again = resume(gated::workflow(), &store, "dropped").await;
    assert_eq!(again.result.unwrap(), 104);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_lost_its_lease_stops_with_the_stores_error() {
    let dir = TempDir::new("durable-lost");
    let store = open_store(&dir);
    let run = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { start(gated::workflow(), &store, "lost", (103,)).await })
    };
    started(103).await;
    // Its lease expired (say the machine slept) and another runner took the run over.
    let db = rusqlite::Connection::open(dir.db()).unwrap();
    db.execute(
        "UPDATE runs SET owner = 'thief:1:x', heartbeat_ms = ?1 WHERE id = 'lost'",
        [now_ms()],
    )
    .unwrap();
    open_gate(103);
    let outcome = run.await.unwrap();
    let error = outcome.result.unwrap_err();
    assert!(matches!(error, Error::Store(_)), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("run `lost` is no longer owned by this run")
            && message.contains("but by `thief:1:x`"),
        "{message}"
    );
    // The new owner's run is left alone: no checkpoint, no end recorded.
    assert_eq!(owner_of(&dir, "lost").as_deref(), Some("thief:1:x"));
    assert!(store.checkpoints("lost").unwrap().is_empty());
    assert_eq!(store.runs().unwrap()[0].status, "running");
}

#[tokio::test(flavor = "current_thread")]
async fn a_store_waiting_for_the_write_lock_does_not_block_the_runtime() {
    let dir = TempDir::new("durable-blocking");
    let store = open_store(&dir);
    // Another process holds the write lock for a second.
    let (locked, is_locked) = std::sync::mpsc::channel();
    let path = dir.db();
    let holder = std::thread::spawn(move || {
        let mut other = rusqlite::Connection::open(path).unwrap();
        let lock = other
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        locked.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(1));
        lock.commit().unwrap();
    });
    is_locked.recv().unwrap();
    // Another task on this one-thread runtime: it must keep ticking meanwhile.
    let ticks = Arc::new(AtomicU64::new(0));
    let ticker = tokio::spawn({
        let ticks = Arc::clone(&ticks);
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticks.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let began = Instant::now();
    let outcome = start(small::workflow(), &store, "r", (2,)).await;
    let took = began.elapsed();
    let ticked = ticks.load(Ordering::SeqCst);
    ticker.abort();
    holder.join().unwrap();
    assert_eq!(outcome.result.unwrap(), 4);
    assert!(
        took >= Duration::from_millis(800),
        "the store waited: {took:?}"
    );
    assert!(
        ticked >= 30,
        "the runtime stalled while the store waited {took:?}: {ticked} ticks"
    );
}
