//! `PostgresStore` against a real server: the `Store` contract (claims and leases,
//! batches, discards, task ends, history, deletion, the cache), durable runs resumed
//! through it, TLS, passwords never shown, schema versions, a connection lost.
//!
//! Needs `DATABASE_URL` (a role that may create databases: each test gets a fresh
//! one); `scripts/postgres.sh` starts such a server. Without it, one test says the
//! others did not run, and they pass without doing anything.
#![cfg(feature = "postgres")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use aqueduct::prelude::*;
use aqueduct::store::{
    CachedResult, Checkpoint, Claim, PostgresStore, RunRecord, Store, StoreError, TaskEnd,
};
use aqueduct::{Error, TaskStatus};

#[path = "postgres/database.rs"]
mod database;
use database::{Database, server, with_database};

const PASSWORD: &str = "aqueduct-test-secret";

#[test]
fn postgres_tests_need_a_server() {
    if server().is_none() {
        println!(
            "PostgreSQL tests did not run: DATABASE_URL is not set \
             (`eval \"$(scripts/postgres.sh)\"` starts a server and sets it)"
        );
    }
}

/// `url` with `option` added to its query.
fn with_option(url: &str, option: &str) -> String {
    if url.contains('?') {
        format!("{url}&{option}")
    } else {
        format!("{url}?{option}")
    }
}

fn record(id: &str) -> RunRecord {
    RunRecord {
        id: id.to_owned(),
        workflow: "wf".into(),
        fingerprint: "f".into(),
        graph: "g".into(),
        input: b"[1]".to_vec(),
    }
}

fn checkpoint(node: &str, data: &str) -> Checkpoint {
    Checkpoint {
        node: node.to_owned(),
        codec: "json".into(),
        schema: 1,
        data: data.as_bytes().to_vec(),
        attempts: 1,
    }
}

fn end(node: &str, started_ms: u64) -> TaskEnd {
    TaskEnd {
        node: node.to_owned(),
        status: "succeeded".into(),
        attempts: 2,
        errors: vec!["first attempt: timed out".into()],
        started_ms,
        duration_ms: 5,
    }
}

/// An owner id of a process on another host: its lease holds until it is stale.
const OTHER: &str = "elsewhere:1:a";

#[test]
fn claims_leases_and_batches_follow_the_store_contract() {
    let Some(db) = Database::new("contract") else {
        return;
    };
    let store = db.open();
    assert_eq!(store.claim("r", "me:1:x", None).unwrap(), Claim::Unknown);
    assert_eq!(
        store.claim("r", OTHER, Some(&record("r"))).unwrap(),
        Claim::Started
    );
    // Held by a live lease elsewhere: refused, naming the owner.
    assert_eq!(
        store.claim("r", "me:1:x", Some(&record("r"))).unwrap(),
        Claim::InUse {
            owner: OTHER.into()
        }
    );
    store
        .save(
            "r",
            OTHER,
            &[checkpoint("a", "1"), checkpoint("b", "2")],
            &[end("a", 10)],
        )
        .unwrap();
    // A later checkpoint of a node replaces the earlier one.
    store
        .save("r", OTHER, &[checkpoint("a", "3")], &[end("b", 20)])
        .unwrap();
    let mut saved = store.checkpoints("r").unwrap();
    saved.sort_by(|x, y| x.node.cmp(&y.node));
    assert_eq!(saved, vec![checkpoint("a", "3"), checkpoint("b", "2")]);
    let ends = store.task_ends("r").unwrap();
    assert_eq!(ends, vec![end("a", 10), end("b", 20)]);
    // Another owner's batch is refused whole.
    let refused = store
        .save("r", "me:1:x", &[checkpoint("c", "9")], &[])
        .unwrap_err();
    assert!(refused.message.contains(OTHER), "{refused}");
    assert_eq!(store.checkpoints("r").unwrap().len(), 2);
    store.discard("r", OTHER, &["b".to_owned()]).unwrap();
    assert_eq!(store.checkpoints("r").unwrap(), vec![checkpoint("a", "3")]);

    // A stale heartbeat (by the server's clock) lets another runner take the run over.
    db.sql()
        .execute(
            "UPDATE aqueduct_runs SET heartbeat_ms = heartbeat_ms - 60000",
            &[],
        )
        .unwrap();
    match store.claim("r", "me:1:x", None).unwrap() {
        Claim::Taken(taken) => assert_eq!(taken, record("r")),
        other => panic!("{other:?}"),
    }
    let lost = store.renew("r", OTHER).unwrap_err();
    assert!(lost.message.contains("me:1:x"), "{lost}");
    store
        .finish("r", "me:1:x", "succeeded", Duration::from_millis(42), "{}")
        .unwrap();
    let runs = store.runs().unwrap();
    assert_eq!(
        (
            runs[0].status.as_str(),
            runs[0].duration_ms,
            runs[0].checkpoints
        ),
        ("succeeded", Some(42), 1)
    );
    assert_eq!(store.report("r").unwrap().as_deref(), Some("{}"));
    // Finished: its lease is given up, anyone may claim it.
    assert!(matches!(
        store.claim("r", OTHER, None).unwrap(),
        Claim::Taken(_)
    ));
    store.release("r", OTHER).unwrap();

    // Deleting old runs skips the running ones.
    assert_eq!(
        store.claim("live", OTHER, Some(&record("live"))).unwrap(),
        Claim::Started
    );
    let later = SystemTime::now() + Duration::from_secs(60);
    let deleted = store.delete_before(later).unwrap();
    assert_eq!(
        (deleted.deleted, deleted.skipped),
        (1, vec!["live".to_owned()])
    );
    assert!(store.checkpoints("r").unwrap().is_empty());
}

