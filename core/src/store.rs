//! Where durable runs keep their checkpoints: each finished task's output, once.
//!
//! [`Store`] is the interface; [`SqliteStore`] keeps everything in one SQLite file
//! (WAL, `synchronous = FULL`), with no server and no set-up. All SQL of a backend
//! lives in its own type, every value bound as a parameter.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

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

/// Where a durable run's record and checkpoints go. Implementations must make a
/// checkpoint durable when `save` returns, and store each node at most once per run.
pub trait Store: Send + Sync + 'static {
    /// The run `id`, if it was started before.
    fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError>;
    /// Records a new run.
    fn start(&self, run: &RunRecord) -> Result<(), StoreError>;
    /// Every checkpoint of run `id`.
    fn checkpoints(&self, id: &str) -> Result<Vec<Checkpoint>, StoreError>;
    /// Saves a batch of checkpoints and task ends of run `id`, all or none. A task end
    /// replaces the node's earlier one (a resumed run ran it again).
    fn save(&self, id: &str, batch: &[Checkpoint], ends: &[TaskEnd]) -> Result<(), StoreError>;
    /// How each task of run `id` that ended so far ended, in the order they ended.
    fn task_ends(&self, id: &str) -> Result<Vec<TaskEnd>, StoreError>;
    /// Records how run `id` ended and its report (JSON).
    fn finish(
        &self,
        id: &str,
        status: &str,
        duration: Duration,
        report: &str,
    ) -> Result<(), StoreError>;
    /// The run history, most recent first.
    fn runs(&self) -> Result<Vec<RunSummary>, StoreError>;
    /// The report (JSON) of run `id`'s last attempt, if it ended.
    fn report(&self, id: &str) -> Result<Option<String>, StoreError>;
    /// Deletes the runs started before `before`, with their checkpoints; returns how
    /// many.
    fn delete_before(&self, before: SystemTime) -> Result<usize, StoreError>;
}

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
/// another layout is refused with a clear error, never misread.
const SCHEMA_VERSION: u32 = 1;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS runs (
        id          TEXT PRIMARY KEY,
        workflow    TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        graph       TEXT NOT NULL,
        input       BLOB NOT NULL,
        status      TEXT NOT NULL,
        started_ms  INTEGER NOT NULL,
        duration_ms INTEGER,
        report      TEXT
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

impl SqliteStore {
    /// Opens (or creates) the store at `path`.
    ///
    /// Fails with a clear error if the file is not a SQLite database or cannot be
    /// written; an existing store is never altered but for its missing tables.
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
        // Check the layout and create the tables in one write transaction, so that
        // two processes opening a new file at once never see it half made.
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| fail("cannot prepare the store", e))?;
        let (version, tables): (u32, u32) = transaction
            .query_row(
                "SELECT user_version, (SELECT COUNT(*) FROM sqlite_master WHERE type = 'table')
                 FROM pragma_user_version",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(|e| fail("not a usable SQLite database", e))?;
        if version != SCHEMA_VERSION && (version != 0 || tables > 0) {
            return Err(StoreError {
                location: path.display().to_string(),
                message: format!(
                    "its tables are of store schema {version}, this build uses schema \
                     {SCHEMA_VERSION}: open it with the build that wrote it, or give a new \
                     store file"
                ),
            });
        }
        transaction
            .execute_batch(SCHEMA)
            .and_then(|()| transaction.pragma_update(None, "user_version", SCHEMA_VERSION))
            .and_then(|()| transaction.commit())
            .map_err(|e| fail("cannot prepare the store", e))?;
        Ok(Self {
            path,
            connection: Mutex::new(connection),
        })
    }

    fn with<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut connection).map_err(|error| StoreError {
            location: self.path.display().to_string(),
            message: format!("{what}: {error}"),
        })
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Store for SqliteStore {
    fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.with("cannot read a run", |c| {
            c.query_row(
                "SELECT id, workflow, fingerprint, input, graph FROM runs WHERE id = ?1",
                params![id],
                |row| {
                    Ok(RunRecord {
                        id: row.get(0)?,
                        workflow: row.get(1)?,
                        fingerprint: row.get(2)?,
                        input: row.get(3)?,
                        graph: row.get(4)?,
                    })
                },
            )
            .optional()
        })
    }

    fn start(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.with("cannot record the run", |c| {
            c.execute(
                "INSERT INTO runs (id, workflow, fingerprint, input, graph, status, started_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6)",
                params![
                    run.id,
                    run.workflow,
                    run.fingerprint,
                    run.input,
                    run.graph,
                    millis(SystemTime::now())
                ],
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

    fn save(&self, id: &str, batch: &[Checkpoint], ends: &[TaskEnd]) -> Result<(), StoreError> {
        self.with("cannot save checkpoints", |c| {
            let transaction = c.transaction()?;
            {
                let mut insert = transaction.prepare_cached(
                    "INSERT INTO checkpoints (run_id, node, codec, schema, data, attempts)
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
            transaction.commit()
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
        status: &str,
        duration: Duration,
        report: &str,
    ) -> Result<(), StoreError> {
        self.with("cannot record the run's end", |c| {
            c.execute(
                "UPDATE runs SET status = ?2, duration_ms = ?3, report = ?4 WHERE id = ?1",
                params![id, status, duration.as_millis() as i64, report],
            )
            .map(drop)
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

    fn delete_before(&self, before: SystemTime) -> Result<usize, StoreError> {
        self.with("cannot delete runs", |c| {
            c.execute(
                "DELETE FROM runs WHERE started_ms < ?1",
                params![millis(before)],
            )
        })
    }
}
