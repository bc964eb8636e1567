//! A case from a seed: tasks, a workflow (chains, diamonds, wide fan-ins, nested and
//! capped fan-outs, sub-workflows, cleanup tasks), a fault plan and the runs' stops;
//! in a quarter of the cases cached tasks (`faults/cache.rs`). Then the fault kinds of
//! known findings not enabled by `FAULT_KNOWN` are removed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use aqueduct::Backoff;

use crate::model::{Walker, tree};
use crate::rng::Rng;
use crate::spec::{
    Body, Epoch, Fault, FaultKey, Gates, Index, Input, Kind, Node, Ref, Spec, StoreFault, TaskDef,
    Trigger, visit,
};

/// What the generator knows of a value's shape, to pick collections worth iterating.
#[derive(Clone, Copy)]
pub(crate) enum Shape {
    One {
        n: u32,
        sub: u32,
    },
    Many {
        n: u32,
        elem: (u32, u32),
    },
    /// An `Option<Val>` (`branch_option`): nothing to iterate, no sub-workflow argument.
    Opt,
}

impl Shape {
    pub(crate) fn len(self) -> u32 {
        match self {
            Shape::One { n, .. } | Shape::Many { n, .. } => n,
            Shape::Opt => 0,
        }
    }

    fn item(self) -> Shape {
        match self {
            Shape::One { sub, .. } => Shape::One { n: sub, sub: 0 },
            Shape::Many { elem, .. } => Shape::One {
                n: elem.0,
                sub: elem.1,
            },
            Shape::Opt => Shape::One { n: 0, sub: 0 },
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Scoped {
    pub(crate) r: Ref,
    pub(crate) shape: Shape,
    /// A parameter of a fan-out's body or a sub-workflow: never read as an `Outcome`
    /// (an item cannot be).
    pub(crate) param: bool,
}

pub(crate) struct Gen {
    pub(crate) r: Rng,
    next_uid: u32,
    pub(crate) budget: i32,
    pub(crate) tasks: Vec<TaskDef>,
    durable: bool,
    /// This case has branches (`if`/`match`).
    pub(crate) branches: bool,
}

pub(crate) fn generate(seed: u64, gates: &Gates) -> Spec {
    let mut spec = raw(seed);
    filter(&mut spec, gates);
    spec
}

fn raw(seed: u64) -> Spec {
    let mut r = Rng::new(seed);
    let durable = r.chance(30);
    let n_tasks = r.range(2, 5) as usize;
    let mut tasks: Vec<TaskDef> = (0..n_tasks)
        .map(|_| {
            let io = r.chance(50);
            let timeout_ms = r
                .chance(30)
                .then(|| if io { r.range(20, 40) } else { r.range(40, 80) });
            // A CPU task with a timeout is where an abandoned attempt and its retry
            // may overlap: give it a limit more often.
            let limited = if !io && timeout_ms.is_some() { 50 } else { 30 };
            TaskDef {
                io,
                retries: *r.pick(&[0, 0, 1, 2, 3]),
                delay_ms: *r.pick(&[0, 0, 1, 2]),
                backoff: *r.pick(&[Backoff::Fixed, Backoff::Linear, Backoff::Exponential]),
                retry_panics: r.chance(25),
                timeout_ms,
                concurrency: r.chance(limited).then(|| r.range(1, 3) as u32),
                mask: if r.chance(30) {
                    *r.pick(&[0b1, 0b10, 0b11, 0b101])
                } else {
                    0
                },
                cache: None,
            }
        })
        .collect();
    if tasks.iter().all(|t| t.mask != 0) {
        tasks[0].mask = 0;
    }
    let mut params = [(0, 0); 2];
    for p in &mut params {
        *p = (
            if r.chance(80) {
                r.range(1, 8) as u32
            } else {
                0
            },
            if r.chance(40) {
                r.range(1, 3) as u32
            } else {
                0
            },
        );
    }
    let budget = r.range(2, 25) as i32;
    // Drawn apart, so that cases without branches stay what their seeds always made.
    let branches = Rng::new(crate::rng::mix(seed, 0xb7a2c4)).chance(25);
    let mut g = Gen {
        r,
        next_uid: 0,
        budget,
        tasks,
        durable,
        branches,
    };
    let scope: Vec<Scoped> = (0..2)
        .map(|k| Scoped {
            r: Ref::Param(k),
            shape: Shape::One {
                n: params[k as usize].0,
                sub: params[k as usize].1,
            },
            param: false,
        })
        .collect();
    let top = g.body(scope, 0, false, true);
    let mut spec = Spec {
        seed,
        tasks: g.tasks.clone(),
        params,
        top,
        durable,
        epochs: Vec::new(),
        faults: BTreeMap::new(),
        bare: BTreeSet::new(),
        cache_faults: BTreeMap::new(),
        cache_apart: false,
    };
    spec.epochs = g.epochs();
    g.faults(&mut spec);
    if durable {
        checkpoint_items(&mut spec);
    }
    crate::cache::decorate(&mut spec);
    spec
}

/// In half the durable cases, checkpoints nodes of fan-out bodies and sub-workflows
/// item by item (each node with a chance of its own); drawn apart, so that the rest of
/// a case is what its seed always made.
fn checkpoint_items(spec: &mut Spec) {
    let mut r = Rng::new(crate::rng::mix(spec.seed, 0x1_7e3c_4b9d));
    if !r.chance(50) {
        return;
    }
    let rate = *r.pick(&[40, 70, 100]);
    for node in &mut spec.top.nodes {
        if let Kind::FanOut { body, .. } | Kind::Subflow { body, .. } = &mut node.kind {
            crate::spec::visit_mut(body, &mut |n| n.ckpt = r.chance(rate));
        }
    }
}

impl Gen {
    pub(crate) fn uid(&mut self) -> u32 {
        self.next_uid += 1;
        self.budget -= 1;
        self.next_uid
    }

    pub(crate) fn body(
        &mut self,
        mut scope: Vec<Scoped>,
        depth: u32,
        in_subflow: bool,
        top: bool,
    ) -> Body {
        let limit = if top {
            30
        } else if in_subflow {
            3
        } else {
            4
        };
        let want = if top {
            limit
        } else {
            self.r.range(1, limit as u64) as usize
        };
        let mut nodes: Vec<Node> = Vec::new();
        while nodes.is_empty() || (nodes.len() < want && self.budget > 0) {
            let roll = self.r.below(100);
            let collections = scope.iter().filter(|s| s.shape.len() > 0).count();
            let node = if !in_subflow && depth < 2 && roll < 20 && collections > 0 {
                self.fan_out(&scope, depth)
            } else if !in_subflow
                && depth < 2
                && roll < 28
                && scope.iter().any(|s| matches!(s.shape, Shape::One { .. }))
            {
                self.subflow(&scope)
            } else if self.branches && roll < 40 {
                // An `if`/`match`: its decision, arms and branch; only the branch is
                // in scope after it.
                let mut made = self.branch(&scope, depth, 0, in_subflow, None);
                let node = made.pop().expect("a branch node");
                nodes.extend(made);
                node
            } else {
                self.task(&scope)
            };
            scope.push(Scoped {
                r: Ref::Node(node.uid),
                shape: self.shape_of(&node),
                param: false,
            });
            nodes.push(node);
        }
        // A wide fan-in of the leaves makes every branch matter to the output (and
        // gives a body whose last node is no single value an output).
        let last_many = nodes.last().is_some_and(|n| !n.is_val());
        if (top && self.r.chance(60)) || last_many {
            let used: HashSet<u32> = nodes
                .iter()
                .flat_map(Node::refs)
                .filter_map(|r| match r {
                    Ref::Node(u) => Some(u),
                    Ref::Param(_) => None,
                })
                .collect();
            let leaves: Vec<Scoped> = scope
                .iter()
                .filter(|s| matches!(s.r, Ref::Node(u) if !used.contains(&u)))
                .copied()
                .collect();
            if leaves.len() > 1 || last_many {
                let take = leaves.len().min(10);
                let leaves = &leaves[leaves.len() - take..];
                let node = self.task_over(leaves);
                nodes.push(node);
            }
        }
        let tail = nodes.last().expect("a body has a node").uid;
        Body { nodes, tail }
    }

    pub(crate) fn shape_of(&self, node: &Node) -> Shape {
        match &node.kind {
            Kind::Decide { .. } | Kind::Branch { option: true, .. } => Shape::Opt,
            Kind::Branch { .. } => Shape::One { n: 2, sub: 0 },
            Kind::Task { count, sub, .. } => Shape::One {
                n: *count,
                sub: *sub,
            },
            Kind::FanOut { body, .. } => {
                let elem = match body.node(body.tail).map(|n| &n.kind) {
                    Some(Kind::Task { count, sub, .. }) => (*count, *sub),
                    _ => (0, 0),
                };
                // The item count is only known through the collection; a guess is enough.
                Shape::Many { n: 2, elem }
            }
            Kind::Subflow { body, .. } => match body.node(body.tail).map(|n| &n.kind) {
                Some(Kind::Task { count, sub, .. }) => Shape::One {
                    n: *count,
                    sub: *sub,
                },
                _ => Shape::One { n: 0, sub: 0 },
            },
        }
    }

    pub(crate) fn pick_inputs(&mut self, scope: &[Scoped], n: usize) -> Vec<Scoped> {
        let mut picked: Vec<Scoped> = Vec::new();
        for _ in 0..n * 2 {
            if picked.len() >= n || picked.len() >= scope.len() {
                break;
            }
            let i = if self.r.chance(60) {
                scope.len() - 1 - self.r.below(scope.len().min(3) as u64) as usize
            } else {
                self.r.below(scope.len() as u64) as usize
            };
            if !picked.iter().any(|p| p.r == scope[i].r) {
                picked.push(scope[i]);
            }
        }
        picked
    }

    pub(crate) fn task(&mut self, scope: &[Scoped]) -> Node {
        let n = match self.r.below(100) {
            0..10 => 0,
            10..50 => 1,
            50..80 => 2,
            80..95 => self.r.range(3, 4) as usize,
            _ => self.r.range(5, 10) as usize,
        };
        let picked = self.pick_inputs(scope, n);
        self.task_over(&picked)
    }

    /// A task node reading `inputs` (reordered so that tolerant positions hold nodes).
    pub(crate) fn task_over(&mut self, inputs: &[Scoped]) -> Node {
        let uid = self.uid();
        let mut t = self.r.below(self.tasks.len() as u64) as usize;
        let mut inputs = inputs.to_vec();
        let mask = self.tasks[t].mask;
        if mask != 0 {
            // Nodes first: they may be read as outcomes, body parameters may not.
            inputs.sort_by_key(|s| s.param);
            let bad = inputs
                .iter()
                .enumerate()
                .any(|(i, s)| i < 16 && mask & (1 << i) != 0 && s.param);
            if bad {
                t = self
                    .tasks
                    .iter()
                    .position(|d| d.mask == 0)
                    .expect("a task without tolerant inputs");
            }
        }
        let mask = self.tasks[t].mask;
        let io = self.tasks[t].io;
        let count = if self.r.chance(30) {
            self.r.range(1, 8) as u32
        } else {
            0
        };
        let sub = if count > 0 && self.r.chance(40) {
            self.r.range(1, 3) as u32
        } else {
            0
        };
        let work_us = if io {
            self.r.range(0, 3000) as u32
        } else if self.r.chance(30) {
            self.r.range(0, 1000) as u32
        } else {
            0
        };
        Node {
            uid,
            ckpt: false,
            arm: None,
            kind: Kind::Task {
                task: t,
                inputs: inputs
                    .iter()
                    .enumerate()
                    .map(|(i, s)| Input {
                        from: s.r,
                        tolerant: i < 16 && mask & (1 << i) != 0,
                        // A wish: `sync_moves` keeps it only where a move is sound.
                        moved: self.r.chance(40),
                    })
                    .collect(),
                count,
                sub,
                work_us,
            },
        }
    }

    pub(crate) fn fan_out(&mut self, scope: &[Scoped], depth: u32) -> Node {
        let uid = self.uid();
        let candidates: Vec<Scoped> = scope
            .iter()
            .filter(|s| s.shape.len() > 0)
            .copied()
            .collect();
        let collection = *self.r.pick(&candidates);
        let n_imports = self.r.below(3) as usize;
        let imports = self.pick_inputs(scope, n_imports);
        let cap = self.r.chance(25).then(|| self.r.range(1, 3) as u32);
        let mut inner = vec![Scoped {
            r: Ref::Param(0),
            shape: collection.shape.item(),
            param: true,
        }];
        inner.extend(imports.iter().enumerate().map(|(j, s)| Scoped {
            r: Ref::Param(1 + j as u32),
            shape: s.shape,
            param: true,
        }));
        let body = self.body(inner, depth + 1, false, false);
        Node {
            uid,
            ckpt: false,
            arm: None,
            kind: Kind::FanOut {
                collection: collection.r,
                imports: imports.iter().map(|s| s.r).collect(),
                cap,
                body,
            },
        }
    }

    fn subflow(&mut self, scope: &[Scoped]) -> Node {
        let uid = self.uid();
        let ones: Vec<Scoped> = scope
            .iter()
            .filter(|s| matches!(s.shape, Shape::One { .. }))
            .copied()
            .collect();
        let n = self.r.range(1, 2) as usize;
        let args = self.pick_inputs(&ones, n);
        let inner = args
            .iter()
            .enumerate()
            .map(|(j, s)| Scoped {
                r: Ref::Param(j as u32),
                shape: s.shape,
                param: true,
            })
            .collect();
        let body = self.body(inner, 0, true, false);
        Node {
            uid,
            ckpt: false,
            arm: None,
            kind: Kind::Subflow {
                args: args.iter().map(|s| s.r).collect(),
                body,
            },
        }
    }

    fn trigger(&mut self) -> Trigger {
        if self.r.chance(50) {
            Trigger::AfterMs(self.r.range(0, 30))
        } else {
            Trigger::AfterStarts(self.r.range(1, 12) as u32)
        }
    }

    fn epoch(&mut self, first: bool, last: bool) -> Epoch {
        if self.durable && last && !first {
            return Epoch {
                resume_by_run: self.r.chance(30),
                ..Epoch::default()
            };
        }
        let mut e = Epoch {
            fail_fast: self.r.chance(20),
            resume_by_run: !first && self.r.chance(30),
            ..Epoch::default()
        };
        if self.r.chance(20) {
            e.cancel = Some(self.trigger());
        }
        if self.r.chance(15) {
            e.timeout_ms = Some(self.r.range(1, 25));
        }
        if self.r.chance(8) {
            e.kill = Some(self.trigger());
        }
        if self.r.chance(15) {
            e.grace_ms = Some(self.r.range(0, 10));
        }
        if self.durable && self.r.chance(15) {
            e.store = Some(match self.r.below(4) {
                0 => StoreFault::SaveErr(self.r.range(1, 3) as u32),
                1 => StoreFault::SavePanic(self.r.range(1, 3) as u32),
                2 => StoreFault::FinishErr,
                _ => StoreFault::FinishPanic,
            });
        }
        if self.durable && !last && self.r.chance(50) {
            e.crash = Some(self.trigger());
        }
        e
    }

    fn epochs(&mut self) -> Vec<Epoch> {
        if !self.durable {
            return vec![self.epoch(true, false)];
        }
        let middle = self.r.below(3) as usize;
        let mut epochs = vec![self.epoch(true, false)];
        for _ in 0..middle {
            epochs.push(self.epoch(false, false));
        }
        epochs.push(self.epoch(false, true));
        epochs
    }

    /// Faults for every task instance an all-succeeding run has, per run and attempt.
    fn faults(&mut self, spec: &mut Spec) {
        let instances = instances(spec);
        let index = Index::new(spec);
        let rate = *self.r.pick(&[0, 3, 8, 15, 30]);
        let mut faults = BTreeMap::new();
        for e in 0..spec.epochs.len() {
            let rate = if e == 0 {
                rate
            } else if self.r.chance(50) {
                rate / 2
            } else {
                0
            };
            for (uid, path) in &instances {
                let Some((node, _)) = index.nodes.get(uid) else {
                    continue;
                };
                let task = match &node.kind {
                    Kind::Task { task, .. } => task,
                    Kind::Decide { .. } => {
                        // Called once: a failure is for good.
                        if self.r.chance(rate) {
                            let fault = *self.r.pick(&[
                                Fault::Panic,
                                Fault::Permanent,
                                Fault::Transient,
                                Fault::OutOfRange,
                            ]);
                            let key = FaultKey {
                                epoch: e as u8,
                                uid: *uid,
                                path: path.clone(),
                                attempt: 1,
                            };
                            faults.insert(key, fault);
                        }
                        continue;
                    }
                    _ => continue,
                };
                let def = &spec.tasks[*task];
                let top = index.is_top(*uid);
                for attempt in 1..=def.retries + 1 {
                    if !self.r.chance(rate) {
                        continue;
                    }
                    let fault = match self.r.below(100) {
                        0..30 => Fault::Transient,
                        30..45 => Fault::Permanent,
                        45..60 => Fault::Panic,
                        60..95 if def.timeout_ms.is_some() => Fault::Timeout,
                        95.. if spec.durable && top && def.retries == 0 => Fault::SerPanic,
                        _ => Fault::Transient,
                    };
                    faults.insert(
                        FaultKey {
                            epoch: e as u8,
                            uid: *uid,
                            path: path.clone(),
                            attempt,
                        },
                        fault,
                    );
                }
            }
        }
        spec.faults = faults;
    }
}

/// Every task instance of a run where everything succeeds.
pub(crate) fn instances(spec: &Spec) -> Vec<(u32, Vec<u32>)> {
    let empty = HashMap::new();
    let restored: crate::model::RestoredSet = HashMap::new();
    let mut plain = spec.clone();
    plain.faults.clear();
    let mut walker = Walker::new(&plain, 0, false, None, &empty, &restored);
    let (p0, p1) = param_values(spec);
    walker.walk(p0, p1);
    walker.instances
}

pub(crate) fn param_values(spec: &Spec) -> (crate::model::MVal, crate::model::MVal) {
    let v0 = crate::rng::mix(spec.seed, 1);
    let v1 = crate::rng::mix(spec.seed, 2);
    (
        tree(v0, 0, spec.params[0].0, spec.params[0].1),
        tree(v1, 0, spec.params[1].0, spec.params[1].1),
    )
}

/// Which tasks are called inside fan-out bodies or sub-workflows.
fn tasks_in_bodies(spec: &Spec) -> HashSet<usize> {
    let mut used = HashSet::new();
    visit(&spec.top, &mut |n, place| {
        if let Kind::Task { task, .. } = n.kind
            && !place.chain.is_empty()
        {
            used.insert(task);
        }
    });
    used
}

/// Re-derives every input's tolerance from its task's mask.
pub(crate) fn sync_tolerance(spec: &mut Spec) {
    fn go(body: &mut Body, tasks: &[TaskDef]) {
        for node in &mut body.nodes {
            match &mut node.kind {
                Kind::Task { task, inputs, .. } => {
                    let mask = tasks[*task].mask;
                    for (i, input) in inputs.iter_mut().enumerate() {
                        input.tolerant = i < 16 && mask & (1 << i) != 0;
                    }
                }
                Kind::FanOut { body, .. } | Kind::Subflow { body, .. } => go(body, tasks),
                // A decision's tolerance is its own.
                Kind::Decide { .. } | Kind::Branch { .. } => {}
            }
        }
    }
    let tasks = spec.tasks.clone();
    go(&mut spec.top, &tasks);
}

/// Keeps an input moved (taken by value) only where `workflow!` would allow it: the
/// input is the one read of a node of the same body (or of a top-level parameter), not
/// the body's tail, not read as an outcome, by a task that makes one attempt. (A
/// cached call's key function reads its moved inputs through `In::peek`.)
pub(crate) fn sync_moves(spec: &mut Spec) {
    fn reads(body: &Body, counts: &mut HashMap<Ref, u32>) {
        let mut add = |r: &Ref| *counts.entry(*r).or_default() += 1;
        for node in &body.nodes {
            match &node.kind {
                Kind::Task { inputs, .. } => inputs.iter().for_each(|i| add(&i.from)),
                Kind::FanOut {
                    collection,
                    imports,
                    ..
                } => {
                    add(collection);
                    imports.iter().for_each(&mut add);
                }
                Kind::Subflow { args, .. } => args.iter().for_each(&mut add),
                Kind::Decide { inputs, .. } => inputs.iter().for_each(|i| add(&i.from)),
                Kind::Branch { tails, .. } => tails.iter().flatten().for_each(|&t| {
                    add(&Ref::Node(t));
                }),
            }
        }
        add(&Ref::Node(body.tail));
    }
    fn go(body: &mut Body, tasks: &[TaskDef], top: bool) {
        let mut counts = HashMap::new();
        reads(body, &mut counts);
        // A shared branch moved moves its arms' values: each must be read by the
        // branch alone (a node, not a loop's item). A `branch_option` takes its own.
        // (A tail that is a shared branch moves its own tails in turn.)
        fn tails_movable(body: &Body, counts: &HashMap<Ref, u32>, uid: u32) -> bool {
            match body.node(uid).map(|n| &n.kind) {
                Some(Kind::Branch {
                    tails,
                    option: false,
                    ..
                }) => tails.iter().flatten().all(|&t| {
                    counts.get(&Ref::Node(t)) == Some(&1) && tails_movable(body, counts, t)
                }),
                _ => true,
            }
        }
        let branches: HashMap<u32, bool> = body
            .nodes
            .iter()
            .filter(|n| matches!(n.kind, Kind::Branch { option: false, .. }))
            .map(|n| (n.uid, tails_movable(body, &counts, n.uid)))
            .collect();
        for node in &mut body.nodes {
            match &mut node.kind {
                Kind::Task { task, inputs, .. } => {
                    let once = tasks[*task].retries == 0;
                    for input in inputs.iter_mut() {
                        let movable = match input.from {
                            Ref::Node(u) => branches.get(&u).copied().unwrap_or(true),
                            Ref::Param(_) => top,
                        };
                        input.moved &= movable
                            && once
                            && !input.tolerant
                            && counts.get(&input.from) == Some(&1);
                    }
                }
                Kind::FanOut { body, .. } | Kind::Subflow { body, .. } => go(body, tasks, false),
                Kind::Decide { .. } | Kind::Branch { .. } => {}
            }
        }
    }
    let tasks = spec.tasks.clone();
    go(&mut spec.top, &tasks, true);
}

/// Removes what a known finding not enabled would trip over.
pub(crate) fn filter(spec: &mut Spec, gates: &Gates) {
    let any_stop = spec
        .epochs
        .iter()
        .any(|e| e.soft_stops() || e.crash.is_some() || e.store.is_some());
    let soft_stop = spec.epochs.iter().any(Epoch::soft_stops);
    if !gates.f1 && any_stop {
        fn uncap(body: &mut Body) {
            for node in &mut body.nodes {
                match &mut node.kind {
                    Kind::FanOut { cap, body, .. } => {
                        *cap = None;
                        uncap(body);
                    }
                    Kind::Subflow { body, .. } => uncap(body),
                    _ => {}
                }
            }
        }
        uncap(&mut spec.top);
    }
    if !gates.f2 {
        for t in tasks_in_bodies(spec) {
            spec.tasks[t].concurrency = None;
        }
    }
    if !gates.f6 {
        for t in &mut spec.tasks {
            if !t.io && t.timeout_ms.is_some() {
                t.concurrency = None;
            }
        }
    }
    if !gates.f3 && spec.durable {
        let top: Vec<usize> = spec
            .top
            .nodes
            .iter()
            .filter_map(|n| match n.kind {
                Kind::Task { task, .. } => Some(task),
                _ => None,
            })
            .collect();
        for t in top {
            spec.tasks[t].mask = 0;
        }
    }
    if !gates.f14 && soft_stop {
        for t in &mut spec.tasks {
            t.mask = 0;
        }
    }
    if !gates.b1 && soft_stop {
        // B1: decisions in bodies read their inputs as values (no handled failures).
        fn unhandle(body: &mut Body, inside: bool) {
            for node in &mut body.nodes {
                match &mut node.kind {
                    Kind::Decide { inputs, .. } if inside => {
                        inputs.iter_mut().for_each(|i| i.tolerant = false);
                    }
                    Kind::FanOut { body, .. } | Kind::Subflow { body, .. } => unhandle(body, true),
                    _ => {}
                }
            }
        }
        unhandle(&mut spec.top, false);
    }
    gate_items(spec, gates);
    sync_tolerance(spec);
    sync_moves(spec);
    for e in &mut spec.epochs {
        if !gates.f4
            && matches!(
                e.store,
                Some(StoreFault::SaveErr(_) | StoreFault::SavePanic(_))
            )
        {
            e.store = None;
        }
        if !gates.f5 && e.store == Some(StoreFault::FinishPanic) {
            e.store = None;
        }
    }
    if !gates.f5 {
        spec.faults.retain(|_, f| *f != Fault::SerPanic);
    }
}

/// A container inside a body (a fan-out or sub-workflow in an item) whose inputs may
/// run again while its item is resumed: it reads a node of its body, or is in an arm.
fn reads_nodes(node: &Node) -> bool {
    node.arm.is_some() || node.data_refs().iter().any(|r| matches!(r, Ref::Node(_)))
}

/// Whether a body checkpoints a node of its own.
fn checkpoints_own(body: &Body) -> bool {
    body.nodes.iter().any(|n| n.ckpt)
}

fn uncheckpoint(body: &mut Body) {
    crate::spec::visit_mut(body, &mut |n| n.ckpt = false);
}

/// Removes the item checkpoints that open findings (I1, I2, I3) not enabled would trip
/// over; run again after each shrinking edit.
pub(crate) fn gate_items(spec: &mut Spec, gates: &Gates) {
    if !spec.durable {
        return;
    }
    // I2: no checkpoints under a container of a body that reads a node of that body.
    // I1: none under a container of a body that checkpoints nothing of its own.
    fn go(body: &mut Body, inside: bool, gates: &Gates) {
        let own = checkpoints_own(body);
        for node in &mut body.nodes {
            let nodes_read = reads_nodes(node);
            if let Kind::FanOut { body: inner, .. } | Kind::Subflow { body: inner, .. } =
                &mut node.kind
            {
                if inside && ((!gates.i2 && nodes_read) || (!gates.i1 && !own)) {
                    uncheckpoint(inner);
                }
                go(inner, true, gates);
            }
        }
    }
    go(&mut spec.top, false, gates);
    if !gates.i3 {
        // I3: in a body that checkpoints, no task reads an input as an outcome and no
        // decision reads one as an outcome.
        let mut cleanup = HashSet::new();
        fn strip(body: &mut Body, inside: bool, cleanup: &mut HashSet<usize>) {
            let own = inside && checkpoints_own(body);
            for node in &mut body.nodes {
                match &mut node.kind {
                    Kind::Task { task, .. } if own => {
                        cleanup.insert(*task);
                    }
                    Kind::Decide { inputs, .. } if own => {
                        inputs.iter_mut().for_each(|i| i.tolerant = false);
                    }
                    Kind::FanOut { body, .. } | Kind::Subflow { body, .. } => {
                        strip(body, true, cleanup);
                    }
                    _ => {}
                }
            }
        }
        strip(&mut spec.top, false, &mut cleanup);
        for t in cleanup {
            spec.tasks[t].mask = 0;
        }
        if spec.tasks.iter().all(|t| t.mask != 0) {
            spec.tasks[0].mask = 0;
        }
    }
}

/// The known findings whose fault kinds this case uses.
pub(crate) fn gated_features(spec: &Spec) -> Vec<&'static str> {
    let mut out = Vec::new();
    let any_stop = spec
        .epochs
        .iter()
        .any(|e| e.soft_stops() || e.crash.is_some() || e.store.is_some());
    let soft_stop = spec.epochs.iter().any(Epoch::soft_stops);
    let mut capped = false;
    visit(&spec.top, &mut |n, _| {
        if let Kind::FanOut { cap: Some(_), .. } = n.kind {
            capped = true;
        }
    });
    if any_stop && capped {
        out.push("F1");
    }
    if tasks_in_bodies(spec)
        .iter()
        .any(|&t| spec.tasks[t].concurrency.is_some())
    {
        out.push("F2");
    }
    if spec.durable && spec.top.nodes.iter().any(|n| n.is_cleanup(&spec.tasks)) {
        out.push("F3");
    }
    if spec.epochs.iter().any(|e| {
        matches!(
            e.store,
            Some(StoreFault::SaveErr(_) | StoreFault::SavePanic(_))
        )
    }) {
        out.push("F4");
    }
    if spec
        .epochs
        .iter()
        .any(|e| e.store == Some(StoreFault::FinishPanic))
        || spec.faults.values().any(|f| *f == Fault::SerPanic)
    {
        out.push("F5");
    }
    if spec
        .tasks
        .iter()
        .any(|t| !t.io && t.timeout_ms.is_some() && t.concurrency.is_some())
    {
        out.push("F6");
    }
    let mut cleanup = false;
    visit(&spec.top, &mut |n, _| cleanup |= n.is_cleanup(&spec.tasks));
    if soft_stop && cleanup {
        out.push("F14");
    }
    let mut handled_inside = false;
    visit(&spec.top, &mut |n, place| {
        handled_inside |= !place.chain.is_empty()
            && matches!(&n.kind, Kind::Decide { inputs, .. } if inputs.iter().any(|i| i.tolerant));
    });
    if soft_stop && handled_inside {
        out.push("B1");
    }
    if spec.durable {
        // (I1, I2, I3) as `gate_items` would remove them.
        fn go(body: &Body, inside: bool, spec: &Spec, found: &mut [bool; 3]) {
            let own = checkpoints_own(body);
            for node in &body.nodes {
                match &node.kind {
                    Kind::FanOut { body: inner, .. } | Kind::Subflow { body: inner, .. } => {
                        let mut nested = false;
                        visit(inner, &mut |n, _| nested |= n.ckpt);
                        if inside && nested {
                            found[0] |= !own;
                            found[1] |= reads_nodes(node);
                        }
                        go(inner, true, spec, found);
                    }
                    Kind::Task { .. } if inside && own => found[2] |= node.is_cleanup(&spec.tasks),
                    Kind::Decide { inputs, .. } if inside && own => {
                        found[2] |= inputs.iter().any(|i| i.tolerant);
                    }
                    _ => {}
                }
            }
        }
        let mut found = [false; 3];
        go(&spec.top, false, spec, &mut found);
        if spec.items_checkpointed() && spec.epochs.len() > 1 {
            out.push("I4");
        }
        for (on, name) in found.into_iter().zip(["I1", "I2", "I3"]) {
            if on {
                out.push(name);
            }
        }
    }
    out
}
