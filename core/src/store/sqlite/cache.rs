//! The cache table of [`SqliteStore`]: cached tasks' results, kept beside the runs
//! (deleting a run keeps the results it computed).

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::SqliteStore;
use crate::store::{CacheEntry, CachedResult, StoreError};

/// Created on open with the other tables: a store of an earlier build gains it.
pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS cache (
        task       TEXT NOT NULL,
        key        TEXT NOT NULL,
        codec      TEXT NOT NULL,
        schema     INTEGER NOT NULL,
        data       BLOB NOT NULL,
        run_id     TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER,
        PRIMARY KEY (task, key)
    );
";

impl SqliteStore {
    pub(super) fn cached_result(
        &self,
        task: &str,
        key: &str,
    ) -> Result<Option<CachedResult>, StoreError> {
        self.with("cannot read the cache", |c| {
            c.prepare_cached(
                "SELECT codec, schema, data, run_id, created_ms, expires_ms
                 FROM cache WHERE task = ?1 AND key = ?2",
            )?
            .query_row(params![task, key], |row| {
                Ok(CachedResult {
                    task: task.to_owned(),
                    key: key.to_owned(),
                    codec: row.get(0)?,
                    schema: row.get(1)?,
                    data: row.get(2)?,
                    run: row.get(3)?,
                    created_ms: row.get::<_, i64>(4)? as u64,
                    // Negative (edited by hand): long expired.
                    expires_ms: row.get::<_, Option<i64>>(5)?.map(|ms| ms.max(0) as u64),
                })
            })
            .optional()
        })
    }

    pub(super) fn save_cached_results(&self, results: &[CachedResult]) -> Result<(), StoreError> {
        if results.is_empty() {
            return Ok(());
        }
        self.with("cannot save cached results", |c| {
            let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut insert = transaction.prepare_cached(
                    "INSERT OR REPLACE INTO cache
                     (task, key, codec, schema, data, run_id, created_ms, expires_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for r in results {
                    insert.execute(params![
                        r.task,
                        r.key,
                        r.codec,
                        r.schema,
                        r.data,
                        r.run,
                        r.created_ms as i64,
                        r.expires_ms.map(|ms| ms as i64),
                    ])?;
                }
            }
            transaction.commit()
        })
    }

    pub(super) fn cache_listing(&self) -> Result<Vec<CacheEntry>, StoreError> {
        self.with("cannot list the cache", |c| {
            let mut statement = c.prepare(
                "SELECT task, key, run_id, created_ms, expires_ms, length(data)
                 FROM cache ORDER BY task, created_ms DESC, key",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(CacheEntry {
                    task: row.get(0)?,
                    key: row.get(1)?,
                    run: row.get(2)?,
                    created_ms: row.get::<_, i64>(3)? as u64,
                    expires_ms: row.get::<_, Option<i64>>(4)?.map(|ms| ms.max(0) as u64),
                    bytes: row.get::<_, i64>(5)? as u64,
                })
            })?;
            rows.collect()
        })
    }

    pub(super) fn clear_cached(
        &self,
        task: Option<&str>,
        expired_by: Option<u64>,
    ) -> Result<usize, StoreError> {
        // `NULL` matches every task, or every expiry.
        let expired_by = expired_by.map(|ms| ms.min(i64::MAX as u64) as i64);
        self.with("cannot clear the cache", |c| {
            c.execute(
                "DELETE FROM cache
                 WHERE (?1 IS NULL OR task = ?1)
                   AND (?2 IS NULL OR (expires_ms IS NOT NULL AND expires_ms <= ?2))",
                params![task, expired_by],
            )
        })
    }
}
