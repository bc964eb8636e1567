//! Shrinking: a failing case is its seed plus a list of edits (remove a node, a fault,
//! a stop, a run...), each kept if the case still fails the same way. The edits are
//! text, so `seed:edit,edit` reproduces the minimal case exactly.

use std::collections::HashSet;

use crate::generate::{generate, sync_moves, sync_tolerance};
use crate::spec::{Body, Fault, FaultKey, Gates, Kind, Ref, Spec, visit};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Drop run `e` (not the first).
    DropRun(usize),
    NoFailFast(usize),
    NoCancel(usize),
    NoTimeout(usize),
    NoStoreFault(usize),
    NoCrash(usize),
    NoKill(usize),
    NoGrace(usize),
    /// Remove node `uid` and what cannot exist without it.
    Remove(u32),
    /// Remove one fault (by position in the plan).
    NoFault(u8, u32, Vec<u32>, u32),
    NoRetries(usize),
    NoTaskTimeout(usize),
    NoConcurrency(usize),
    NoTolerance(usize),
    NoCap(u32),
    /// Halve the children of task `uid` (or of parameter `p0`/`p1` with uid 0/1 + 1<<31).
    FewerItems(u32),
    NoWork(u32),
    /// Stop checkpointing body node `uid` item by item.
    NoCheckpoint(u32),
    /// Remove one cache fault (run, uid, path).
    NoCacheFault(u8, u32, Vec<u32>),
    /// No `save_cached` fault in run `e`.
    NoCacheSave(usize),
    /// No table edit before run `e`.
    NoEdit(usize),
    /// Task `t` is not cached.
    Uncache(usize),
    /// Node `uid` is not registered with `Builder::cache`.
    Bare(u32),
    /// A durable case keeps its cache in its own store.
    NoApart,
}

impl Op {
    pub(crate) fn text(&self) -> String {
        match self {
            Op::DropRun(e) => format!("dr{e}"),
            Op::NoFailFast(e) => format!("ff{e}"),
            Op::NoCancel(e) => format!("cc{e}"),
            Op::NoTimeout(e) => format!("to{e}"),
            Op::NoStoreFault(e) => format!("sf{e}"),
            Op::NoCrash(e) => format!("cr{e}"),
            Op::NoKill(e) => format!("ki{e}"),
            Op::NoGrace(e) => format!("gr{e}"),
            Op::Remove(u) => format!("rm{u}"),
            Op::NoFault(e, u, p, a) => {
                let p: Vec<String> = p.iter().map(u32::to_string).collect();
                format!("nf{e}.{u}.{}.{a}", p.join("_"))
            }
            Op::NoRetries(t) => format!("nr{t}"),
            Op::NoTaskTimeout(t) => format!("nt{t}"),
            Op::NoConcurrency(t) => format!("nc{t}"),
            Op::NoTolerance(t) => format!("nm{t}"),
            Op::NoCap(u) => format!("ca{u}"),
            Op::FewerItems(u) => format!("fi{u}"),
            Op::NoWork(u) => format!("nw{u}"),
            Op::NoCheckpoint(u) => format!("nk{u}"),
            Op::NoCacheFault(e, u, p) => {
                let p: Vec<String> = p.iter().map(u32::to_string).collect();
                format!("nq{e}.{u}.{}", p.join("_"))
            }
            Op::NoCacheSave(e) => format!("ns{e}"),
            Op::NoEdit(e) => format!("ne{e}"),
            Op::Uncache(t) => format!("nu{t}"),
            Op::Bare(u) => format!("nb{u}"),
            Op::NoApart => "na0".to_owned(),
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Op> {
        let (tag, rest) = text.split_at_checked(2)?;
        let n = || rest.parse::<u32>().ok();
        Some(match tag {
            "dr" => Op::DropRun(n()? as usize),
            "ff" => Op::NoFailFast(n()? as usize),
            "cc" => Op::NoCancel(n()? as usize),
            "to" => Op::NoTimeout(n()? as usize),
            "sf" => Op::NoStoreFault(n()? as usize),
            "cr" => Op::NoCrash(n()? as usize),
            "ki" => Op::NoKill(n()? as usize),
            "gr" => Op::NoGrace(n()? as usize),
            "rm" => Op::Remove(n()?),
            "nf" => {
                let parts: Vec<&str> = rest.split('.').collect();
                let [e, u, p, a] = parts[..] else { return None };
                let path = if p.is_empty() {
                    Vec::new()
                } else {
                    p.split('_')
                        .map(|x| x.parse().ok())
                        .collect::<Option<Vec<u32>>>()?
                };
                Op::NoFault(e.parse().ok()?, u.parse().ok()?, path, a.parse().ok()?)
            }
            "nr" => Op::NoRetries(n()? as usize),
            "nt" => Op::NoTaskTimeout(n()? as usize),
            "nc" => Op::NoConcurrency(n()? as usize),
            "nm" => Op::NoTolerance(n()? as usize),
            "ca" => Op::NoCap(n()?),
            "fi" => Op::FewerItems(n()?),
            "nw" => Op::NoWork(n()?),
            "nk" => Op::NoCheckpoint(n()?),
            "nq" => {
                let parts: Vec<&str> = rest.split('.').collect();
                let [e, u, p] = parts[..] else { return None };
                let path = if p.is_empty() {
                    Vec::new()
                } else {
                    p.split('_')
                        .map(|x| x.parse().ok())
                        .collect::<Option<Vec<u32>>>()?
                };
                Op::NoCacheFault(e.parse().ok()?, u.parse().ok()?, path)
            }
            "ns" => Op::NoCacheSave(n()? as usize),
            "ne" => Op::NoEdit(n()? as usize),
            "nu" => Op::Uncache(n()? as usize),
            "nb" => Op::Bare(n()?),
            "na" => Op::NoApart,
            _ => return None,
        })
    }
}

/// A case: a seed and edits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Job {
    pub(crate) seed: u64,
    pub(crate) ops: Vec<Op>,
}

impl Job {
    pub(crate) fn text(&self) -> String {
        if self.ops.is_empty() {
            return self.seed.to_string();
        }
        let ops: Vec<String> = self.ops.iter().map(Op::text).collect();
        format!("{}:{}", self.seed, ops.join(","))
    }

