//! Cached tasks (`#[task(cache)]`): before a cached node's first attempt its key is
//! computed from its inputs and looked up in the run's store; a result found (and not
//! expired) resolves the node `Cached` without calling the task, and a result computed
//! is saved through the run's writer for later runs.
//!
//! The cache never fails a run: a key that cannot be computed, a store that cannot be
//! read, a result that cannot be decoded (a corrupt row, a type that changed) or saved
//! is a warning, and the task simply runs; its new result replaces an unreadable row.
//! Lookups are blocking store work: on rayon (the CPU task's own thread, or a rayon
//! job an IO task waits for), never on a tokio worker.

use super::*;
use crate::plan::{CacheDef, CacheKey};
use crate::store::{CachedResult, Store, guarded};

/// A run's cache: where results are looked up and saved, and the run's id, which the
/// reports of later runs name as the producer.
pub(crate) struct CacheRun {
    store: Arc<dyn Store>,
    run: String,
    sink: Sink,
    warnings: Arc<CacheWarnings>,
}

impl CacheRun {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        run: String,
        sink: Sink,
        warnings: Arc<CacheWarnings>,
    ) -> Self {
        Self {
            store,
            run,
            sink,
            warnings,
        }
    }
}

/// What went wrong with a run's cache, for its report: the first few warnings, and
/// how many more there were (a store gone bad warns once per cached call).
#[derive(Default)]
pub(crate) struct CacheWarnings(std::sync::Mutex<(Vec<String>, usize)>);

/// How many warnings a report keeps word for word.
const WARNINGS_KEPT: usize = 10;

impl CacheWarnings {
    /// Keeps `warning` (also a `tracing` warning, where it happened).
    pub(crate) fn push(&self, warning: String) {
        let mut kept = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.0.len() < WARNINGS_KEPT {
            kept.0.push(warning);
        } else {
            kept.1 += 1;
        }
    }

    /// The warnings kept, and a line for the others.
    pub(crate) fn take(&self) -> Vec<String> {
        let mut kept = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut lines, more) = std::mem::take(&mut *kept);
        if more > 0 {
            lines.push(format!("… and {more} more cache warnings like these"));
        }
        lines
    }
}

/// What a job of a cached task learnt from its lookup.
pub(super) struct JobCache {
    /// Its key; `None` if it could not be computed (nothing is saved then).
    key: Option<String>,
    /// On a hit, the run that computed the result loaded.
    from: Option<String>,
}

impl JobCache {
    /// The run a loaded result came from.
    pub(super) fn hit(&self) -> Option<&str> {
        self.from.as_deref()
    }

    /// A lookup that learnt nothing: the task runs, and its result is not saved.
    fn nothing() -> Box<Self> {
        Box::new(Self {
            key: None,
            from: None,
        })
    }
}

impl Shared {
    /// Whether `job` looks its result up before it runs: the first attempt of a cached
    /// task, in a run that has a cache.
    pub(super) fn looks_up(&self, job: &Job) -> bool {
        self.plan.flags[job.node] & crate::plan::CACHED != 0
            && job.attempt == 0
            && job.cache.is_none()
            && self.run.cache.is_some()
    }

    /// Computes `job`'s key and looks it up, on this (rayon) thread: the result's value
    /// on a hit. Blocking store work.
    pub(super) fn look_up(&self, job: &mut Job) -> Option<Value> {
        let (found, value) = self.find_guarded(job.node);
        job.cache = Some(found);
        value
    }

    /// [`look_up`](Self::look_up) for a job of tokio mode: on rayon (the store is
    /// blocking work, never done on a tokio worker), this task waiting.
    pub(super) async fn look_up_off_runtime(self: &Arc<Self>, job: &mut Job) -> Option<Value> {
        let (sent, found) = oneshot::channel();
        let (run, node) = (Arc::clone(self), job.node);
        rayon::spawn(move || {
            let _ = sent.send(run.find_guarded(node));
        });
        let (found, value) = found.await.unwrap_or_else(|_| (JobCache::nothing(), None));
        job.cache = Some(found);
        value
    }

    /// [`find`](Self::find), a panic of which (a `tracing` layer's, say) is a warning.
    fn find_guarded(&self, node: usize) -> (Box<JobCache>, Option<Value>) {
        let mut found = JobCache::nothing();
        match catch_unwind(AssertUnwindSafe(|| self.find(node, &mut found))) {
            Ok(value) => (found, value),
            Err(panic) => {
                let why = format!("the cache lookup panicked: {}", panic_message(&*panic));
                self.warn(node, &why, "running the task");
                (JobCache::nothing(), None)
            }
        }
    }