#[test]
fn cached_results_are_kept_replaced_listed_and_cleared() {
    let Some(db) = Database::new("cache") else {
        return;
    };
    let store = db.open();
    let result = |task: &str, key: &str, data: &str, expires_ms: Option<u64>| CachedResult {
        task: task.into(),
        key: key.into(),
        codec: "json".into(),
        schema: 1,
        data: data.as_bytes().to_vec(),
        run: "r1".into(),
        created_ms: 1_000,
        expires_ms,
    };
    store
        .save_cached(&[
            result("a", "k1", "1", None),
            result("a", "k2", "2", Some(5_000)),
        ])
        .unwrap();
    store
        .save_cached(&[result("a", "k1", "10", None), result("b", "k1", "3", None)])
        .unwrap();
    assert_eq!(
        store.cached("a", "k1").unwrap(),
        Some(result("a", "k1", "10", None))
    );
    assert_eq!(store.cached("a", "nope").unwrap(), None);
    let entries = store.cache_entries().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries.iter().map(|e| e.bytes).sum::<u64>(), 4);
    assert_eq!(
        store.clear_cache(Some("a"), Some(6_000)).unwrap(),
        1,
        "only the expired one"
    );
    assert_eq!(store.clear_cache(Some("a"), None).unwrap(), 1);
    assert_eq!(store.clear_cache(None, None).unwrap(), 1);
    assert!(store.cache_entries().unwrap().is_empty());
}

static LOADS: AtomicUsize = AtomicUsize::new(0);
static FLAKY: AtomicUsize = AtomicUsize::new(0);

#[task]
fn load(n: &u64) -> Vec<u64> {
    LOADS.fetch_add(1, Ordering::SeqCst);
    (1..=*n).collect()
}

#[task]
fn flaky(x: &u64) -> Result<u64, TaskError> {
    // Fails on its first call only.
    if FLAKY.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err(TaskError::permanent(TaskError::msg("not yet")));
    }
    Ok(x * 10)
}

#[task]
fn total(xs: &[u64]) -> u64 {
    xs.iter().sum()
}

workflow! {
    #[durable]
    fn tally(n: u64) -> u64 {
        let xs = load(&n);
        let tens = for x in &xs {
            flaky(x)
        };
        total(&tens)
    }
}

#[tokio::test]
async fn a_durable_run_fails_and_resumes_through_postgres() {
    let Some(db) = Database::new("resume") else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(db.open());
    let runner = || {
        tally::workflow()
            .runner()
            .store(Arc::clone(&store))
            .run_id("night")
    };
    let first = runner().run((4,)).await;
    assert!(
        matches!(first.result, Err(Error::Failed { .. })),
        "{:?}",
        first.result
    );
    let again = runner().resume().await;
    assert_eq!(again.result.unwrap(), 100);
    assert_eq!(
        LOADS.load(Ordering::SeqCst),
        1,
        "`load` was restored, not run again"
    );
    let xs = again.report.tasks.iter().find(|t| t.node == "xs").unwrap();
    assert_eq!(xs.status, TaskStatus::Restored);
    assert_eq!(store.runs().unwrap()[0].status, "succeeded");
    // Only the failed item ran again: three of its items were restored.
    let restored = again
        .report
        .tasks
        .iter()
        .filter(|t| t.task == "flaky" && t.status == TaskStatus::Restored)
        .count();
    assert_eq!(restored, 3);
}

