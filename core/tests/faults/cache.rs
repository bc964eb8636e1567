//! Cached tasks (the result cache): which cases have them, a call's key as the model
//! sees it, the key function of a cached node, the cache table read between runs, and
//! how the model judges a cached call.
//!
//! In a quarter of the cases (drawn apart, so the other cases stay what their seeds
//! always made) some tasks are cached (`TaskInfo::cache`, a `code` per task, a time to
//! live on some) and their nodes registered with `Builder::cache` (a few are left
//! bare: they run every time); a few cached nodes get a twin, the same task on the same
//! inputs in the same body, so that one run has two calls with one key. A node of a
//! cached task computes its value from its task and its inputs alone (not from its
//! uid), so any two calls with one key compute one value. A key is made of each input
//! as the model knows it (`MKey`: its hash, item index and children, not the case's
//! counters nor the origin the alive counts use), then the node's shape and item index.
//!
//! The runs: a durable case's resumes keep their run id, and most get a last, fresh run
//! (a new id) that restores nothing; a case that is not durable runs two or three times
//! in memory with `Runner::cache` on one store (now and then a run without it). Faults:
//! per call (`CacheFault`: the key function errs or panics, the store's `cached` errs
//! or panics or returns a garbage or an expired row), per run (`save_cached` fails on
//! its n-th call), and between runs (rows of the table corrupted, given an unknown
//! codec or another layout version, expired, or deleted by `clear_cache`).
//!
//! The model: a call whose key is usable in the table at the start of a run, and whose
//! lookup nothing breaks, is `Cached` (no attempt; `cached_from` names the run that
//! computed it); otherwise it runs like any task, faults and all. Within one run two
//! calls with one key may both run, or the later one load what the earlier saved (the
//! writer may or may not have committed it): a `Cached` call naming this run is
//! accepted when another call with its key ran in it. The table is read after every run
//! (and after a crash, once the dropped run let go): a row changed in a run must have
//! been computed by a call that ran in it (never a failed call, never a load), under
//! that run's id, readable, with the value the model gives its key and the expiry its
//! task's time to live gives; after a run that returned (without a failed save), every
//! cached call it reports succeeded has its row. The cache never fails a run: a run
//! with cache faults only is judged exactly as one without (never `Error::Store`).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use aqueduct::graph::{CacheKey, In};
use aqueduct::{Outcome, TaskStatus};
use serde::ser::SerializeStruct as _;

use crate::backend::CaseStore;
use crate::case::Case;
use crate::exec::{Violation, bump, raw_mval, to_mval};
use crate::model::{MV, MVal, NOT_OK, Res, Walker, is_ok, many_hash, node_value, tree};
use crate::rng::{Rng, mix};
use crate::spec::{
    Body, CACHE_SEED, CacheDef, CacheFault, CacheSave, Epoch, Fault, FaultKey, Index, Kind, Spec,
    StoreFault, TASK_NAMES, TableEdit, TaskDef, Trigger, visit,
};
use crate::value::{H, Mixed, Raw, Read, Val};

/// The share of cases with cached tasks, in percent.
pub(crate) const SHARE: u64 = 25;

fn v(class: &str, message: impl Into<String>) -> Violation {
    (class.to_owned(), message.into())
}

// ---------------------------------------------------------------------------------
// Keys.

/// One input of a cached call, as its key holds it: a value (an `Option`'s `Some`
/// encodes as its value), a `Vec` of them, a `None`, or an input read as an outcome
/// that did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum KeyIn {
    One(MVal),
    Many(Vec<MVal>),
    Null,
    NotOk,
}

/// A cached call's key as the model knows it: the task, its inputs, and what the
/// node's value is made of besides (its shape and its item index).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct MKey {
    pub(crate) task: usize,
    pub(crate) inputs: Vec<KeyIn>,
    pub(crate) count: u32,
    pub(crate) sub: u32,
    pub(crate) idx: u32,
}

impl MKey {
    /// A short text for messages.
    pub(crate) fn show(&self) -> String {
        let hashes: Vec<String> = self
            .inputs
            .iter()
            .map(|i| format!("{:x}", in_hash(i) & 0xffff_ffff))
            .collect();
        format!(
            "{}({}) x{}/{} #{}",
            TASK_NAMES[self.task],
            hashes.join(", "),
            self.count,
            self.sub,
            self.idx
        )
    }
}

/// What a cached call's key holds of input `r` (`None` if the model lacks its value).
pub(crate) fn key_in(r: &Res) -> Option<KeyIn> {
    if !is_ok(r.status) {
        return Some(KeyIn::NotOk);
    }
    match r.value.as_ref()? {
        MV::One(m) | MV::Opt(Some(m)) => Some(KeyIn::One(m.clone())),
        MV::Many(vs) => Some(KeyIn::Many(vs.clone())),
        MV::Opt(None) => Some(KeyIn::Null),
        MV::Arm(_) => None,
    }
}

