//! The SQLite store: what it keeps, and clear errors for files it cannot use.

use std::time::{Duration, SystemTime};

use aqueduct::store::{Checkpoint, RunRecord, SqliteStore, Store};

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
        store.start(&run("r1")).unwrap();
        store
            .save("r1", &[checkpoint("a", "1"), checkpoint("b", "2")], &[])
            .unwrap();
        store
            .finish("r1", "succeeded", Duration::from_millis(12), "{}")
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
fn a_node_is_checkpointed_at_most_once_and_a_failed_batch_saves_nothing() {
    let dir = TempDir::new("store-once");
    let store = SqliteStore::open(dir.db()).unwrap();
    store.start(&run("r1")).unwrap();
    store.save("r1", &[checkpoint("a", "1")], &[]).unwrap();
    let error = store
        .save("r1", &[checkpoint("b", "2"), checkpoint("a", "9")], &[])
        .unwrap_err();
    assert!(
        error.to_string().contains("cannot save checkpoints"),
        "{error}"
    );
    let saved = store.checkpoints("r1").unwrap();
    assert_eq!(
        saved,
        [checkpoint("a", "1")],
        "the first stays; the failed batch left nothing"
    );
}

#[test]
fn old_runs_are_deleted_with_their_checkpoints() {
    let dir = TempDir::new("store-delete");
    let store = SqliteStore::open(dir.db()).unwrap();
    store.start(&run("old")).unwrap();
    store.save("old", &[checkpoint("a", "1")], &[]).unwrap();
    let deleted = store
        .delete_before(SystemTime::now() + Duration::from_secs(1))
        .unwrap();
    assert_eq!(deleted, 1);
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
            store.start(&run("r1")).unwrap();
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
        store.start(&run("r1")).unwrap();
    }
    // A later build changed the tables' layout.
    let db = rusqlite::Connection::open(&path).unwrap();
    db.pragma_update(None, "user_version", 7).unwrap();
    drop(db);
    let error = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(
        error.contains("its tables are of store schema 7, this build uses schema 1"),
        "{error}"
    );
    let db = rusqlite::Connection::open(&path).unwrap();
    let runs: i64 = db
        .query_row("SELECT COUNT(*) FROM runs", [], |row| row.get(0))
        .unwrap();
    assert_eq!(runs, 1, "nothing lost");
}
