//! [`PostgresStore`]: runs, checkpoints, task ends and cached results in PostgreSQL
//! (feature `postgres`), so that durable runs of many processes and machines share
//! one store. Every statement's values are bound; leases are timed by the server's
//! clock, never a client's.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use postgres::{Client, NoTls, Row, Transaction};

use connect::explain;

use super::{
    CacheEntry, CachedResult, Checkpoint, Claim, Deleted, RunRecord, RunSummary, Store, StoreError,
    TaskEnd, lease_holds, millis,
};

pub(crate) mod connect;
pub(crate) mod schema;

/// A [`Store`] in a PostgreSQL database, its tables prefixed `aqueduct_`.
///
/// The URL is libpq's: `postgres://user:password@host:5432/db?sslmode=verify-full&sslrootcert=ca.pem`
/// (or `host=… user=…` words). `sslmode` is `disable`, `prefer` (the default: TLS if the
/// server offers it), `require` (TLS, the certificate not checked, as libpq) or
/// `verify-full` (the certificate checked against `sslrootcert`, or the system's CAs,
/// and the host's name); TLS is rustls, no OpenSSL. The password never appears in a
/// message, an error or [`location`](Store::location).
///
/// Opening checks the tables' schema version: an empty database gets the tables, an
/// older schema is migrated (one transaction, under an advisory lock), a newer one is
/// refused without a change. A connection that broke is opened again on the next call;
/// a call whose connection breaks fails with a [`StoreError`], and its writes are not
/// committed (each write is one transaction).
pub struct PostgresStore {
    target: connect::Target,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    client: Mutex<Option<Client>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.target.shown)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    /// Closing the connection blocks on the driver's runtime, which tokio refuses on
    /// one of its own threads: there it is closed on a thread of its own.
    fn drop(&mut self) {
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if client.is_some() && tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|scope| {
                let _ = scope.spawn(move || drop(client)).join();
            });
        }
    }
}

/// Now, by the server's clock, in milliseconds since the Unix epoch.
pub(crate) const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT";

/// Why a call failed: an SQL error, a run no longer the owner's (who owns it now, if
/// anyone, and whether it exists), or a refusal in words (a newer schema).
enum Refusal {
    Sql(postgres::Error),
    NotOwned(Option<Option<String>>),
    Refused(String),
}

impl From<postgres::Error> for Refusal {
    fn from(error: postgres::Error) -> Self {
        Refusal::Sql(error)
    }
}

