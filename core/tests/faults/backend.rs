//! Where a case's stores live (`FAULT_STORE`): a SQLite file each (`sqlite`, the
//! default), or a PostgreSQL schema each on the server `DATABASE_URL` names
//! (`postgres`, with feature `postgres`). A durable or caching case opens one store, and
//! a second when its durable runs keep their cache apart (`Spec::cache_apart`): a second
//! file, or a second schema. Besides the store the harness reaches into its tables
//! through a connection of its own (`Tables`): the cache table, read after every run and
//! edited between runs (rows corrupted or expired behind the store's back), and a run's
//! lease (a resume after a crash waits for the dropped run to let go). The rest of the
//! harness sees only `Store` and `CaseStore`: one code path for both backends.
//!
//! PostgreSQL: a store is schema `faults_<parent pid>_<case id>` (`…_cache` for the
//! second), created before the case and dropped (`CASCADE`) after it; the store connects
//! with `DATABASE_URL` plus `options=-c search_path=<schema>`, so `PostgresStore` finds
//! (`to_regclass`) and creates its `aqueduct_*` tables in the case's schema alone. The
//! harness's connection names the tables with their schema. Schemas left by a child
//! process that died mid-case are dropped by the parent at the end of the test (every
//! schema of its pid). The harness's connection is plain (`NoTls`): `DATABASE_URL` must
//! not require TLS (the store's own connection takes TLS when the server offers it).

use std::collections::BTreeMap;
#[cfg(feature = "postgres")]
use std::sync::Mutex;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aqueduct::store::{SqliteStore, Store};

use crate::cache::Row;
use crate::spec::TableEdit;

/// The kind of store the cases run on.
pub(crate) enum Backend {
    /// A SQLite file per store, on a tmpfs when there is one.
    Sqlite,
    /// A schema per store on the PostgreSQL server at `url` (`DATABASE_URL`).
    #[cfg(feature = "postgres")]
    Postgres { url: String },
}

/// Which of a case's stores: its own, or the other one its durable runs keep their
/// cache in.
#[derive(Clone, Copy)]
pub(crate) enum Role {
    Main,
    Cache,
}

impl Backend {
    /// The backend `FAULT_STORE` selects; `None` when it is `postgres` and
    /// `DATABASE_URL` is not set (the cases do not run).
    ///
    /// # Panics
    /// On an unknown `FAULT_STORE`, or `postgres` in a build without feature `postgres`.
    pub(crate) fn get() -> Option<&'static Backend> {
        static BACKEND: OnceLock<Option<Backend>> = OnceLock::new();
        BACKEND.get_or_init(Self::from_env).as_ref()
    }

    fn from_env() -> Option<Self> {
        match std::env::var("FAULT_STORE").unwrap_or_default().trim() {
            "" | "sqlite" => Some(Self::Sqlite),
            "postgres" => Self::postgres(),
            other => {
                panic!("FAULT_STORE={other}: the cases run on `sqlite` (the default) or `postgres`")
            }
        }
    }

    #[cfg(feature = "postgres")]
    fn postgres() -> Option<Self> {
        let url = std::env::var("DATABASE_URL")
            .ok()
            .filter(|url| !url.trim().is_empty())?;
        Some(Self::Postgres { url })
    }

    #[cfg(not(feature = "postgres"))]
    fn postgres() -> Option<Self> {
        panic!(
            "FAULT_STORE=postgres needs feature `postgres`: \
             cargo test -p aqueduct --release --features postgres --test faults"
        )
    }

    /// For the summary.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            #[cfg(feature = "postgres")]
            Self::Postgres { .. } => "PostgreSQL",
        }
    }

    /// A fresh, empty store for case `id`.
    pub(crate) fn open(&self, id: u64, role: Role) -> Result<CaseStore, String> {
        let suffix = match role {
            Role::Main => "",
            Role::Cache => "_cache",
        };
        match self {
            Self::Sqlite => {
                let dir = store_dir();
                let _ = std::fs::create_dir_all(&dir);
                let file = SqliteFile(dir.join(format!("c{id}{suffix}.db")));
                let store = SqliteStore::open(&file.0).map_err(|e| e.to_string())?;
                Ok(CaseStore {
                    store: Arc::new(store),
                    tables: Box::new(file),
                })
            }
            #[cfg(feature = "postgres")]
            Self::Postgres { url } => {
                let schema = PgSchema::create(url, format!("{}{id}{suffix}", schema_prefix()))?;
                let store =
                    aqueduct::store::PostgresStore::connect(&with_search_path(url, &schema.name))
                        .map_err(|e| e.to_string())?;
                Ok(CaseStore {
                    store: Arc::new(store),
                    tables: Box::new(schema),
                })
            }
        }
    }

    /// At the end of a child process: what its cases left (nothing, unless a case was
    /// abandoned as a hang).
    pub(crate) fn child_done(&self) {
        match self {
            Self::Sqlite => {
                let _ = std::fs::remove_dir_all(store_dir());
            }
            // Each case dropped its schemas.
            #[cfg(feature = "postgres")]
            Self::Postgres { .. } => {}
        }
    }

    /// At the end of the test, in the parent: what its children left (a child that died
    /// mid-case removes nothing).
    pub(crate) fn test_done(&self) {
        #[cfg(feature = "postgres")]
        if let Self::Postgres { url } = self {
            PgSchema::drop_all(url, &schema_prefix());
        }
    }
}

