//! Runs one case, run after run (crashes and resumes for durable cases; runs again
//! with the cache for cases with cached tasks), and checks every invariant against the
//! model, the attempt log and the cache table.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use aqueduct::store::{
    CacheEntry, CachedResult, Checkpoint, Claim, Deleted, RunRecord, RunSummary, Store, StoreError,
    TaskEnd,
};
use aqueduct::{Error, RunOutcome, TaskStatus};

use crate::backend::{Backend, CaseStore, Role};
use crate::build::{Wf, build};
use crate::cache::{CacheView, Tracker};
use crate::case::{Case, EventKind, Rec, lock};
use crate::generate::param_values;
use crate::model::{MV, MVal, Obs, RestoredSet, Walker, node_value, retriable, tree};
use crate::spec::{
    Body, CacheFault, CacheSave, Epoch, Fault, Gates, Index, Kind, Ref, Spec, StoreFault,
    TASK_NAMES, Trigger, body_uids,
};
use crate::value::{Raw, Val};

pub(crate) type Violation = (String, String);

/// How long one case may take before it is a hang (`FAULT_CASE_LIMIT_S`, 10 s).
fn case_limit() -> Duration {
    static LIMIT: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        let s = std::env::var("FAULT_CASE_LIMIT_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10);
        Duration::from_secs(s)
    })
}

fn slack() -> Duration {
    static SLACK: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *SLACK.get_or_init(|| {
        let ms = std::env::var("FAULT_SLACK_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(50);
        Duration::from_millis(ms)
    })
}

fn v(class: &str, message: impl Into<String>) -> Violation {
    (class.to_owned(), message.into())
}

static CASE_IDS: AtomicU64 = AtomicU64::new(1);

/// What the cases covered, for the summary: tag -> count.
pub(crate) fn stats() -> &'static std::sync::Mutex<std::collections::BTreeMap<String, u64>> {
    static STATS: std::sync::OnceLock<std::sync::Mutex<std::collections::BTreeMap<String, u64>>> =
        std::sync::OnceLock::new();
    STATS.get_or_init(Default::default)
}

pub(crate) fn bump(tag: &str, n: u64) {
    if n > 0 {
        *lock(stats()).entry(tag.to_owned()).or_insert(0) += n;
    }
}

/// Whether run `e` of `case` asks for every item's rows (`Runner::item_rows`).
fn every_row(case: &Case, e: u8) -> bool {
    (case.spec.seed ^ u64::from(e)).is_multiple_of(2)
}

/// Counts what a case's workflow and plan contain.
fn spec_stats(spec: &Spec) {
    bump("cases", 1);
    bump("cases durable", u64::from(spec.durable));
    bump(
        "cases checkpointing items",
        u64::from(spec.items_checkpointed()),
    );
    let mut tags: HashSet<&str> = HashSet::new();
    crate::spec::visit(&spec.top, &mut |n, place| match &n.kind {
        Kind::FanOut { cap, body, .. } => {
            tags.insert("with a fan-out");
            // Fused by the executor: CPU tasks only, one attempt, no timeout or limit.
            let fused = cap.is_none()
                && body.nodes.iter().all(|n| match &n.kind {
                    Kind::Task { task, .. } => {
                        let t = &spec.tasks[*task];
                        !t.io && t.retries == 0 && t.timeout_ms.is_none() && t.concurrency.is_none()
                    }
                    _ => false,
                });
            if fused {
                tags.insert("with a fused fan-out");
            }
            if place.chain.iter().any(|(_, fan)| *fan) {
                tags.insert("with a nested fan-out");
            }
            if cap.is_some() {
                tags.insert("with a capped fan-out");
            }
        }
        Kind::Subflow { .. } => {
            tags.insert("with a sub-workflow");
        }
        Kind::Decide { inputs, rule, .. } => {
            tags.insert(if place.chain.is_empty() {
                "with a decision (top level)"
            } else {
                "with a decision (in a body)"
            });
            if inputs.iter().any(|i| i.tolerant) {
                tags.insert("with a decision reading an outcome");
            }
            if *rule == crate::spec::Rule::Ok {
                tags.insert("with a fallback");
            }
            if n.arm.is_some() {
                tags.insert("with a nested decision");
            }
        }
        Kind::Branch { option, .. } => {
            if *option {
                tags.insert("with a branch_option");
            }
        }
        Kind::Task { task, inputs, .. } => {
            let def = &spec.tasks[*task];
            if inputs.len() >= 5 {
                tags.insert("with a wide fan-in (5+ inputs)");
            }
            if n.has_tolerant_input() {
                tags.insert("with a cleanup task");
            }
            if inputs
                .iter()
                .any(|i| i.moved && matches!(i.from, Ref::Node(u) if index_kind_branch(spec, u)))
            {
                tags.insert("with a branch moved");
            }
            if inputs.iter().any(|i| i.moved) {
                tags.insert(if place.chain.is_empty() {
                    "with an input moved (top level)"
                } else {
                    "with an input moved (in a body)"
                });
            }
            if def.concurrency.is_some() {
                tags.insert(if place.chain.is_empty() {
                    "with a concurrency limit (top level)"
                } else {
                    "with a concurrency limit (in a body)"
                });
            }
            if def.timeout_ms.is_some() {
                tags.insert(if def.io {
                    "with an IO timeout"
                } else {
                    "with a CPU timeout"
                });
            }
        }
    });
    if spec.caching() {
        tags.insert("with cached tasks");
        if spec.durable {
            tags.insert("with cached tasks, durable");
        }
        if spec.cache_apart {
            tags.insert("with cached tasks, durable, the cache in another store");
        }
        crate::spec::visit(&spec.top, &mut |n, place| {
            if spec.cached_call(n) {
                bump("cached call nodes", 1);
                if matches!(&n.kind, Kind::Task { inputs, .. } if inputs.iter().any(|i| i.moved)) {
                    tags.insert("with an input moved into a cached call");
                }
                if !place.chain.is_empty() {
                    tags.insert("with a cached call in a body");
                }
            } else if spec.bare.contains(&n.uid) {
                bump("bare nodes of cached tasks", 1);
            }
        });
        if twins(spec) {
            tags.insert("with two cached calls on one key (twins)");
        }
    }
    for t in tags {
        bump(&format!("cases {t}"), 1);
    }
    for f in spec.cache_faults.values() {
        bump(&format!("cache faults planned: {f:?}"), 1);
    }
    for e in &spec.epochs {
        bump("runs", 1);
        bump("runs fail-fast", u64::from(e.fail_fast));
        bump("runs with a cancel", u64::from(e.cancel.is_some()));
        bump("runs with a run timeout", u64::from(e.timeout_ms.is_some()));
        bump("runs with a store fault", u64::from(e.store.is_some()));
        bump("runs with a crash", u64::from(e.crash.is_some()));
        bump("runs with a kill", u64::from(e.kill.is_some()));
        bump("runs with a cleanup grace", u64::from(e.grace_ms.is_some()));
        bump("runs fresh (durable, a new id)", u64::from(e.fresh));
        bump("runs without the cache", u64::from(e.no_cache));
        bump(
            "runs with a save_cached fault",
            u64::from(e.cache_save.is_some()),
        );
        if let Some(edit) = e.edit {
            bump(&format!("runs after a table edit: {edit:?}"), 1);
        }
    }
}

/// Whether two cached calls of one body call one task on the same inputs.
fn twins(spec: &Spec) -> bool {
    let mut seen = HashSet::new();
    let mut found = false;
    crate::spec::visit(&spec.top, &mut |n, place| {
        if let Kind::Task {
            task,
            inputs,
            count,
            sub,
            ..
        } = &n.kind
            && spec.cached_call(n)
        {
            let from: Vec<Ref> = inputs.iter().map(|i| i.from).collect();
            let chain: Vec<u32> = place.chain.iter().map(|(c, _)| *c).collect();
            found |= !seen.insert(format!("{chain:?} {task} {from:?} {count} {sub}"));
        }
    });
    found
}

/// Whether node `uid` is a branch node.
fn index_kind_branch(spec: &Spec, uid: u32) -> bool {
    let mut branch = false;
    crate::spec::visit(&spec.top, &mut |n, _| {
        branch |= n.uid == uid && matches!(n.kind, Kind::Branch { .. });
    });
    branch
}

