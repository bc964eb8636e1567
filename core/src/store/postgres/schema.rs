//! The tables of [`PostgresStore`](super::PostgresStore), created and migrated by
//! numbered migrations under an advisory lock. A database of a newer schema is refused
//! before anything is written: a build never runs DDL on tables it does not know.

use postgres::Transaction;

/// The schema this build uses: the number of migrations below.
pub(crate) const VERSION: i32 = 5;

/// The schema that made `aqueduct_dist_workers` (migration 3).
const WORKERS: i32 = 3;

/// Held while the schema is checked and migrated, so that two processes opening a new
/// database at once never both create it.
const LOCK: i64 = 0x6171_7565_6475_6374; // "aqueduct"

/// Migration `n` (from 0) takes the schema from version `n` to `n + 1`.
const MIGRATIONS: [&str; VERSION as usize] = [
    "
    CREATE TABLE aqueduct_runs (
        id           TEXT PRIMARY KEY,
        workflow     TEXT NOT NULL,
        fingerprint  TEXT NOT NULL,
        graph        TEXT NOT NULL,
        input        BYTEA NOT NULL,
        status       TEXT NOT NULL,
        started_ms   BIGINT NOT NULL,
        duration_ms  BIGINT,
        report       TEXT,
        owner        TEXT,
        heartbeat_ms BIGINT
    );
    CREATE TABLE aqueduct_checkpoints (
        run_id   TEXT NOT NULL REFERENCES aqueduct_runs(id) ON DELETE CASCADE,
        node     TEXT NOT NULL,
        codec    TEXT NOT NULL,
        schema   INTEGER NOT NULL,
        data     BYTEA NOT NULL,
        attempts INTEGER NOT NULL,
        PRIMARY KEY (run_id, node)
    );
    CREATE TABLE aqueduct_task_ends (
        run_id      TEXT NOT NULL REFERENCES aqueduct_runs(id) ON DELETE CASCADE,
        node        TEXT NOT NULL,
        status      TEXT NOT NULL,
        attempts    INTEGER NOT NULL,
        errors      TEXT NOT NULL,
        started_ms  BIGINT NOT NULL,
        duration_ms BIGINT NOT NULL,
        ended       BIGSERIAL,
        PRIMARY KEY (run_id, node)
    );
    CREATE TABLE aqueduct_cache (
        task       TEXT NOT NULL,
        key        TEXT NOT NULL,
        codec      TEXT NOT NULL,
        schema     INTEGER NOT NULL,
        data       BYTEA NOT NULL,
        run_id     TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        expires_ms BIGINT,
        PRIMARY KEY (task, key)
    );
",
    "
    -- Distributed runs: one row per run, per task (its node), per output.
    CREATE TABLE aqueduct_dist_runs (
        id           TEXT PRIMARY KEY,
        workflow     TEXT NOT NULL,
        fingerprint  TEXT NOT NULL,
        input        BYTEA NOT NULL,
        status       TEXT NOT NULL,
        submitted_ms BIGINT NOT NULL,
        ended_ms     BIGINT,
        unfinished   INTEGER NOT NULL,
        failed       INTEGER NOT NULL
    );
    CREATE TABLE aqueduct_dist_tasks (
        run_id       TEXT NOT NULL REFERENCES aqueduct_dist_runs(id) ON DELETE CASCADE,
        node         INTEGER NOT NULL,
        name         TEXT NOT NULL,
        task         TEXT NOT NULL,
        state        TEXT NOT NULL,
        attempt      INTEGER NOT NULL DEFAULT 0,
        reaped       INTEGER NOT NULL DEFAULT 0,
        pending      INTEGER NOT NULL,
        doomed       INTEGER NOT NULL DEFAULT 0,
        available_ms BIGINT NOT NULL DEFAULT 0,
        lease_owner  TEXT,
        lease_ms     BIGINT,
        worker       TEXT,
        error        TEXT,
        started_ms   BIGINT,
        ended_ms     BIGINT,
        PRIMARY KEY (run_id, node)
    );
    CREATE INDEX aqueduct_dist_ready ON aqueduct_dist_tasks (available_ms) WHERE state = 'ready';
    CREATE INDEX aqueduct_dist_running ON aqueduct_dist_tasks (lease_ms) WHERE state = 'running';
    CREATE TABLE aqueduct_dist_outputs (
        run_id TEXT NOT NULL REFERENCES aqueduct_dist_runs(id) ON DELETE CASCADE,
        node   INTEGER NOT NULL,
        codec  TEXT NOT NULL,
        data   BYTEA NOT NULL,
        PRIMARY KEY (run_id, node)
    );
",
    "
    -- A task's concurrency limit within its run, held across workers; the worker of
    -- each of its attempts, in order; the workers.
    ALTER TABLE aqueduct_dist_tasks ADD COLUMN concurrency INTEGER;
    ALTER TABLE aqueduct_dist_tasks ADD COLUMN workers TEXT[] NOT NULL DEFAULT '{}';
    -- The last attempt's worker is the last of `workers`.
    ALTER TABLE aqueduct_dist_tasks DROP COLUMN worker;
    -- Fan-outs item by item: a row of an item's task is the fan-out's `node`, the
    -- `item` (from 0) and the body's node (`part`); -1 and -1 for a node of the
    -- workflow itself. A fan-out's own row is `expanded` once its items' rows are in.
    ALTER TABLE aqueduct_dist_tasks ADD COLUMN item INTEGER NOT NULL DEFAULT -1;
    ALTER TABLE aqueduct_dist_tasks ADD COLUMN part INTEGER NOT NULL DEFAULT -1;
    ALTER TABLE aqueduct_dist_tasks ADD COLUMN expanded BOOLEAN NOT NULL DEFAULT false;
    -- For a cached task whose result was loaded: the run that computed it.
    ALTER TABLE aqueduct_dist_tasks ADD COLUMN cached_from TEXT;
    ALTER TABLE aqueduct_dist_tasks DROP CONSTRAINT aqueduct_dist_tasks_pkey;
    ALTER TABLE aqueduct_dist_tasks ADD PRIMARY KEY (run_id, node, item, part);
    ALTER TABLE aqueduct_dist_outputs ADD COLUMN item INTEGER NOT NULL DEFAULT -1;
    ALTER TABLE aqueduct_dist_outputs ADD COLUMN part INTEGER NOT NULL DEFAULT -1;
    ALTER TABLE aqueduct_dist_outputs DROP CONSTRAINT aqueduct_dist_outputs_pkey;
    ALTER TABLE aqueduct_dist_outputs ADD PRIMARY KEY (run_id, node, item, part);
    -- Big outputs are compressed with lz4 where the server has it (several times
    -- faster than the default pglz on a commit's path); pglz elsewhere.
    -- (EXECUTE: a server older than 14 has no SET COMPRESSION, and must not fail to
    -- parse the block.)
    DO $$ BEGIN
        EXECUTE 'ALTER TABLE aqueduct_dist_outputs ALTER COLUMN data SET COMPRESSION lz4';
    EXCEPTION WHEN OTHERS THEN NULL;
    END $$;
    -- The runs a worker may claim from, found without reading every run ever made.
    CREATE INDEX aqueduct_dist_live ON aqueduct_dist_runs (fingerprint)
        WHERE status = 'running';
    -- The workers at work: the builds (fingerprints) each serves, when it was last
    -- seen and how long its leases are (it is gone once one passes unseen).
    CREATE TABLE aqueduct_dist_workers (
        id           TEXT PRIMARY KEY,
        fingerprints TEXT[] NOT NULL,
        seen_ms      BIGINT NOT NULL,
        lease_ms     BIGINT NOT NULL
    );
",
    "
    -- Branches (`if`, `match`): a task in an arm its decision did not take ends
    -- `not_taken`, and so does one that requires it (`untaken` counts those inputs);
    -- a failure a `match` read is `handled`: it does not fail its run.
    ALTER TABLE aqueduct_dist_tasks ADD COLUMN untaken INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE aqueduct_dist_tasks ADD COLUMN handled BOOLEAN NOT NULL DEFAULT false;
    -- A capped `for` (`#[concurrency = N] for`): how many of its items ended, on its
    -- row; the items past the first N wait for a place (`pending` one more).
    ALTER TABLE aqueduct_dist_tasks ADD COLUMN items_ended INTEGER NOT NULL DEFAULT 0;
",
    "
    -- A task's output is written by the update that ends its attempt, in its own row:
    -- one row version and one index entry fewer per task than a row of its own.
    ALTER TABLE aqueduct_dist_tasks ADD COLUMN codec TEXT;
    ALTER TABLE aqueduct_dist_tasks ADD COLUMN data BYTEA;
    DO $$ BEGIN
        EXECUTE 'ALTER TABLE aqueduct_dist_tasks ALTER COLUMN data SET COMPRESSION lz4';
    EXCEPTION WHEN OTHERS THEN NULL;
    END $$;
    UPDATE aqueduct_dist_tasks t SET codec = o.codec, data = o.data
    FROM aqueduct_dist_outputs o
    WHERE o.run_id = t.run_id AND o.node = t.node AND o.item = t.item AND o.part = t.part;
    DROP TABLE aqueduct_dist_outputs;
    -- Each task's row is written two or three times: vacuumed after 2% of it is dead,
    -- not the default 20% (dead versions slowed runs 2-3x in BENCHMARKS.md).
    ALTER TABLE aqueduct_dist_tasks SET (autovacuum_vacuum_scale_factor = 0.02,
                                         autovacuum_analyze_scale_factor = 0.02);
",
];

/// Checks the schema and brings an older one (or none) to [`VERSION`], in one
/// transaction. Fails, changing nothing, on a newer schema.
pub(crate) fn migrate(transaction: &mut Transaction<'_>) -> Result<(), String> {
    let sql = |error: postgres::Error| match error.as_db_error() {
        Some(db) => format!("cannot prepare the store: {}", db.message()),
        None => format!("cannot prepare the store: {error}"),
    };
    // Up to date: nothing to lock or create (a role that may only read and write rows
    // opens the store too).
    let exists: bool = transaction
        .query_one("SELECT to_regclass('aqueduct_schema') IS NOT NULL", &[])
        .map_err(sql)?
        .get(0);
    if exists {
        let version: Option<i32> = transaction
            .query_opt("SELECT version FROM aqueduct_schema", &[])
            .map_err(sql)?
            .map(|row| row.get(0));
        if version == Some(VERSION) {
            return Ok(());
        }
    }
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .map_err(sql)?;
    transaction
        .batch_execute("CREATE TABLE IF NOT EXISTS aqueduct_schema (version INTEGER NOT NULL)")
        .map_err(sql)?;
    let found: Option<i32> = transaction
        .query_opt("SELECT version FROM aqueduct_schema", &[])
        .map_err(sql)?
        .map(|row| row.get(0));
    let found = found.unwrap_or(0);
    if found > VERSION {
        return Err(format!(
            "its tables are of store schema {found}, this build uses schema {VERSION}: \
             use the build that wrote them (this one changes nothing there)"
        ));
    }
    // Workers of an older build still at work would run this build's tables with their
    // own statements (migration 5 dropped a table theirs read): they are stopped first.
    if (WORKERS..VERSION).contains(&found) {
        let live: i64 = transaction
            .query_one(
                &format!(
                    "SELECT count(*) FROM aqueduct_dist_workers
                     WHERE seen_ms + lease_ms > {}",
                    super::NOW_MS
                ),
                &[],
            )
            .map_err(sql)?
            .get(0);
        if live > 0 {
            return Err(format!(
                "its tables are of store schema {found}, which this build migrates to \
                 {VERSION}, but {live} distributed worker(s) of an older build are at work \
                 (seen within their lease): stop them, then start this build (this one \
                 changed nothing)"
            ));
        }
    }
    for migration in &MIGRATIONS[found as usize..] {
        transaction.batch_execute(migration).map_err(sql)?;
    }
    if found == 0 {
        transaction
            .execute(
                "INSERT INTO aqueduct_schema (version) VALUES ($1)",
                &[&VERSION],
            )
            .map_err(sql)?;
    } else if found < VERSION {
        transaction
            .execute("UPDATE aqueduct_schema SET version = $1", &[&VERSION])
            .map_err(sql)?;
    }
    Ok(())
}