/// Where the cases' SQLite files go: a tmpfs when there is one.
fn store_dir() -> std::path::PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("aqueduct-faults-{}", std::process::id()))
}

/// The parent's process id (`FAULT_PARENT`, which it gives its children), so that it
/// can find what they left.
pub(crate) const PARENT: &str = "FAULT_PARENT";

/// The start of the names of the schemas of this test's cases.
#[cfg(feature = "postgres")]
fn schema_prefix() -> String {
    let parent = std::env::var(PARENT).unwrap_or_else(|_| std::process::id().to_string());
    format!("faults_{parent}_")
}

/// One store of a case, and the harness's own way into its tables. Dropping it removes
/// the store: its file, or its schema.
pub(crate) struct CaseStore {
    /// Declared first, so dropped (its connection closed) before its tables go.
    pub(crate) store: Arc<dyn Store>,
    tables: Box<dyn Tables>,
}

impl CaseStore {
    /// The cache table, by key.
    pub(crate) fn cache_rows(&self) -> Result<BTreeMap<String, Row>, String> {
        self.tables.cache_rows()
    }

    /// Makes `edit` (not a clear: those go through the store) to the cache rows of
    /// `keys`.
    pub(crate) fn edit_cache(&self, edit: TableEdit, keys: &[&str]) -> Result<(), String> {
        self.tables.edit_cache(edit, keys)
    }

    /// Who holds run `id`'s lease (`None`: nobody, or no such run).
    pub(crate) fn run_owner(&self, id: &str) -> Result<Option<String>, String> {
        self.tables.run_owner(id)
    }
}

/// A store's tables, read and changed behind its back.
trait Tables: Send + Sync {
    fn cache_rows(&self) -> Result<BTreeMap<String, Row>, String>;
    fn edit_cache(&self, edit: TableEdit, keys: &[&str]) -> Result<(), String>;
    fn run_owner(&self, id: &str) -> Result<Option<String>, String>;
}

/// A row of the cache table, its columns in this order.
const CACHE_COLUMNS: &str = "task, key, codec, schema, data, run_id, created_ms, expires_ms";

/// What `edit` does to a row of the cache table: an assignment in SQL that SQLite and
/// PostgreSQL both read, `garbage` being the dialect's literal of the bytes `{no` (not
/// JSON). A clear goes through the store instead.
fn assignment(edit: TableEdit, garbage: &str) -> String {
    match edit {
        TableEdit::Corrupt => format!("data = {garbage}"),
        TableEdit::BadCodec => "codec = 'no-such-codec'".to_owned(),
        TableEdit::BadSchema => "schema = schema + 1000".to_owned(),
        TableEdit::Expire | TableEdit::ExpireAndClear => "expires_ms = 1".to_owned(),
        TableEdit::Clear(_) => unreachable!("a clear goes through the store"),
    }
}

/// A SQLite store's file, removed (with its WAL) when dropped.
struct SqliteFile(std::path::PathBuf);

impl SqliteFile {
    fn connect(&self) -> Result<rusqlite::Connection, String> {
        let c = rusqlite::Connection::open(&self.0).map_err(|e| e.to_string())?;
        c.busy_timeout(Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        Ok(c)
    }
}

impl Tables for SqliteFile {
    fn cache_rows(&self) -> Result<BTreeMap<String, Row>, String> {
        let c = self.connect()?;
        let mut statement = c
            .prepare(&format!("SELECT {CACHE_COLUMNS} FROM cache"))
            .map_err(|e| e.to_string())?;
        let rows = statement
            .query_map([], |row| {
                Ok(Row {
                    task: row.get(0)?,
                    key: row.get(1)?,
                    codec: row.get(2)?,
                    schema: row.get(3)?,
                    data: row.get(4)?,
                    run: row.get(5)?,
                    created_ms: row.get(6)?,
                    expires_ms: row.get(7)?,
                })
            })
            .map_err(|e| e.to_string())?;
        rows.map(|row| row.map(|row| (row.key.clone(), row)))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())
    }