/// Decodes node `node`'s checkpoint as the model sees it.
fn decode(node: &crate::spec::Node, data: &[u8]) -> Result<MV, serde_json::Error> {
    match &node.kind {
        Kind::FanOut { .. } => serde_json::from_slice::<Vec<Raw>>(data)
            .map(|rs| MV::Many(rs.iter().map(raw_mval).collect())),
        Kind::Decide { .. } => serde_json::from_slice::<u32>(data).map(MV::Arm),
        Kind::Branch { option: true, .. } => {
            serde_json::from_slice::<Option<Raw>>(data).map(|r| MV::Opt(r.as_ref().map(raw_mval)))
        }
        _ => serde_json::from_slice::<Raw>(data).map(|r| MV::One(raw_mval(&r))),
    }
}

/// Runs a case on `rt`; returns what it violated.
pub(crate) fn run_case(
    spec: Spec,
    gates: Gates,
    rt: &mut Option<tokio::runtime::Runtime>,
) -> Vec<Violation> {
    let id = CASE_IDS.fetch_add(1, Ordering::Relaxed) + (u64::from(std::process::id()) << 32);
    spec_stats(&spec);
    let dead = if gates.f11 && (gates.i4 || !spec.items_checkpointed()) {
        dead_origins(&spec)
    } else {
        HashMap::new()
    };
    let case = Case::new(spec, id, dead, gates.d1);
    let wf = match catch_unwind(AssertUnwindSafe(|| build(&case))) {
        Ok(wf) => wf,
        Err(p) => {
            return vec![v(
                "panic",
                format!("building the workflow panicked: {}", panic_message(&*p)),
            )];
        }
    };
    let backend = Backend::get().expect("a child runs cases only with a backend");
    // A durable case's store; a case with cached tasks keeps its cache there too.
    let db = if case.spec.durable || case.spec.caching() {
        match backend.open(id, Role::Main) {
            Ok(db) => Some(Arc::new(db)),
            Err(e) => return vec![v("harness", format!("cannot open the store: {e}"))],
        }
    } else {
        None
    };
    // The other store a durable case's runs keep their cache in.
    let cache_db = if case.spec.cache_apart {
        match backend.open(id, Role::Cache) {
            Ok(db) => Some(Arc::new(db)),
            Err(e) => return vec![v("harness", format!("cannot open the cache store: {e}"))],
        }
    } else {
        None
    };
    let runtime = rt.get_or_insert_with(runtime);
    let run_id = format!("r{id}");
    let out = runtime.block_on(async {
        let main = case_main(&case, &wf, (db.clone(), cache_db.clone()), &run_id);
        tokio::time::timeout(case_limit(), AssertUnwindSafeFut(Box::pin(main))).await
    });
    let violations = match out {
        Ok(Ok(vs)) => vs,
        Ok(Err(p)) => vec![v("panic", format!("the harness or a run panicked: {p}"))],
        Err(_) => {
            // Abandon the runtime: its threads may be stuck.
            if let Some(rt) = rt.take() {
                rt.shutdown_background();
            }
            vec![v(
                "hang",
                format!("the case did not end within {:?}", case_limit()),
            )]
        }
    };
    // Their files removed, or their schemas dropped.
    drop((db, cache_db));
    violations
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic".into())
}

/// A future whose panics become an `Err`.
struct AssertUnwindSafeFut<F: ?Sized>(Pin<Box<F>>);

impl<F: Future + ?Sized> Future for AssertUnwindSafeFut<F> {
    type Output = Result<F::Output, String>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(p) => Poll::Ready(Err(panic_message(&*p))),
        }
    }
}

/// A store that fails or panics when told to, around a real one (`SqliteStore` or
/// `PostgresStore`, `faults/backend.rs`); fenced after a crash (nothing more is
/// written, as if the process had died). Its cache side fails per call (`CacheFault`,
/// the call learnt from the key function that ran just before on the same thread) and
/// per run (`CacheSave`).
struct FaultStore {
    inner: Arc<dyn Store>,
    fault: Option<StoreFault>,
    /// The run's cache is this store (else it must never be asked for one).
    cache_role: bool,
    cache_save: Option<CacheSave>,
    cache_saves: AtomicU32,
    cache_save_fired: AtomicBool,
    case: Arc<Case>,
    epoch: u8,
    saves: AtomicU32,
    busy: AtomicI32,
    /// Claims made, and leases held now.
    claims: AtomicU32,
    held: AtomicI32,
    fenced: AtomicBool,
    save_fired: AtomicBool,
    finish_fired: AtomicBool,
    /// The checkpoints the run discarded.
    discarded: std::sync::Mutex<Vec<String>>,
}

fn store_error(message: &str) -> StoreError {
    StoreError {
        location: "fault-store".into(),
        message: message.into(),
    }
}

