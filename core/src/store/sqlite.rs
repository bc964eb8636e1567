//! [`SqliteStore`]: every run, checkpoint and task end in one SQLite file.
//!
//! Past 500 lines on purpose: the schema, its migration and every query that relies on
//! them read together in one file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};

use super::{
    CacheEntry, CachedResult, Checkpoint, Claim, Deleted, RunRecord, RunSummary, Store, StoreError,
    TaskEnd, lease_holds, millis, now_ms,
};

mod cache;

/// A [`Store`] in one SQLite file.
///
/// ```
/// use aqueduct::store::{SqliteStore, Store};
/// let dir = std::env::temp_dir().join(format!("aqueduct-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let store = SqliteStore::open(dir.join("runs.db")).unwrap();
/// assert!(store.runs().unwrap().is_empty());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub struct SqliteStore {
    path: PathBuf,
    connection: Mutex<Connection>,
}

/// How long a store waits for another connection's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The layout of the tables below, kept in the file's `user_version`: a file of
/// another layout is refused with a clear error, never misread. Version 1 had no
/// lease (`owner`, `heartbeat_ms`); it is migrated on open.
const SCHEMA_VERSION: u32 = 2;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS runs (
        id           TEXT PRIMARY KEY,
        workflow     TEXT NOT NULL,
        fingerprint  TEXT NOT NULL,
        graph        TEXT NOT NULL,
        input        BLOB NOT NULL,
        status       TEXT NOT NULL,
        started_ms   INTEGER NOT NULL,
        duration_ms  INTEGER,
        report       TEXT,
        owner        TEXT,
        heartbeat_ms INTEGER
    );
    CREATE TABLE IF NOT EXISTS checkpoints (
        run_id   TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        node     TEXT NOT NULL,
        codec    TEXT NOT NULL,
        schema   INTEGER NOT NULL,
        data     BLOB NOT NULL,
        attempts INTEGER NOT NULL,
        PRIMARY KEY (run_id, node)
    );
    CREATE TABLE IF NOT EXISTS task_ends (
        run_id      TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        node        TEXT NOT NULL,
        status      TEXT NOT NULL,
        attempts    INTEGER NOT NULL,
        errors      TEXT NOT NULL,
        started_ms  INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        PRIMARY KEY (run_id, node)
    );
";

/// From schema 1 to 2: the lease columns.
const MIGRATE_1: &str = "
    ALTER TABLE runs ADD COLUMN owner TEXT;
    ALTER TABLE runs ADD COLUMN heartbeat_ms INTEGER;
";

/// Why a write for an owner was refused.
enum Refusal {
    Sql(rusqlite::Error),
    /// The run is not the owner's: who owns it now, if anyone, and whether it exists.
    NotOwned(Option<Option<String>>),
}

impl From<rusqlite::Error> for Refusal {
    fn from(error: rusqlite::Error) -> Self {
        Refusal::Sql(error)
    }
}

