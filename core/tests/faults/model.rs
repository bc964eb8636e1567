//! The reference model: a sequential interpreter of a case's workflow and fault plan.
//!
//! It walks the graph in order, instance by instance (fan-out items, sub-workflows),
//! and for each node says which statuses (and attempt counts) are allowed given the
//! statuses its inputs ended with. Without a report it predicts (each node gets its
//! planned outcome); with one it judges, continuing from the *reported* statuses so a
//! divergence is reported where it starts. In a run that stops (cancel, fail-fast,
//! timeout, store failure) the outcome is open: each node may have finished as planned,
//! been cut short (no more retries), or be `Cancelled`; cleanup tasks whose required
//! inputs succeeded must still run.
//!
//! A cached call (`faults/cache.rs`) in a run that has a cache is `Cached` (no attempt,
//! loaded from the run named) when its key was in the cache table at the start of the
//! run and nothing broke its lookup; otherwise it runs like any task, and it may also
//! be `Cached` from this very run if another call with its key ran in it (the save may
//! or may not have been committed before its lookup: either is accepted).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use aqueduct::{Kind as AKind, TaskStatus};

use crate::cache::{CacheView, MKey};
use crate::case::Rec;
use crate::rng::mix;
use crate::spec::{Body, Fault, Kind, Node, Ref, Spec, TaskDef, body_uids, visit};

use TaskStatus::{
    Cached, Cancelled, Failed, Handled, NotTaken, Restored, Skipped, Succeeded, TimedOut,
};

/// Node instances a resume restores, by (uid, path of item indices), with their values.
pub(crate) type RestoredSet = HashMap<(u32, Vec<u32>), MV>;

/// What a task sees of an input that did not succeed.
pub(crate) const NOT_OK: u64 = 0x6e6f_745f_6f6b_2121;

pub(crate) fn node_value(uid: u32, inputs: &[u64]) -> u64 {
    inputs
        .iter()
        .fold(mix(0x7a5c_e11e, u64::from(uid)), |h, &x| mix(h, x))
}

pub(crate) fn child_value(v: u64, i: u32) -> u64 {
    mix(v ^ 0xc41d, u64::from(i) + 1)
}

pub(crate) fn many_hash(vs: impl ExactSizeIterator<Item = u64>) -> u64 {
    let n = vs.len() as u64;
    vs.fold(mix(0x3a11, n), mix)
}

/// A value as the model knows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct MVal {
    pub(crate) v: u64,
    pub(crate) idx: u32,
    pub(crate) items: Vec<MVal>,
}

