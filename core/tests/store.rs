//! The SQLite store: what it keeps, its leases, and clear errors for files it cannot
//! use.
#![cfg(feature = "sqlite")]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aqueduct::store::{Checkpoint, Claim, RunRecord, SqliteStore, Store};

mod scratch;
use scratch::TempDir;

fn run(id: &str) -> RunRecord {
    RunRecord {
        id: id.into(),
        workflow: "flow".into(),
        fingerprint: "abc".into(),
        input: b"[1]".to_vec(),
        graph: "workflow flow version 1\n".into(),
    }
}

/// An owner on another host: its lease holds while its heartbeat is fresh.
const ME: &str = "elsewhere:1:me";

/// Records run `id`, owned by `owner`.
fn start(store: &SqliteStore, id: &str, owner: &str) {
    let claim = store.claim(id, owner, Some(&run(id))).unwrap();
    assert_eq!(claim, Claim::Started);
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn checkpoint(node: &str, data: &str) -> Checkpoint {
    Checkpoint {
        node: node.into(),
        codec: "json".into(),
        schema: 1,
        data: data.as_bytes().to_vec(),
        attempts: 1,
    }
}

#[test]
fn runs_and_checkpoints_survive_reopening() {
    let dir = TempDir::new("store-reopen");
    let path = dir.db();
    {
        let store = SqliteStore::open(&path).unwrap();
        start(&store, "r1", ME);
        store
            .save("r1", ME, &[checkpoint("a", "1"), checkpoint("b", "2")], &[])
            .unwrap();
        store
            .finish("r1", ME, "succeeded", Duration::from_millis(12), "{}")
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.run("r1").unwrap(), Some(run("r1")));
    assert_eq!(store.run("nope").unwrap(), None);
    let mut saved = store.checkpoints("r1").unwrap();
    saved.sort_by(|a, b| a.node.cmp(&b.node));
    assert_eq!(saved, [checkpoint("a", "1"), checkpoint("b", "2")]);
    let runs = store.runs().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (
            runs[0].status.as_str(),
            runs[0].duration_ms,
            runs[0].checkpoints
        ),
        ("succeeded", Some(12), 2)
    );
    assert_eq!(store.report("r1").unwrap().as_deref(), Some("{}"));
}

#[test]
fn a_later_checkpoint_of_a_node_replaces_the_earlier_one() {
    let dir = TempDir::new("store-replace");
    let store = SqliteStore::open(dir.db()).unwrap();
    start(&store, "r1", ME);
    store.save("r1", ME, &[checkpoint("a", "1")], &[]).unwrap();
    // A resumed run ran `a` again (an input it read ran again): its value now counts.
    store
        .save("r1", ME, &[checkpoint("b", "2"), checkpoint("a", "9")], &[])
        .unwrap();
    let mut saved = store.checkpoints("r1").unwrap();
    saved.sort_by(|a, b| a.node.cmp(&b.node));
    assert_eq!(saved, [checkpoint("a", "9"), checkpoint("b", "2")]);
}

#[test]
fn a_batch_of_a_runner_that_lost_the_run_is_refused_whole_and_names_the_owner() {
    let dir = TempDir::new("store-not-owner");
    let store = SqliteStore::open(dir.db()).unwrap();
    start(&store, "r1", ME);
    store.save("r1", ME, &[checkpoint("a", "1")], &[]).unwrap();
    let error = store
        .save("r1", "other:2:x", &[checkpoint("b", "2")], &[])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("cannot save checkpoints: run `r1` is no longer owned by this run (`other:2:x`) but by `elsewhere:1:me`"),
        "{error}"
    );
    assert_eq!(store.checkpoints("r1").unwrap(), [checkpoint("a", "1")]);
    let renew = store.renew("r1", "other:2:x").unwrap_err().to_string();
    assert!(renew.contains("but by `elsewhere:1:me`"), "{renew}");
    let finish = store
        .finish("r1", "other:2:x", "failed", Duration::ZERO, "{}")
        .unwrap_err()
        .to_string();
    assert!(finish.contains("but by `elsewhere:1:me`"), "{finish}");
    assert_eq!(
        store.runs().unwrap()[0].status,
        "running",
        "nothing recorded"
    );
}

