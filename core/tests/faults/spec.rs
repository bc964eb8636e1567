//! What a case is: a generated workflow, its fault plan and how each run of it goes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::{self, Write as _};

use aqueduct::Backoff;

/// The task functions of a case: each node calls one. Nodes of one task share its
/// `TaskInfo`, so its concurrency limit and its tolerant-input mask (a cleanup task).
#[derive(Clone, Debug)]
pub(crate) struct TaskDef {
    pub(crate) io: bool,
    pub(crate) retries: u32,
    pub(crate) delay_ms: u64,
    pub(crate) backoff: Backoff,
    pub(crate) retry_panics: bool,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) concurrency: Option<u32>,
    /// Bit `i`: input `i` is read as an `Outcome` (tolerant).
    pub(crate) mask: u16,
    /// A cached task (`TaskInfo::cache`): its nodes' values are a function of the task
    /// and their inputs alone, and those registered with `Builder::cache` look their
    /// results up (see `faults/cache.rs`).
    pub(crate) cache: Option<CacheDef>,
}

/// A cached task's policy: its `CachePolicy::code` and its time to live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CacheDef {
    pub(crate) code: u64,
    pub(crate) ttl_ms: Option<u64>,
}

/// A fault of one cached call (a node instance in one run), on its way to the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum CacheFault {
    /// The key function returns an error (nothing is looked up nor saved).
    KeyErr,
    /// The key function panics.
    KeyPanic,
    /// The store's `cached` returns an error.
    LookupErr,
    /// The store's `cached` panics.
    LookupPanic,
    /// `cached` returns a row whose data is garbage (or of an unknown codec, or of
    /// another layout version): undecodable.
    Garbage,
    /// `cached` returns a row that expired.
    Expired,
}

/// A fault of the store's `save_cached` in one run: its `n`-th call fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CacheSave {
    Err(u32),
    Panic(u32),
}

/// What is done to the cache table before a run (through another connection, or the
/// store's `clear_cache`): to about half its rows, chosen by key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TableEdit {
    /// Garbage over the data.
    Corrupt,
    /// A codec this build cannot read.
    BadCodec,
    /// Another layout version.
    BadSchema,
    /// Expired long ago.
    Expire,
    /// Expired long ago, then every expired row deleted (`clear_cache(None, now)`).
    ExpireAndClear,
    /// Rows deleted (`Store::clear_cache` of one task, or of all).
    Clear(Option<usize>),
}

pub(crate) const TASK_NAMES: [&str; 8] = ["T0", "T1", "T2", "T3", "T4", "T5", "T6", "T7"];

/// An input: a parameter of the enclosing body (top: `p0`, `p1`; a fan-out's body:
/// the item, then its imports; a sub-workflow: its arguments) or a node, by uid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Ref {
    Param(u32),
    Node(u32),
}

#[derive(Clone, Debug)]
pub(crate) struct Input {
    pub(crate) from: Ref,
    pub(crate) tolerant: bool,
    /// Taken by value: the node's one reader of `from` (see `sync_moves`).
    pub(crate) moved: bool,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    /// A task node. Its value has `count` children with `sub` children each (so that
    /// it can be fanned out over); IO attempts sleep `work_us`.
    Task {
        task: usize,
        inputs: Vec<Input>,
        count: u32,
        sub: u32,
        work_us: u32,
    },
    /// `for item in collection { body }`, the body importing `imports`.
    FanOut {
        collection: Ref,
        imports: Vec<Ref>,
        cap: Option<u32>,
        body: Body,
    },
    /// A separately built workflow, its parameters the `args`.
    Subflow { args: Vec<Ref>, body: Body },
    /// A decision (`Builder::decide`) picking one of `arms` arms by `rule` from its
    /// inputs (tolerant ones read as outcomes: their failures are handled).
    Decide {
        inputs: Vec<Input>,
        arms: u32,
        rule: Rule,
    },
    /// The value of `decision`'s branch: per arm, the node giving it (`None`: the
    /// missing `else` of `branch_option`).
    Branch {
        decision: u32,
        tails: Vec<Option<u32>>,
        option: bool,
    },
}