impl Store for FaultStore {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.inner.run(id)
    }
    fn claim(&self, id: &str, owner: &str, new: Option<&RunRecord>) -> Result<Claim, StoreError> {
        // Counted as held before the claim, so that a crash during it never looks
        // like a run that let go of its lease.
        self.held.fetch_add(1, Ordering::SeqCst);
        self.claims.fetch_add(1, Ordering::SeqCst);
        let claim = self.inner.claim(id, owner, new);
        if !matches!(claim, Ok(Claim::Started | Claim::Taken(_))) {
            self.held.fetch_sub(1, Ordering::SeqCst);
        }
        claim
    }
    fn renew(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        self.inner.renew(id, owner)
    }
    fn release(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        let released = self.inner.release(id, owner);
        self.held.fetch_sub(1, Ordering::SeqCst);
        released
    }
    fn checkpoints(&self, id: &str) -> Result<Vec<Checkpoint>, StoreError> {
        self.inner.checkpoints(id)
    }
    fn discard(&self, id: &str, owner: &str, nodes: &[String]) -> Result<(), StoreError> {
        lock(&self.discarded).extend(nodes.iter().cloned());
        self.inner.discard(id, owner, nodes)
    }
    fn save(
        &self,
        id: &str,
        owner: &str,
        batch: &[Checkpoint],
        ends: &[TaskEnd],
    ) -> Result<(), StoreError> {
        self.busy.fetch_add(1, Ordering::SeqCst);
        struct Done<'a>(&'a AtomicI32);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _done = Done(&self.busy);
        if self.fenced.load(Ordering::SeqCst) {
            return Err(store_error("the process is gone (a simulated crash)"));
        }
        let n = self.saves.fetch_add(1, Ordering::SeqCst) + 1;
        match self.fault {
            Some(StoreFault::SaveErr(k)) if k == n => {
                self.save_fired.store(true, Ordering::SeqCst);
                self.case.event(self.epoch, EventKind::StoreFail);
                return Err(store_error(&format!("[injected] save #{n} fails")));
            }
            Some(StoreFault::SavePanic(k)) if k == n => {
                self.save_fired.store(true, Ordering::SeqCst);
                self.case.event(self.epoch, EventKind::StoreFail);
                panic!("[injected] the store panics on save #{n}");
            }
            _ => {}
        }
        self.inner.save(id, owner, batch, ends)
    }
    fn task_ends(&self, id: &str) -> Result<Vec<TaskEnd>, StoreError> {
        self.inner.task_ends(id)
    }
    fn finish(
        &self,
        id: &str,
        owner: &str,
        status: &str,
        duration: Duration,
        report: &str,
    ) -> Result<(), StoreError> {
        match self.fault {
            Some(StoreFault::FinishErr) => {
                self.finish_fired.store(true, Ordering::SeqCst);
                Err(store_error("[injected] finish fails"))
            }
            Some(StoreFault::FinishPanic) => {
                self.finish_fired.store(true, Ordering::SeqCst);
                panic!("[injected] the store panics on finish");
            }
            _ => {
                let finished = self.inner.finish(id, owner, status, duration, report);
                if finished.is_ok() {
                    self.held.fetch_sub(1, Ordering::SeqCst);
                }
                finished
            }
        }
    }
    fn runs(&self) -> Result<Vec<RunSummary>, StoreError> {
        self.inner.runs()
    }
    fn report(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.inner.report(id)
    }
    fn delete_before(&self, before: SystemTime) -> Result<Deleted, StoreError> {
        self.inner.delete_before(before)
    }
    fn cached(&self, task: &str, key: &str) -> Result<Option<CachedResult>, StoreError> {
        if !self.cache_role {
            lock(&self.case.violations).push(v(
                "cache",
                format!("run {}: the run's own store was asked for a cached result of task {task}, though the run was given another cache", self.epoch),
            ));
        }
        let Some((uid, path, mkey)) = crate::cache::take_lookup() else {
            lock(&self.case.violations).push(v(
                "cache",
                format!("run {}: the store was asked for a cached result of task {task} whose key no key function had just made", self.epoch),
            ));
            return self.inner.cached(task, key);
        };
        self.case.saw_hex(key, &mkey);
        if task != TASK_NAMES[mkey.task] {
            lock(&self.case.violations).push(v(
                "cache",
                format!(
                    "run {}: t{uid}{path:?} looked its result up as task {task}",
                    self.epoch
                ),
            ));
        }
        if self.fenced.load(Ordering::SeqCst) {
            return Err(store_error("the process is gone (a simulated crash)"));
        }
        let fault = self.case.spec.cache_fault(self.epoch, uid, &path);
        if let Some(f) = fault {
            bump(&format!("cache faults fired: {f:?}"), 1);
            if matches!(f, CacheFault::LookupErr | CacheFault::LookupPanic) {
                self.case.must_warn(self.epoch);
            }
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let ghost = || CachedResult {
            task: task.to_owned(),
            key: key.to_owned(),
            codec: "json".into(),
            schema: 1,
            data: b"{\"no".to_vec(),
            run: "ghost".into(),
            created_ms: now,
            expires_ms: None,
        };
        match fault {
            Some(CacheFault::LookupErr) => Err(store_error(&format!(
                "[injected] cannot read the cache for t{uid}{path:?}"
            ))),
            Some(CacheFault::LookupPanic) => {
                panic!("[injected] the store panics reading the cache for t{uid}{path:?}")
            }
            Some(CacheFault::Garbage) => {
                let mut row = self.inner.cached(task, key)?.unwrap_or_else(ghost);
                // Garbage data, an unknown codec or another layout, by the call.
                match uid % 3 {
                    0 => row.data = b"\x00garbage".to_vec(),
                    1 => row.codec = "no-such-codec".into(),
                    _ => row.schema += 1000,
                }
                // An expired row is not read (nor warned of).
                if row.expires_ms.is_none_or(|at| at > now) {
                    self.case.must_warn(self.epoch);
                }
                Ok(Some(row))
            }
            Some(CacheFault::Expired) => {
                let mut row = self.inner.cached(task, key)?.unwrap_or_else(ghost);
                row.expires_ms = Some(now.saturating_sub(1000));
                Ok(Some(row))
            }
            _ => self.inner.cached(task, key),
        }
    }
    fn save_cached(&self, results: &[CachedResult]) -> Result<(), StoreError> {
        if !self.cache_role {
            lock(&self.case.violations).push(v(
                "cache",
                format!("run {}: cached results were saved to the run's own store, though the run was given another cache", self.epoch),
            ));
        }
        self.busy.fetch_add(1, Ordering::SeqCst);
        struct Done<'a>(&'a AtomicI32);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _done = Done(&self.busy);
        if self.fenced.load(Ordering::SeqCst) {
            return Err(store_error("the process is gone (a simulated crash)"));
        }
        let n = self.cache_saves.fetch_add(1, Ordering::SeqCst) + 1;
        match self.cache_save {
            Some(CacheSave::Err(k)) if k == n => {
                self.cache_save_fired.store(true, Ordering::SeqCst);
                self.case.must_warn(self.epoch);
                bump("cache faults fired: save_cached errs", 1);
                return Err(store_error(&format!("[injected] save_cached #{n} fails")));
            }
            Some(CacheSave::Panic(k)) if k == n => {
                self.cache_save_fired.store(true, Ordering::SeqCst);
                self.case.must_warn(self.epoch);
                bump("cache faults fired: save_cached panics", 1);
                panic!("[injected] the store panics on save_cached #{n}");
            }
            _ => {}
        }
        self.inner.save_cached(results)
    }
    fn cache_entries(&self) -> Result<Vec<CacheEntry>, StoreError> {
        self.inner.cache_entries()
    }
    fn clear_cache(
        &self,
        task: Option<&str>,
        expired_by: Option<u64>,
    ) -> Result<usize, StoreError> {
        self.inner.clear_cache(task, expired_by)
    }
}

pub(crate) fn to_mval(v: &Val) -> MVal {
    MVal {
        v: v.v,
        idx: v.idx,
        items: v.items.iter().map(to_mval).collect(),
    }
}

pub(crate) fn raw_mval(r: &Raw) -> MVal {
    MVal {
        v: r.v,
        idx: r.i,
        items: r.items.iter().map(raw_mval).collect(),
    }
}

type RunFuture = Pin<Box<dyn Future<Output = RunOutcome<Val>> + Send>>;