    /// Warns of what went wrong with `node`'s cache, in the log and the report.
    fn warn(&self, node: usize, what: &str, so: &str) {
        let task = self.plan.graph.info(node).name;
        let name = self.recorded_name(node);
        tracing::warn!(parent: &self.span, node = %name, task, "{what}; {so}");
        if let Some(cache) = &self.run.cache {
            cache
                .warnings
                .push(format!("`{name}` (task `{task}`): {what}; {so}"));
        }
    }

    fn find(&self, node: usize, found: &mut JobCache) -> Option<Value> {
        let def = self.plan.caches.get(&(node as u32))?;
        let cache = self.run.cache.as_ref()?;
        let info = self.plan.graph.info(node);
        let key = match key_of(info, def, self.board.slots().into()) {
            Ok(key) => key,
            Err(error) => {
                let what = format!("cannot make the cache key: {error}");
                self.warn(node, &what, "running the task, whose result is not saved");
                return None;
            }
        };
        found.key = Some(key.clone());
        let store = &*cache.store;
        let row = match guarded(store, "cached", || store.cached(info.name, &key)) {
            Ok(Some(row)) => row,
            Ok(None) => return None,
            Err(error) => {
                self.warn(
                    node,
                    &format!("cannot read the cache: {error}"),
                    "running the task",
                );
                return None;
            }
        };
        if row
            .expires_ms
            .is_some_and(|at| at <= crate::store::now_ms())
        {
            return None;
        }
        match decode(def, &row) {
            Ok(value) => {
                found.from = Some(row.run);
                Some(value)
            }
            Err(error) => {
                let what = format!("the cached result cannot be read ({error})");
                self.warn(node, &what, "running the task, whose result replaces it");
                None
            }
        }
    }

    /// Saves the result `value` of a cached task that ran, if its lookup made a key
    /// (`checkpoint` is its checkpoint in a durable run, whose bytes are reused when
    /// they are in the same format). Called before the value is made takeable.
    pub(super) fn save_result(
        &self,
        node: usize,
        job: &JobCache,
        value: &Value,
        checkpoint: Option<&crate::store::Checkpoint>,
    ) {
        let (Some(key), None) = (&job.key, &job.from) else {
            return;
        };
        let (Some(def), Some(cache)) = (
            self.plan.caches.get(&(node as u32)),
            self.run.cache.as_ref(),
        ) else {
            return;
        };
        let info = self.plan.graph.info(node);
        let format = self.run.format;
        let data = match checkpoint {
            Some(checkpoint) if checkpoint.codec == format.name() => Ok(checkpoint.data.clone()),
            _ => catch_unwind(AssertUnwindSafe(|| (def.codec.encode)(value, format)))
                .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_message(&*panic)))),
        };
        let data = match data {
            Ok(data) => data,
            Err(error) => {
                let what = format!("cannot encode the result for the cache: {error}");
                self.warn(node, &what, "it is not saved");
                return;
            }
        };
        let created_ms = crate::store::now_ms();
        let ttl = info.cache.and_then(|policy| policy.ttl);
        cache.sink.send(checkpoint::Entry {
            checkpoint: None,
            end: None,
            cached: Some(CachedResult {
                task: info.name.to_owned(),
                key: key.clone(),
                codec: format.name().to_owned(),
                schema: crate::plan::SCHEMA,
                data,
                run: cache.run.clone(),
                created_ms,
                expires_ms: ttl.map(|ttl| created_ms.saturating_add(ttl.as_millis() as u64)),
            }),
        });
    }
}

/// The key of a call of cached task `info` whose inputs are in `slots`: SHA-256 of the
/// task's module and name, code hash and version and the inputs' encodings, in hex.
pub(crate) fn key_of(
    info: &TaskInfo,
    def: &CacheDef,
    slots: crate::value::SlotView<'_>,
) -> Result<String, String> {
    use sha2::{Digest, Sha256};
    let policy = info.cache.ok_or("the task has no cache policy")?;
    let mut inputs = CacheKey::default();
    catch_unwind(AssertUnwindSafe(|| (def.key)(slots, &mut inputs))).unwrap_or_else(|panic| {
        Err(format!(
            "the key function (an input's `Serialize`) panicked: {}",
            panic_message(&*panic)
        ))
    })?;
    let mut hasher = Sha256::new();
    hasher.update(format!(
        "aqueduct cache 2\n{}::{}\n{:016x}\n{}\n",
        policy.module, info.name, policy.code, policy.version
    ));
    hasher.update(inputs.bytes());
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// A stored result's value, if this build can read it.
pub(crate) fn decode(def: &CacheDef, row: &CachedResult) -> Result<Value, String> {
    let format = crate::plan::readable(&row.codec, row.schema)?;
    catch_unwind(AssertUnwindSafe(|| (def.codec.decode)(&row.data, format))).unwrap_or_else(
        |panic| {
            Err(format!(
                "its `Deserialize` panicked: {}",
                panic_message(&*panic)
            ))
        },
    )
}