#[test]
fn tls_is_required_or_verified_and_a_wrong_ca_is_refused() {
    let Some(db) = Database::new("tls") else {
        return;
    };
    let required = PostgresStore::connect(&with_option(&db.url, "sslmode=require")).unwrap();
    assert!(required.runs().unwrap().is_empty());
    // The server's own view: every connection of this role to this database uses TLS
    // while the store's is open.
    let ssl: bool = db
        .sql()
        .query_one(
            "SELECT bool_or(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.datname = current_database() AND a.application_name = 'aqueduct'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(ssl, "the store's connection is encrypted");

    let Ok(ca) = std::env::var("AQUEDUCT_PG_CA") else {
        println!("verify-full not tested: AQUEDUCT_PG_CA is not set");
        return;
    };
    for host in ["localhost", "127.0.0.1"] {
        let url = db.url.replacen("127.0.0.1", host, 1);
        let verified = with_option(&url, &format!("sslmode=verify-full&sslrootcert={ca}"));
        let store = PostgresStore::connect(&verified).unwrap();
        assert!(store.runs().unwrap().is_empty(), "{host}");
    }
    // Without the server's CA (the system's only), the certificate does not verify.
    let unverified =
        PostgresStore::connect(&with_option(&db.url, "sslmode=verify-full")).unwrap_err();
    assert!(
        unverified.message.contains("cannot connect") || unverified.message.contains("CA"),
        "{unverified}"
    );
    assert!(!unverified.to_string().contains(PASSWORD));
}

#[test]
fn the_password_never_appears_in_errors_locations_or_records() {
    let Some(db) = Database::new("secret") else {
        return;
    };
    let wrong = db.url.replace(PASSWORD, "not-the-password");
    let refused = PostgresStore::connect(&wrong).unwrap_err().to_string();
    assert!(
        refused.contains("password authentication failed"),
        "{refused}"
    );
    assert!(!refused.contains("not-the-password"), "{refused}");
    let unreachable = with_database(&db.url.replace(":54329", ":1"), &db.name);
    let started = std::time::Instant::now();
    let down = PostgresStore::connect(&unreachable)
        .unwrap_err()
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a bounded wait"
    );
    assert!(down.contains("cannot connect"), "{down}");
    assert!(!down.contains(PASSWORD), "{down}");
    let store = db.open();
    assert!(!store.location().contains(PASSWORD), "{}", store.location());
    assert!(!format!("{store:?}").contains(PASSWORD));
    let bad = PostgresStore::connect("postgres://u:hunter2@db:notaport/x").unwrap_err();
    assert!(!bad.to_string().contains("hunter2"), "{bad}");
    // A run recorded through it stores nothing of the URL.
    store.claim("r", OTHER, Some(&record("r"))).unwrap();
    store
        .finish("r", OTHER, "succeeded", Duration::ZERO, "{}")
        .unwrap();
    let dump: String = db
        .sql()
        .query("SELECT row_to_json(r)::TEXT FROM aqueduct_runs r", &[])
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect();
    assert!(!dump.contains(PASSWORD), "{dump}");
}

/// The store schema the database's tables are of.
fn schema_version(sql: &mut postgres::Client) -> i32 {
    sql.query_one("SELECT version FROM aqueduct_schema", &[])
        .unwrap()
        .get(0)
}

#[test]
fn a_database_of_a_newer_schema_is_refused_and_left_alone() {
    let Some(db) = Database::new("schema") else {
        return;
    };
    drop(db.open());
    let mut sql = db.sql();
    let current = schema_version(&mut sql);
    sql.execute("UPDATE aqueduct_schema SET version = 99", &[])
        .unwrap();
    let refused: StoreError = PostgresStore::connect(&db.url).unwrap_err();
    assert!(refused.message.contains("schema 99"), "{refused}");
    let version = schema_version(&mut sql);
    assert_eq!(version, 99, "nothing was changed");
    // Opening a database that has the tables already changes nothing either.
    sql.execute("UPDATE aqueduct_schema SET version = $1", &[&current])
        .unwrap();
    let store = db.open();
    store.claim("kept", OTHER, Some(&record("kept"))).unwrap();
    drop(store);
    assert!(db.open().run("kept").unwrap().is_some());
}