pub(crate) fn tree(v: u64, idx: u32, count: u32, sub: u32) -> MVal {
    MVal {
        v,
        idx,
        items: (0..count)
            .map(|i| tree(child_value(v, i), i, sub, 0))
            .collect(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MV {
    One(MVal),
    Many(Vec<MVal>),
    /// A decision's: the arm it picked.
    Arm(u32),
    /// A `branch_option`'s.
    Opt(Option<MVal>),
}

impl MV {
    pub(crate) fn hash(&self) -> u64 {
        match self {
            MV::One(m) | MV::Opt(Some(m)) => m.v,
            MV::Many(vs) => many_hash(vs.iter().map(|m| m.v)),
            MV::Arm(a) => u64::from(*a),
            MV::Opt(None) => crate::branches::NONE,
        }
    }

    pub(crate) fn items(&self) -> Vec<MVal> {
        match self {
            MV::One(m) => m.items.clone(),
            MV::Many(vs) => vs.clone(),
            MV::Arm(_) | MV::Opt(_) => Vec::new(),
        }
    }
}

/// Whether attempt `attempt`, failing with `fault`, is retried: the contract of
/// `RetryPolicy::retries_after` (timeouts are transient; panics only with
/// `retry_panics`; permanent errors never).
pub(crate) fn retriable(def: &TaskDef, attempt: u32, fault: Fault) -> bool {
    attempt <= def.retries
        && match fault {
            Fault::Transient | Fault::Timeout => true,
            Fault::Panic => def.retry_panics,
            Fault::Permanent | Fault::SerPanic | Fault::OutOfRange => false,
        }
}

/// The status a plan of attempts ends in.
pub(crate) fn final_status(steps: &[Option<Fault>]) -> TaskStatus {
    match steps.last() {
        Some(None) | None => Succeeded,
        Some(Some(Fault::Timeout)) => TimedOut,
        Some(Some(_)) => Failed,
    }
}

/// How a node instance ended, as far as its consumers care.
#[derive(Clone, Debug)]
pub(crate) struct Res {
    pub(crate) status: TaskStatus,
    pub(crate) value: Option<MV>,
    /// Its error is a timeout (a sub-workflow passes its output's error on).
    pub(crate) timeout: bool,
    /// It failed, and a decision that read its outcome succeeded: the failure is
    /// handled (no failure of the run or of its fan-out's item).
    pub(crate) handled: bool,
}

impl Res {
    fn ok(value: MV) -> Self {
        Self {
            status: Succeeded,
            value: Some(value),
            timeout: false,
            handled: false,
        }
    }

    pub(crate) fn not_ok(status: TaskStatus) -> Self {
        Self {
            status,
            value: None,
            timeout: false,
            handled: false,
        }
    }

    /// A failure that counts (not handled).
    fn failed(&self) -> bool {
        matches!(self.status, Failed | TimedOut) && !self.handled
    }
}

pub(crate) fn is_ok(s: TaskStatus) -> bool {
    matches!(s, Succeeded | Restored | Cached)
}

pub(crate) fn is_bad(s: TaskStatus) -> bool {
    matches!(s, Failed | TimedOut | Skipped)
}

/// What a report says of one node.
#[derive(Clone, Debug)]
pub(crate) struct Obs {
    pub(crate) status: TaskStatus,
    pub(crate) attempts: u32,
    pub(crate) kind: AKind,
    /// `TaskReport::cached_from`.
    pub(crate) cached_from: Option<String>,
}

#[derive(Clone, Copy, Default)]
struct ItemCtx {
    /// Some task of this item made an attempt.
    started: bool,
}

struct Naming {
    prefix: String,
    suffix: String,
    /// The prefix of its checkpoints' names (`f3[2].s5.`).
    cp: String,
}

impl Naming {
    fn name(&self, base: &str) -> String {
        format!("{}{base}{}", self.prefix, self.suffix)
    }
}

pub(crate) struct Walker<'a> {
    pub(crate) spec: &'a Spec,
    pub(crate) epoch: u8,
    /// The run may have stopped: outcomes are open.
    pub(crate) open: bool,
    /// The stop may have been hard: cleanup tasks may be cancelled too.
    pub(crate) hard: bool,
    pub(crate) report: Option<&'a HashMap<String, Obs>>,
    pub(crate) log: &'a HashMap<(u32, Vec<u32>), Vec<Rec>>,
    /// Node instances restored from checkpoints (top-level nodes, and the nodes of
    /// fan-outs' items and sub-workflows checkpointed item by item), with their values.
    pub(crate) restored: &'a RestoredSet,
    /// (class, message).
    pub(crate) violations: Vec<(String, String)>,
    /// Every instance name visited that must be in the report.
    pub(crate) visited: Vec<String>,
    /// Instances that may be absent from the report (items of cancelled fan-outs).
    pub(crate) optional: HashSet<String>,
    /// As `Error::Failed` lists them.
    pub(crate) failures: Vec<String>,
    pub(crate) top_skipped: Vec<String>,
    /// Top-level nodes: status and (if it succeeded) value.
    pub(crate) top: HashMap<u32, (TaskStatus, Option<MV>)>,
    /// Nodes checkpointed item by item, per instance visited: checkpoint name, uid,
    /// status and (if it succeeded) value.
    pub(crate) items: Vec<(String, u32, TaskStatus, Option<MV>)>,
    /// Every task instance visited: (uid, path).
    pub(crate) instances: Vec<(u32, Vec<u32>)>,
    /// The failures that stop a fail-fast run: not those of a node whose outcome a
    /// decision reads (`handled_by`), handled or not.
    pub(crate) stopping: Vec<String>,
    /// Nodes whose outcome a decision reads.
    pub(crate) handled_by: HashSet<u32>,
    /// Instances the report says are `Handled`, until their decision confirms it.
    pub(crate) handled_seen: HashSet<String>,
    /// The decision of the arm the node being judged is in: a required input.
    arm_gate: Option<Res>,
    /// The body of the item (or sub-workflow) the node being judged is in (`None` at
    /// the top level).
    item: Option<&'a Body>,
    cancelled_seen: usize,
    /// The run reported fused fan-outs' items only where they did not succeed
    /// (`Runner::item_rows(false)`).
    pub(crate) summary: bool,
    /// The run's cache, if it has one (a durable run, or an in-memory run given
    /// `Runner::cache`), as the model reads it.
    pub(crate) cache: Option<&'a CacheView>,
    /// Every cached call visited that got past its inputs: uid, path, key (if known),
    /// reported status.
    pub(crate) cached_calls: Vec<(u32, Vec<u32>, Option<MKey>, TaskStatus)>,
    /// `Cached` calls that loaded what this run computed.
    pub(crate) within_hits: u64,
}

impl<'a> Walker<'a> {
    pub(crate) fn new(
        spec: &'a Spec,
        epoch: u8,
        open: bool,
        report: Option<&'a HashMap<String, Obs>>,
        log: &'a HashMap<(u32, Vec<u32>), Vec<Rec>>,
        restored: &'a RestoredSet,
    ) -> Self {
        let mut handled_by = HashSet::new();
        visit(&spec.top, &mut |n, _| {
            if let Kind::Decide { inputs, .. } = &n.kind {
                for i in inputs.iter().filter(|i| i.tolerant) {
                    if let Ref::Node(u) = i.from {
                        handled_by.insert(u);
                    }
                }
            }
        });
        Self {
            spec,
            epoch,
            open,
            hard: false,
            report,
            log,
            restored,
            violations: Vec::new(),
            visited: Vec::new(),
            optional: HashSet::new(),
            failures: Vec::new(),
            top_skipped: Vec::new(),
            top: HashMap::new(),
            items: Vec::new(),
            instances: Vec::new(),
            stopping: Vec::new(),
            handled_by,
            handled_seen: HashSet::new(),
            arm_gate: None,
            item: None,
            cancelled_seen: 0,
            summary: false,
            cache: None,
            cached_calls: Vec::new(),
            within_hits: 0,
        }
    }

    pub(crate) fn violation(&mut self, class: &str, message: String) {
        self.violations.push((class.to_owned(), message));
    }

    /// Walks the whole workflow; returns how its output ended.
    pub(crate) fn walk(&mut self, p0: MVal, p1: MVal) -> Res {
        let params = [Res::ok(MV::One(p0)), Res::ok(MV::One(p1))];
        let naming = Naming {
            prefix: String::new(),
            suffix: String::new(),
            cp: String::new(),
        };
        let spec = self.spec;
        let top = ItemCtx { started: true };
        let mut res = self.body(&spec.top, &params, &naming, &[], true, top);
        let mut left: Vec<String> = self.handled_seen.drain().collect();
        left.sort();
        for name in left {
            self.violation(
                "status",
                format!(
                    "`{name}` is reported handled, but no decision that reads its outcome succeeded"
                ),
            );
        }
        res.remove(&spec.top.tail).expect("the output is a node")
    }

    /// The planned attempts of an instance: each attempt's fault, until one succeeds or
    /// is not retried.
    pub(crate) fn plan(
        &self,
        def: &TaskDef,
        uid: u32,
        path: &[u32],
        top: bool,
    ) -> Vec<Option<Fault>> {
        let mut steps = Vec::new();
        for attempt in 1.. {
            let fault = self
                .spec
                .fault(self.epoch, uid, path, attempt)
                .filter(|f| *f != Fault::SerPanic || (self.spec.durable && top));
            steps.push(fault);
            match fault {
                None => break,
                Some(f) if !retriable(def, attempt, f) => break,
                Some(_) => {}
            }
        }
        steps
    }

    pub(crate) fn recs(&self, uid: u32, path: &[u32]) -> &'a [Rec] {
        self.log
            .get(&(uid, path.to_vec()))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether any task inside `body` made an attempt in the instance at `prefix`.
    pub(crate) fn ran_inside(&self, uids: &HashSet<u32>, prefix: &[u32]) -> bool {
        self.log
            .iter()
            .any(|((u, p), recs)| uids.contains(u) && p.starts_with(prefix) && !recs.is_empty())
    }

    fn peek(&self, name: &str) -> Option<TaskStatus> {
        self.report.and_then(|r| r.get(name)).map(|o| o.status)
    }

    /// What the report says of `name` (the prediction without a report).
    pub(crate) fn observe(
        &mut self,
        name: &str,
        kind: AKind,
        predicted: (TaskStatus, u32),
    ) -> (TaskStatus, u32) {
        self.visited.push(name.to_owned());
        let observed = match self.report {
            None => predicted,
            Some(report) => match report.get(name) {
                Some(o) => {
                    if o.kind != kind {
                        self.violation(
                            "report",
                            format!("`{name}` is reported as kind {:?}, it is {kind:?}", o.kind),
                        );
                    }
                    (o.status, o.attempts)
                }
                None => {
                    // Reported by the caller (missing names); go on as if cancelled.
                    (Cancelled, 0)
                }
            },
        };
        if observed.0 == Cancelled {
            self.cancelled_seen += 1;
        }
        observed
    }

    fn body(
        &mut self,
        body: &'a Body,
        params: &[Res],
        naming: &Naming,
        path: &[u32],
        top: bool,
        ictx: ItemCtx,
    ) -> HashMap<u32, Res> {
        let mut res: HashMap<u32, Res> = HashMap::new();
        for node in &body.nodes {
            let get = |res: &HashMap<u32, Res>, r: &Ref| match r {
                Ref::Param(k) => params[*k as usize].clone(),
                Ref::Node(u) => res[u].clone(),
            };
            let name = naming.name(&node.name());
            if crate::branches::not_taken(node, &res) {
                let r = self.untaken(node, &name, path);
                res.insert(node.uid, r);
                continue;
            }
            self.arm_gate = node.arm.map(|(d, _)| res[&d].clone());
            self.item = (!top).then_some(body);
            let r = match &node.kind {
                Kind::Decide { inputs, arms, rule } => {
                    let ins: Vec<(Res, bool)> = inputs
                        .iter()
                        .map(|i| (get(&res, &i.from), i.tolerant))
                        .collect();
                    self.decide(node, &ins, *arms, *rule, &name, path)
                }
                Kind::Branch {
                    decision,
                    tails,
                    option,
                } => {
                    let d = res[decision].clone();
                    let ts: Vec<Option<Res>> =
                        tails.iter().map(|t| t.map(|t| res[&t].clone())).collect();
                    self.branch(node, &d, &ts, *option, &name, path)
                }
                Kind::Task {
                    task,
                    inputs,
                    count,
                    sub,
                    ..
                } => {
                    let ins: Vec<(Res, bool)> = inputs
                        .iter()
                        .map(|i| (get(&res, &i.from), i.tolerant))
                        .collect();
                    self.task(node, *task, &ins, (*count, *sub), &name, path, top, ictx)
                }
                Kind::FanOut {
                    collection,
                    imports,
                    body: inner,
                    ..
                } => {
                    let coll = get(&res, collection);
                    let imps: Vec<Res> = imports.iter().map(|r| get(&res, r)).collect();
                    self.fan_out(node, coll, imps, inner, &name, naming, path)
                }
                Kind::Subflow { args, body: inner } => {
                    let args: Vec<Res> = args.iter().map(|r| get(&res, r)).collect();
                    self.subflow(node, args, inner, &name, naming, path)
                }
            };
            self.arm_gate = None;
            if top {
                if r.status == Skipped {
                    self.top_skipped.push(name.clone());
                }
                self.top.insert(node.uid, (r.status, r.value.clone()));
            } else if self.spec.checkpointed(node, false) {
                let cp = format!("{}{}", naming.cp, node.name());
                self.items.push((cp, node.uid, r.status, r.value.clone()));
            }
            res.insert(node.uid, r);
            self.settle_handled(node, &mut res, &|n| naming.name(&n.name()), body);
        }
        res
    }

    /// A node instance the resume restores: it must be `Restored` and not run.
    pub(crate) fn restored_node(
        &mut self,
        node: &Node,
        kind: AKind,
        name: &str,
        path: &[u32],
        inside: Option<&HashSet<u32>>,
    ) -> Option<Res> {
        let value = self.restored.get(&(node.uid, path.to_vec()))?.clone();
        let (s, a) = self.observe(name, kind, (Restored, 0));
        // An item restores its nodes as it starts: one that never started (the run
        // stopped first, a capped fan-out's item still waiting) has them cancelled.
        let item_started = self
            .item
            .is_some_and(|uids| self.ran_inside(&body_uids(uids), path));
        if self.open && self.item.is_some() && !item_started && s == Cancelled && a == 0 {
            return Some(Res::not_ok(Cancelled));
        }
        if s != Restored || a != 0 {
            self.violation(
                "restore",
                format!("`{name}` has a checkpoint and every input it reads is restored, so it is restored; the report says {s} ({a} attempts)"),
            );
        }
        let ran = !self.recs(node.uid, path).is_empty()
            || inside.is_some_and(|uids| self.ran_inside(uids, path));
        if ran {
            self.violation(
                "restore",
                format!("`{name}` was restored, yet it ran again"),
            );
        }
        Some(Res {
            status: Restored,
            value: Some(value),
            timeout: false,
            handled: false,
        })
    }

    /// The statuses a node must have when its inputs did not all succeed (it never
    /// runs), or `None` if it can run.
    pub(crate) fn blocked(&self, ins: &[(Res, bool)]) -> Option<&'static [TaskStatus]> {
        // The decision of its arm is one more required input.
        let gate = self.arm_gate.iter().map(|r| (r, false));
        let all: Vec<(&Res, bool)> = ins.iter().map(|(r, t)| (r, *t)).chain(gate).collect();
        let req_bad = all.iter().any(|(r, t)| !t && is_bad(r.status));
        let any_cancel = all.iter().any(|(r, _)| r.status == Cancelled);
        let req_cancel = all.iter().any(|(r, t)| !t && r.status == Cancelled);
        let req_not_taken = all.iter().any(|(r, t)| !t && r.status == NotTaken);
        match (req_bad, any_cancel, req_cancel) {
            (true, false, _) => Some(&[Skipped]),
            (true, true, _) => Some(&[Skipped, Cancelled]),
            _ if req_not_taken => Some(&[NotTaken]),
            (false, _, true) => Some(&[Cancelled]),
            _ => None,
        }
    }

    pub(crate) fn describe(ins: &[(Res, bool)]) -> String {
        let parts: Vec<String> = ins
            .iter()
            .map(|(r, t)| format!("{}{}", if *t { "~" } else { "" }, r.status))
            .collect();
        parts.join(", ")
    }

    #[allow(clippy::too_many_arguments)]
    fn task(
        &mut self,
        node: &Node,
        t: usize,
        ins: &[(Res, bool)],
        (count, sub): (u32, u32),
        name: &str,
        path: &[u32],
        top: bool,
        ictx: ItemCtx,
    ) -> Res {
        let uid = node.uid;
        let def = &self.spec.tasks[t];
        let kind = if def.io { AKind::Io } else { AKind::Cpu };
        if let Some(res) = self.restored_node(node, kind, name, path, None) {
            return res;
        }
        let recs = self.recs(uid, path);
        let m = recs.len() as u32;
        if let Some(allowed) = self.blocked(ins) {
            let (s, a) = self.observe(name, kind, (allowed[0], 0));
            if !allowed.contains(&s) {
                self.violation(
                    "status",
                    format!(
                        "`{name}`: its inputs ended {}, so it is {allowed:?}; the report says {s}",
                        Self::describe(ins)
                    ),
                );
            }
            if a != 0 || m != 0 {
                self.violation(
                    "attempts",
                    format!("`{name}` cannot run (inputs {}), yet the report counts {a} attempts and the log {m}", Self::describe(ins)),
                );
            }
            return Res::not_ok(s);
        }
        let steps = self.plan(def, uid, path, top);
        let k = steps.len() as u32;
        let planned = final_status(&steps);
        // The value it computes (or loads) from its inputs' values as the model has them.
        let hashes: Option<Vec<u64>> = ins
            .iter()
            .map(|(r, _)| {
                if is_ok(r.status) {
                    r.value.as_ref().map(MV::hash)
                } else {
                    Some(NOT_OK)
                }
            })
            .collect();
        let v = hashes.map(|h| node_value(self.spec.value_seed(uid, t), &h));
        let idx = path.last().copied().unwrap_or(0);
        let call = match self.cache {
            Some(view) if self.spec.cached_call(node) => {
                Some(self.cache_call(view, uid, t, ins, (count, sub), path))
            }
            _ => None,
        };
        let expect = call.as_ref().and_then(|c| c.expect.clone());
        let predicted = if expect.is_some() {
            (Cached, 0)
        } else {
            (planned, k)
        };
        let (s, a) = self.observe(name, kind, predicted);
        if let Some(call) = &call {
            self.check_lookup(name, (uid, path), call, s, m);
            self.cached_calls
                .push((uid, path.to_vec(), call.key.clone(), s));
        }
        if s == Cached {
            self.hit(name, call.as_ref(), a, m);
            self.instances.push((uid, path.to_vec()));
            return Res {
                status: Cached,
                value: v.map(|v| MV::One(tree(v, idx, count, sub))),
                timeout: false,
                handled: false,
            };
        }
        if let Some(run) = &expect
            && !(self.open && s == Cancelled)
        {
            let fault = call.as_ref().and_then(|c| c.fault);
            self.violation(
                "cache",
                format!(
                    "`{name}`: its key was in the cache (computed by run {run}) and nothing broke its lookup ({fault:?}), \
                     so it is cached{}; the report says {s} after {a} attempts",
                    if self.open { " or cancelled" } else { "" }
                ),
            );
        }
        // Handled: failed, and a decision reading its outcome succeeded (checked there).
        let s = if s == Handled {
            self.handled_seen.insert(name.to_owned());
            match steps.get(a.max(1) as usize - 1) {
                Some(Some(Fault::Timeout)) => TimedOut,
                _ => Failed,
            }
        } else {
            s
        };
        let fault_at = |n: u32| steps.get(n as usize - 1).copied();
        if self.open {
            // A cleanup task runs after a soft stop, unless its item never started (a
            // capped fan-out's item still waiting when the run stopped).
            let cleanup = def.mask != 0;
            let may_cancel = !cleanup || !ictx.started || self.hard;
            // It ends as planned (its last planned attempt) or is cancelled: a retry
            // only the stop prevented is `Cancelled`, and so is a CPU attempt that
            // returned after `cancelled()` told it to stop (its value is discarded).
            let fine = match s {
                Succeeded => a == m && m >= 1 && fault_at(m) == Some(None),
                Failed => {
                    a == m && m == k && matches!(fault_at(m), Some(Some(f)) if f != Fault::Timeout)
                }
                TimedOut => a == m && m == k && fault_at(m) == Some(Some(Fault::Timeout)),
                Cancelled => may_cancel,
                _ => false,
            };
            if s == Cancelled && a > m {
                self.violation(
                    "attempts",
                    format!("`{name}` is cancelled with {a} attempts reported, but only {m} ever started (an attempt that never ran is counted)"),
                );
            }
            if !fine {
                let why = if s == Cancelled && !may_cancel {
                    " (a cleanup task whose required inputs succeeded still runs when the run stops)"
                } else {
                    ""
                };
                self.violation(
                    "status",
                    format!(
                        "`{name}` (inputs {}): reported {s} after {a} attempts, the log has {m}; the plan is {steps:?}, \
                         so it may end after any planned attempt or be cancelled{why}",
                        Self::describe(ins)
                    ),
                );
            }
        } else {
            if (s, a) != (planned, k) {
                self.violation(
                    "status",
                    format!("`{name}` (inputs {}): expected {planned} after {k} attempts ({steps:?}), the report says {s} after {a}", Self::describe(ins)),
                );
            } else if m != a {
                self.violation(
                    "attempts",
                    format!("`{name}`: the report counts {a} attempts, the tasks logged {m}"),
                );
            }
        }
        // Every attempt computed its value from what it read: compare with the model's
        // value from the inputs' reported statuses.
        if let Some(v) = v {
            for rec in recs {
                if rec.v != v {
                    self.violation(
                        "value",
                        format!("`{name}` attempt {} read inputs whose hash is not what the model computes from its inputs ({})", rec.attempt, Self::describe(ins)),
                    );
                    break;
                }
            }
        }
        if matches!(s, Failed | TimedOut) {
            self.failures.push(name.to_owned());
            if !self.handled_by.contains(&uid) {
                self.stopping.push(name.to_owned());
            }
        }
        self.instances.push((uid, path.to_vec()));
        Res {
            status: s,
            value: v
                .filter(|_| is_ok(s))
                .map(|v| MV::One(tree(v, idx, count, sub))),
            timeout: s == TimedOut,
            handled: false,
        }
    }

    /// Checks that an instance inside a node that never ran made no attempt.
    fn none_inside(&mut self, uids: &HashSet<u32>, prefix: &[u32], name: &str) {
        if self.ran_inside(uids, prefix) {
            self.violation(
                "attempts",
                format!("a task inside `{name}` ran, but `{name}` never started"),
            );
        }
    }

    /// Whether the items' first-level nodes are in the report: all, none or some.
    fn presence(&self, body: &Body, naming: &Naming) -> (usize, usize) {
        let Some(report) = self.report else {
            return (body.nodes.len(), body.nodes.len());
        };
        let present = body
            .nodes
            .iter()
            .filter(|n| report.contains_key(&naming.name(&n.name())))
            .count();
        (present, body.nodes.len())
    }

    /// Marks every instance name inside an absent item as optional.
    fn mark_optional(&mut self, body: &Body, naming: &Naming) {
        for n in &body.nodes {
            self.optional.insert(naming.name(&n.name()));
            // Deeper items cannot be reported if their container is not.
        }
    }

    /// A fan-out or sub-workflow that does not run its body: restored from a
    /// checkpoint (top level), or kept from starting by its inputs (`ins`, all
    /// required). `None` if it runs.
    #[allow(clippy::too_many_arguments)]
    fn unentered(
        &mut self,
        node: &Node,
        kind: AKind,
        ins: &[Res],
        name: &str,
        uids: &HashSet<u32>,
        path: &[u32],
    ) -> Option<Res> {
        if let Some(res) = self.restored_node(node, kind, name, path, Some(uids)) {
            return Some(res);
        }
        let ins: Vec<(Res, bool)> = ins.iter().cloned().map(|r| (r, false)).collect();
        let allowed = self.blocked(&ins)?;
        let (s, _) = self.observe(name, kind, (allowed[0], 0));
        if !allowed.contains(&s) {
            let what = if kind == AKind::FanOut {
                "fan-out"
            } else {
                "sub-workflow"
            };
            self.violation("status", format!("{what} `{name}`: its inputs ended {}, so it is {allowed:?}; the report says {s}", Self::describe(&ins)));
        }
        self.none_inside(uids, path, name);
        Some(Res::not_ok(s))
    }

    #[allow(clippy::too_many_arguments)]
    fn fan_out(
        &mut self,
        node: &Node,
        coll: Res,
        imps: Vec<Res>,
        inner: &'a Body,
        name: &str,
        naming: &Naming,
        path: &[u32],
    ) -> Res {
        let uids = body_uids(inner);
        let ins: Vec<Res> = std::iter::once(coll.clone())
            .chain(imps.iter().cloned())
            .collect();
        if let Some(res) = self.unentered(node, AKind::FanOut, &ins, name, &uids, path) {
            return res;
        }
        let items = coll.value.as_ref().map(MV::items).unwrap_or_default();
        let container_cancelled = self.peek(name) == Some(Cancelled);
        let at = self.visited.len();
        let (before_fail, before_cancel) = (self.failures.len(), self.cancelled_seen);
        let mut tails = Vec::new();
        let mut all_present = true;
        let mut item_failed = false;
        for (i, item) in items.iter().enumerate() {
            let mut ipath = path.to_vec();
            ipath.push(i as u32);
            let inaming = Naming {
                prefix: naming.prefix.clone(),
                suffix: format!("{}[{i}]", naming.suffix),
                cp: format!("{}{}[{i}].", naming.cp, node.name()),
            };
            let (present, of) = self.presence(inner, &inaming);
            if present == 0
                && of > 0
                && self.summary
                && fused(self.spec, node, self.cache.is_some())
            {
                // A fused fan-out's item without rows succeeded, or (after a stop) never
                // started: walk it as predicted, without the report.
                let started = self.ran_inside(&uids, &ipath);
                let saved = (
                    self.visited.len(),
                    self.failures.len(),
                    self.violations.len(),
                    self.cancelled_seen,
                    self.instances.len(),
                );
                let report = self.report.take();
                let mut params = vec![Res::ok(MV::One(item.clone()))];
                params.extend(imps.iter().cloned());
                let mut res =
                    self.body(inner, &params, &inaming, &ipath, false, ItemCtx { started });
                self.report = report;
                self.visited.truncate(saved.0);
                if res.values().all(|r| r.status == Succeeded) && self.violations.len() == saved.2 {
                    tails.push(res.remove(&inner.tail));
                    continue;
                }
                self.failures.truncate(saved.1);
                self.violations.truncate(saved.2);
                self.cancelled_seen = saved.3;
                self.instances.truncate(saved.4);
                all_present = false;
                tails.push(None);
                self.mark_optional(inner, &inaming);
                if !self.open || started {
                    self.violation(
                        "report",
                        format!(
                            "item {i} of fused fan-out `{name}` has no rows, yet it did not succeed"
                        ),
                    );
                }
                continue;
            }
            if present == 0 && of > 0 {
                all_present = false;
                tails.push(None);
                self.mark_optional(inner, &inaming);
                if !(self.open && container_cancelled) {
                    self.violation(
                        "report",
                        format!("item {i} of fan-out `{name}` is missing from the report"),
                    );
                }
                if self.ran_inside(&uids, &ipath) {
                    self.violation(
                        "report",
                        format!(
                            "item {i} of fan-out `{name}` ran tasks but is missing from the report"
                        ),
                    );
                }
                continue;
            }
            if present < of {
                self.violation("report", format!("item {i} of fan-out `{name}`: only {present} of its {of} nodes are in the report"));
            }
            let mut params = vec![Res::ok(MV::One(item.clone()))];
            params.extend(imps.iter().cloned());
            let ictx = ItemCtx {
                started: self.ran_inside(&uids, &ipath),
            };
            let mut res = self.body(inner, &params, &inaming, &ipath, false, ictx);
            item_failed |= res.values().any(Res::failed);
            tails.push(res.remove(&inner.tail));
        }
        let inner_cancelled = self.cancelled_seen > before_cancel;
        let all_ok = all_present
            && tails
                .iter()
                .all(|t| t.as_ref().is_some_and(|t| is_ok(t.status)));
        // A fan-out whose items did not all succeed: `Failed` if a task of an item
        // failed (even if the run stopped: that failure may be why), else `Cancelled`.
        let allowed: &[TaskStatus] = if all_ok && self.open && items.is_empty() {
            // No item to run: it may still not start, after a stop.
            &[Succeeded, Cancelled]
        } else if all_ok {
            &[Succeeded]
        } else if item_failed {
            &[Failed]
        } else if !all_present || inner_cancelled || self.open {
            &[Cancelled]
        } else {
            &[Failed]
        };
        // The fan-out's own line comes before its items'.
        let (s, _) = self.observe(name, AKind::FanOut, (allowed[0], 1));
        let own = self.visited.pop().expect("just pushed");
        self.visited.insert(at, own);
        if !allowed.contains(&s) {
            self.violation(
                "status",
                format!(
                    "fan-out `{name}` of {} items: {} so it is {allowed:?}; the report says {s}",
                    items.len(),
                    if all_ok {
                        "every item succeeded"
                    } else if item_failed {
                        "a task of an item failed"
                    } else {
                        "some item did not finish"
                    }
                ),
            );
        }
        if matches!(s, Failed | TimedOut) && self.failures.len() == before_fail {
            self.failures.push(name.to_owned());
        }
        if matches!(s, Failed | TimedOut) {
            self.stopping.push(name.to_owned());
        }
        let value = (s == Succeeded && all_ok).then(|| {
            MV::Many(
                tails
                    .iter()
                    .map(|t| match t.as_ref().and_then(|t| t.value.clone()) {
                        Some(MV::One(m)) => m,
                        _ => MVal {
                            v: NOT_OK,
                            idx: 0,
                            items: Vec::new(),
                        },
                    })
                    .collect(),
            )
        });
        Res {
            status: s,
            value,
            timeout: false,
            handled: false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn subflow(
        &mut self,
        node: &Node,
        args: Vec<Res>,
        inner: &'a Body,
        name: &str,
        naming: &Naming,
        path: &[u32],
    ) -> Res {
        let uids = body_uids(inner);
        if let Some(res) = self.unentered(node, AKind::Workflow, &args, name, &uids, path) {
            return res;
        }
        let container_cancelled = self.peek(name) == Some(Cancelled);
        let inaming = Naming {
            prefix: format!("{}{}.", naming.prefix, node.name()),
            suffix: naming.suffix.clone(),
            cp: format!("{}{}.", naming.cp, node.name()),
        };
        let at = self.visited.len();
        let (before_fail, before_cancel) = (self.failures.len(), self.cancelled_seen);
        let (present, of) = self.presence(inner, &inaming);
        let mut inner_failed = false;
        let tail = if present == 0 && of > 0 {
            self.mark_optional(inner, &inaming);
            if !(self.open && container_cancelled) {
                self.violation(
                    "report",
                    format!("the tasks of sub-workflow `{name}` are missing from the report"),
                );
            }
            if self.ran_inside(&uids, path) {
                self.violation(
                    "report",
                    format!("sub-workflow `{name}` ran tasks but they are missing from the report"),
                );
            }
            None
        } else {
            if present < of {
                self.violation(
                    "report",
                    format!(
                        "sub-workflow `{name}`: only {present} of its {of} nodes are in the report"
                    ),
                );
            }
            let ictx = ItemCtx {
                started: self.ran_inside(&uids, path),
            };
            let mut res = self.body(inner, &args, &inaming, path, false, ictx);
            inner_failed = res.values().any(Res::failed);
            res.remove(&inner.tail)
        };
        let inner_cancelled = self.cancelled_seen > before_cancel;
        // As a fan-out of one item: the output's error if a task inside failed, else
        // (the run stopped) `Cancelled`.
        let allowed: Vec<TaskStatus> = match &tail {
            Some(t) if is_ok(t.status) => vec![Succeeded],
            Some(t) if inner_failed => vec![if t.timeout { TimedOut } else { Failed }],
            None if inner_failed => vec![Failed],
            _ if inner_cancelled || tail.is_none() || self.open => vec![Cancelled],
            _ => vec![Failed],
        };
        let (s, _) = self.observe(name, AKind::Workflow, (allowed[0], 1));
        let own = self.visited.pop().expect("just pushed");
        self.visited.insert(at, own);
        if !allowed.contains(&s) {
            self.violation(
                "status",
                format!(
                    "sub-workflow `{name}`: its output ended {}, so it is {allowed:?}; the report says {s}",
                    tail.as_ref().map_or("absent".to_owned(), |t| t.status.to_string())
                ),
            );
        }
        if matches!(s, Failed | TimedOut) && self.failures.len() == before_fail {
            self.failures.push(name.to_owned());
        }
        if matches!(s, Failed | TimedOut) {
            self.stopping.push(name.to_owned());
        }
        let value = tail
            .as_ref()
            .filter(|_| s == Succeeded)
            .and_then(|t| t.value.clone());
        Res {
            status: s,
            value,
            timeout: s == TimedOut,
            handled: false,
        }
    }
}

/// Renders a model value for a message.
pub(crate) fn show(m: &MVal) -> String {
    let mut out = format!("{:x}", m.v & 0xffff_ffff);
    if !m.items.is_empty() {
        out.push('[');
        for (i, item) in m.items.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let _ = write!(out, "{}", show(item));
        }
        out.push(']');
    }
    out
}

/// Whether the executor runs fan-out `node`'s items fused: it is not capped and its body
/// is CPU tasks only, each with one attempt, no timeout and no concurrency limit.
/// A body with a node checkpointed item by item is never fused, nor one with a cached
/// call in a run that has a cache (`cache`): its lookups are store work.
pub(crate) fn fused(spec: &Spec, node: &Node, cache: bool) -> bool {
    match &node.kind {
        Kind::FanOut {
            cap: None, body, ..
        } => body.nodes.iter().all(|n| match &n.kind {
            _ if spec.checkpointed(n, false) => false,
            _ if cache && spec.cached_call(n) => false,
            Kind::Task { task, .. } => {
                let t = &spec.tasks[*task];
                !t.io && t.retries == 0 && t.timeout_ms.is_none() && t.concurrency.is_none()
            }
            _ => false,
        }),
        _ => false,
    }
}