#[test]
fn a_claimed_run_is_refused_to_others_until_its_owner_finishes_or_releases_it() {
    let dir = TempDir::new("store-lease");
    let store = SqliteStore::open(dir.db()).unwrap();
    start(&store, "r1", ME);
    assert_eq!(
        store.claim("r1", "other:2:x", None).unwrap(),
        Claim::InUse { owner: ME.into() }
    );
    assert_eq!(
        store.claim("r1", "other:2:x", Some(&run("r1"))).unwrap(),
        Claim::InUse { owner: ME.into() },
        "a record given for a known run changes nothing"
    );
    assert_eq!(
        store.claim("nope", "other:2:x", None).unwrap(),
        Claim::Unknown
    );
    store.release("r1", "not-me:3:y").unwrap(); // not its owner: nothing happens
    assert!(matches!(
        store.claim("r1", "other:2:x", None).unwrap(),
        Claim::InUse { .. }
    ));
    store.release("r1", ME).unwrap();
    assert_eq!(
        store.claim("r1", "other:2:x", None).unwrap(),
        Claim::Taken(run("r1"))
    );
    store
        .finish("r1", "other:2:x", "succeeded", Duration::ZERO, "{}")
        .unwrap();
    assert_eq!(
        store.claim("r1", ME, None).unwrap(),
        Claim::Taken(run("r1")),
        "finish gave the lease up"
    );
}

#[test]
fn a_lease_whose_heartbeat_is_stale_is_taken_over() {
    let dir = TempDir::new("store-stale");
    let store = SqliteStore::open(dir.db()).unwrap();
    start(&store, "r1", ME);
    let db = rusqlite::Connection::open(dir.db()).unwrap();
    let age = |ms: i64| {
        db.execute(
            "UPDATE runs SET heartbeat_ms = ?1 WHERE id = 'r1'",
            [now_ms() - ms],
        )
        .unwrap();
    };
    age(20_000);
    assert!(
        matches!(
            store.claim("r1", "other:2:x", None).unwrap(),
            Claim::InUse { .. }
        ),
        "20 s is within the lease"
    );
    age(31_000);
    assert_eq!(
        store.claim("r1", "other:2:x", None).unwrap(),
        Claim::Taken(run("r1"))
    );
    // The heartbeat is the new owner's now: the old one is refused.
    assert!(matches!(
        store.claim("r1", ME, None).unwrap(),
        Claim::InUse { .. }
    ));
    store.renew("r1", "other:2:x").unwrap();
}

#[test]
fn a_lease_of_a_dead_process_on_this_host_is_taken_over_at_once() {
    let dir = TempDir::new("store-dead");
    let store = SqliteStore::open(dir.db()).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let owner = format!("{}:{dead}:x", host.trim());
    start(&store, "r1", &owner);
    assert_eq!(
        store.claim("r1", ME, None).unwrap(),
        Claim::Taken(run("r1")),
        "its heartbeat is fresh, but its process is gone"
    );
    // A process of this host that lives (this one) keeps its lease.
    let alive = format!("{}:{}:x", host.trim(), std::process::id());
    start(&store, "r2", &alive);
    assert_eq!(
        store.claim("r2", ME, None).unwrap(),
        Claim::InUse { owner: alive }
    );
}

#[test]
fn delete_skips_runs_that_are_running() {
    let dir = TempDir::new("store-delete-live");
    let store = SqliteStore::open(dir.db()).unwrap();
    start(&store, "live", ME);
    start(&store, "done", ME);
    store
        .finish("done", ME, "succeeded", Duration::ZERO, "{}")
        .unwrap();
    start(&store, "stale", "gone:9:x");
    let db = rusqlite::Connection::open(dir.db()).unwrap();
    db.execute(
        "UPDATE runs SET heartbeat_ms = ?1 WHERE id = 'stale'",
        [now_ms() - 60_000],
    )
    .unwrap();
    let deleted = store
        .delete_before(SystemTime::now() + Duration::from_secs(1))
        .unwrap();
    assert_eq!(
        (deleted.deleted, deleted.skipped),
        (2, vec!["live".to_owned()])
    );
    let left: Vec<_> = store.runs().unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(left, ["live"]);
    store
        .save("live", ME, &[checkpoint("a", "1")], &[])
        .unwrap();
}

#[test]
fn old_runs_are_deleted_with_their_checkpoints() {
    let dir = TempDir::new("store-delete");
    let store = SqliteStore::open(dir.db()).unwrap();
    start(&store, "old", ME);
    store.save("old", ME, &[checkpoint("a", "1")], &[]).unwrap();
    store
        .finish("old", ME, "succeeded", Duration::ZERO, "{}")
        .unwrap();
    let deleted = store
        .delete_before(SystemTime::now() + Duration::from_secs(1))
        .unwrap();
    assert_eq!((deleted.deleted, deleted.skipped.len()), (1, 0));
    assert!(store.runs().unwrap().is_empty());
    assert!(store.checkpoints("old").unwrap().is_empty());
}