impl SqliteStore {
    /// Opens (or creates) the store at `path`.
    ///
    /// Fails with a clear error if the file is not a SQLite database, cannot be
    /// written, or holds tables of a newer layout; an existing store is never altered
    /// but for its missing tables and a migration of an older layout.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let fail = |what: &str, error: rusqlite::Error| StoreError {
            location: path.display().to_string(),
            message: format!("{what}: {error}"),
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        let mut connection =
            Connection::open_with_flags(&path, flags).map_err(|e| fail("cannot open", e))?;
        // Another process (a run, `runs` on the command line) may hold the write lock
        // for a moment: wait for it rather than fail.
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| fail("cannot open", e))?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| fail("not a usable SQLite database", e))?;
        connection
            .pragma_update(None, "synchronous", "FULL")
            .and_then(|()| connection.pragma_update(None, "foreign_keys", "ON"))
            .map_err(|e| fail("cannot prepare the store", e))?;
        // A store of this layout with every table (the common case: `runs` while a
        // run writes) is opened without the write lock.
        let current: Option<(u32, u32)> = connection
            .query_row(
                "SELECT user_version,
                        (SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'cache')
                 FROM pragma_user_version",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .ok();
        if current == Some((SCHEMA_VERSION, 1)) {
            return Ok(Self {
                path,
                connection: Mutex::new(connection),
            });
        }
        // Check the layout and create the tables in one write transaction, so that
        // two processes opening a new file at once never see it half made.
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| fail("cannot prepare the store", e))?;
        let (version, tables): (u32, u32) = transaction
            .query_row(
                "SELECT user_version, (SELECT COUNT(*) FROM sqlite_master WHERE type = 'table')
                 FROM pragma_user_version",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(|e| fail("not a usable SQLite database", e))?;
        let migrate = match version {
            1 => MIGRATE_1,
            SCHEMA_VERSION => "",
            0 if tables == 0 => "",
            _ => {
                return Err(StoreError {
                    location: path.display().to_string(),
                    message: format!(
                        "its tables are of store schema {version}, this build uses schema \
                         {SCHEMA_VERSION}: open it with the build that wrote it, or give a new \
                         store file"
                    ),
                });
            }
        };
        transaction
            .execute_batch(migrate)
            .and_then(|()| transaction.execute_batch(SCHEMA))
            .and_then(|()| transaction.execute_batch(cache::SCHEMA))
            .and_then(|()| transaction.pragma_update(None, "user_version", SCHEMA_VERSION))
            .and_then(|()| transaction.commit())
            .map_err(|e| fail("cannot prepare the store", e))?;
        Ok(Self {
            path,
            connection: Mutex::new(connection),
        })
    }

    fn error(&self, message: String) -> StoreError {
        StoreError {
            location: self.path.display().to_string(),
            message,
        }
    }

    fn with<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.owned(what, "", "", |c| f(c).map_err(Refusal::Sql))
    }

    /// Runs `f`, which writes for `owner` on run `id`, and words its refusal.
    fn owned<T>(
        &self,
        what: &str,
        id: &str,
        owner: &str,
        f: impl FnOnce(&mut Connection) -> Result<T, Refusal>,
    ) -> Result<T, StoreError> {
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut connection).map_err(|refusal| {
            self.error(match refusal {
                Refusal::Sql(error) => format!("{what}: {error}"),
                Refusal::NotOwned(None) => format!(
                    "{what}: run `{id}` is not in the store any more (deleted while it ran?)"
                ),
                Refusal::NotOwned(Some(now)) => format!(
                    "{what}: run `{id}` is no longer owned by this run (`{owner}`) but by {}: \
                     its lease expired, and another runner took the run over; this run stops",
                    now.map_or_else(|| "nobody".to_owned(), |o| format!("`{o}`"))
                ),
            })
        })
    }
}

/// Refreshes `owner`'s heartbeat on run `id` in `transaction`, or says who owns it.
fn heartbeat(transaction: &Transaction<'_>, id: &str, owner: &str) -> Result<(), Refusal> {
    let renewed = transaction.execute(
        "UPDATE runs SET heartbeat_ms = ?3 WHERE id = ?1 AND owner = ?2",
        params![id, owner, now_ms() as i64],
    )?;
    if renewed == 1 {
        return Ok(());
    }
    let now = transaction
        .query_row("SELECT owner FROM runs WHERE id = ?1", params![id], |row| {
            row.get::<_, Option<String>>(0)
        })
        .optional()?;
    Err(Refusal::NotOwned(now))
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn run_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: row.get(0)?,
        workflow: row.get(1)?,
        fingerprint: row.get(2)?,
        input: row.get(3)?,
        graph: row.get(4)?,
    })
}