/// How a decision picks its arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rule {
    /// A hash of its inputs' values, modulo the arms.
    Value,
    /// A fallback: arm 0 if every tolerant input succeeded, else arm 1.
    Ok,
}

#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) uid: u32,
    pub(crate) kind: Kind,
    /// The arm it is built in: (decision uid, arm index).
    pub(crate) arm: Option<(u32, u32)>,
    /// A node of a fan-out's body or a sub-workflow checkpointed item by item (in a
    /// durable case): `Builder::checkpoint` in its body. Top-level nodes of a durable
    /// case are always checkpointed.
    pub(crate) ckpt: bool,
}

impl Node {
    pub(crate) fn name(&self) -> String {
        let letter = match self.kind {
            Kind::Task { .. } => 't',
            Kind::FanOut { .. } => 'f',
            Kind::Subflow { .. } => 's',
            Kind::Decide { .. } => 'd',
            Kind::Branch { .. } => 'b',
        };
        format!("{letter}{}", self.uid)
    }

    /// Every node this one reads (and parameters), its arm's decision included.
    pub(crate) fn refs(&self) -> Vec<Ref> {
        let mut refs = self.data_refs();
        if let Some((d, _)) = self.arm {
            refs.push(Ref::Node(d));
        }
        refs
    }

    /// What this node reads as data: not its arm's decision.
    pub(crate) fn data_refs(&self) -> Vec<Ref> {
        match &self.kind {
            Kind::Task { inputs, .. } | Kind::Decide { inputs, .. } => {
                inputs.iter().map(|i| i.from).collect()
            }
            Kind::Branch {
                decision, tails, ..
            } => std::iter::once(Ref::Node(*decision))
                .chain(tails.iter().flatten().map(|&t| Ref::Node(t)))
                .collect(),
            Kind::FanOut {
                collection,
                imports,
                ..
            } => std::iter::once(*collection)
                .chain(imports.iter().copied())
                .collect(),
            Kind::Subflow { args, .. } => args.clone(),
        }
    }

    /// A task with at least one tolerant input.
    pub(crate) fn has_tolerant_input(&self) -> bool {
        matches!(&self.kind, Kind::Task { inputs, .. } if inputs.iter().any(|i| i.tolerant))
    }

    /// A cleanup task: its task takes some input as an `Outcome` (the executor decides
    /// by the task's mask, as `#[task]` would write it, even for a hand-built node
    /// with no input at a masked position).
    pub(crate) fn is_cleanup(&self, tasks: &[TaskDef]) -> bool {
        matches!(&self.kind, Kind::Task { task, .. } if tasks[*task].mask != 0)
    }

    pub(crate) fn is_many(&self) -> bool {
        matches!(self.kind, Kind::FanOut { .. })
    }