/// The hash a task reads of an input (`Read::hash`).
fn in_hash(k: &KeyIn) -> u64 {
    match k {
        KeyIn::One(m) => m.v,
        KeyIn::Many(vs) => many_hash(vs.iter().map(|m| m.v)),
        KeyIn::Null => crate::branches::NONE,
        KeyIn::NotOk => NOT_OK,
    }
}

/// The value every call with key `key` computes.
pub(crate) fn key_value(key: &MKey) -> MVal {
    let hashes: Vec<u64> = key.inputs.iter().map(in_hash).collect();
    tree(
        node_value(CACHE_SEED + key.task as u32, &hashes),
        key.idx,
        key.count,
        key.sub,
    )
}

/// A value as a key holds it: no counters id, no origin.
struct KeyView<'a>(&'a Val);

impl serde::Serialize for KeyView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("K", 3)?;
        s.serialize_field("v", &self.0.v)?;
        s.serialize_field("i", &self.0.idx)?;
        s.serialize_field("items", &KeySeq(&self.0.items))?;
        s.end()
    }
}

struct KeySeq<'a>(&'a [Val]);

impl serde::Serialize for KeySeq<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(KeyView))
    }
}

thread_local! {
    /// The call whose key this thread just computed: the store's `cached`, called next
    /// on the same thread, learns from it which call looks up (and so which fault to
    /// inject, and which key the hex stands for).
    static LOOKING_UP: RefCell<Option<(u32, Vec<u32>, MKey)>> = const { RefCell::new(None) };
}

/// The call whose key was just computed on this thread, if any.
pub(crate) fn take_lookup() -> Option<(u32, Vec<u32>, MKey)> {
    LOOKING_UP.with(|l| l.borrow_mut().take())
}

fn add_one(key: &mut CacheKey, v: &Val) -> Result<KeyIn, String> {
    key.add(&KeyView(v)).map(|()| KeyIn::One(to_mval(v)))
}

fn add_many(key: &mut CacheKey, vs: &[Val]) -> Result<KeyIn, String> {
    key.add(&KeySeq(vs))
        .map(|()| KeyIn::Many(vs.iter().map(to_mval).collect()))
}

fn add_opt(key: &mut CacheKey, o: Option<&Val>) -> Result<KeyIn, String> {
    match o {
        Some(v) => add_one(key, v),
        None => key.add(&Option::<u8>::None).map(|()| KeyIn::Null),
    }
}

fn add_read(key: &mut CacheKey, read: &Read<'_>) -> Result<KeyIn, String> {
    match read {
        Read::One(v) => add_one(key, v),
        Read::OneOutcome(Outcome::Ok(v)) => add_one(key, v),
        Read::Owned(v) => add_one(key, v),
        Read::Many(vs) => add_many(key, vs),
        Read::ManyOutcome(Outcome::Ok(vs)) => add_many(key, vs),
        Read::OwnedMany(vs) => add_many(key, vs),
        Read::Opt(o) => add_opt(key, o.as_ref()),
        Read::OptOutcome(Outcome::Ok(o)) => add_opt(key, o.as_ref()),
        Read::OwnedOpt(o) => add_opt(key, o.as_ref()),
        _ => key.add("not ok").map(|()| KeyIn::NotOk),
    }
}

/// What a cached node's key function needs.
pub(crate) struct Keyed {
    pub(crate) case: Arc<Case>,
    pub(crate) uid: u32,
    pub(crate) task: usize,
    pub(crate) count: u32,
    pub(crate) sub: u32,
    /// The inputs the node takes by value: (position, handle).
    pub(crate) moved: Vec<(usize, H)>,
}

impl Keyed {
    /// Adds input `at`, which the node takes by value, without taking it.
    fn peek(
        &self,
        input: &In<'_, '_, Mixed>,
        at: usize,
        key: &mut CacheKey,
    ) -> Result<KeyIn, String> {
        let Some(&(_, h)) = self.moved.iter().find(|(i, _)| *i == at) else {
            return Err(format!("harness: input {at} is taken, but by no handle"));
        };
        let peeked = match h {
            H::One(h) => input.peek(h, |v: &Val| add_one(key, v)),
            H::Many(h) => input.peek(h, |vs: &Vec<Val>| add_many(key, vs)),
            H::Opt(h) => input.peek(h, |o: &Option<Val>| add_opt(key, o.as_ref())),
        };
        peeked.unwrap_or_else(|| {
            Err(format!(
                "input {at}, moved into the call, was taken already"
            ))
        })
    }