impl Store for SqliteStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.with("cannot read a run", |c| {
            c.query_row(
                "SELECT id, workflow, fingerprint, input, graph FROM runs WHERE id = ?1",
                params![id],
                run_record,
            )
            .optional()
        })
    }

    fn claim(&self, id: &str, owner: &str, new: Option<&RunRecord>) -> Result<Claim, StoreError> {
        self.with("cannot claim the run", |c| {
            let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_ms();
            let existing = transaction
                .query_row(
                    "SELECT id, workflow, fingerprint, input, graph, owner, heartbeat_ms
                     FROM runs WHERE id = ?1",
                    params![id],
                    |row| {
                        let held: Option<String> = row.get(5)?;
                        let heartbeat: Option<i64> = row.get(6)?;
                        Ok((run_record(row)?, held, heartbeat.unwrap_or(0) as u64))
                    },
                )
                .optional()?;
            let claim = match (existing, new) {
                (None, None) => Claim::Unknown,
                (None, Some(run)) => {
                    transaction.execute(
                        "INSERT INTO runs (id, workflow, fingerprint, input, graph, status,
                                           started_ms, owner, heartbeat_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7, ?6)",
                        params![
                            id,
                            run.workflow,
                            run.fingerprint,
                            run.input,
                            run.graph,
                            now as i64,
                            owner
                        ],
                    )?;
                    Claim::Started
                }
                (Some((_, Some(held), heartbeat)), _)
                    if held != owner && lease_holds(&held, heartbeat, now) =>
                {
                    Claim::InUse { owner: held }
                }
                (Some((record, _, _)), _) => {
                    transaction.execute(
                        "UPDATE runs SET owner = ?2, heartbeat_ms = ?3 WHERE id = ?1",
                        params![id, owner, now as i64],
                    )?;
                    Claim::Taken(record)
                }
            };
            transaction.commit()?;
            Ok(claim)
        })
    }

    fn renew(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        self.owned("cannot renew the run's lease", id, owner, |c| {
            let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            heartbeat(&transaction, id, owner)?;
            Ok(transaction.commit()?)
        })
    }

    fn release(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        self.with("cannot release the run", |c| {
            c.execute(
                "UPDATE runs SET owner = NULL, heartbeat_ms = NULL WHERE id = ?1 AND owner = ?2",
                params![id, owner],
            )
            .map(drop)
        })
    }

    fn checkpoints(&self, id: &str) -> Result<Vec<Checkpoint>, StoreError> {
        self.with("cannot read checkpoints", |c| {
            let mut statement = c.prepare(
                "SELECT node, codec, schema, data, attempts FROM checkpoints WHERE run_id = ?1",
            )?;
            let rows = statement.query_map(params![id], |row| {
                Ok(Checkpoint {
                    node: row.get(0)?,
                    codec: row.get(1)?,
                    schema: row.get(2)?,
                    data: row.get(3)?,
                    attempts: row.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    fn save(
        &self,
        id: &str,
        owner: &str,
        batch: &[Checkpoint],
        ends: &[TaskEnd],
    ) -> Result<(), StoreError> {
        self.owned("cannot save checkpoints", id, owner, |c| {
            let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            heartbeat(&transaction, id, owner)?;
            {
                let mut insert = transaction.prepare_cached(
                    "INSERT OR REPLACE INTO checkpoints
                        (run_id, node, codec, schema, data, attempts)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for checkpoint in batch {
                    insert.execute(params![
                        id,
                        checkpoint.node,
                        checkpoint.codec,
                        checkpoint.schema,
                        checkpoint.data,
                        checkpoint.attempts
                    ])?;
                }
                let mut ended = transaction.prepare_cached(
                    "INSERT OR REPLACE INTO task_ends
                        (run_id, node, status, attempts, errors, started_ms, duration_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for end in ends {
                    let errors = serde_json::to_string(&end.errors).unwrap_or_default();
                    ended.execute(params![
                        id,
                        end.node,
                        end.status,
                        end.attempts,
                        errors,
                        end.started_ms as i64,
                        end.duration_ms as i64
                    ])?;
                }
            }
            Ok(transaction.commit()?)
        })
    }

    fn discard(&self, id: &str, owner: &str, nodes: &[String]) -> Result<(), StoreError> {
        self.owned("cannot discard checkpoints", id, owner, |c| {
            let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            heartbeat(&transaction, id, owner)?;
            {
                let mut delete = transaction
                    .prepare_cached("DELETE FROM checkpoints WHERE run_id = ?1 AND node = ?2")?;
                for node in nodes {
                    delete.execute(params![id, node])?;
                }
            }
            Ok(transaction.commit()?)
        })
    }

    fn task_ends(&self, id: &str) -> Result<Vec<TaskEnd>, StoreError> {
        self.with("cannot read task ends", |c| {
            let mut statement = c.prepare(
                "SELECT node, status, attempts, errors, started_ms, duration_ms
                 FROM task_ends WHERE run_id = ?1 ORDER BY started_ms + duration_ms, rowid",
            )?;
            let rows = statement.query_map(params![id], |row| {
                let errors: String = row.get(3)?;
                Ok(TaskEnd {
                    node: row.get(0)?,
                    status: row.get(1)?,
                    attempts: row.get(2)?,
                    errors: serde_json::from_str(&errors).unwrap_or_else(|_| vec![errors]),
                    started_ms: row.get::<_, i64>(4)? as u64,
                    duration_ms: row.get::<_, i64>(5)? as u64,
                })
            })?;
            rows.collect()
        })
    }

    fn finish(
        &self,
        id: &str,
        owner: &str,
        status: &str,
        duration: Duration,
        report: &str,
    ) -> Result<(), StoreError> {
        self.owned("cannot record the run's end", id, owner, |c| {
            let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let ended = transaction.execute(
                "UPDATE runs SET status = ?3, duration_ms = ?4, report = ?5,
                                 owner = NULL, heartbeat_ms = NULL
                 WHERE id = ?1 AND owner = ?2",
                params![id, owner, status, duration.as_millis() as i64, report],
            )?;
            if ended != 1 {
                // Says who owns it now.
                heartbeat(&transaction, id, owner)?;
            }
            Ok(transaction.commit()?)
        })
    }

    fn runs(&self) -> Result<Vec<RunSummary>, StoreError> {
        self.with("cannot list runs", |c| {
            let mut statement = c.prepare(
                "SELECT id, workflow, status, started_ms, duration_ms,
                        (SELECT COUNT(*) FROM checkpoints WHERE run_id = runs.id)
                 FROM runs ORDER BY started_ms DESC, id",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(RunSummary {
                    id: row.get(0)?,
                    workflow: row.get(1)?,
                    status: row.get(2)?,
                    started_ms: row.get::<_, i64>(3)? as u64,
                    duration_ms: row.get::<_, Option<i64>>(4)?.map(|d| d as u64),
                    checkpoints: row.get::<_, i64>(5)? as u64,
                })
            })?;
            rows.collect()
        })
    }

    fn report(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.with("cannot read a report", |c| {
            c.query_row(
                "SELECT report FROM runs WHERE id = ?1",
                params![id],
                |row| row.get(0),
            )
            .optional()
            .map(Option::flatten)
        })
    }

    fn delete_before(&self, before: SystemTime) -> Result<Deleted, StoreError> {
        self.with("cannot delete runs", |c| {
            let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_ms();
            let old: Vec<(String, Option<String>, Option<i64>)> = transaction
                .prepare("SELECT id, owner, heartbeat_ms FROM runs WHERE started_ms < ?1")?
                .query_map(params![millis(before) as i64], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut deleted = Deleted::default();
            for (id, owner, heartbeat) in old {
                let live = owner
                    .is_some_and(|owner| lease_holds(&owner, heartbeat.unwrap_or(0) as u64, now));
                if live {
                    deleted.skipped.push(id);
                } else {
                    deleted.deleted +=
                        transaction.execute("DELETE FROM runs WHERE id = ?1", params![id])?;
                }
            }
            transaction.commit()?;
            Ok(deleted)
        })
    }

    fn cached(&self, task: &str, key: &str) -> Result<Option<CachedResult>, StoreError> {
        self.cached_result(task, key)
    }

    fn save_cached(&self, results: &[CachedResult]) -> Result<(), StoreError> {
        self.save_cached_results(results)
    }

    fn cache_entries(&self) -> Result<Vec<CacheEntry>, StoreError> {
        self.cache_listing()
    }

    fn clear_cache(
        &self,
        task: Option<&str>,
        expired_by: Option<u64>,
    ) -> Result<usize, StoreError> {
        self.clear_cached(task, expired_by)
    }
}