/// A build that would migrate the tables is refused while distributed workers of the
/// older build are at work: theirs would run the new tables with their own statements.
/// Once they are gone it migrates, keeping what the runs computed.
#[test]
fn a_migration_is_refused_while_older_workers_work_then_keeps_the_outputs() {
    let Some(db) = Database::new("migration_workers") else {
        return;
    };
    drop(db.open());
    let mut sql = db.sql();
    let current = schema_version(&mut sql);
    // An older build's worker, seen a moment ago, with a 30 s lease.
    sql.batch_execute(&format!(
        "INSERT INTO aqueduct_dist_workers (id, fingerprints, seen_ms, lease_ms)
         VALUES ('old', '{{}}', (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT, 30000);
         UPDATE aqueduct_schema SET version = {}",
        current - 1
    ))
    .unwrap();
    let refused: StoreError = PostgresStore::connect(&db.url).unwrap_err();
    assert!(
        refused
            .message
            .contains("1 distributed worker(s) of an older build are at work"),
        "{refused}"
    );
    assert!(refused.message.contains("stop them"), "{refused}");
    let version = schema_version(&mut sql);
    assert_eq!(version, current - 1, "nothing was changed");
    // A worker gone past its lease does not hold the migration back. The tables are
    // made schema 4's again (outputs in a table of their own), with a finished task:
    // migration 5 moves its output into its row.
    assert_eq!(current, 5, "this test knows migration 5");
    sql.batch_execute(
        "UPDATE aqueduct_dist_workers SET seen_ms = 0;
         ALTER TABLE aqueduct_dist_tasks DROP COLUMN codec, DROP COLUMN data;
         ALTER TABLE aqueduct_dist_tasks RESET (autovacuum_vacuum_scale_factor,
                                                autovacuum_analyze_scale_factor);
         CREATE TABLE aqueduct_dist_outputs (
             run_id TEXT NOT NULL REFERENCES aqueduct_dist_runs(id) ON DELETE CASCADE,
             node INTEGER NOT NULL, codec TEXT NOT NULL, data BYTEA NOT NULL,
             item INTEGER NOT NULL DEFAULT -1, part INTEGER NOT NULL DEFAULT -1,
             PRIMARY KEY (run_id, node, item, part));
         INSERT INTO aqueduct_dist_runs
             (id, workflow, fingerprint, input, status, submitted_ms, unfinished, failed)
             VALUES ('r', 'w', 'f', '[]', 'succeeded', 0, 0, 0);
         INSERT INTO aqueduct_dist_tasks (run_id, node, name, task, state, pending)
             VALUES ('r', 1, 'a', 'a', 'done', 0), ('r', 2, 'b', 'b', 'failed', 0);
         INSERT INTO aqueduct_dist_outputs (run_id, node, codec, data)
             VALUES ('r', 1, 'json', '42');",
    )
    .unwrap();
    drop(db.open());
    let version = schema_version(&mut sql);
    assert_eq!(version, current);
    let rows: Vec<(i32, Option<String>, Option<Vec<u8>>)> = sql
        .query(
            "SELECT node, codec, data FROM aqueduct_dist_tasks WHERE run_id = 'r' ORDER BY node",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        rows,
        [
            (1, Some("json".to_owned()), Some(b"42".to_vec())),
            (2, None, None)
        ]
    );
    let outputs: Option<String> = sql
        .query_one("SELECT to_regclass('aqueduct_dist_outputs')::TEXT", &[])
        .unwrap()
        .get(0);
    assert_eq!(outputs, None, "the outputs' table is gone");
    let options: Vec<String> = sql
        .query_one(
            "SELECT reloptions FROM pg_class WHERE relname = 'aqueduct_dist_tasks'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        options.contains(&"autovacuum_vacuum_scale_factor=0.02".to_owned()),
        "a database of schema 4 gets the tasks' vacuum setting too: {options:?}"
    );
}

#[test]
fn a_connection_killed_by_the_server_is_opened_again_on_the_next_call() {
    let Some(db) = Database::new("reconnect") else {
        return;
    };
    let store = db.open();
    store.claim("r", OTHER, Some(&record("r"))).unwrap();
    let killed: i64 = db
        .sql()
        .query_one(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'aqueduct'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    // `pg_terminate_backend` only signals the backend: wait until it is gone, so the
    // next call meets a dead connection (it once ran before the backend died, and the
    // call after it met the dead connection instead).
    for _ in 0..200 {
        let alive: i64 = db
            .sql()
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name = 'aqueduct'",
                &[],
            )
            .unwrap()
            .get(0);
        if alive == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // The call that meets the dead connection may fail; nothing half-written stays.
    let _ = store.save("r", OTHER, &[checkpoint("a", "1")], &[]);
    std::thread::sleep(Duration::from_millis(50));
    store
        .save("r", OTHER, &[checkpoint("a", "2")], &[])
        .unwrap();
    assert_eq!(store.checkpoints("r").unwrap(), vec![checkpoint("a", "2")]);
}