#[test]
fn a_file_that_is_not_a_database_is_a_clear_error_and_is_left_alone() {
    let dir = TempDir::new("store-notdb");
    let path = dir.0.join("notes.txt");
    let text = "these are my notes, not a database\n".repeat(200);
    std::fs::write(&path, &text).unwrap();
    let error = SqliteStore::open(&path).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("notes.txt") && message.contains("not a usable SQLite database"),
        "{message}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "the file is untouched"
    );
}

#[test]
fn a_path_that_cannot_be_written_is_a_clear_error() {
    // /proc cannot hold new files, even for root.
    let error = SqliteStore::open("/proc/aqueduct-runs.db").unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("/proc/aqueduct-runs.db") && message.contains("cannot open"),
        "{message}"
    );
}

#[test]
fn a_store_waits_for_another_connections_write_lock_instead_of_failing() {
    let dir = TempDir::new("store-busy");
    let path = dir.db();
    let store = SqliteStore::open(&path).unwrap();
    // Another process holds the write lock for a moment (a run saving a batch).
    let mut other = rusqlite::Connection::open(&path).unwrap();
    let held = std::time::Instant::now();
    let lock = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    std::thread::scope(|scope| {
        let starting = scope.spawn(|| {
            start(&store, "r1", ME);
            held.elapsed()
        });
        std::thread::sleep(Duration::from_millis(200));
        lock.commit().unwrap();
        assert!(starting.join().unwrap() >= Duration::from_millis(200));
    });
    assert_eq!(store.runs().unwrap().len(), 1);
}

#[test]
fn a_store_of_another_schema_version_is_refused_and_left_alone() {
    let dir = TempDir::new("store-schema");
    let path = dir.db();
    {
        let store = SqliteStore::open(&path).unwrap();
        start(&store, "r1", ME);
    }
    // A later build changed the tables' layout.
    let db = rusqlite::Connection::open(&path).unwrap();
    db.pragma_update(None, "user_version", 7).unwrap();
    drop(db);
    let error = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(
        error.contains("its tables are of store schema 7, this build uses schema 2"),
        "{error}"
    );
    let db = rusqlite::Connection::open(&path).unwrap();
    let runs: i64 = db
        .query_row("SELECT COUNT(*) FROM runs", [], |row| row.get(0))
        .unwrap();
    assert_eq!(runs, 1, "nothing lost");
}

#[test]
fn a_store_of_schema_1_is_migrated_and_keeps_its_runs() {
    let dir = TempDir::new("store-migrate");
    let path = dir.db();
    {
        // The layout of schema 1, as the build before leases wrote it.
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(
            "CREATE TABLE runs (
                id TEXT PRIMARY KEY, workflow TEXT NOT NULL, fingerprint TEXT NOT NULL,
                graph TEXT NOT NULL, input BLOB NOT NULL, status TEXT NOT NULL,
                started_ms INTEGER NOT NULL, duration_ms INTEGER, report TEXT);
             CREATE TABLE checkpoints (
                run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                node TEXT NOT NULL, codec TEXT NOT NULL, schema INTEGER NOT NULL,
                data BLOB NOT NULL, attempts INTEGER NOT NULL, PRIMARY KEY (run_id, node));
             CREATE TABLE task_ends (
                run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                node TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
                errors TEXT NOT NULL, started_ms INTEGER NOT NULL,
                duration_ms INTEGER NOT NULL, PRIMARY KEY (run_id, node));
             INSERT INTO runs VALUES ('r1', 'flow', 'abc', 'workflow flow version 1
',
                                      X'5B315D', 'running', 1, NULL, NULL);
             INSERT INTO checkpoints VALUES ('r1', 'a', 'json', 1, X'31', 1);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let version: u32 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 2);
    assert_eq!(store.run("r1").unwrap(), Some(run("r1")));
    assert_eq!(store.checkpoints("r1").unwrap(), [checkpoint("a", "1")]);
    // A run of schema 1 has no owner: it can be resumed at once.
    assert_eq!(
        store.claim("r1", ME, None).unwrap(),
        Claim::Taken(run("r1"))
    );
    store.save("r1", ME, &[checkpoint("b", "2")], &[]).unwrap();
    drop(store);
    // Opening the migrated file again changes nothing.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.checkpoints("r1").unwrap().len(), 2);
}