async fn case_main(
    case: &Arc<Case>,
    wf: &Wf,
    (db, cache_db): (Option<Arc<CaseStore>>, Option<Arc<CaseStore>>),
    run_id: &str,
) -> Vec<Violation> {
    let spec = &case.spec;
    let index = Index::new(spec);
    let (p0, p1) = param_values(spec);
    let origin = spec.param_origin();
    let mut out = Vec::new();
    let durable = spec.durable;
    let caching = spec.caching();
    // The store the runs keep their cache in: the case's, or another one.
    let cache_home = cache_db.clone().or_else(|| db.clone());
    let mut tracker = cache_home
        .as_ref()
        .filter(|_| caching)
        .map(|db| Tracker::new(Arc::clone(db)));
    // A durable case's run id: its resumes keep it, a fresh run takes another.
    let mut id = run_id.to_owned();
    for (e, cfg) in spec.epochs.iter().enumerate() {
        let e8 = e as u8;
        if let (true, Some(db), 1..) = (durable, &db, e) {
            wait_for_release(db, &id).await;
        }
        if cfg.fresh {
            id = format!("{run_id}-{e}");
        }
        let Snapshot { restored, discard } = match (durable, &db, e) {
            (true, Some(db), 1..) if !cfg.fresh => {
                snapshot(spec, &*db.store, &id, &p0, &p1, &mut out)
            }
            _ => Snapshot::default(),
        };
        // The cache table as this run starts (after its edit), and the runs before it.
        let table = tracker.as_mut().map(|t| t.begin(case, e8, cfg, &mut out));
        let earlier = tracker.as_ref().map(|t| t.runs.clone()).unwrap_or_default();
        let has_cache = caching && (durable || !cfg.no_cache);
        let fault_store = |db: &Arc<CaseStore>, fault: Option<StoreFault>, cache_role: bool| {
            Arc::new(FaultStore {
                inner: Arc::clone(&db.store),
                fault,
                cache_role,
                cache_save: cfg.cache_save,
                cache_saves: AtomicU32::new(0),
                cache_save_fired: AtomicBool::new(false),
                case: Arc::clone(case),
                epoch: e8,
                saves: AtomicU32::new(0),
                busy: AtomicI32::new(0),
                claims: AtomicU32::new(0),
                held: AtomicI32::new(0),
                fenced: AtomicBool::new(false),
                save_fired: AtomicBool::new(false),
                finish_fired: AtomicBool::new(false),
                discarded: std::sync::Mutex::new(Vec::new()),
            })
        };
        let apart = cache_db.is_some();
        let store = db.as_ref().map(|db| fault_store(db, cfg.store, !apart));
        let cache_store = cache_db.as_ref().map(|db| fault_store(db, None, true));
        // Every row on even cases, only the rows of fused items that did not succeed on
        // odd ones (`every_row`, which the check reads back).
        let mut runner = wf
            .runner()
            .fail_fast(cfg.fail_fast)
            .item_rows(every_row(case, e as u8));
        if let Some(ms) = cfg.timeout_ms {
            runner = runner.timeout(Duration::from_millis(ms));
        }
        if let Some(ms) = cfg.grace_ms {
            runner = runner.cleanup_grace(Duration::from_millis(ms));
        }
        let handle = runner.cancel_handle();
        let params = || {
            (
                Val::tree(
                    &case.counters,
                    origin,
                    p0.v,
                    0,
                    spec.params[0].0,
                    spec.params[0].1,
                ),
                Val::tree(
                    &case.counters,
                    origin,
                    p1.v,
                    0,
                    spec.params[1].0,
                    spec.params[1].1,
                ),
            )
        };
        if let Some(cache) = &cache_store {
            // Given first, so the durable run keeps its cache there.
            runner = runner.cache(Arc::clone(cache) as Arc<dyn Store>);
        }
        let fut: RunFuture = match &store {
            Some(store) if durable => {
                let runner = runner
                    .store(Arc::clone(store) as Arc<dyn Store>)
                    .run_id(&id);
                if e > 0 && !cfg.resume_by_run && !cfg.fresh {
                    Box::pin(runner.resume())
                } else {
                    Box::pin(runner.run(params()))
                }
            }
            Some(store) if has_cache => Box::pin(
                runner
                    .cache(Arc::clone(store) as Arc<dyn Store>)
                    .run(params()),
            ),
            _ => Box::pin(runner.run(params())),
        };
        let notify = Arc::new(tokio::sync::Notify::new());
        case.begin_epoch(
            e8,
            match cfg.cancel {
                Some(Trigger::AfterStarts(k)) => Some((k, handle.clone())),
                _ => None,
            },
            match cfg.kill {
                Some(Trigger::AfterStarts(k)) => Some((k, handle.clone())),
                _ => None,
            },
            match cfg.crash {
                Some(Trigger::AfterStarts(k)) => Some((k, Arc::clone(&notify))),
                _ => None,
            },
        );
        let canceller = match cfg.cancel {
            Some(Trigger::AfterMs(ms)) => {
                let (handle, case) = (handle.clone(), Arc::clone(case));
                Some(tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    // Recorded first: whoever sees the stop sees the event.
                    case.event(e8, EventKind::Cancel(None));
                    handle.cancel();
                }))
            }
            _ => None,
        };
        let killer = match cfg.kill {
            Some(Trigger::AfterMs(ms)) => {
                let (handle, case) = (handle.clone(), Arc::clone(case));
                Some(tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    case.event(e8, EventKind::Kill(None));
                    handle.kill();
                }))
            }
            _ => None,
        };
        let crash = async {
            match cfg.crash {
                None => std::future::pending::<()>().await,
                Some(Trigger::AfterMs(ms)) => tokio::time::sleep(Duration::from_millis(ms)).await,
                Some(Trigger::AfterStarts(_)) => notify.notified().await,
            }
        };
        let result = tokio::select! {
            biased;
            r = AssertUnwindSafeFut(fut) => Some(r),
            () = crash => None,
        };
        for task in [canceller, killer].into_iter().flatten() {
            task.abort();
        }
        case.end_epoch();
        let mut report_epoch = false;
        bump("runs resumed", u64::from(e > 0));
        // What the cache holds after the run, and what the model needs of it.
        let mut ended = |out: &mut Vec<Violation>| {
            cache_end(
                case,
                e8,
                tracker.as_mut(),
                (table.clone(), earlier.clone()),
                durable.then_some(id.as_str()),
                has_cache,
                out,
            )
        };
        let leased = (store.as_deref().filter(|_| durable), cache_store.as_deref());
        match result {
            None => {
                bump("runs crashed (dropped)", 1);
                case.event(e8, EventKind::Crash);
                for store in store.iter().chain(&cache_store) {
                    store.fenced.store(true, Ordering::SeqCst);
                }
                out.extend(quiesce(case, leased, &format!("run {e} was dropped (a crash)")).await);
                ended(&mut out);
            }
            Some(Err(p)) => {
                out.push(v("panic", format!("run {e}: the run future panicked: {p}")));
                out.extend(quiesce(case, leased, &format!("run {e} panicked")).await);
                ended(&mut out);
            }
            Some(Ok(mut outcome)) => {
                // The output is the harness's now: its `Drop` is not the library's.
                if let Ok(output) = &mut outcome.result {
                    output.bomb = false;
                }
                report_epoch = true;
                bump(
                    "runs restoring checkpoints",
                    u64::from(!restored.is_empty()),
                );
                for t in &outcome.report.tasks {
                    bump(&format!("reported {}", t.status), 1);
                }
                let save_fired = store
                    .as_ref()
                    .is_some_and(|s| s.save_fired.load(Ordering::SeqCst));
                let finish_fired = store
                    .as_ref()
                    .is_some_and(|s| s.finish_fired.load(Ordering::SeqCst));
                let cache_save_fired = store
                    .iter()
                    .chain(&cache_store)
                    .any(|s| s.cache_save_fired.load(Ordering::SeqCst));
                let cache = ended(&mut out);
                out.extend(check_run(
                    case,
                    e8,
                    cfg,
                    &outcome,
                    &restored,
                    (save_fired, finish_fired, cache_save_fired),
                    db.as_ref().filter(|_| durable).map(|db| &*db.store),
                    &id,
                    &p0,
                    &p1,
                    cache.as_ref(),
                ));
                let expected = match &outcome.result {
                    Ok(val) => val.count(),
                    Err(_) => case.counters.alive(),
                };
                let alive = case.counters.alive();
                if alive != expected {
                    out.push(v("alive", format!("run {e} returned, yet {alive} values are alive, {expected} expected (its output)")));
                }
                let inflight = case.inflight.load(Ordering::SeqCst);
                if inflight != 0 {
                    out.push(v(
                        "timing",
                        format!("run {e} returned while {inflight} task attempts still ran"),
                    ));
                }
                drop(outcome);
                let mut waited = 0;
                while case.counters.alive() != 0 && waited < 10 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    waited += 1;
                }
                let alive = case.counters.alive();
                if alive != 0 {
                    out.push(v("alive", format!("run {e} ended and its outcome was dropped, yet {alive} values are still alive")));
                }
            }
        }
        if let (true, Some(db)) = (apart, &db) {
            // Given another cache, the run keeps none in its own store.
            match db.cache_rows() {
                Ok(rows) if !rows.is_empty() => out.push(v(
                    "cache",
                    format!(
                        "run {e} was given another store as its cache, yet its own store holds {} cached results",
                        rows.len()
                    ),
                )),
                Ok(_) => {}
                Err(err) => out.push(v("harness", format!("cannot read the store's cache: {err}"))),
            }
        }
        let log = case.log_of(e8);
        out.extend(sequences(case, &index, e8, &log));
        out.extend(timing(case, &index, e8, cfg, &log));
        out.extend(causality(case, &index, e8, &log));
        if !report_epoch {
            // No report to judge restored nodes by: the log alone must show they did not run.
            for (uid, path) in restored.keys() {
                let uids = match &index.nodes[uid].0.kind {
                    Kind::Task { .. } | Kind::Decide { .. } => HashSet::from([*uid]),
                    Kind::FanOut { body, .. } | Kind::Subflow { body, .. } => body_uids(body),
                    Kind::Branch { .. } => HashSet::new(),
                };
                if log.iter().any(|((u, p), recs)| {
                    uids.contains(u) && p.starts_with(path) && !recs.is_empty()
                }) {
                    out.push(v(
                        "restore",
                        format!(
                            "run {e}: `{}` was restored, yet it ran again",
                            index.name(*uid, path)
                        ),
                    ));
                }
            }
        }
        // What the resume discarded: the stale checkpoints, before anything ran (a
        // crashed run may not have got that far).
        if let Some(store) = &store {
            let discarded: HashSet<String> = lock(&store.discarded).iter().cloned().collect();
            let missing: Vec<&String> = discard.difference(&discarded).collect();
            let extra: Vec<&String> = discarded.difference(&discard).collect();
            bump(
                "stale item checkpoints discarded",
                discarded.iter().filter(|n| n.contains(['.', '['])).count() as u64,
            );
            if !extra.is_empty() || (!missing.is_empty() && (report_epoch || !discarded.is_empty()))
            {
                let (mut missing, mut extra) = (missing, extra);
                missing.sort();
                extra.sort();
                out.push(v(
                    "store",
                    format!(
                        "run {e}: the resume discarded checkpoints {extra:?} it must keep, and kept {missing:?} it must discard (stale)"
                    ),
                ));
            }
        }
    }
    for (t, def) in spec.tasks.iter().enumerate() {
        if let Some(limit) = def.concurrency {
            let max = case.gauges[t].max.load(Ordering::SeqCst);
            if max > i64::from(limit) {
                out.push(v(
                    "concurrency",
                    format!(
                        "task T{t} has concurrency {limit}, yet {max} of its attempts ran at once"
                    ),
                ));
            }
        }
    }
    out.extend(lock(&case.violations).iter().cloned());
    let unwound = case.counters.unwound_bombs.load(Ordering::SeqCst);
    if unwound > 0 {
        out.push(v(
            "abort",
            format!(
                "{unwound} values whose Drop panics were dropped while their thread unwound: \
                 outside the harness, an abort (the first in {})",
                lock(&case.counters.unwound_at)
            ),
        ));
    }
    out
}