    /// The key function (`Builder::cache`): adds each input as the task reads it, then
    /// the node's shape and item index; logs the call and its key; errs or panics when
    /// the plan says so.
    pub(crate) fn key(&self, input: &In<'_, '_, Mixed>, key: &mut CacheKey) -> Result<(), String> {
        let (reads, ctx) = input.get();
        let path: Vec<u32> = ctx.iter().map(|item| item.idx).collect();
        let idx = path.last().copied().unwrap_or(0);
        let inputs = reads
            .iter()
            .enumerate()
            .map(|(at, r)| match r {
                Read::Taken => self.peek(input, at, key),
                r => add_read(key, r),
            })
            .collect::<Result<Vec<KeyIn>, String>>()?;
        key.add(&(self.count, self.sub, idx))?;
        let mkey = MKey {
            task: self.task,
            inputs,
            count: self.count,
            sub: self.sub,
            idx,
        };
        let (uid, case) = (self.uid, &self.case);
        let epoch = case.epoch.load(Ordering::SeqCst) as u8;
        case.key_computed(epoch, uid, &path, mkey.clone());
        match case.spec.cache_fault(epoch, uid, &path) {
            Some(CacheFault::KeyErr) => {
                bump("cache faults fired: key function errs", 1);
                case.must_warn(epoch);
                return Err(format!(
                    "[injected] the key function of t{uid}{path:?} fails"
                ));
            }
            Some(CacheFault::KeyPanic) => {
                bump("cache faults fired: key function panics", 1);
                case.must_warn(epoch);
                panic!("[injected] the key function of t{uid}{path:?} panics");
            }
            _ => {}
        }
        LOOKING_UP.with(|l| *l.borrow_mut() = Some((uid, path, mkey)));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// Generation.

fn trigger(r: &mut Rng) -> Trigger {
    if r.chance(50) {
        Trigger::AfterMs(r.range(0, 30))
    } else {
        Trigger::AfterStarts(r.range(1, 12) as u32)
    }
}

/// One more run's stops (no crash: it is the last of a durable case).
fn stops(r: &mut Rng, durable: bool) -> Epoch {
    let mut e = Epoch {
        fail_fast: r.chance(15),
        ..Epoch::default()
    };
    if r.chance(15) {
        e.cancel = Some(trigger(r));
    }
    if r.chance(10) {
        e.timeout_ms = Some(r.range(1, 25));
    }
    if r.chance(5) {
        e.kill = Some(trigger(r));
    }
    if r.chance(10) {
        e.grace_ms = Some(r.range(0, 10));
    }
    if durable && r.chance(10) {
        e.store = Some(match r.below(4) {
            0 => StoreFault::SaveErr(r.range(1, 3) as u32),
            1 => StoreFault::SavePanic(r.range(1, 3) as u32),
            2 => StoreFault::FinishErr,
            _ => StoreFault::FinishPanic,
        });
    }
    e
}

/// Gives a few cached calls a twin: the same task on the same inputs, right after it.
fn twins(
    body: &mut Body,
    tasks: &[TaskDef],
    bare: &BTreeSet<u32>,
    r: &mut Rng,
    next: &mut u32,
    left: &mut u32,
) {
    let mut i = 0;
    while i < body.nodes.len() {
        if let Kind::FanOut { body: inner, .. } | Kind::Subflow { body: inner, .. } =
            &mut body.nodes[i].kind
        {
            twins(inner, tasks, bare, r, next, left);
        }
        let node = &body.nodes[i];
        let cached = matches!(node.kind, Kind::Task { task, .. } if tasks[task].cache.is_some())
            && !bare.contains(&node.uid);
        if cached && *left > 0 && r.chance(25) {
            let mut twin = node.clone();
            twin.uid = *next;
            *next += 1;
            *left -= 1;
            if let Kind::Task { inputs, .. } = &mut twin.kind {
                inputs.iter_mut().for_each(|input| input.moved = false);
            }
            body.nodes.insert(i + 1, twin);
            i += 1;
        }
        i += 1;
    }
}

fn cache_def(r: &mut Rng, t: usize) -> CacheDef {
    CacheDef {
        code: mix(0xc0de_cace, t as u64),
        ttl_ms: r.chance(25).then_some(3_600_000),
    }
}

/// Makes a quarter of the cases cache some tasks (from a generator of their own): the
/// tasks, the twins, the runs, and the faults of the runs and calls added.
pub(crate) fn decorate(spec: &mut Spec) {
    let mut r = Rng::new(mix(spec.seed, 0xcac4_e5ee_d00d));
    if !r.chance(SHARE) {
        return;
    }
    let mut used: Vec<usize> = Vec::new();
    visit(&spec.top, &mut |n, _| {
        if let Kind::Task { task, .. } = n.kind
            && !used.contains(&task)
        {
            used.push(task);
        }
    });
    if used.is_empty() {
        return;
    }
    for t in 0..spec.tasks.len() {
        if r.chance(60) {
            spec.tasks[t].cache = Some(cache_def(&mut r, t));
        }
    }
    if !used.iter().any(|&t| spec.tasks[t].cache.is_some()) {
        let t = *r.pick(&used);
        spec.tasks[t].cache = Some(cache_def(&mut r, t));
    }
    let mut bare = BTreeSet::new();
    visit(&spec.top, &mut |n, _| {
        if matches!(n.kind, Kind::Task { task, .. } if spec.tasks[task].cache.is_some())
            && r.chance(8)
        {
            bare.insert(n.uid);
        }
    });
    spec.bare = bare;
    let first_twin = spec.param_origin();
    let (mut next, mut left) = (first_twin, 3);
    let (tasks, bare) = (spec.tasks.clone(), spec.bare.clone());
    twins(&mut spec.top, &tasks, &bare, &mut r, &mut next, &mut left);
    let old = spec.epochs.len();
    if spec.durable {
        spec.cache_apart = r.chance(30);
        if r.chance(70) {
            let mut e = stops(&mut r, true);
            e.fresh = true;
            spec.epochs.push(e);
        }
    } else {
        for _ in 0..r.range(1, 2) {
            let mut e = stops(&mut r, false);
            e.no_cache = r.chance(10);
            spec.epochs.push(e);
        }
    }
    let cached_tasks: Vec<usize> = used
        .iter()
        .copied()
        .filter(|&t| spec.tasks[t].cache.is_some())
        .collect();
    for (i, e) in spec.epochs.iter_mut().enumerate() {
        if r.chance(10) {
            let n = r.range(1, 3) as u32;
            e.cache_save = Some(if r.chance(50) {
                CacheSave::Err(n)
            } else {
                CacheSave::Panic(n)
            });
        }
        if i > 0 && r.chance(30) {
            e.edit = Some(match r.below(7) {
                0 => TableEdit::Corrupt,
                1 => TableEdit::BadCodec,
                2 => TableEdit::BadSchema,
                3 => TableEdit::Expire,
                4 => TableEdit::ExpireAndClear,
                5 => TableEdit::Clear(Some(*r.pick(&cached_tasks))),
                _ => TableEdit::Clear(None),
            });
        }
    }
    faults(spec, &mut r, old, first_twin);
}

/// Attempt faults for the runs added and the twins, and cache faults for every cached
/// call of every run.
fn faults(spec: &mut Spec, r: &mut Rng, old: usize, first_twin: u32) {
    let instances = crate::generate::instances(spec);
    let index = Index::new(spec);
    let rate = *r.pick(&[0, 3, 8, 15, 30]);
    let mut attempts = BTreeMap::new();
    let mut calls = BTreeMap::new();
    for e in 0..spec.epochs.len() {
        for (uid, path) in &instances {
            let Some((node, _)) = index.nodes.get(uid) else {
                continue;
            };
            let new = e >= old || *uid >= first_twin;
            let key = |attempt| FaultKey {
                epoch: e as u8,
                uid: *uid,
                path: path.clone(),
                attempt,
            };
            match &node.kind {
                Kind::Task { task, .. } => {
                    let def = &spec.tasks[*task];
                    let top = index.is_top(*uid);
                    for attempt in 1..=def.retries + 1 {
                        if !new || !r.chance(rate) {
                            continue;
                        }
                        let fault = match r.below(100) {
                            0..30 => Fault::Transient,
                            30..45 => Fault::Permanent,
                            45..60 => Fault::Panic,
                            60..95 if def.timeout_ms.is_some() => Fault::Timeout,
                            95.. if spec.durable && top && def.retries == 0 => Fault::SerPanic,
                            _ => Fault::Transient,
                        };
                        attempts.insert(key(attempt), fault);
                    }
                    if spec.cached_call(node) && r.chance(12) {
                        let fault = match r.below(100) {
                            0..15 => CacheFault::KeyErr,
                            15..25 => CacheFault::KeyPanic,
                            25..50 => CacheFault::LookupErr,
                            50..62 => CacheFault::LookupPanic,
                            62..82 => CacheFault::Garbage,
                            _ => CacheFault::Expired,
                        };
                        calls.insert((e as u8, *uid, path.clone()), fault);
                    }
                }
                Kind::Decide { .. } if new && r.chance(rate) => {
                    let fault = *r.pick(&[
                        Fault::Panic,
                        Fault::Permanent,
                        Fault::Transient,
                        Fault::OutOfRange,
                    ]);
                    attempts.insert(key(1), fault);
                }
                _ => {}
            }
        }
    }
    spec.faults.extend(attempts);
    spec.cache_faults = calls;
}

// ---------------------------------------------------------------------------------
// The table.

/// One row of the cache table, as another connection reads it (`CaseStore::cache_rows`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) task: String,
    pub(crate) key: String,
    pub(crate) codec: String,
    pub(crate) schema: i64,
    pub(crate) data: Vec<u8>,
    pub(crate) run: String,
    pub(crate) created_ms: i64,
    pub(crate) expires_ms: Option<i64>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An FNV-1a hash of a key's hex, to pick rows to edit reproducibly.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What the model needs of a run's cache.
#[derive(Default)]
pub(crate) struct CacheView {
    /// The keys usable in the table at the start of the run, with the run that
    /// computed each.
    pub(crate) table: HashMap<MKey, String>,
    /// The keys some call computed by running in this run (a completed successful
    /// attempt), with how many calls did.
    pub(crate) ran_ok: HashMap<MKey, u32>,
    /// This run's id: a durable run's; an in-memory run's as its rows show it.
    pub(crate) this_run: Option<String>,
    /// The ids of the runs before it.
    pub(crate) earlier: Vec<String>,
    /// Each call's key as its key function computed it in this run, and how many
    /// times it was called.
    pub(crate) observed: HashMap<(u32, Vec<u32>), (MKey, u32)>,
    /// Some row could not be read as the run started (its lookup may warn).
    pub(crate) unreadable: bool,
    /// Every value deserialised in the case so far (hash, item index): a loaded
    /// result's among them.
    pub(crate) loaded: std::collections::HashSet<(u64, u32)>,
}

/// The keys calls computed by running in run `e`: those with a completed successful
/// attempt whose key function did not fail.
pub(crate) fn ran_ok(
    spec: &Spec,
    e: u8,
    log: &HashMap<(u32, Vec<u32>), Vec<crate::case::Rec>>,
    observed: &HashMap<(u32, Vec<u32>), (MKey, u32)>,
) -> HashMap<MKey, u32> {
    let mut out: HashMap<MKey, u32> = HashMap::new();
    for ((uid, path), recs) in log {
        let Some((key, _)) = observed.get(&(*uid, path.clone())) else {
            continue;
        };
        if matches!(
            spec.cache_fault(e, *uid, path),
            Some(CacheFault::KeyErr | CacheFault::KeyPanic)
        ) {
            continue;
        }
        if recs
            .iter()
            .any(|r| r.completed && spec.fault(e, *uid, path, r.attempt).is_none())
        {
            *out.entry(key.clone()).or_default() += 1;
        }
    }
    out
}

/// A case's cache table, from run to run.
pub(crate) struct Tracker {
    /// The store the runs keep their cache in.
    home: Arc<CaseStore>,
    /// The layout version the library writes, learnt from its first row.
    schema: Option<i64>,
    /// Every run id so far, in order.
    pub(crate) runs: Vec<String>,
    /// The rows as the run about to start found them (after the edit).
    before: BTreeMap<String, Row>,
    /// Some row of the table as the run started cannot be read and has not expired
    /// (a lookup of it warns).
    pub(crate) unreadable: bool,
}

impl Tracker {
    pub(crate) fn new(home: Arc<CaseStore>) -> Self {
        Self {
            home,
            schema: None,
            runs: Vec::new(),
            before: BTreeMap::new(),
            unreadable: false,
        }
    }

    fn read(&self, what: &str, out: &mut Vec<Violation>) -> BTreeMap<String, Row> {
        self.home.cache_rows().unwrap_or_else(|e| {
            out.push(v(
                "harness",
                format!("{what}: cannot read the cache table: {e}"),
            ));
            BTreeMap::new()
        })
    }

    /// Whether the library can load `row`: its codec, its layout, not expired, data
    /// that decodes.
    fn usable(&self, row: &Row) -> bool {
        row.codec == "json"
            && Some(row.schema) == self.schema
            && row.expires_ms.is_none_or(|at| at > now_ms())
            && serde_json::from_slice::<Raw>(&row.data).is_ok()
    }

    /// Before run `e`: edits the table as its plan says, and reads it.
    pub(crate) fn begin(
        &mut self,
        case: &Case,
        e: u8,
        cfg: &Epoch,
        out: &mut Vec<Violation>,
    ) -> HashMap<MKey, String> {
        let what = format!("before run {e}");
        let mut rows = self.read(&what, out);
        if let Some(edit) = cfg.edit {
            if let Err(message) = self.edit(case, e, edit, &rows) {
                out.push(v("harness", format!("{what}: {message}")));
            }
            rows = self.read(&what, out);
        }
        let mut table = HashMap::new();
        for row in rows.values() {
            let Some(key) = case.key_of_hex(&row.key) else {
                out.push(v(
                    "cache",
                    format!(
                        "{what}: the cache holds a row of task {} whose key no lookup made",
                        row.task
                    ),
                ));
                continue;
            };
            if self.usable(row) {
                table.insert(key, row.run.clone());
            }
        }
        self.unreadable = rows
            .values()
            .any(|row| !self.usable(row) && row.expires_ms.is_none_or(|at| at > now_ms()));
        self.before = rows;
        table
    }

    fn edit(
        &self,
        case: &Case,
        e: u8,
        edit: TableEdit,
        rows: &BTreeMap<String, Row>,
    ) -> Result<(), String> {
        let store = &self.home.store;
        if let TableEdit::Clear(task) = edit {
            let name = task.map(|t| TASK_NAMES[t]);
            let expected = rows
                .values()
                .filter(|r| name.is_none_or(|n| r.task == n))
                .count();
            let cleared = store.clear_cache(name, None).map_err(|e| e.to_string())?;
            bump("cache table edits: rows cleared", cleared as u64);
            if cleared != expected {
                crate::case::lock(&case.violations).push(v(
                    "cache",
                    format!(
                        "before run {e}: clear_cache({name:?}) cleared {cleared} rows, the table had {expected}"
                    ),
                ));
            }
            return Ok(());
        }
        let keys: Vec<&str> = rows
            .keys()
            .filter(|hex| mix(case.spec.seed ^ u64::from(e), fnv(hex)).is_multiple_of(2))
            .map(String::as_str)
            .collect();
        self.home.edit_cache(edit, &keys)?;
        bump(
            &format!("cache table edits: rows {edit:?}"),
            keys.len() as u64,
        );
        if edit == TableEdit::ExpireAndClear {
            let now = now_ms();
            let expected = self
                .home
                .cache_rows()?
                .values()
                .filter(|r| r.expires_ms.is_some_and(|at| at <= now))
                .count();
            let cleared = store
                .clear_cache(None, Some(now as u64))
                .map_err(|e| e.to_string())?;
            if cleared != expected {
                crate::case::lock(&case.violations).push(v(
                    "cache",
                    format!(
                        "before run {e}: clear_cache(None, expired by now) cleared {cleared} rows, {expected} had expired"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// After run `e` (returned, or dropped and quiet): checks what it saved; returns
    /// the rows by key, and the run's id (`id`, a durable run's; else learnt from the
    /// rows it saved).
    pub(crate) fn end(
        &mut self,
        case: &Case,
        e: u8,
        id: Option<&str>,
        ran_ok: &HashMap<MKey, u32>,
        out: &mut Vec<Violation>,
    ) -> (HashMap<MKey, Row>, Option<String>) {
        let spec = &case.spec;
        let rows = self.read(&format!("after run {e}"), out);
        let changed: Vec<&Row> = rows
            .iter()
            .filter(|(hex, row)| self.before.get(*hex) != Some(*row))
            .map(|(_, row)| row)
            .collect();
        for (hex, row) in &self.before {
            if !rows.contains_key(hex) {
                out.push(v(
                    "cache",
                    format!("run {e} deleted the cached result of task {}", row.task),
                ));
            }
        }
        let ids: BTreeSet<&str> = changed.iter().map(|r| r.run.as_str()).collect();
        let this = match id {
            Some(id) => {
                if ids.iter().any(|x| *x != id) {
                    out.push(v(
                        "cache",
                        format!("run {e} (id {id}) saved cached results as runs {ids:?}"),
                    ));
                }
                Some(id.to_owned())
            }
            None => {
                if ids.len() > 1 {
                    out.push(v(
                        "cache",
                        format!("run {e} saved cached results under several run ids {ids:?}"),
                    ));
                }
                let this = ids.first().map(|s| (*s).to_owned());
                if let Some(t) = &this {
                    if self.runs.contains(t) {
                        out.push(v(
                            "cache",
                            format!(
                                "run {e} saved cached results under the id {t} of an earlier run"
                            ),
                        ));
                    }
                    if !t.starts_with(&format!("w{}-", spec.seed)) {
                        out.push(v(
                            "cache",
                            format!(
                                "run {e}'s generated id {t} does not start with its workflow's name"
                            ),
                        ));
                    }
                }
                this
            }
        };
        for row in &changed {
            if self.schema.is_none() {
                self.schema = Some(row.schema);
            }
        }
        bump("cached results saved", changed.len() as u64);
        for row in &changed {
            let Some(key) = case.key_of_hex(&row.key) else {
                out.push(v(
                    "cache",
                    format!(
                        "run {e} saved a result of task {} under a key no lookup made",
                        row.task
                    ),
                ));
                continue;
            };
            let short = key.show();
            if row.task != TASK_NAMES[key.task] {
                out.push(v(
                    "cache",
                    format!("run {e} saved the result of {short} as task {}", row.task),
                ));
            }
            if !ran_ok.contains_key(&key) {
                out.push(v(
                    "cache",
                    format!(
                        "run {e} saved a result for {short}, which no call computed by running in it \
                         (a failed call's, a loaded one's, or one whose key function failed)"
                    ),
                ));
            }
            if !self.usable(row) {
                out.push(v(
                    "cache",
                    format!(
                        "run {e} saved a result for {short} that cannot be loaded (codec {}, layout {}, expires {:?})",
                        row.codec, row.schema, row.expires_ms
                    ),
                ));
                continue;
            }
            if let Some(message) = check_row(case, &key, row) {
                out.push(v("cache", format!("run {e}: {message}")));
            }
            let ttl = spec.tasks[key.task]
                .cache
                .and_then(|c| c.ttl_ms)
                .map(|t| t as i64);
            let expected = ttl.map(|t| row.created_ms + t);
            if row.expires_ms != expected {
                out.push(v(
                    "cache",
                    format!(
                        "run {e}: the result of {short} expires at {:?}, its task's time to live ({ttl:?} ms) makes it {expected:?}",
                        row.expires_ms
                    ),
                ));
            }
        }
        if let Some(t) = &this
            && !self.runs.contains(t)
        {
            self.runs.push(t.clone());
        }
        let after = rows
            .into_values()
            .filter_map(|row| case.key_of_hex(&row.key).map(|k| (k, row)))
            .collect();
        self.before.clear();
        (after, this)
    }
}

/// A saved row's value must be what its key gives.
fn check_row(case: &Case, key: &MKey, row: &Row) -> Option<String> {
    let raw: Raw = match serde_json::from_slice(&row.data) {
        Ok(raw) => raw,
        Err(e) => return Some(format!("the result of {} cannot be read: {e}", key.show())),
    };
    bump("cached results checked", 1);
    let expected = key_value(key);
    let got = raw_mval(&raw);
    let origin = case.spec.origin_of(0, key.task);
    if got != expected || raw.o != origin || raw.c != case.counters.id {
        return Some(format!(
            "the result saved for {} is {} (origin {}), the model expects {} (origin {origin})",
            key.show(),
            crate::model::show(&got),
            raw.o,
            crate::model::show(&expected)
        ));
    }
    None
}

/// After a run that returned, without a failed save: every cached call it reports
/// succeeded (with a key) has its row, saved by this run.
pub(crate) fn check_saved(
    spec: &Spec,
    e: u8,
    calls: &[(u32, Vec<u32>, Option<MKey>, TaskStatus)],
    after: &HashMap<MKey, Row>,
    this_run: Option<&str>,
    index: &Index<'_>,
) -> Vec<Violation> {
    let mut out = Vec::new();
    for (uid, path, key, status) in calls {
        let Some(key) = key else { continue };
        if *status != TaskStatus::Succeeded
            || matches!(
                spec.cache_fault(e, *uid, path),
                Some(CacheFault::KeyErr | CacheFault::KeyPanic)
            )
        {
            continue;
        }
        let name = index.name(*uid, path);
        match after.get(key) {
            None => out.push(v(
                "cache",
                format!(
                    "run {e}: `{name}` succeeded, yet its result ({}) is not in the cache after the run returned",
                    key.show()
                ),
            )),
            Some(row) if Some(row.run.as_str()) != this_run => out.push(v(
                "cache",
                format!(
                    "run {e}: `{name}` succeeded, yet the cache holds the result of run {} for its key, not this run's ({this_run:?})",
                    row.run
                ),
            )),
            Some(_) => {}
        }
    }
    out
}

/// A run's `RunReport::warnings`: some when a fault it must warn of fired, none when
/// nothing went wrong with its cache (no fault, no unreadable row to find).
pub(crate) fn check_warnings(
    case: &Case,
    e: u8,
    view: Option<&CacheView>,
    warnings: &[String],
) -> Vec<Violation> {
    let fired = crate::case::lock(&case.warned)
        .get(&e)
        .copied()
        .unwrap_or(0);
    let quiet = fired == 0 && view.is_none_or(|v| !v.unreadable);
    bump("runs with cache warnings", u64::from(!warnings.is_empty()));
    if fired > 0 && warnings.is_empty() {
        return vec![v(
            "cache",
            format!(
                "run {e}: {fired} cache faults fired (errors, panics, unreadable results), yet its report has no warning"
            ),
        )];
    }
    if quiet && !warnings.is_empty() {
        return vec![v(
            "cache",
            format!(
                "run {e}: nothing went wrong with its cache, yet its report warns {warnings:?}"
            ),
        )];
    }
    Vec::new()
}

// ---------------------------------------------------------------------------------
// The model.

/// What the model knows of one cached call before judging it.
pub(crate) struct CallCache {
    /// Its key, from its inputs' values (`None` if one is unknown).
    pub(crate) key: Option<MKey>,
    pub(crate) fault: Option<CacheFault>,
    /// Its key was usable in the table at the start of the run: the run that computed
    /// it. The call must be `Cached` then.
    pub(crate) expect: Option<String>,
    /// The runs a `Cached` call may name: the one above, and this run if another call
    /// with the key ran in it.
    from: Vec<String>,
    /// A run whose id is not known (an in-memory run whose rows do not show it) may be
    /// named too.
    any_new: bool,
}

impl Walker<'_> {
    /// What the run's cache holds for cached call `uid` at `path` reading `ins`.
    pub(crate) fn cache_call(
        &self,
        view: &CacheView,
        uid: u32,
        task: usize,
        ins: &[(Res, bool)],
        (count, sub): (u32, u32),
        path: &[u32],
    ) -> CallCache {
        let idx = path.last().copied().unwrap_or(0);
        let inputs: Option<Vec<KeyIn>> = ins.iter().map(|(r, _)| key_in(r)).collect();
        let key = inputs.map(|inputs| MKey {
            task,
            inputs,
            count,
            sub,
            idx,
        });
        let fault = self.spec.cache_fault(self.epoch, uid, path);
        let looks = fault.is_none();
        let Some(k) = &key else {
            return CallCache {
                key,
                fault,
                expect: None,
                from: Vec::new(),
                any_new: looks,
            };
        };
        let expect = view.table.get(k).cloned().filter(|_| looks);
        let others = looks && view.ran_ok.get(k).is_some_and(|n| *n > 0);
        let mut from: Vec<String> = expect.iter().cloned().collect();
        if let (true, Some(t)) = (others, &view.this_run) {
            from.push(t.clone());
        }
        CallCache {
            key,
            fault,
            expect,
            from,
            any_new: others && view.this_run.is_none(),
        }
    }

    /// A call that got past its inputs looked its result up once (its key function
    /// was called) if it ran or loaded it, with the key the model gives it.
    pub(crate) fn check_lookup(
        &mut self,
        name: &str,
        (uid, path): (u32, &[u32]),
        call: &CallCache,
        s: TaskStatus,
        m: u32,
    ) {
        let (Some(view), Some(_)) = (self.cache, self.report) else {
            return;
        };
        match view.observed.get(&(uid, path.to_vec())) {
            Some((key, calls)) => {
                if *calls > 1 {
                    self.violation(
                        "cache",
                        format!("`{name}`'s key was computed {calls} times in one run"),
                    );
                }
                if call.key.as_ref().is_some_and(|k| k != key) {
                    self.violation(
                        "value",
                        format!(
                            "`{name}`'s key function read {}, the model's inputs make {}",
                            key.show(),
                            call.key.as_ref().map_or(String::new(), MKey::show)
                        ),
                    );
                }
            }
            None if m > 0 || s == TaskStatus::Cached => self.violation(
                "cache",
                format!(
                    "`{name}` {} without looking its result up (its key function was never called)",
                    if m > 0 { "ran" } else { "is cached" }
                ),
            ),
            None => {}
        }
    }

    /// A call reported `Cached`: it must have been able to load its key, from a run
    /// that computed it, without an attempt.
    pub(crate) fn hit(&mut self, name: &str, call: Option<&CallCache>, a: u32, m: u32) {
        let Some(report) = self.report else {
            return;
        };
        if a != 0 || m != 0 {
            self.violation(
                "attempts",
                format!("`{name}` is cached, yet the report counts {a} attempts and the log {m}"),
            );
        }
        let from = report.get(name).and_then(|o| o.cached_from.clone());
        let (Some(call), Some(view)) = (call, self.cache) else {
            self.violation(
                "cache",
                format!("`{name}` is cached, but it is no cached call of a run that has a cache"),
            );
            return;
        };
        let Some(from) = from else {
            self.violation(
                "cache",
                format!("`{name}` is cached but names no run that computed its result"),
            );
            return;
        };
        let fine = call.from.contains(&from) || (call.any_new && !view.earlier.contains(&from));
        if !fine {
            let key = call.key.as_ref().map_or("?".to_owned(), MKey::show);
            let why = match call.fault {
                Some(f) => format!("its lookup had fault {f:?}"),
                None if call.from.is_empty() => format!(
                    "its key {key} was not usable in the cache at the start of the run and no other call with it ran in this run"
                ),
                None => format!("the runs that computed its key {key} are {:?}", call.from),
            };
            self.violation(
                "cache",
                format!("`{name}` is cached from run {from}, but {why}"),
            );
        } else if call.expect.as_ref() != Some(&from) {
            self.within_hits += 1;
        }
        // What it loaded: the value its key gives (a wrong row would be another).
        if let Some(key) = &call.key {
            let want = key_value(key);
            if !view.loaded.contains(&(want.v, want.idx)) {
                self.violation(
                    "value",
                    format!(
                        "`{name}` is cached, yet no result with the value its key {} gives was loaded",
                        key.show()
                    ),
                );
            }
        }
    }
}

/// The stats of one run's cache.
pub(crate) fn stats(view: &CacheView, within: u64) {
    bump("cached calls looked up", view.observed.len() as u64);
    bump("cached calls loaded within their run", within);
}

impl Case {
    /// Counts a fault that run `epoch` must warn of.
    pub(crate) fn must_warn(&self, epoch: u8) {
        *crate::case::lock(&self.warned).entry(epoch).or_default() += 1;
    }

    /// Logs a call of a key function.
    pub(crate) fn key_computed(&self, epoch: u8, uid: u32, path: &[u32], key: MKey) {
        let mut keys = crate::case::lock(&self.keys);
        let entry = keys.entry((epoch, uid, path.to_vec())).or_insert((key, 0));
        entry.1 += 1;
    }

    /// The calls' keys of run `e`.
    pub(crate) fn keys_of(&self, e: u8) -> HashMap<(u32, Vec<u32>), (MKey, u32)> {
        crate::case::lock(&self.keys)
            .iter()
            .filter(|((x, ..), _)| *x == e)
            .map(|((_, uid, path), k)| ((*uid, path.clone()), k.clone()))
            .collect()
    }

    /// Records that the store was asked for `hex` by a call whose key is `key`: one
    /// hex per key and one key per hex, else the library's keys are wrong.
    pub(crate) fn saw_hex(&self, hex: &str, key: &MKey) {
        let mut hexes = crate::case::lock(&self.hexes);
        let (by_hex, by_key) = &mut *hexes;
        if let Some(known) = by_hex.get(hex)
            && known != key
        {
            let message = format!(
                "two calls with different inputs ({} and {}) got one cache key",
                known.show(),
                key.show()
            );
            crate::case::lock(&self.violations).push(v("cache-key", message));
        }
        if let Some(known) = by_key.get(key)
            && known != hex
        {
            let message = format!(
                "two calls of {} with the same inputs got two cache keys",
                key.show()
            );
            crate::case::lock(&self.violations).push(v("cache-key", message));
        }
        by_hex.insert(hex.to_owned(), key.clone());
        by_key.insert(key.clone(), hex.to_owned());
    }

    pub(crate) fn key_of_hex(&self, hex: &str) -> Option<MKey> {
        crate::case::lock(&self.hexes).0.get(hex).cloned()
    }
}