    fn edit_cache(&self, edit: TableEdit, keys: &[&str]) -> Result<(), String> {
        let sql = format!(
            "UPDATE cache SET {} WHERE key = ?1",
            assignment(edit, "X'7b6e6f'")
        );
        let c = self.connect()?;
        for key in keys {
            c.execute(&sql, [key]).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn run_owner(&self, id: &str) -> Result<Option<String>, String> {
        let c = self.connect()?;
        let owner = c.query_row("SELECT owner FROM runs WHERE id = ?1", [id], |row| {
            row.get(0)
        });
        match owner {
            Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
            owner => owner.map_err(|e| e.to_string()),
        }
    }
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

/// `url` with its sessions' search path set to `schema` alone (an `options` of the URL's
/// own is replaced).
#[cfg(feature = "postgres")]
fn with_search_path(url: &str, schema: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}options=-c%20search_path%3D{schema}")
    } else {
        format!("{url} options='-c search_path={schema}'")
    }
}

/// Runs `f` off the runtime: the `postgres` driver blocks on a runtime of its own,
/// which tokio refuses on one of its threads (the harness reads tables between runs,
/// inside the case's future).
#[cfg(feature = "postgres")]
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| {
        scope
            .spawn(f)
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// A PostgreSQL store's schema, and the harness's connection; the schema is dropped
/// when this is.
#[cfg(feature = "postgres")]
struct PgSchema {
    name: String,
    client: Mutex<Option<postgres::Client>>,
}

#[cfg(feature = "postgres")]
fn pg_error(error: postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => error.to_string(),
    }
}

/// The harness's idle connections: a case takes one (or opens one) and gives it back
/// once its schema is dropped, sparing the server a process per case.
#[cfg(feature = "postgres")]
static IDLE: Mutex<Vec<postgres::Client>> = Mutex::new(Vec::new());

#[cfg(feature = "postgres")]
impl PgSchema {
    /// A session that waits at most 5 s for a lock (a store an abandoned case still
    /// uses), so that dropping a schema never hangs: an idle one, or a new one.
    fn admin(url: &str) -> Result<postgres::Client, String> {
        let idle = std::iter::from_fn(|| crate::case::lock(&IDLE).pop())
            .find(|client| !client.is_closed());
        if let Some(client) = idle {
            return Ok(client);
        }
        let mut client = postgres::Client::connect(url, postgres::NoTls).map_err(pg_error)?;
        client
            .batch_execute("SET lock_timeout = '5s'")
            .map_err(pg_error)?;
        Ok(client)
    }

    /// Schema `name`, empty (one of an earlier test with this name is dropped).
    fn create(url: &str, name: String) -> Result<Self, String> {
        let mut client = Self::admin(url)?;
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
            ))
            .map_err(|e| format!("cannot create schema {name}: {}", pg_error(e)))?;
        Ok(Self {
            name,
            client: Mutex::new(Some(client)),
        })
    }

    /// Drops every schema whose name starts with `prefix`.
    fn drop_all(url: &str, prefix: &str) {
        let Ok(mut client) = Self::admin(url) else {
            return;
        };
        let pattern = format!("{}%", prefix.replace('_', "\\_"));
        let Ok(rows) = client.query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1",
            &[&pattern],
        ) else {
            return;
        };
        for row in rows {
            let name: String = row.get(0);
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"));
        }
    }

    fn with<T: Send>(
        &self,
        f: impl FnOnce(&mut postgres::Client, &str) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, String> {
        off_runtime(|| {
            let mut client = crate::case::lock(&self.client);
            let client = client.as_mut().ok_or("the connection is closed")?;
            f(client, &self.name).map_err(pg_error)
        })
    }
}

#[cfg(feature = "postgres")]
impl Tables for PgSchema {
    fn cache_rows(&self) -> Result<BTreeMap<String, Row>, String> {
        self.with(|c, schema| {
            let rows = c.query(
                &format!("SELECT {CACHE_COLUMNS} FROM {schema}.aqueduct_cache"),
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|row| {
                    let row = Row {
                        task: row.get(0),
                        key: row.get(1),
                        codec: row.get(2),
                        schema: i64::from(row.get::<_, i32>(3)),
                        data: row.get(4),
                        run: row.get(5),
                        created_ms: row.get(6),
                        expires_ms: row.get(7),
                    };
                    (row.key.clone(), row)
                })
                .collect())
        })
    }

    fn edit_cache(&self, edit: TableEdit, keys: &[&str]) -> Result<(), String> {
        let set = assignment(edit, "'\\x7b6e6f'::BYTEA");
        self.with(|c, schema| {
            let sql = format!("UPDATE {schema}.aqueduct_cache SET {set} WHERE key = $1");
            for key in keys {
                c.execute(&sql, &[key])?;
            }
            Ok(())
        })
    }

    fn run_owner(&self, id: &str) -> Result<Option<String>, String> {
        self.with(|c, schema| {
            let row = c.query_opt(
                &format!("SELECT owner FROM {schema}.aqueduct_runs WHERE id = $1"),
                &[&id],
            )?;
            Ok(row.and_then(|row| row.get(0)))
        })
    }
}

#[cfg(feature = "postgres")]
impl Drop for PgSchema {
    fn drop(&mut self) {
        let client = crate::case::lock(&self.client).take();
        let name = &self.name;
        off_runtime(move || {
            if let Some(mut client) = client {
                // Left to `drop_all` if a store of an abandoned case still holds a lock.
                let dropped =
                    client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"));
                if dropped.is_ok() {
                    crate::case::lock(&IDLE).push(client);
                }
            }
        });
    }
}