impl PostgresStore {
    /// Connects to the database at `url` and checks (or creates, or migrates) its
    /// tables.
    ///
    /// # Errors
    /// A URL that cannot be read, a server that cannot be reached or refuses the
    /// login, a certificate that does not verify, or tables of a newer schema: each a
    /// [`StoreError`] saying which, without the password.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let target = connect::parse(url).map_err(|message| StoreError {
            location: connect::redact(url),
            message,
        })?;
        let tls = match target.ssl {
            connect::SslMode::Disable => None,
            _ => {
                let config = connect::tls(&target).map_err(|message| StoreError {
                    location: target.shown.clone(),
                    message,
                })?;
                Some(tokio_postgres_rustls::MakeRustlsConnect::new(config))
            }
        };
        let store = Self {
            target,
            tls,
            client: Mutex::new(None),
        };
        store.with("cannot prepare the store", |client| {
            let mut transaction = client.transaction()?;
            schema::migrate(&mut transaction).map_err(Refusal::Refused)?;
            transaction.commit()?;
            Ok(())
        })?;
        Ok(store)
    }

    fn error(&self, message: String) -> StoreError {
        StoreError {
            location: self.target.shown.clone(),
            message: connect::redact(&message),
        }
    }

    /// The connection, opened (again) if there is none or it broke.
    fn client(&self) -> Result<MutexGuard<'_, Option<Client>>, StoreError> {
        let mut client = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        if client.as_ref().is_none_or(Client::is_closed) {
            *client = None;
            let config = postgres::Config::from(self.target.config.clone());
            let connected = match &self.tls {
                None => config.connect(NoTls),
                Some(tls) => config.connect(tls.clone()),
            };
            *client = Some(
                connected
                    .map_err(|error| self.error(format!("cannot connect: {}", explain(&error))))?,
            );
        }
        Ok(client)
    }

    fn with<T: Send>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Client) -> Result<T, Refusal> + Send,
    ) -> Result<T, StoreError> {
        self.owned(what, "", "", f)
    }

    /// Runs `f`, which writes for `owner` on run `id`, and words its refusal.
    fn owned<T: Send>(
        &self,
        what: &str,
        id: &str,
        owner: &str,
        f: impl FnOnce(&mut Client) -> Result<T, Refusal> + Send,
    ) -> Result<T, StoreError> {
        // The driver blocks on a runtime of its own, which tokio refuses inside another
        // runtime's thread: there (an `async fn` calling the store), the call runs on
        // a thread of its own.
        if tokio::runtime::Handle::try_current().is_ok() {
            return std::thread::scope(|scope| {
                let call = scope.spawn(|| self.call(what, id, owner, f));
                call.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            });
        }
        self.call(what, id, owner, f)
    }

    fn call<T>(
        &self,
        what: &str,
        id: &str,
        owner: &str,
        f: impl FnOnce(&mut Client) -> Result<T, Refusal>,
    ) -> Result<T, StoreError> {
        let mut guard = self.client()?;
        let client = guard.as_mut().expect("connected above");
        let result = f(client);
        // A failure that is not the server's answer (the connection broke, a timeout):
        // the next call connects again.
        if let Err(Refusal::Sql(error)) = &result
            && (client.is_closed() || error.as_db_error().is_none())
        {
            *guard = None;
        }
        result.map_err(|refusal| {
            self.error(match refusal {
                Refusal::Sql(error) => format!("{what}: {}", explain(&error)),
                Refusal::Refused(message) => message,
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

/// Renews `owner`'s lease on run `id` in `transaction`, or says why it cannot.
fn heartbeat(transaction: &mut Transaction<'_>, id: &str, owner: &str) -> Result<(), Refusal> {
    let renewed = transaction.execute(
        &format!("UPDATE aqueduct_runs SET heartbeat_ms = {NOW_MS} WHERE id = $1 AND owner = $2"),
        &[&id, &owner],
    )?;
    if renewed == 1 {
        return Ok(());
    }
    let now: Option<Option<String>> = transaction
        .query_opt("SELECT owner FROM aqueduct_runs WHERE id = $1", &[&id])?
        .map(|row| row.get(0));
    Err(Refusal::NotOwned(now))
}

fn run_record(row: &Row) -> RunRecord {
    RunRecord {
        id: row.get("id"),
        workflow: row.get("workflow"),
        fingerprint: row.get("fingerprint"),
        graph: row.get("graph"),
        input: row.get("input"),
    }
}

fn ms(value: i64) -> u64 {
    value.max(0) as u64
}

fn count(value: u32) -> i32 {
    value.min(i32::MAX as u32) as i32
}

impl Store for PostgresStore {
    fn location(&self) -> String {
        self.target.shown.clone()
    }

    fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.with("cannot read a run", |c| {
            let row = c.query_opt(
                "SELECT id, workflow, fingerprint, graph, input FROM aqueduct_runs WHERE id = $1",
                &[&id],
            )?;
            Ok(row.as_ref().map(run_record))
        })
    }

    fn claim(&self, id: &str, owner: &str, new: Option<&RunRecord>) -> Result<Claim, StoreError> {
        self.with("cannot claim the run", |c| {
            // A new run two claimants insert at once: the loser finds it the second time.
            for _ in 0..2 {
                let mut transaction = c.transaction()?;
                let now: i64 = transaction.query_one(&format!("SELECT {NOW_MS}"), &[])?.get(0);
                let existing = transaction.query_opt(
                    "SELECT id, workflow, fingerprint, graph, input, owner, heartbeat_ms
                     FROM aqueduct_runs WHERE id = $1 FOR UPDATE",
                    &[&id],
                )?;
                let claim = match (existing, new) {
                    (None, None) => Claim::Unknown,
                    (None, Some(run)) => {
                        let inserted = transaction.execute(
                            "INSERT INTO aqueduct_runs (id, workflow, fingerprint, graph, input,
                                                        status, started_ms, owner, heartbeat_ms)
                             VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $6)
                             ON CONFLICT (id) DO NOTHING",
                            &[&id, &run.workflow, &run.fingerprint, &run.graph, &run.input, &now, &owner],
                        )?;
                        if inserted == 0 {
                            continue;
                        }
                        Claim::Started
                    }
                    (Some(row), _) => {
                        let held: Option<String> = row.get("owner");
                        let heartbeat: Option<i64> = row.get("heartbeat_ms");
                        match held {
                            Some(held)
                                if held != owner
                                    && lease_holds(&held, ms(heartbeat.unwrap_or(0)), ms(now)) =>
                            {
                                Claim::InUse { owner: held }
                            }
                            _ => {
                                transaction.execute(
                                    "UPDATE aqueduct_runs SET owner = $2, heartbeat_ms = $3 WHERE id = $1",
                                    &[&id, &owner, &now],
                                )?;
                                Claim::Taken(run_record(&row))
                            }
                        }
                    }
                };
                transaction.commit()?;
                return Ok(claim);
            }
            Ok(Claim::InUse {
                owner: "another runner that started it at the same moment".to_owned(),
            })
        })
    }

    fn renew(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        self.owned("cannot renew the run's lease", id, owner, |c| {
            let mut transaction = c.transaction()?;
            heartbeat(&mut transaction, id, owner)?;
            Ok(transaction.commit()?)
        })
    }

    fn release(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        self.with("cannot release the run", |c| {
            c.execute(
                "UPDATE aqueduct_runs SET owner = NULL, heartbeat_ms = NULL
                 WHERE id = $1 AND owner = $2",
                &[&id, &owner],
            )?;
            Ok(())
        })
    }

    fn checkpoints(&self, id: &str) -> Result<Vec<Checkpoint>, StoreError> {
        self.with("cannot read checkpoints", |c| {
            let rows = c.query(
                "SELECT node, codec, schema, data, attempts FROM aqueduct_checkpoints
                 WHERE run_id = $1",
                &[&id],
            )?;
            Ok(rows
                .iter()
                .map(|row| Checkpoint {
                    node: row.get(0),
                    codec: row.get(1),
                    schema: row.get::<_, i32>(2).max(0) as u32,
                    data: row.get(3),
                    attempts: row.get::<_, i32>(4).max(0) as u32,
                })
                .collect())
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
            let mut transaction = c.transaction()?;
            heartbeat(&mut transaction, id, owner)?;
            if !batch.is_empty() {
                // One statement per batch: its columns as arrays.
                let nodes: Vec<&str> = batch.iter().map(|c| c.node.as_str()).collect();
                let codecs: Vec<&str> = batch.iter().map(|c| c.codec.as_str()).collect();
                let schemas: Vec<i32> = batch.iter().map(|c| count(c.schema)).collect();
                let data: Vec<&[u8]> = batch.iter().map(|c| c.data.as_slice()).collect();
                let attempts: Vec<i32> = batch.iter().map(|c| count(c.attempts)).collect();
                transaction.execute(
                    "INSERT INTO aqueduct_checkpoints (run_id, node, codec, schema, data, attempts)
                     SELECT $1, * FROM UNNEST($2::TEXT[], $3::TEXT[], $4::INTEGER[], $5::BYTEA[], $6::INTEGER[])
                     ON CONFLICT (run_id, node) DO UPDATE SET codec = EXCLUDED.codec,
                         schema = EXCLUDED.schema, data = EXCLUDED.data, attempts = EXCLUDED.attempts",
                    &[&id, &nodes, &codecs, &schemas, &data, &attempts],
                )?;
            }
            if !ends.is_empty() {
                let nodes: Vec<&str> = ends.iter().map(|e| e.node.as_str()).collect();
                let statuses: Vec<&str> = ends.iter().map(|e| e.status.as_str()).collect();
                let attempts: Vec<i32> = ends.iter().map(|e| count(e.attempts)).collect();
                let errors: Vec<String> = ends
                    .iter()
                    .map(|e| serde_json::to_string(&e.errors).unwrap_or_default())
                    .collect();
                let started: Vec<i64> = ends.iter().map(|e| e.started_ms as i64).collect();
                let took: Vec<i64> = ends.iter().map(|e| e.duration_ms as i64).collect();
                transaction.execute(
                    "INSERT INTO aqueduct_task_ends
                         (run_id, node, status, attempts, errors, started_ms, duration_ms)
                     SELECT $1, * FROM UNNEST($2::TEXT[], $3::TEXT[], $4::INTEGER[], $5::TEXT[],
                                              $6::BIGINT[], $7::BIGINT[])
                     ON CONFLICT (run_id, node) DO UPDATE SET status = EXCLUDED.status,
                         attempts = EXCLUDED.attempts, errors = EXCLUDED.errors,
                         started_ms = EXCLUDED.started_ms, duration_ms = EXCLUDED.duration_ms,
                         ended = nextval(pg_get_serial_sequence('aqueduct_task_ends', 'ended'))",
                    &[&id, &nodes, &statuses, &attempts, &errors, &started, &took],
                )?;
            }
            Ok(transaction.commit()?)
        })
    }

    fn discard(&self, id: &str, owner: &str, nodes: &[String]) -> Result<(), StoreError> {
        self.owned("cannot discard checkpoints", id, owner, |c| {
            let mut transaction = c.transaction()?;
            heartbeat(&mut transaction, id, owner)?;
            transaction.execute(
                "DELETE FROM aqueduct_checkpoints WHERE run_id = $1 AND node = ANY($2)",
                &[&id, &nodes],
            )?;
            Ok(transaction.commit()?)
        })
    }

    fn task_ends(&self, id: &str) -> Result<Vec<TaskEnd>, StoreError> {
        self.with("cannot read task ends", |c| {
            let rows = c.query(
                "SELECT node, status, attempts, errors, started_ms, duration_ms
                 FROM aqueduct_task_ends WHERE run_id = $1
                 ORDER BY started_ms + duration_ms, ended",
                &[&id],
            )?;
            Ok(rows
                .iter()
                .map(|row| {
                    let errors: String = row.get(3);
                    TaskEnd {
                        node: row.get(0),
                        status: row.get(1),
                        attempts: row.get::<_, i32>(2).max(0) as u32,
                        errors: serde_json::from_str(&errors).unwrap_or_else(|_| vec![errors]),
                        started_ms: ms(row.get(4)),
                        duration_ms: ms(row.get(5)),
                    }
                })
                .collect())
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
            let mut transaction = c.transaction()?;
            let took = duration.as_millis().min(i64::MAX as u128) as i64;
            let ended = transaction.execute(
                "UPDATE aqueduct_runs SET status = $3, duration_ms = $4, report = $5,
                                          owner = NULL, heartbeat_ms = NULL
                 WHERE id = $1 AND owner = $2",
                &[&id, &owner, &status, &took, &report],
            )?;
            if ended != 1 {
                // Says who owns it now.
                heartbeat(&mut transaction, id, owner)?;
            }
            Ok(transaction.commit()?)
        })
    }

    fn runs(&self) -> Result<Vec<RunSummary>, StoreError> {
        self.with("cannot list runs", |c| {
            let rows = c.query(
                "SELECT id, workflow, status, started_ms, duration_ms,
                        (SELECT COUNT(*) FROM aqueduct_checkpoints WHERE run_id = r.id)
                 FROM aqueduct_runs r ORDER BY started_ms DESC, id",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|row| RunSummary {
                    id: row.get(0),
                    workflow: row.get(1),
                    status: row.get(2),
                    started_ms: ms(row.get(3)),
                    duration_ms: row.get::<_, Option<i64>>(4).map(ms),
                    checkpoints: ms(row.get(5)),
                })
                .collect())
        })
    }

    fn report(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.with("cannot read a report", |c| {
            let row = c.query_opt("SELECT report FROM aqueduct_runs WHERE id = $1", &[&id])?;
            Ok(row.and_then(|row| row.get(0)))
        })
    }

    fn delete_before(&self, before: SystemTime) -> Result<Deleted, StoreError> {
        self.with("cannot delete runs", |c| {
            let mut transaction = c.transaction()?;
            let now: i64 = transaction.query_one(&format!("SELECT {NOW_MS}"), &[])?.get(0);
            let before = millis(before).min(i64::MAX as u64) as i64;
            let old = transaction.query(
                "SELECT id, owner, heartbeat_ms FROM aqueduct_runs WHERE started_ms < $1 FOR UPDATE",
                &[&before],
            )?;
            let mut deleted = Deleted::default();
            for row in old {
                let (id, owner, heartbeat): (String, Option<String>, Option<i64>) =
                    (row.get(0), row.get(1), row.get(2));
                let live = owner.is_some_and(|owner| {
                    lease_holds(&owner, ms(heartbeat.unwrap_or(0)), ms(now))
                });
                if live {
                    deleted.skipped.push(id);
                } else {
                    deleted.deleted +=
                        transaction.execute("DELETE FROM aqueduct_runs WHERE id = $1", &[&id])? as usize;
                }
            }
            transaction.commit()?;
            Ok(deleted)
        })
    }

    fn cached(&self, task: &str, key: &str) -> Result<Option<CachedResult>, StoreError> {
        self.with("cannot read the cache", |c| {
            let row = c.query_opt(
                "SELECT codec, schema, data, run_id, created_ms, expires_ms
                 FROM aqueduct_cache WHERE task = $1 AND key = $2",
                &[&task, &key],
            )?;
            Ok(row.map(|row| cached_result(task, key, &row)))
        })
    }

    fn save_cached(&self, results: &[CachedResult]) -> Result<(), StoreError> {
        if results.is_empty() {
            return Ok(());
        }
        self.with("cannot save cached results", |c| {
            let mut transaction = c.transaction()?;
            for r in results {
                let (created, expires) = (r.created_ms as i64, r.expires_ms.map(|ms| ms as i64));
                transaction.execute(
                    "INSERT INTO aqueduct_cache
                         (task, key, codec, schema, data, run_id, created_ms, expires_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (task, key) DO UPDATE SET codec = EXCLUDED.codec,
                         schema = EXCLUDED.schema, data = EXCLUDED.data, run_id = EXCLUDED.run_id,
                         created_ms = EXCLUDED.created_ms, expires_ms = EXCLUDED.expires_ms",
                    &[
                        &r.task,
                        &r.key,
                        &r.codec,
                        &count(r.schema),
                        &r.data,
                        &r.run,
                        &created,
                        &expires,
                    ],
                )?;
            }
            Ok(transaction.commit()?)
        })
    }

    fn cache_entries(&self) -> Result<Vec<CacheEntry>, StoreError> {
        self.with("cannot list the cache", |c| {
            let rows = c.query(
                "SELECT task, key, run_id, created_ms, expires_ms, length(data)
                 FROM aqueduct_cache ORDER BY task, created_ms DESC, key",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|row| CacheEntry {
                    task: row.get(0),
                    key: row.get(1),
                    run: row.get(2),
                    created_ms: ms(row.get(3)),
                    expires_ms: row.get::<_, Option<i64>>(4).map(ms),
                    bytes: row.get::<_, i32>(5).max(0) as u64,
                })
                .collect())
        })
    }

    fn clear_cache(
        &self,
        task: Option<&str>,
        expired_by: Option<u64>,
    ) -> Result<usize, StoreError> {
        let expired_by = expired_by.map(|ms| ms.min(i64::MAX as u64) as i64);
        self.with("cannot clear the cache", |c| {
            let cleared = c.execute(
                "DELETE FROM aqueduct_cache
                 WHERE ($1::TEXT IS NULL OR task = $1)
                   AND ($2::BIGINT IS NULL OR (expires_ms IS NOT NULL AND expires_ms <= $2))",
                &[&task, &expired_by],
            )?;
            Ok(cleared as usize)
        })
    }
}

/// Task `task`'s cached result under `key`, as a row of `SELECT codec, schema, data,
/// run_id, created_ms, expires_ms FROM aqueduct_cache` holds it.
pub(crate) fn cached_result(task: &str, key: &str, row: &postgres::Row) -> CachedResult {
    CachedResult {
        task: task.to_owned(),
        key: key.to_owned(),
        codec: row.get(0),
        schema: row.get::<_, i32>(1).max(0) as u32,
        data: row.get(2),
        run: row.get(3),
        created_ms: ms(row.get(4)),
        expires_ms: row.get::<_, Option<i64>>(5).map(ms),
    }
}