/// After run `e` (returned, or dropped and quiet): checks the cache table against what
/// the run did, and gives the model its view of the run's cache (`None` if the run had
/// none) with the rows after it.
fn cache_end(
    case: &Case,
    e: u8,
    tracker: Option<&mut Tracker>,
    (table, earlier): (Option<HashMap<crate::cache::MKey, String>>, Vec<String>),
    durable_id: Option<&str>,
    has_cache: bool,
    out: &mut Vec<Violation>,
) -> Option<(CacheView, HashMap<crate::cache::MKey, crate::cache::Row>)> {
    let observed = case.keys_of(e);
    if !has_cache && !observed.is_empty() {
        out.push(v(
            "cache",
            format!(
                "run {e} has no cache, yet {} calls computed their keys",
                observed.len()
            ),
        ));
    }
    let index = Index::new(&case.spec);
    for (uid, path) in observed.keys() {
        let cached = index
            .nodes
            .get(uid)
            .is_some_and(|(n, _)| case.spec.cached_call(n));
        if !cached {
            out.push(v(
                "cache",
                format!("run {e}: t{uid}{path:?}, no cached call, computed a key"),
            ));
        }
    }
    let tracker = tracker?;
    let unreadable = tracker.unreadable;
    let log = case.log_of(e);
    let ran = crate::cache::ran_ok(&case.spec, e, &log, &observed);
    let (after, this_run) = tracker.end(case, e, durable_id, &ran, out);
    if !has_cache {
        return None;
    }
    let view = CacheView {
        table: table.unwrap_or_default(),
        ran_ok: ran,
        this_run,
        earlier,
        observed,
        unreadable,
        loaded: lock(&case.counters.loaded).clone(),
    };
    Some((view, after))
}