    pub(crate) fn parse(text: &str) -> Option<Job> {
        let text = text.trim();
        let (seed, ops) = text.split_once(':').unwrap_or((text, ""));
        let ops = if ops.is_empty() {
            Vec::new()
        } else {
            ops.split(',').map(Op::parse).collect::<Option<Vec<Op>>>()?
        };
        Some(Job {
            seed: seed.trim().parse().ok()?,
            ops,
        })
    }

    /// The case: generated, then edited (edits that no longer apply are skipped).
    pub(crate) fn spec(&self, gates: &Gates) -> Spec {
        let mut spec = generate(self.seed, gates);
        for op in &self.ops {
            let mut edited = spec.clone();
            if apply(&mut edited, op) {
                crate::generate::gate_items(&mut edited, gates);
                sync_tolerance(&mut edited);
                sync_moves(&mut edited);
                spec = edited;
            }
        }
        spec
    }
}

/// Applies an edit; false if it does not apply (or would leave no workflow).
pub(crate) fn apply(spec: &mut Spec, op: &Op) -> bool {
    let epochs = spec.epochs.len();
    let epoch = |e: usize| e < epochs;
    match op {
        Op::DropRun(e) => {
            if *e == 0 || !epoch(*e) || (spec.durable && *e == epochs - 1 && epochs < 2) {
                return false;
            }
            spec.epochs.remove(*e);
            let e8 = *e as u8;
            spec.faults = std::mem::take(&mut spec.faults)
                .into_iter()
                .filter(|(k, _)| k.epoch != e8)
                .map(|(mut k, f)| {
                    if k.epoch > e8 {
                        k.epoch -= 1;
                    }
                    (k, f)
                })
                .collect();
            spec.cache_faults = std::mem::take(&mut spec.cache_faults)
                .into_iter()
                .filter(|((x, ..), _)| *x != e8)
                .map(|((x, u, p), f)| ((if x > e8 { x - 1 } else { x }, u, p), f))
                .collect();
            true
        }
        Op::NoFailFast(e) if epoch(*e) && spec.epochs[*e].fail_fast => {
            spec.epochs[*e].fail_fast = false;
            true
        }
        Op::NoCancel(e) if epoch(*e) && spec.epochs[*e].cancel.is_some() => {
            spec.epochs[*e].cancel = None;
            true
        }
        Op::NoTimeout(e) if epoch(*e) && spec.epochs[*e].timeout_ms.is_some() => {
            spec.epochs[*e].timeout_ms = None;
            true
        }
        Op::NoStoreFault(e) if epoch(*e) && spec.epochs[*e].store.is_some() => {
            spec.epochs[*e].store = None;
            true
        }
        Op::NoCrash(e) if epoch(*e) && spec.epochs[*e].crash.is_some() => {
            spec.epochs[*e].crash = None;
            true
        }
        Op::NoKill(e) if epoch(*e) && spec.epochs[*e].kill.is_some() => {
            spec.epochs[*e].kill = None;
            true
        }
        Op::NoGrace(e) if epoch(*e) && spec.epochs[*e].grace_ms.is_some() => {
            spec.epochs[*e].grace_ms = None;
            true
        }
        Op::Remove(uid) => {
            let mut top = spec.top.clone();
            if !remove_in(&mut top, *uid) || top.nodes.is_empty() {
                return false;
            }
            spec.top = top;
            sync_tolerance(spec);
            sync_moves(spec);
            if !valid(spec) {
                return false;
            }
            let alive: HashSet<u32> = {
                let mut s = HashSet::new();
                visit(&spec.top, &mut |n, _| {
                    s.insert(n.uid);
                });
                s
            };
            spec.faults.retain(|k, _| alive.contains(&k.uid));
            spec.cache_faults.retain(|(_, u, _), _| alive.contains(u));
            true
        }
        Op::NoFault(e, u, p, a) => {
            let key = FaultKey {
                epoch: *e,
                uid: *u,
                path: p.clone(),
                attempt: *a,
            };
            spec.faults.remove(&key).is_some()
        }
        Op::NoRetries(t) if *t < spec.tasks.len() && spec.tasks[*t].retries > 0 => {
            spec.tasks[*t].retries = 0;
            true
        }
        Op::NoTaskTimeout(t) if *t < spec.tasks.len() && spec.tasks[*t].timeout_ms.is_some() => {
            spec.tasks[*t].timeout_ms = None;
            let mut uses = HashSet::new();
            visit(&spec.top, &mut |n, _| {
                if matches!(n.kind, Kind::Task { task, .. } if task == *t) {
                    uses.insert(n.uid);
                }
            });
            for (k, f) in spec.faults.iter_mut() {
                if uses.contains(&k.uid) && *f == Fault::Timeout {
                    *f = Fault::Transient;
                }
            }
            true
        }
        Op::NoConcurrency(t) if *t < spec.tasks.len() && spec.tasks[*t].concurrency.is_some() => {
            spec.tasks[*t].concurrency = None;
            true
        }
        Op::NoTolerance(t) if *t < spec.tasks.len() && spec.tasks[*t].mask != 0 => {
            spec.tasks[*t].mask = 0;
            sync_tolerance(spec);
            sync_moves(spec);
            true
        }
        Op::NoCap(u) => edit_node(&mut spec.top, *u, &mut |kind| match kind {
            Kind::FanOut { cap, .. } if cap.is_some() => {
                *cap = None;
                true
            }
            _ => false,
        }),
        Op::FewerItems(u) if *u >= 1 << 31 => {
            let p = (*u - (1 << 31)) as usize;
            if p < 2 && spec.params[p].0 > 0 {
                spec.params[p].0 /= 2;
                true
            } else {
                false
            }
        }
        Op::FewerItems(u) => edit_node(&mut spec.top, *u, &mut |kind| match kind {
            Kind::Task { count, .. } if *count > 0 => {
                *count /= 2;
                true
            }
            _ => false,
        }),
        Op::NoCheckpoint(u) => {
            let mut done = false;
            crate::spec::visit_mut(&mut spec.top, &mut |n| {
                if n.uid == *u && n.ckpt {
                    n.ckpt = false;
                    done = true;
                }
            });
            done
        }
        Op::NoCacheFault(e, u, p) => spec.cache_faults.remove(&(*e, *u, p.clone())).is_some(),
        Op::NoCacheSave(e) if epoch(*e) && spec.epochs[*e].cache_save.is_some() => {
            spec.epochs[*e].cache_save = None;
            true
        }
        Op::NoEdit(e) if epoch(*e) && spec.epochs[*e].edit.is_some() => {
            spec.epochs[*e].edit = None;
            true
        }
        Op::Uncache(t) if *t < spec.tasks.len() && spec.tasks[*t].cache.is_some() => {
            spec.tasks[*t].cache = None;
            true
        }
        Op::Bare(u) => {
            let mut found = false;
            visit(&spec.top, &mut |n, _| {
                found |= n.uid == *u && spec.cached_call(n)
            });
            found && spec.bare.insert(*u)
        }
        Op::NoApart if spec.cache_apart => {
            spec.cache_apart = false;
            true
        }
        Op::NoWork(u) => edit_node(&mut spec.top, *u, &mut |kind| match kind {
            Kind::Task { work_us, .. } if *work_us > 0 => {
                *work_us = 0;
                true
            }
            _ => false,
        }),
        _ => false,
    }
}

fn edit_node(body: &mut Body, uid: u32, f: &mut dyn FnMut(&mut Kind) -> bool) -> bool {
    for node in &mut body.nodes {
        if node.uid == uid {
            return f(&mut node.kind);
        }
        if let Kind::FanOut { body, .. } | Kind::Subflow { body, .. } = &mut node.kind
            && edit_node(body, uid, f)
        {
            return true;
        }
    }
    false
}

/// Removes `uid` wherever it is; false if it is not found or its body cannot lose it.
fn remove_in(body: &mut Body, uid: u32) -> bool {
    if body.nodes.iter().any(|n| n.uid == uid) {
        return remove_node(body, uid);
    }
    for i in 0..body.nodes.len() {
        let found = match &mut body.nodes[i].kind {
            Kind::FanOut { body: inner, .. } | Kind::Subflow { body: inner, .. } => {
                if inner.nodes.iter().any(|n| n.uid == uid) || contains(inner, uid) {
                    let ok = remove_in(inner, uid);
                    Some(ok && !inner.nodes.is_empty())
                } else {
                    None
                }
            }
            _ => None,
        };
        match found {
            Some(true) => return true,
            Some(false) => {
                // The body cannot do without it: remove its container instead.
                let container = body.nodes[i].uid;
                return remove_node(body, container);
            }
            None => {}
        }
    }
    false
}

fn contains(body: &Body, uid: u32) -> bool {
    let mut found = false;
    visit(body, &mut |n, _| found |= n.uid == uid);
    found
}

/// Removes a node of this body and, in cascade, what reads it where it cannot do
/// without it (a fan-out over it, a sub-workflow whose only argument it is, the arms
/// and branch of a decision, a branch whose arm's value it is).
fn remove_node(body: &mut Body, uid: u32) -> bool {
    let mut doomed = vec![uid];
    while let Some(gone) = doomed.pop() {
        let Some(at) = body.nodes.iter().position(|n| n.uid == gone) else {
            continue;
        };
        body.nodes.remove(at);
        let gone_ref = Ref::Node(gone);
        for node in &mut body.nodes {
            if node.arm.is_some_and(|(d, _)| d == gone) {
                doomed.push(node.uid);
                continue;
            }
            match &mut node.kind {
                Kind::Task { inputs, .. } | Kind::Decide { inputs, .. } => {
                    inputs.retain(|i| i.from != gone_ref);
                }
                Kind::Branch {
                    decision, tails, ..
                } => {
                    if *decision == gone || tails.contains(&Some(gone)) {
                        doomed.push(node.uid);
                    }
                }
                Kind::FanOut {
                    collection,
                    imports,
                    body: inner,
                    ..
                } => {
                    if *collection == gone_ref {
                        doomed.push(node.uid);
                    } else if let Some(p) = imports.iter().position(|r| *r == gone_ref) {
                        imports.remove(p);
                        if !remove_param(inner, 1 + p as u32) || inner.nodes.is_empty() {
                            doomed.push(node.uid);
                        }
                    }
                }
                Kind::Subflow { args, body: inner } => {
                    if let Some(p) = args.iter().position(|r| *r == gone_ref) {
                        args.remove(p);
                        if args.is_empty()
                            || !remove_param(inner, p as u32)
                            || inner.nodes.is_empty()
                        {
                            doomed.push(node.uid);
                        }
                    }
                }
            }
        }
        if body.tail == gone {
            // Not a node whose outcome a decision reads: nothing else requires it.
            let handled: HashSet<Ref> = body
                .nodes
                .iter()
                .filter_map(|n| match &n.kind {
                    Kind::Decide { inputs, .. } => Some(inputs),
                    _ => None,
                })
                .flatten()
                .filter(|i| i.tolerant)
                .map(|i| i.from)
                .collect();
            match body
                .nodes
                .iter()
                .rev()
                .find(|n| n.is_val() && n.arm.is_none() && !handled.contains(&Ref::Node(n.uid)))
            {
                Some(n) => body.tail = n.uid,
                None => return false,
            }
        }
    }
    true
}

/// Whether every tolerant input (by its task's mask, after edits moved inputs) can be
/// read as an outcome: a parameter of a fan-out's body or a sub-workflow cannot.
fn valid(spec: &Spec) -> bool {
    let mut ok = true;
    visit(&spec.top, &mut |n, place| {
        if let Kind::Task { inputs, .. } = &n.kind
            && !place.chain.is_empty()
        {
            ok &= !inputs
                .iter()
                .any(|i| i.tolerant && matches!(i.from, Ref::Param(_)));
        }
    });
    ok
}

/// Removes parameter `k` of a body: what reads it loses that input, later parameters
/// shift down.
fn remove_param(body: &mut Body, k: u32) -> bool {
    let mut doomed = Vec::new();
    let fix = |r: &mut Ref| {
        if let Ref::Param(j) = r
            && *j > k
        {
            *j -= 1;
        }
    };
    for node in &mut body.nodes {
        match &mut node.kind {
            Kind::Task { inputs, .. } | Kind::Decide { inputs, .. } => {
                inputs.retain(|i| i.from != Ref::Param(k));
                inputs.iter_mut().for_each(|i| fix(&mut i.from));
            }
            Kind::Branch { .. } => {}
            Kind::FanOut {
                collection,
                imports,
                body: inner,
                ..
            } => {
                if *collection == Ref::Param(k) {
                    doomed.push(node.uid);
                    continue;
                }
                if let Some(p) = imports.iter().position(|r| *r == Ref::Param(k)) {
                    imports.remove(p);
                    if !remove_param(inner, 1 + p as u32) || inner.nodes.is_empty() {
                        doomed.push(node.uid);
                        continue;
                    }
                }
                fix(collection);
                imports.iter_mut().for_each(fix);
            }
            Kind::Subflow { args, body: inner } => {
                if let Some(p) = args.iter().position(|r| *r == Ref::Param(k)) {
                    args.remove(p);
                    if args.is_empty() || !remove_param(inner, p as u32) || inner.nodes.is_empty() {
                        doomed.push(node.uid);
                        continue;
                    }
                }
                args.iter_mut().for_each(fix);
            }
        }
    }
    for uid in doomed {
        if !remove_node(body, uid) {
            return false;
        }
    }
    true
}

/// Edits worth trying on `spec`, the biggest simplifications first.
pub(crate) fn candidates(spec: &Spec) -> Vec<Op> {
    let mut ops = Vec::new();
    for e in (1..spec.epochs.len()).rev() {
        ops.push(Op::DropRun(e));
    }
    for (e, epoch) in spec.epochs.iter().enumerate() {
        if epoch.crash.is_some() {
            ops.push(Op::NoCrash(e));
        }
        if epoch.kill.is_some() {
            ops.push(Op::NoKill(e));
        }
        if epoch.grace_ms.is_some() {
            ops.push(Op::NoGrace(e));
        }
        if epoch.store.is_some() {
            ops.push(Op::NoStoreFault(e));
        }
        if epoch.cancel.is_some() {
            ops.push(Op::NoCancel(e));
        }
        if epoch.timeout_ms.is_some() {
            ops.push(Op::NoTimeout(e));
        }
        if epoch.fail_fast {
            ops.push(Op::NoFailFast(e));
        }
        if epoch.cache_save.is_some() {
            ops.push(Op::NoCacheSave(e));
        }
        if epoch.edit.is_some() {
            ops.push(Op::NoEdit(e));
        }
    }
    if spec.cache_apart {
        ops.push(Op::NoApart);
    }
    // Containers first (they take their bodies along), the output last.
    let mut nodes = Vec::new();
    visit(&spec.top, &mut |n, place| {
        nodes.push((
            n.uid,
            n.is_many() || matches!(n.kind, Kind::Subflow { .. }),
            place.chain.len(),
        ))
    });
    nodes.sort_by_key(|&(uid, container, depth)| (!container, depth, std::cmp::Reverse(uid)));
    ops.extend(nodes.iter().map(|&(uid, ..)| Op::Remove(uid)));
    for k in spec.faults.keys() {
        ops.push(Op::NoFault(k.epoch, k.uid, k.path.clone(), k.attempt));
    }
    for (e, u, p) in spec.cache_faults.keys() {
        ops.push(Op::NoCacheFault(*e, *u, p.clone()));
    }
    for (t, def) in spec.tasks.iter().enumerate() {
        if def.concurrency.is_some() {
            ops.push(Op::NoConcurrency(t));
        }
        if def.mask != 0 {
            ops.push(Op::NoTolerance(t));
        }
        if def.timeout_ms.is_some() {
            ops.push(Op::NoTaskTimeout(t));
        }
        if def.retries > 0 {
            ops.push(Op::NoRetries(t));
        }
        if def.cache.is_some() {
            ops.push(Op::Uncache(t));
        }
    }
    visit(&spec.top, &mut |n, _| {
        if spec.cached_call(n) {
            ops.push(Op::Bare(n.uid));
        }
    });
    visit(&spec.top, &mut |n, _| {
        if n.ckpt {
            ops.push(Op::NoCheckpoint(n.uid));
        }
    });
    visit(&spec.top, &mut |n, _| match &n.kind {
        Kind::FanOut { cap: Some(_), .. } => ops.push(Op::NoCap(n.uid)),
        Kind::Task { count, work_us, .. } => {
            if *count > 1 {
                ops.push(Op::FewerItems(n.uid));
            }
            if *work_us > 0 {
                ops.push(Op::NoWork(n.uid));
            }
        }
        _ => {}
    });
    for p in 0..2 {
        if spec.params[p].0 > 1 {
            ops.push(Op::FewerItems((1 << 31) + p as u32));
        }
    }
    ops
}

/// Greedy shrinking: tries each edit, keeps those after which `fails` still holds,
/// until a whole pass keeps none or the budget is spent.
pub(crate) fn shrink(
    job: &Job,
    gates: &Gates,
    budget: std::time::Duration,
    max_trials: usize,
    fails: &mut dyn FnMut(&Job) -> bool,
) -> (Job, usize) {
    let started = std::time::Instant::now();
    let mut best = job.clone();
    let mut trials = 0;
    loop {
        let spec = best.spec(gates);
        let mut improved = false;
        for op in candidates(&spec) {
            if started.elapsed() > budget || trials >= max_trials {
                return (best, trials);
            }
            let mut edited = spec.clone();
            if !apply(&mut edited, &op) {
                continue;
            }
            let mut trial = best.clone();
            trial.ops.push(op);
            trials += 1;
            if fails(&trial) {
                best = trial;
                improved = true;
                break;
            }
        }
        if !improved {
            return (best, trials);
        }
    }
}