    /// Its value is one `Val` (a task, a sub-workflow, a shared branch).
    pub(crate) fn is_val(&self) -> bool {
        matches!(
            self.kind,
            Kind::Task { .. } | Kind::Subflow { .. } | Kind::Branch { option: false, .. }
        )
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Body {
    pub(crate) nodes: Vec<Node>,
    /// The uid of the body's output (a task or a sub-workflow: one value).
    pub(crate) tail: u32,
}

impl Body {
    pub(crate) fn node(&self, uid: u32) -> Option<&Node> {
        self.nodes.iter().find(|n| n.uid == uid)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Fault {
    /// `TaskError::msg`.
    Transient,
    /// `TaskError::permanent`.
    Permanent,
    /// A panic in the task.
    Panic,
    /// Sleeps past the task's timeout (IO: a tokio sleep; CPU: a thread sleep polling
    /// `aqueduct::task::cancelled()`).
    Timeout,
    /// Succeeds with a value whose serialisation panics (a durable run's checkpoint).
    SerPanic,
    /// A decision picks an arm it does not have.
    OutOfRange,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct FaultKey {
    pub(crate) epoch: u8,
    pub(crate) uid: u32,
    /// The item index of every enclosing fan-out, outermost first.
    pub(crate) path: Vec<u32>,
    pub(crate) attempt: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trigger {
    AfterMs(u64),
    /// When the k-th task attempt of the run starts (from inside that attempt).
    AfterStarts(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreFault {
    SaveErr(u32),
    SavePanic(u32),
    FinishErr,
    FinishPanic,
}

/// One run of the case: the first, then (durable) resumes after a crash or an error.
#[derive(Clone, Debug, Default)]
pub(crate) struct Epoch {
    pub(crate) fail_fast: bool,
    pub(crate) cancel: Option<Trigger>,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) store: Option<StoreFault>,
    /// Drop the run future (durable only): a crash.
    pub(crate) crash: Option<Trigger>,
    /// `CancelHandle::kill`: a hard stop.
    pub(crate) kill: Option<Trigger>,
    /// `Runner::cleanup_grace`.
    pub(crate) grace_ms: Option<u64>,
    /// Resume by `run(same params)` rather than `resume()`.
    pub(crate) resume_by_run: bool,
    /// A durable case: a new run (another run id) rather than a resume; it restores
    /// nothing, and finds in the cache what the runs before it computed.
    pub(crate) fresh: bool,
    /// A case with cached tasks, not durable: this run is not given the cache
    /// (`Runner::cache`), so its cached tasks run.
    pub(crate) no_cache: bool,
    /// The store's `save_cached` fails.
    pub(crate) cache_save: Option<CacheSave>,
    /// Done to the cache table before this run.
    pub(crate) edit: Option<TableEdit>,
}

impl Epoch {
    /// A cancel, fail-fast, timeout or store failure: a soft stop (a kill too).
    pub(crate) fn soft_stops(&self) -> bool {
        self.fail_fast
            || self.cancel.is_some()
            || self.kill.is_some()
            || self.timeout_ms.is_some()
            || matches!(
                self.store,
                Some(StoreFault::SaveErr(_) | StoreFault::SavePanic(_))
            )
    }
}

/// The value seed of cached task `t` is `CACHE_SEED + t` (uids stay far below).
pub(crate) const CACHE_SEED: u32 = 0x4000_0000;

#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub(crate) seed: u64,
    pub(crate) tasks: Vec<TaskDef>,
    /// Children (and grandchildren per child) of `p0` and `p1`.
    pub(crate) params: [(u32, u32); 2],
    pub(crate) top: Body,
    pub(crate) durable: bool,
    pub(crate) epochs: Vec<Epoch>,
    pub(crate) faults: BTreeMap<FaultKey, Fault>,
    /// Nodes of cached tasks not registered with `Builder::cache`: they run every time.
    pub(crate) bare: BTreeSet<u32>,
    /// Faults of cached calls: (run, uid, item path).
    pub(crate) cache_faults: BTreeMap<(u8, u32, Vec<u32>), CacheFault>,
    /// A durable case whose runs are given another store as their cache
    /// (`Runner::cache` before `Runner::store`): results go there, not to the run's.
    pub(crate) cache_apart: bool,
}

impl Spec {
    pub(crate) fn fault(&self, epoch: u8, uid: u32, path: &[u32], attempt: u32) -> Option<Fault> {
        if self.faults.is_empty() {
            return None;
        }
        let key = FaultKey {
            epoch,
            uid,
            path: path.to_vec(),
            attempt,
        };
        self.faults.get(&key).copied()
    }

    /// The fault of cached call `uid` at `path` in run `epoch`.
    pub(crate) fn cache_fault(&self, epoch: u8, uid: u32, path: &[u32]) -> Option<CacheFault> {
        if self.cache_faults.is_empty() {
            return None;
        }
        self.cache_faults.get(&(epoch, uid, path.to_vec())).copied()
    }

    /// Whether `node` is a cached call: a node of a cached task registered with
    /// `Builder::cache`.
    pub(crate) fn cached_call(&self, node: &Node) -> bool {
        matches!(node.kind, Kind::Task { task, .. } if self.tasks[task].cache.is_some())
            && !self.bare.contains(&node.uid)
    }

    /// Whether the workflow has a cached call (its runs keep a cache then).
    pub(crate) fn caching(&self) -> bool {
        let mut any = false;
        visit(&self.top, &mut |n, _| any |= self.cached_call(n));
        any
    }

    /// What a task node's value hash starts from: its uid, or for a node of a cached
    /// task, the task (its value is the task's function of its inputs, whichever node
    /// calls it).
    pub(crate) fn value_seed(&self, uid: u32, task: usize) -> u32 {
        match self.tasks[task].cache {
            Some(_) => CACHE_SEED + task as u32,
            None => uid,
        }
    }

    /// Whether the value that attempt of instance `uid` at `path` in run `epoch` makes
    /// panics in its `Drop` where the library drops it (D1): in a third of the cases,
    /// one instance in six. Drawn from the seed apart from the generator's stream, so
    /// the other faults of a seed stay as they were; the model ignores it (the panic is
    /// contained, the value still counted dead).
    pub(crate) fn bomb(&self, epoch: u8, uid: u32, path: &[u32]) -> bool {
        use crate::rng::mix;
        if !mix(self.seed, 0xD1).is_multiple_of(3) {
            return false;
        }
        let at = path.iter().fold(
            mix(mix(self.seed, u64::from(uid)), u64::from(epoch)),
            |h, &i| mix(h, u64::from(i)),
        );
        at.is_multiple_of(6)
    }

    /// The origin (for the alive counts) of the values a node of task `task` makes:
    /// its own uid, or for a cached task, one origin per task past the parameters'.
    pub(crate) fn origin_of(&self, uid: u32, task: usize) -> u32 {
        match self.tasks[task].cache {
            Some(_) => self.param_origin() + 1 + task as u32,
            None => uid,
        }
    }

    /// Whether node `node` (at `top` level or in a body) is checkpointed.
    pub(crate) fn checkpointed(&self, node: &Node, top: bool) -> bool {
        self.durable && (top || node.ckpt)
    }

    /// Whether any node inside a fan-out's body or a sub-workflow is checkpointed.
    pub(crate) fn items_checkpointed(&self) -> bool {
        let mut any = false;
        visit(&self.top, &mut |n, place| {
            any |= !place.chain.is_empty() && n.ckpt;
        });
        self.durable && any
    }

    /// One past the largest uid: parameters' values count under this origin.
    pub(crate) fn param_origin(&self) -> u32 {
        let mut max = 0;
        visit(&self.top, &mut |n, _| max = max.max(n.uid));
        max + 1
    }
}

/// Where a node sits: its body and the containers (fan-outs and sub-workflows) around
/// it, outermost first.
#[derive(Clone, Debug)]
pub(crate) struct Place {
    /// (uid, is a fan-out) of each container.
    pub(crate) chain: Vec<(u32, bool)>,
}

/// Calls `f` for every node, depth first, with its place.
pub(crate) fn visit<'a>(body: &'a Body, f: &mut dyn FnMut(&'a Node, &Place)) {
    fn go<'a>(body: &'a Body, place: &mut Place, f: &mut dyn FnMut(&'a Node, &Place)) {
        for node in &body.nodes {
            f(node, place);
            match &node.kind {
                Kind::FanOut { body, .. } => {
                    place.chain.push((node.uid, true));
                    go(body, place, f);
                    place.chain.pop();
                }
                Kind::Subflow { body, .. } => {
                    place.chain.push((node.uid, false));
                    go(body, place, f);
                    place.chain.pop();
                }
                Kind::Task { .. } | Kind::Decide { .. } | Kind::Branch { .. } => {}
            }
        }
    }
    go(body, &mut Place { chain: Vec::new() }, f);
}

/// Calls `f` for every node, nested bodies included, mutably.
pub(crate) fn visit_mut(body: &mut Body, f: &mut dyn FnMut(&mut Node)) {
    for node in &mut body.nodes {
        f(node);
        if let Kind::FanOut { body, .. } | Kind::Subflow { body, .. } = &mut node.kind {
            visit_mut(body, f);
        }
    }
}

/// Every uid inside a body, nested bodies included.
pub(crate) fn body_uids(body: &Body) -> HashSet<u32> {
    let mut uids = HashSet::new();
    visit(body, &mut |n, _| {
        uids.insert(n.uid);
    });
    uids
}

/// Facts about each node by uid.
pub(crate) struct Index<'a> {
    pub(crate) nodes: HashMap<u32, (&'a Node, Place)>,
    /// The body each node is in.
    pub(crate) bodies: HashMap<u32, &'a Body>,
}

impl<'a> Index<'a> {
    pub(crate) fn new(spec: &'a Spec) -> Self {
        let mut nodes = HashMap::new();
        let mut bodies = HashMap::new();
        fn go<'a>(
            body: &'a Body,
            chain: &mut Vec<(u32, bool)>,
            nodes: &mut HashMap<u32, (&'a Node, Place)>,
            bodies: &mut HashMap<u32, &'a Body>,
        ) {
            for node in &body.nodes {
                nodes.insert(
                    node.uid,
                    (
                        node,
                        Place {
                            chain: chain.clone(),
                        },
                    ),
                );
                bodies.insert(node.uid, body);
                match &node.kind {
                    Kind::FanOut { body: inner, .. } => {
                        chain.push((node.uid, true));
                        go(inner, chain, nodes, bodies);
                        chain.pop();
                    }
                    Kind::Subflow { body: inner, .. } => {
                        chain.push((node.uid, false));
                        go(inner, chain, nodes, bodies);
                        chain.pop();
                    }
                    Kind::Task { .. } | Kind::Decide { .. } | Kind::Branch { .. } => {}
                }
            }
        }
        go(&spec.top, &mut Vec::new(), &mut nodes, &mut bodies);
        Self { nodes, bodies }
    }

    /// The name the report gives node `uid` in the instance at `path`.
    pub(crate) fn name(&self, uid: u32, path: &[u32]) -> String {
        let Some((node, place)) = self.nodes.get(&uid) else {
            return format!("?{uid}");
        };
        let mut prefix = String::new();
        let mut suffix = String::new();
        let mut at = 0;
        for &(container, fan) in &place.chain {
            if fan {
                let _ = write!(suffix, "[{}]", path.get(at).copied().unwrap_or(u32::MAX));
                at += 1;
            } else {
                let _ = write!(prefix, "s{container}.");
            }
        }
        format!("{prefix}{}{suffix}", node.name())
    }

    /// The name node `uid`'s checkpoint has in the instance at `path`: the enclosing
    /// fan-outs' and sub-workflows' prefixes (`f3[2].s5.`), then its own name.
    pub(crate) fn ckpt_name(&self, uid: u32, path: &[u32]) -> String {
        let Some((node, place)) = self.nodes.get(&uid) else {
            return format!("?{uid}");
        };
        let mut prefix = String::new();
        let mut at = 0;
        for &(container, fan) in &place.chain {
            if fan {
                let i = path.get(at).copied().unwrap_or(u32::MAX);
                let _ = write!(prefix, "f{container}[{i}].");
                at += 1;
            } else {
                let _ = write!(prefix, "s{container}.");
            }
        }
        format!("{prefix}{}", node.name())
    }

    pub(crate) fn is_top(&self, uid: u32) -> bool {
        self.nodes
            .get(&uid)
            .is_some_and(|(_, p)| p.chain.is_empty())
    }
}

/// Which known findings' fault kinds are enabled (`FAULT_KNOWN`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Gates {
    /// A capped fan-out stopped with items waiting aborts the process.
    pub(crate) f1: bool,
    /// `concurrency` inside a `for` body (or a sub-workflow) cancels waiting items.
    pub(crate) f2: bool,
    /// Resumed cleanup tasks and stale checkpoints.
    pub(crate) f3: bool,
    /// A store save failure or panic is ignored (no soft stop, or no error).
    pub(crate) f4: bool,
    /// Panics outside task bodies (a checkpoint's serialisation, the store's `finish`).
    pub(crate) f5: bool,
    /// CPU timeouts count queue time / exceed concurrency.
    pub(crate) f6: bool,
    /// Fan-out item values kept alive until the run ends.
    pub(crate) f11: bool,
    /// Cleanup tasks not run after a cancel (any soft stop).
    pub(crate) f14: bool,
    /// Fixed: a fan-out (or sub-workflow) whose item has a handled failure and did
    /// not finish because the run stopped was `Failed`, not `Cancelled` (its error then
    /// counted as a failure of the run).
    pub(crate) b1: bool,
    /// Fixed: the nodes a nested body (a fan-out's or a sub-workflow's inside a
    /// fan-out's body) checkpoints were never saved unless the enclosing body
    /// checkpointed a node of its own (the enclosing item then had no checkpoint path).
    pub(crate) i1: bool,
    /// Fixed (76b4b00): a fan-out or sub-workflow inside an item whose inputs run again
    /// (are not all restored in the item) still had its own items restore their
    /// checkpoints, computed from the inputs of before.
    pub(crate) i2: bool,
    /// Fixed (76b4b00): an item's checkpoint that the resume did not restore (an input
    /// of its node runs again) was not discarded, so a later resume restored it once
    /// that input was: a stale value (a cleanup task or a decision that read a failed
    /// input).
    pub(crate) i3: bool,
    /// Fixed: in a resumed run that checkpoints items, the values restored for nested
    /// runs that never started (the run stopped first) stayed alive until the run
    /// ended, past the end of their fan-out; they now go when it ends.
    pub(crate) i4: bool,
    /// Fixed: a value whose `Drop` panicked inside a fan-out's item or a sub-workflow
    /// (scheduled, fused, or a thread's buffer) faulted the whole run; a top-level
    /// value's was contained. Its kind: task values whose `Drop` panics where the
    /// library drops them (`Spec::bomb`).
    pub(crate) d1: bool,
}

impl Gates {
    pub(crate) const ALL: Self = Self {
        f1: true,
        f2: true,
        f3: true,
        f4: true,
        f5: true,
        f6: true,
        f11: true,
        f14: true,
        b1: true,
        i1: true,
        i2: true,
        i3: true,
        i4: true,
        d1: true,
    };

    pub(crate) fn from_env() -> Self {
        // Every finding is fixed: all fault kinds run unless `FAULT_KNOWN=none`.
        let Ok(value) = std::env::var("FAULT_KNOWN") else {
            return Self::ALL;
        };
        Self::parse(&value)
    }

    pub(crate) fn parse(value: &str) -> Self {
        // `all` (or `1`): every finding's kinds; or named ones (`F2,I1`).
        let mut gates = Self::default();
        for part in value.split(',').map(|p| p.trim().to_ascii_uppercase()) {
            match part.as_str() {
                "1" | "ALL" => {
                    gates = Self {
                        i1: gates.i1,
                        i4: gates.i4,
                        ..Self::ALL
                    }
                }
                "I1" => gates.i1 = true,
                "I4" => gates.i4 = true,
                "I2" => gates.i2 = true,
                "I3" => gates.i3 = true,
                "F1" => gates.f1 = true,
                "F2" => gates.f2 = true,
                "F3" => gates.f3 = true,
                "F4" => gates.f4 = true,
                "F5" => gates.f5 = true,
                "F6" => gates.f6 = true,
                "F11" => gates.f11 = true,
                "F14" => gates.f14 = true,
                "B1" => gates.b1 = true,
                "D1" => gates.d1 = true,
                _ => {}
            }
        }
        gates
    }

    pub(crate) fn label(&self) -> String {
        let names = [
            (self.f1, "F1"),
            (self.f2, "F2"),
            (self.f3, "F3"),
            (self.f4, "F4"),
            (self.f5, "F5"),
            (self.f6, "F6"),
            (self.f11, "F11"),
            (self.f14, "F14"),
            (self.b1, "B1"),
            (self.i1, "I1"),
            (self.i2, "I2"),
            (self.i3, "I3"),
            (self.i4, "I4"),
            (self.d1, "D1"),
        ];
        let on: Vec<&str> = names.iter().filter(|(b, _)| *b).map(|(_, n)| *n).collect();
        if on.is_empty() {
            "none".into()
        } else {
            on.join(",")
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::AfterMs(ms) => write!(f, "after {ms} ms"),
            Trigger::AfterStarts(k) => write!(f, "when attempt #{k} of the run starts"),
        }
    }
}

fn body_text(spec: &Spec, body: &Body, params: &[String], depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth + 1);
    let show = |r: &Ref| match r {
        Ref::Param(k) => params
            .get(*k as usize)
            .cloned()
            .unwrap_or_else(|| format!("param{k}")),
        Ref::Node(u) => body.node(*u).map_or_else(|| format!("?{u}"), Node::name),
    };
    for node in &body.nodes {
        let pad = match node.arm {
            Some((d, k)) => format!("{pad}[d{d} arm {k}] "),
            None => pad.clone(),
        };
        // `*`: checkpointed item by item.
        let star = if node.ckpt && spec.durable { "*" } else { "" };
        match &node.kind {
            Kind::Decide { inputs, arms, rule } => {
                let ins: Vec<String> = inputs
                    .iter()
                    .map(|i| format!("{}{}", if i.tolerant { "~" } else { "" }, show(&i.from)))
                    .collect();
                let _ = writeln!(
                    out,
                    "{pad}{star}{} = decide {rule:?} of {arms} arms ({})",
                    node.name(),
                    ins.join(", ")
                );
            }
            Kind::Branch {
                decision,
                tails,
                option,
            } => {
                let ts: Vec<String> = tails
                    .iter()
                    .map(|t| t.map_or_else(|| "None".to_owned(), |t| show(&Ref::Node(t))))
                    .collect();
                let _ = writeln!(
                    out,
                    "{pad}{star}{} = branch{} of d{decision} [{}]",
                    node.name(),
                    if *option { "_option" } else { "" },
                    ts.join(", ")
                );
            }
            Kind::Task {
                task,
                inputs,
                count,
                sub,
                work_us,
            } => {
                let ins: Vec<String> = inputs
                    .iter()
                    .map(|i| {
                        let mark = match (i.tolerant, i.moved) {
                            (true, _) => "~",
                            (false, true) => ">",
                            (false, false) => "",
                        };
                        format!("{mark}{}", show(&i.from))
                    })
                    .collect();
                let _ = write!(
                    out,
                    "{pad}{star}{} = {}({})",
                    node.name(),
                    TASK_NAMES[*task],
                    ins.join(", ")
                );
                if *count > 0 {
                    let _ = write!(out, " -> {count} children x {sub}");
                }
                if *work_us > 0 && spec.tasks[*task].io {
                    let _ = write!(out, " [io {work_us} us]");
                }
                if spec.cached_call(node) {
                    out.push_str(" [cached]");
                } else if spec.tasks[*task].cache.is_some() {
                    out.push_str(" [cached task, not registered: runs every time]");
                }
                out.push('\n');
            }
            Kind::FanOut {
                collection,
                imports,
                cap,
                body: inner,
            } => {
                let imps: Vec<String> = imports.iter().map(show).collect();
                let _ = write!(
                    out,
                    "{pad}{star}{} = for item in {}",
                    node.name(),
                    show(collection)
                );
                if let Some(cap) = cap {
                    let _ = write!(out, " (cap {cap})");
                }
                if !imps.is_empty() {
                    let _ = write!(out, " importing {}", imps.join(", "));
                }
                out.push_str(" {\n");
                let mut inner_params = vec!["item".to_owned()];
                inner_params.extend(imps.iter().map(|i| format!("^{i}")));
                body_text(spec, inner, &inner_params, depth + 1, out);
                let tail = inner
                    .node(inner.tail)
                    .map_or_else(|| format!("?{}", inner.tail), Node::name);
                let _ = writeln!(out, "{pad}  => {tail}\n{pad}}}");
            }
            Kind::Subflow { args, body: inner } => {
                let a: Vec<String> = args.iter().map(show).collect();
                let _ = writeln!(
                    out,
                    "{pad}{star}{} = flow{}({}) {{",
                    node.name(),
                    node.uid,
                    a.join(", ")
                );
                let inner_params: Vec<String> = a.iter().map(|i| format!("^{i}")).collect();
                body_text(spec, inner, &inner_params, depth + 1, out);
                let tail = inner
                    .node(inner.tail)
                    .map_or_else(|| format!("?{}", inner.tail), Node::name);
                let _ = writeln!(out, "{pad}  => {tail}\n{pad}}}");
            }
        }
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "workflow w{}{}: p0 = {} children x {}, p1 = {} children x {}",
            self.seed,
            match (self.durable, self.cache_apart) {
                (true, true) => " (durable, its cache in another store)",
                (true, false) => " (durable)",
                _ => "",
            },
            self.params[0].0,
            self.params[0].1,
            self.params[1].0,
            self.params[1].1
        );
        for (i, t) in self.tasks.iter().enumerate() {
            let _ = write!(
                out,
                "  task {}: {}, retries {} delay {} ms {:?}{}",
                TASK_NAMES[i],
                if t.io { "io" } else { "cpu" },
                t.retries,
                t.delay_ms,
                t.backoff,
                if t.retry_panics {
                    ", retries panics"
                } else {
                    ""
                }
            );
            if let Some(ms) = t.timeout_ms {
                let _ = write!(out, ", timeout {ms} ms");
            }
            if let Some(n) = t.concurrency {
                let _ = write!(out, ", concurrency {n}");
            }
            if t.mask != 0 {
                let _ = write!(out, ", tolerant inputs {:#b}", t.mask);
            }
            if let Some(c) = t.cache {
                let _ = write!(out, ", cached (code {:#x}", c.code);
                if let Some(ttl) = c.ttl_ms {
                    let _ = write!(out, ", ttl {ttl} ms");
                }
                out.push(')');
            }
            out.push('\n');
        }
        body_text(self, &self.top, &["p0".into(), "p1".into()], 0, &mut out);
        let output = self
            .top
            .node(self.top.tail)
            .map_or_else(|| format!("?{}", self.top.tail), Node::name);
        let _ = writeln!(out, "  output {output}");
        let index = Index::new(self);
        for (e, epoch) in self.epochs.iter().enumerate() {
            let _ = write!(out, "  run {e}:");
            if epoch.fresh {
                out.push_str(" a new run (another run id)");
            } else if e > 0 && self.durable {
                out.push_str(if epoch.resume_by_run {
                    " resume by run(params)"
                } else {
                    " resume()"
                });
            } else if e > 0 {
                out.push_str(" run again");
            }
            if epoch.no_cache {
                out.push_str(", without the cache");
            }
            if let Some(edit) = epoch.edit {
                let _ = write!(out, ", cache table edited first: {edit:?}");
            }
            if let Some(c) = epoch.cache_save {
                let _ = write!(out, ", save_cached fault {c:?}");
            }
            if epoch.fail_fast {
                out.push_str(" fail-fast");
            }
            if let Some(t) = epoch.cancel {
                let _ = write!(out, ", cancel {t}");
            }
            if let Some(ms) = epoch.timeout_ms {
                let _ = write!(out, ", run timeout {ms} ms");
            }
            if let Some(s) = epoch.store {
                let _ = write!(out, ", store fault {s:?}");
            }
            if let Some(t) = epoch.crash {
                let _ = write!(out, ", crash (drop the run) {t}");
            }
            if let Some(t) = epoch.kill {
                let _ = write!(out, ", kill {t}");
            }
            if let Some(ms) = epoch.grace_ms {
                let _ = write!(out, ", cleanup grace {ms} ms");
            }
            let faults: Vec<String> = self
                .faults
                .iter()
                .filter(|(k, _)| usize::from(k.epoch) == e)
                .map(|(k, f)| format!("{} #{} {f:?}", index.name(k.uid, &k.path), k.attempt))
                .chain(
                    self.cache_faults
                        .iter()
                        .filter(|((x, ..), _)| usize::from(*x) == e)
                        .map(|((_, uid, path), f)| {
                            format!("{} cache {f:?}", index.name(*uid, path))
                        }),
                )
                .collect();
            if faults.is_empty() {
                out.push_str("; no faults\n");
            } else {
                let _ = writeln!(out, "; faults: {}", faults.join(", "));
            }
        }
        f.write_str(&out)
    }
}