/// After a run that did not return (dropped, or panicked): everything it started must
/// end and every value be dropped, soon.
/// A dropped run keeps its lease until its last task has ended and its writer lets go
/// (it must never run beside a new owner): a resume waits for that, up to 3 s; a lease
/// still held then is reported by the resume's refusal.
async fn wait_for_release(db: &CaseStore, run_id: &str) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        if !matches!(db.run_owner(run_id), Ok(Some(_))) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn quiesce(
    case: &Case,
    (store, cache): (Option<&FaultStore>, Option<&FaultStore>),
    what: &str,
) -> Vec<Violation> {
    let started = Instant::now();
    loop {
        let inflight = case.inflight.load(Ordering::SeqCst);
        let alive = case.counters.alive();
        let busy = store
            .iter()
            .chain(&cache)
            .map(|s| s.busy.load(Ordering::SeqCst))
            .sum::<i32>();
        let leased = store.is_some_and(|s| {
            s.claims.load(Ordering::SeqCst) == 0 || s.held.load(Ordering::SeqCst) > 0
        });
        if inflight == 0 && alive == 0 && busy == 0 && !leased {
            return Vec::new();
        }
        if started.elapsed() > Duration::from_secs(3) {
            return vec![v(
                if inflight > 0 { "hang" } else { "alive" },
                format!(
                    "{what}: 3 s later {inflight} attempts still run, {alive} values are alive, {busy} saves run, the lease is {}released",
                    if leased { "not " } else { "" }
                ),
            )];
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// What a resume starts from, as the model reads the store.
#[derive(Default)]
struct Snapshot {
    /// The node instances it must restore, with their values.
    restored: RestoredSet,
    /// The checkpoints it must discard before anything runs (stale): those not
    /// restored of the top level and of the items of fan-outs (and sub-workflows) that
    /// run again on inputs all restored, and every checkpoint of the items of one that
    /// runs again on inputs not all restored, at every depth. Those of the items of a
    /// restored fan-out are kept (never read).
    discard: HashSet<String>,
}

/// Reads the checkpoints before a resume: which node instances it must restore (those
/// with a checkpoint whose every input is restored; parameters count, and so do the
/// item and imports of a fan-out's body when the fan-out runs again on inputs that are
/// all restored), their values, and which checkpoints it must discard.
fn snapshot(
    spec: &Spec,
    db: &dyn Store,
    run_id: &str,
    p0: &MVal,
    p1: &MVal,
    out: &mut Vec<Violation>,
) -> Snapshot {
    let checkpoints = match db.checkpoints(run_id) {
        Ok(c) => c,
        Err(e) => {
            out.push(v("store", format!("cannot read the checkpoints: {e}")));
            return Snapshot::default();
        }
    };
    let index = Index::new(spec);
    let mut raw: HashMap<String, Vec<u8>> = HashMap::new();
    for c in checkpoints {
        // `f3[2].s5.t7`: node `t7` at path [2].
        let last = c.node.rsplit('.').next().unwrap_or("");
        let path: Vec<u32> = c
            .node
            .split('[')
            .skip(1)
            .filter_map(|p| p.split(']').next()?.parse().ok())
            .collect();
        let known = index.nodes.values().find(|(n, _)| n.name() == last);
        let fits = known.is_some_and(|(n, place)| {
            spec.checkpointed(n, place.chain.is_empty()) && index.ckpt_name(n.uid, &path) == c.node
        });
        if !fits {
            out.push(v(
                "store",
                format!(
                    "a checkpoint named `{}`, which no checkpointed node has",
                    c.node
                ),
            ));
            continue;
        }
        raw.insert(c.node, c.data);
    }
    let mut r = Restorer {
        spec,
        raw: &raw,
        restored: HashMap::new(),
        discard: HashSet::new(),
        out,
    };
    let params = [MV::One(p0.clone()), MV::One(p1.clone())];
    r.body(&spec.top, &params, &[], "", true);
    let (restored, discard) = (r.restored, r.discard);
    bump(
        "restored item nodes",
        restored.keys().filter(|(_, p)| !p.is_empty()).count() as u64,
    );
    Snapshot { restored, discard }
}

/// Applies the restore rule to a body's instance and, where a fan-out or sub-workflow
/// runs again on inputs that are all restored, to its items.
struct Restorer<'x> {
    spec: &'x Spec,
    raw: &'x HashMap<String, Vec<u8>>,
    restored: RestoredSet,
    discard: HashSet<String>,
    out: &'x mut Vec<Violation>,
}

impl Restorer<'_> {
    /// The instance of `body` at `path`, its checkpoints named `prefix` + node name,
    /// its parameters' values `params`; returns the values of its restored nodes.
    fn body(
        &mut self,
        body: &Body,
        params: &[MV],
        path: &[u32],
        prefix: &str,
        top: bool,
    ) -> HashMap<u32, MV> {
        let spec = self.spec;
        let mut restored: HashMap<u32, MV> = HashMap::new();
        for node in &body.nodes {
            let name = format!("{prefix}{}", node.name());
            let value_of = |restored: &HashMap<u32, MV>, r: &Ref| match r {
                Ref::Param(k) => params.get(*k as usize).cloned(),
                Ref::Node(u) => restored.get(u).cloned(),
            };
            let data_restored = node.refs().iter().all(|r| value_of(&restored, r).is_some());
            // A branch needs its decision and the arm it took (and its own arm's decision).
            let inputs_restored = match &node.kind {
                Kind::Branch {
                    decision, tails, ..
                } => {
                    node.arm.is_none_or(|(d, _)| restored.contains_key(&d))
                        && match restored.get(decision) {
                            Some(MV::Arm(a)) => tails
                                .get(*a as usize)
                                .is_some_and(|t| t.is_none_or(|t| restored.contains_key(&t))),
                            _ => false,
                        }
                }
                _ => data_restored,
            };
            let saved = self.raw.get(&name).filter(|_| spec.checkpointed(node, top));
            if saved.is_some() && !inputs_restored {
                self.discard.insert(name.clone());
            }
            if let (Some(data), true) = (saved, inputs_restored) {
                let value = match decode(node, data) {
                    Ok(value) => value,
                    Err(e) => {
                        self.out.push(v(
                            "store",
                            format!("the checkpoint of `{name}` cannot be read: {e}"),
                        ));
                        continue;
                    }
                };
                self.check(node, &name, &value, &restored, params, path);
                match node.kind {
                    Kind::Decide { .. } => bump("restored decisions", 1),
                    Kind::Branch { .. } => bump("restored branches", 1),
                    _ => {}
                }
                restored.insert(node.uid, value.clone());
                self.restored.insert((node.uid, path.to_vec()), value);
                continue;
            }
            // Not restored: a fan-out or sub-workflow whose inputs are all restored runs
            // again, each of its items restoring what it checkpointed.
            if !data_restored {
                if matches!(node.kind, Kind::FanOut { .. } | Kind::Subflow { .. }) {
                    let (items, flow) = (format!("{name}["), format!("{name}."));
                    self.discard.extend(
                        self.raw
                            .keys()
                            .filter(|k| k.starts_with(&items) || k.starts_with(&flow))
                            .cloned(),
                    );
                }
                continue;
            }
            match &node.kind {
                Kind::FanOut {
                    collection,
                    imports,
                    body: inner,
                    ..
                } => {
                    let items = value_of(&restored, collection)
                        .map(|c| c.items())
                        .unwrap_or_default();
                    let imported: Vec<MV> = imports
                        .iter()
                        .filter_map(|r| value_of(&restored, r))
                        .collect();
                    for (i, item) in items.into_iter().enumerate() {
                        let mut inner_params = vec![MV::One(item)];
                        inner_params.extend(imported.iter().cloned());
                        let mut ipath = path.to_vec();
                        ipath.push(i as u32);
                        let iprefix = format!("{name}[{i}].");
                        self.body(inner, &inner_params, &ipath, &iprefix, false);
                    }
                }
                Kind::Subflow { args, body: inner } => {
                    let args: Vec<MV> =
                        args.iter().filter_map(|r| value_of(&restored, r)).collect();
                    self.body(inner, &args, path, &format!("{name}."), false);
                }
                _ => {}
            }
        }
        restored
    }

    /// A restored decision's arm must be the one its restored inputs pick, a restored
    /// task's value what it computes from them.
    fn check(
        &mut self,
        node: &crate::spec::Node,
        name: &str,
        value: &MV,
        restored: &HashMap<u32, MV>,
        params: &[MV],
        path: &[u32],
    ) {
        let hash = |r: &Ref| match r {
            Ref::Param(k) => params[*k as usize].hash(),
            Ref::Node(u) => restored[u].hash(),
        };
        if let Kind::Decide { inputs, arms, rule } = &node.kind {
            let hashes: Vec<(u64, bool)> =
                inputs.iter().map(|i| (hash(&i.from), i.tolerant)).collect();
            let expected = MV::Arm(crate::branches::pick(node.uid, *rule, *arms, &hashes));
            if *value != expected {
                self.out.push(v(
                    "restore",
                    format!(
                        "the checkpoint of decision `{name}` is {value:?}; its restored inputs pick {expected:?}"
                    ),
                ));
            }
        }
        if let Kind::Task {
            task,
            inputs,
            count,
            sub,
            ..
        } = &node.kind
        {
            let hashes: Vec<u64> = inputs.iter().map(|i| hash(&i.from)).collect();
            let idx = path.last().copied().unwrap_or(0);
            let seed = self.spec.value_seed(node.uid, *task);
            let expected = MV::One(tree(node_value(seed, &hashes), idx, *count, *sub));
            if *value != expected {
                self.out.push(v(
                    "restore",
                    format!(
                        "the checkpoint of `{name}` is stale: every input it reads is restored, but its value is not the one \
                         they give (a resumed run would not return what an uninterrupted one does)"
                    ),
                ));
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_run(
    case: &Case,
    e: u8,
    cfg: &Epoch,
    outcome: &RunOutcome<Val>,
    restored: &RestoredSet,
    (save_fired, finish_fired, cache_save_fired): (bool, bool, bool),
    db: Option<&dyn Store>,
    run_id: &str,
    p0: &MVal,
    p1: &MVal,
    cache: Option<&(CacheView, HashMap<crate::cache::MKey, crate::cache::Row>)>,
) -> Vec<Violation> {
    let spec = &case.spec;
    let mut out = Vec::new();
    let view = cache.map(|(view, _)| view);
    let report = &outcome.report;
    if report.tasks.is_empty() {
        let why = outcome
            .result
            .as_ref()
            .err()
            .map_or("no error".to_owned(), ToString::to_string);
        out.push(v("result", format!("run {e} was refused: {why}")));
        return out;
    }
    let mut observed: HashMap<String, Obs> = HashMap::new();
    for t in &report.tasks {
        let obs = Obs {
            status: t.status,
            attempts: t.attempts.len() as u32,
            kind: t.kind,
            cached_from: t.cached_from.clone(),
        };
        if (t.status == TaskStatus::Cached) != t.cached_from.is_some() {
            out.push(v(
                "report",
                format!(
                    "run {e}: `{}` is {} and names {:?} as the run that computed it",
                    t.node, t.status, t.cached_from
                ),
            ));
        }
        if observed.insert(t.node.clone(), obs).is_some() {
            out.push(v(
                "report",
                format!("run {e}: `{}` is in the report twice", t.node),
            ));
        }
    }
    let log = case.log_of(e);
    let cancelled = lock(&case.events)
        .iter()
        .any(|ev| ev.epoch == e && matches!(ev.kind, EventKind::Cancel(_) | EventKind::Kill(_)));
    let killed = lock(&case.events)
        .iter()
        .any(|ev| ev.epoch == e && matches!(ev.kind, EventKind::Kill(_)));
    let predicted_failures = {
        let mut w = Walker::new(spec, e, false, None, &log, restored);
        w.cache = view;
        w.walk(p0.clone(), p1.clone());
        // Fail-fast stops on a failure no decision reads as an outcome.
        !w.stopping.is_empty()
    };
    let open = cancelled
        || save_fired
        || (cfg.fail_fast && predicted_failures)
        || (cfg.timeout_ms.is_some() && outcome.result.is_err());
    bump(
        if open {
            "runs judged as stopped (open outcomes)"
        } else {
            "runs judged exactly"
        },
        1,
    );
    bump("runs where a cancel fired", u64::from(cancelled));
    bump("runs where a store save failed", u64::from(save_fired));
    bump(
        match &outcome.result {
            Ok(_) => "results Ok",
            Err(Error::Failed { .. }) => "results Failed",
            Err(Error::Cancelled { .. }) => "results Cancelled",
            Err(Error::TimedOut { .. }) => "results TimedOut",
            Err(Error::Store(_)) => "results Store",
            Err(Error::Fault { .. }) => "results Fault",
            Err(_) => "results other error",
        },
        1,
    );
    let mut w = Walker::new(spec, e, open, Some(&observed), &log, restored);
    w.cache = view;
    w.summary = !every_row(case, e);
    // After a hard stop (a kill, or the end of the cleanup grace) cleanup tasks may be
    // cancelled too.
    w.hard = killed || (open && cfg.grace_ms.is_some());
    let output = w.walk(p0.clone(), p1.clone());
    out.extend(
        w.violations
            .iter()
            .map(|(c, m)| (c.clone(), format!("run {e}: {m}"))),
    );
    out.extend(crate::cache::check_warnings(
        case,
        e,
        view,
        &report.warnings,
    ));
    if let Some((view, after)) = cache {
        crate::cache::stats(view, w.within_hits);
        // Every cached call that succeeded is in the cache once the run returned, unless
        // a save failed (the cache's, or a checkpoint's: the writer gave up).
        if !cache_save_fired && !save_fired {
            out.extend(crate::cache::check_saved(
                spec,
                e,
                &w.cached_calls,
                after,
                view.this_run.as_deref(),
                &Index::new(spec),
            ));
        }
    }
    let visited: HashSet<&String> = w.visited.iter().collect();
    for name in observed.keys() {
        if !visited.contains(name) {
            out.push(v(
                "report",
                format!(
                    "run {e}: the report has `{name}`, which the run has no (started) instance of"
                ),
            ));
        }
    }
    for name in &w.visited {
        if !observed.contains_key(name) {
            out.push(v(
                "report",
                format!("run {e}: `{name}` is missing from the report"),
            ));
        }
    }
    // The result.
    let failures: HashSet<&String> = w.failures.iter().collect();
    let top_cancelled: Vec<String> = spec
        .top
        .nodes
        .iter()
        .map(|node| node.name())
        .filter(|name| {
            observed
                .get(name)
                .is_some_and(|o| o.status == TaskStatus::Cancelled)
        })
        .collect();
    let mode = if open { "(the run stopped)" } else { "" };
    match &outcome.result {
        Err(Error::Store(_)) if save_fired || finish_fired => {}
        Err(error @ Error::Fault { .. }) => out.push(v("fault", format!("run {e}: {error}"))),
        result if save_fired => out.push(v(
            "store",
            format!(
                "run {e}: a checkpoint save failed, yet the run returned {}",
                describe(result)
            ),
        )),
        Err(Error::Failed {
            failures: got,
            skipped,
            ..
        }) => {
            let got: HashSet<&String> = got.iter().map(|f| &f.node).collect();
            if got != failures {
                out.push(v("result", format!("run {e} {mode}: the error names failed tasks {got:?}, the report's failures are {failures:?}")));
            }
            let skipped: HashSet<&String> = skipped.iter().collect();
            let expected: HashSet<&String> = w.top_skipped.iter().collect();
            if skipped != expected {
                out.push(v(
                    "result",
                    format!(
                        "run {e}: the error lists skipped {skipped:?}, the report {expected:?}"
                    ),
                ));
            }
        }
        result if !failures.is_empty() => out.push(v(
            "result",
            format!(
                "run {e} {mode}: tasks failed ({failures:?}), yet the run returned {}",
                describe(result)
            ),
        )),
        Ok(_) if finish_fired => out.push(v(
            "store",
            format!("run {e}: the store failed to record the end, yet the run succeeded"),
        )),
        Ok(_) if !top_cancelled.is_empty() => out.push(v(
            "result",
            format!("run {e} returned Ok although {top_cancelled:?} did not finish"),
        )),
        Ok(val) => {
            if !crate::model::is_ok(output.status) {
                out.push(v(
                    "result",
                    format!("run {e} succeeded, yet its output is {}", output.status),
                ));
            } else if let Some(MV::One(expected)) = &output.value {
                let got = to_mval(val);
                if &got != expected {
                    out.push(v(
                        "value",
                        format!(
                            "run {e} returned {}, the model expects {}",
                            crate::model::show(&got),
                            crate::model::show(expected)
                        ),
                    ));
                }
            }
        }
        Err(Error::TimedOut { .. }) if cfg.timeout_ms.is_some() => {}
        // A cancel fails the run if it kept a node of the run from finishing (even if
        // the output, a cleanup task say, was produced), never if every node finished.
        Err(Error::Cancelled { unfinished, .. }) if cancelled => {
            let listed: HashSet<&str> = unfinished.iter().map(String::as_str).collect();
            let expected: HashSet<&str> = top_cancelled.iter().map(String::as_str).collect();
            if matches!(output.status, TaskStatus::Succeeded | TaskStatus::Cached)
                && top_cancelled.is_empty()
            {
                out.push(v(
                    "result",
                    format!("run {e} returned Cancelled although every node finished"),
                ));
            } else if listed != expected {
                out.push(v(
                    "result",
                    format!(
                        "run {e}: the error lists unfinished {listed:?}, the report {expected:?}"
                    ),
                ));
            }
        }
        result => out.push(v(
            "result",
            format!("run {e} {mode}: unexpected result {}", describe(result)),
        )),
    }
    // A durable run reports success only once every checkpoint is committed.
    if let (Some(db), Ok(_)) = (db, &outcome.result) {
        match db.checkpoints(run_id) {
            Ok(saved) => {
                let saved: HashMap<&str, &Checkpoint> =
                    saved.iter().map(|c| (c.node.as_str(), c)).collect();
                for node in &spec.top.nodes {
                    let Some((status, value)) = w.top.get(&node.uid) else {
                        continue;
                    };
                    if !crate::model::is_ok(*status) {
                        continue;
                    }
                    let name = node.name();
                    match saved.get(name.as_str()) {
                        None => out.push(v(
                            "store",
                            format!("run {e} succeeded, but `{name}` ({status}) has no checkpoint"),
                        )),
                        Some(c) if *status != TaskStatus::Restored => {
                            let decoded = decode(node, &c.data).ok();
                            if value.is_some() && decoded.as_ref() != value.as_ref() {
                                out.push(v("store", format!("run {e}: the checkpoint of `{name}` is not the value it computed (or loaded)")));
                            }
                        }
                        Some(_) => {}
                    }
                }
                // And every node of an item (or a sub-workflow) checkpointed item by item.
                let index = Index::new(spec);
                for (name, uid, status, value) in &w.items {
                    if !crate::model::is_ok(*status) {
                        continue;
                    }
                    let node = index.nodes[uid].0;
                    match saved.get(name.as_str()) {
                        None => out.push(v(
                            "store",
                            format!("run {e} succeeded, but `{name}` ({status}) has no checkpoint"),
                        )),
                        Some(c) if *status != TaskStatus::Restored => {
                            let decoded = decode(node, &c.data).ok();
                            if value.is_some() && decoded.as_ref() != value.as_ref() {
                                out.push(v("store", format!("run {e}: the checkpoint of `{name}` is not the value it computed (or loaded)")));
                            }
                        }
                        Some(_) => {}
                    }
                }
            }
            Err(err) => out.push(v("store", format!("cannot read the checkpoints: {err}"))),
        }
    }
    out
}

fn describe<T>(result: &Result<T, Error>) -> String {
    match result {
        Ok(_) => "Ok".into(),
        Err(e) => format!("Err({e})"),
    }
}

/// The planned fault of an attempt as the model sees it.
fn effective(
    spec: &Spec,
    index: &Index<'_>,
    e: u8,
    uid: u32,
    path: &[u32],
    attempt: u32,
) -> Option<Fault> {
    spec.fault(e, uid, path, attempt)
        .filter(|f| *f != Fault::SerPanic || (spec.durable && index.is_top(uid)))
}

/// Attempts follow the retry policy: attempt k+1 only after a retried failure of k.
fn sequences(
    case: &Case,
    index: &Index<'_>,
    e: u8,
    log: &HashMap<(u32, Vec<u32>), Vec<Rec>>,
) -> Vec<Violation> {
    let spec = &case.spec;
    let mut out = Vec::new();
    for ((uid, path), recs) in log {
        let Some((node, _)) = index.nodes.get(uid) else {
            continue;
        };
        if let Kind::Decide { .. } = node.kind {
            bump("decisions called", recs.len() as u64);
            if recs.len() > 1 {
                out.push(v(
                    "attempts",
                    format!(
                        "run {e}: decision `{}` was called {} times",
                        index.name(*uid, path),
                        recs.len()
                    ),
                ));
            }
            continue;
        }
        let Kind::Task { task, .. } = node.kind else {
            continue;
        };
        let def = &spec.tasks[task];
        for rec in recs {
            match effective(spec, index, e, *uid, path, rec.attempt) {
                Some(f) => bump(&format!("attempts {f:?}"), 1),
                None => bump("attempts plain", 1),
            }
        }
        for k in 1..recs.len() as u32 {
            let fault = effective(spec, index, e, *uid, path, k);
            if !fault.is_some_and(|f| retriable(def, k, f)) {
                out.push(v(
                    "attempts",
                    format!(
                        "run {e}: `{}` made attempt {} although attempt {k} ended {} and the policy does not retry that",
                        index.name(*uid, path),
                        k + 1,
                        fault.map_or("successfully".to_owned(), |f| format!("{f:?}")),
                    ),
                ));
                break;
            }
        }
    }
    out
}

fn is_cleanup(case: &Case, index: &Index<'_>, uid: u32) -> bool {
    index
        .nodes
        .get(&uid)
        .is_some_and(|(n, _)| n.is_cleanup(&case.spec.tasks))
}

fn is_io(case: &Case, index: &Index<'_>, uid: u32) -> bool {
    matches!(index.nodes.get(&uid), Some((n, _)) if matches!(n.kind, Kind::Task { task, .. } if case.spec.tasks[task].io))
}

/// After a stop nothing new starts and running IO attempts are dropped (within a
/// slack for scheduling); after a crash (a hard stop) not even cleanup tasks start.
fn timing(
    case: &Case,
    index: &Index<'_>,
    e: u8,
    cfg: &Epoch,
    log: &HashMap<(u32, Vec<u32>), Vec<Rec>>,
) -> Vec<Violation> {
    let spec = &case.spec;
    let events = lock(&case.events).clone();
    let mut soft: Option<(Duration, String)> = None;
    let mut hard: Option<Duration> = None;
    let earliest = |at: Duration, what: String, soft: &mut Option<(Duration, String)>| {
        if soft.as_ref().is_none_or(|(t, _)| at < *t) {
            *soft = Some((at, what));
        }
    };
    for ev in events.iter().filter(|ev| ev.epoch == e) {
        match &ev.kind {
            EventKind::Cancel(_) => earliest(ev.at, "the cancel".into(), &mut soft),
            EventKind::StoreFail => earliest(ev.at, "the store failure".into(), &mut soft),
            EventKind::Crash | EventKind::Kill(_) => {
                hard = Some(hard.map_or(ev.at, |h: Duration| h.min(ev.at)))
            }
        }
    }
    if cfg.fail_fast {
        // Nodes whose outcome a decision reads do not stop a fail-fast run.
        let mut handled_by = HashSet::new();
        crate::spec::visit(&spec.top, &mut |n, _| {
            if let Kind::Decide { inputs, .. } = &n.kind {
                handled_by.extend(inputs.iter().filter(|i| i.tolerant).filter_map(
                    |i| match i.from {
                        Ref::Node(u) => Some(u),
                        Ref::Param(_) => None,
                    },
                ));
            }
        });
        for ((uid, path), recs) in log {
            let Some((node, _)) = index.nodes.get(uid) else {
                continue;
            };
            let Some(last) = recs.last() else { continue };
            let fault = effective(spec, index, e, *uid, path, last.attempt);
            let fails = match node.kind {
                Kind::Task { task, .. } => fault.is_some_and(|f| {
                    !retriable(&spec.tasks[task], last.attempt, f) && !handled_by.contains(uid)
                }),
                Kind::Decide { .. } => fault.is_some(),
                _ => false,
            };
            if let (true, Some(end)) = (fails, last.end) {
                earliest(
                    end,
                    format!("the failure of `{}` (fail-fast)", index.name(*uid, path)),
                    &mut soft,
                );
            }
        }
    }
    let slack = slack();
    let mut out = Vec::new();
    for recs in log.values() {
        for rec in recs {
            let name = || index.name(rec.uid, &rec.path);
            let io = is_io(case, index, rec.uid);
            if let Some(t) = hard {
                if rec.start > t + slack {
                    out.push(v("timing", format!("run {e}: `{}` attempt {} started {:?} after the run was killed or dropped", name(), rec.attempt, rec.start - t)));
                }
                if io && rec.start < t && rec.end.is_none_or(|end| end > t + slack) {
                    out.push(v("timing", format!("run {e}: IO attempt {} of `{}` still ran {slack:?} after the run was killed or dropped", rec.attempt, name())));
                }
            }
            if let Some((t, what)) = &soft
                && !is_cleanup(case, index, rec.uid)
            {
                if rec.start > *t + slack {
                    out.push(v(
                        "timing",
                        format!(
                            "run {e}: `{}` attempt {} started {:?} after {what} stopped the run",
                            name(),
                            rec.attempt,
                            rec.start - *t
                        ),
                    ));
                }
                if io && rec.start < *t && rec.end.is_none_or(|end| end > *t + slack) {
                    out.push(v("timing", format!("run {e}: IO attempt {} of `{}` was not dropped when {what} stopped the run", rec.attempt, name())));
                }
            }
        }
    }
    out.truncate(3);
    out
}

/// A cancel fired from inside an attempt: whatever can only start after that
/// attempt's node resolved (its successors, their successors, up through the fan-outs
/// around it) must not start, cleanup tasks excepted; nor may the node retry.
fn causality(
    case: &Case,
    index: &Index<'_>,
    e: u8,
    log: &HashMap<(u32, Vec<u32>), Vec<Rec>>,
) -> Vec<Violation> {
    let events = lock(&case.events).clone();
    let mut out = Vec::new();
    for ev in events.iter().filter(|ev| ev.epoch == e) {
        let EventKind::Cancel(Some((uid, path, attempt))) = &ev.kind else {
            continue;
        };
        if !is_cleanup(case, index, *uid)
            && log
                .get(&(*uid, path.clone()))
                .is_some_and(|recs| recs.iter().any(|r| r.attempt > *attempt))
        {
            out.push(v(
                "timing",
                format!(
                    "run {e}: `{}` retried after it cancelled the run",
                    index.name(*uid, path)
                ),
            ));
        }
        let (mut level, mut level_path) = (*uid, path.clone());
        loop {
            let body: &Body = index.bodies[&level];
            for d in descendants(body, level) {
                let node = body.node(d).expect("a node of the body");
                if node.is_cleanup(&case.spec.tasks) {
                    continue;
                }
                let ran = match &node.kind {
                    Kind::Branch { .. } => false,
                    Kind::Task { .. } | Kind::Decide { .. } => log
                        .get(&(d, level_path.clone()))
                        .is_some_and(|r| !r.is_empty()),
                    Kind::FanOut { body, .. } | Kind::Subflow { body, .. } => {
                        let uids = body_uids(body);
                        log.iter().any(|((u, p), r)| {
                            uids.contains(u) && p.starts_with(&level_path) && !r.is_empty()
                        })
                    }
                };
                if ran {
                    out.push(v(
                        "timing",
                        format!(
                            "run {e}: `{}` ran although it could only start after `{}`, whose attempt {attempt} had cancelled the run",
                            index.name(d, &level_path),
                            index.name(*uid, path)
                        ),
                    ));
                }
            }
            let place = &index.nodes[&level].1;
            let Some(&(container, fan)) = place.chain.last() else {
                break;
            };
            level = container;
            if fan {
                level_path.pop();
            }
        }
    }
    out
}

/// The nodes of `body` downstream of `uid`.
fn descendants(body: &Body, uid: u32) -> Vec<u32> {
    let mut reached: HashSet<u32> = HashSet::from([uid]);
    let mut out = Vec::new();
    for node in &body.nodes {
        // A branch waits for its decision, but not for the arms not taken (they end
        // not taken as soon as the decision picks another arm).
        let via: Vec<Ref> = match &node.kind {
            Kind::Branch {
                decision, tails, ..
            } => std::iter::once(Ref::Node(*decision))
                .chain(
                    tails
                        .iter()
                        .flatten()
                        .filter(|&&t| body.node(t).is_some_and(|t| t.arm.is_none()))
                        .map(|&t| Ref::Node(t)),
                )
                .chain(node.arm.map(|(d, _)| Ref::Node(d)))
                .collect(),
            _ => node.refs(),
        };
        if via
            .iter()
            .any(|r| matches!(r, Ref::Node(u) if reached.contains(u)))
        {
            reached.insert(node.uid);
            out.push(node.uid);
        }
    }
    out
}

/// For F11: per top-level task reading a top-level fan-out or sub-workflow, the origins
/// of the values made inside it (but for its output) that must be gone when it starts.
fn dead_origins(spec: &Spec) -> HashMap<u32, Vec<(String, Vec<u32>)>> {
    // A body's output is kept (moved into the fan-out's value); if it is itself a
    // fan-out or sub-workflow, so are its own items' outputs (inside its `Vec`, or its
    // `ItemsFailed` for a tolerant reader).
    fn outputs(body: &Body, keep: &mut HashSet<u32>) {
        kept(body, body.tail, keep);
    }
    // A branch's value is its arms' (shared, or moved into `Some`).
    fn kept(body: &Body, uid: u32, keep: &mut HashSet<u32>) {
        keep.insert(uid);
        match body.node(uid).map(|n| &n.kind) {
            Some(Kind::FanOut { body, .. } | Kind::Subflow { body, .. }) => outputs(body, keep),
            Some(Kind::Branch { tails, .. }) => {
                for &t in tails.iter().flatten() {
                    kept(body, t, keep);
                }
            }
            _ => {}
        }
    }
    let mut out: HashMap<u32, Vec<(String, Vec<u32>)>> = HashMap::new();
    for node in &spec.top.nodes {
        let Kind::Task { inputs, .. } = &node.kind else {
            continue;
        };
        for input in inputs {
            let Ref::Node(u) = input.from else { continue };
            let Some(source) = spec.top.node(u) else {
                continue;
            };
            let (Kind::FanOut { body, .. } | Kind::Subflow { body, .. }) = &source.kind else {
                continue;
            };
            let mut keep = HashSet::new();
            outputs(body, &mut keep);
            let dead: Vec<u32> = body_uids(body)
                .into_iter()
                .filter(|x| !keep.contains(x))
                .collect();
            if !dead.is_empty() {
                out.entry(node.uid).or_default().push((source.name(), dead));
            }
        }
    }
    out
}
