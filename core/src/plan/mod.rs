//! The compiled form of a workflow: a [`Plan`] (what each node calls, its successors,
//! the roots) and the typed [`Builder`] that makes one, with its handles, inputs,
//! fan-out and sub-workflow definitions, and the durable shape and fingerprint.
//!
//! Everything here is fixed once built and shared by every run; the `exec` layer
//! runs a plan, the `run` layer configures runs of a [`Workflow`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use crate::describe::Graph;
use crate::task::{Kind, TaskError};
use crate::value::{Slot, SlotView, Value};

mod branch;
mod builder;
mod cache;
mod chain;
mod durable;
mod fanout;
mod inputs;

pub(crate) use branch::BranchDef;
pub use branch::Decision;
pub use builder::{Builder, Handle, NodeRef, Step};
pub(crate) use cache::CacheDef;
pub use cache::CacheKey;
pub use chain::{Chain, ChainValue, Imports};
pub(crate) use chain::{ChainHost, Event, Typed};
pub use durable::CheckpointFormat;
#[cfg(feature = "durable")]
pub use durable::Checkpointable;
#[cfg(not(feature = "durable"))]
pub use durable::DurableFeature;
#[cfg(feature = "durable")]
pub(crate) use durable::readable;
#[cfg(feature = "durable")]
pub(crate) use durable::restore;
#[cfg(feature = "durable")]
pub(crate) use durable::shape_diff;
pub(crate) use durable::{Codec, Durable, SCHEMA};
pub use fanout::{Checked, Collection, ItemsFailed, fan_over};
pub(crate) use fanout::{FanOutDef, Fused, FusedItem, Items};
pub use inputs::{Arguments, In, Inputs, Params};

/// Makes a node's value takeable by its one reader (see [`crate::value::movable`]).
pub(crate) type Mover = fn(Value) -> Value;

/// What calling a node gives the executor, untyped: its result, or a future of it.
pub(crate) enum Called<'a> {
    Done(Result<Value, TaskError>),
    Pending(PendingFuture<'a>),
}

/// An IO task's call: the future of its value.
pub(crate) type PendingFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Value, TaskError>> + Send + 'a>>;

pub(crate) type NodeFn = dyn for<'a> Fn(SlotView<'a>) -> Called<'a> + Send + Sync;

/// What a node does when it is ready.
pub(crate) enum Call {
    /// A parameter: filled before the run, never called.
    Param,
    /// A task.
    Task(Box<NodeFn>),
    /// A `for`: its body, run once per item.
    FanOut(Box<FanOutDef>),
    /// The value of an `if` or `match`: the taken arm's.
    Branch(Box<BranchDef>),
}

/// [`Plan::flags`]: the node is in an arm of an `if` or `match`.
pub(crate) const IN_ARM: u8 = 1;
/// [`Plan::flags`]: the node is a decision.
pub(crate) const DECISION: u8 = 2;
/// [`Plan::flags`]: the node starts after a soft stop: a cleanup task, or the value of an
/// `if` or `match` (which runs nothing).
pub(crate) const PASSES_SOFT_STOP: u8 = 4;
/// [`Plan::flags`]: the node is a cached task ([`Plan::caches`]).
pub(crate) const CACHED: u8 = 8;
/// [`Plan::flags`]: the node's task has a concurrency limit.
pub(crate) const LIMITED: u8 = 16;
/// [`Plan::flags`]: the node's attempts run in a tokio task (IO work, or CPU work with
/// a timeout that a tokio task supervises); else on rayon.
pub(crate) const ON_TOKIO: u8 = 32;
/// [`Plan::flags`]: the node is a cleanup task.
pub(crate) const CLEANUP: u8 = 64;
/// [`Plan::flags`]: the node's value is not dropped as one plain value at the run's
/// end: a branch's is an alias of its arm's node, a `for`'s or a sub-workflow's was
/// gathered from nested runs ([`Plan::drop_value`]). The others skip both checks.
pub(crate) const DROPPED_APART: u8 = 128;

/// Everything a run needs that does not change between runs.
pub(crate) struct Plan {
    pub(crate) graph: Arc<Graph>,
    /// How many of the last parameters are resources (see [`Workflow`]): given to
    /// each run beside its parameters, never saved.
    pub(crate) resources: usize,
    /// Per node, what it does when ready.
    pub(crate) calls: Vec<Call>,
    /// Per node, its value when it does not succeed (an `Outcome<T>` of its type).
    pub(crate) unresolved: Vec<fn(Option<TaskError>) -> Value>,
    /// Per node whose one reader takes its value (a by-value input): how its value is
    /// made takeable once it succeeded.
    pub(crate) movers: Vec<Option<Mover>>,
    /// Per node whose outcome decisions read (a `match` on it), those decisions: its
    /// failure is handled if one of them ran (the run does not fail because of it), and
    /// fail-fast does not stop on it.
    pub(crate) handled_by: HashMap<u32, Vec<u32>>,
    /// Per decision, the nodes of its arms, each with its arm: those of the arms it did
    /// not take end at once, without waiting for their other inputs.
    pub(crate) arms_of: HashMap<u32, Vec<(u32, u32)>>,
    /// Per node, what the scheduler asks of it on every job, one byte: [`IN_ARM`],
    /// [`DECISION`], [`PASSES_SOFT_STOP`], [`CACHED`], [`LIMITED`], [`ON_TOKIO`],
    /// [`CLEANUP`], [`DROPPED_APART`].
    pub(crate) flags: Vec<u8>,
    /// Successors of node `i` are `successors[offsets[i]..offsets[i + 1]]`, each with
    /// whether it requires the value (else it takes an outcome).
    pub(crate) offsets: Vec<u32>,
    pub(crate) successors: Vec<(u32, bool)>,
    /// Per node, how many task (non-parameter) inputs it waits for.
    pub(crate) waits_for: Vec<u32>,
    /// Tasks that wait for nothing: first the `cpu_roots` that run on rayon, then those
    /// that run on tokio ([`cpu_first`]).
    pub(crate) roots: Vec<u32>,
    pub(crate) cpu_roots: usize,
    /// For a `#[durable]` workflow: the graph's shape and fingerprint.
    pub(crate) durable: Option<Durable>,
    /// Per node, how its checkpoint is encoded, if it has one: the nodes of a durable
    /// workflow, its fan-outs' bodies and its durable sub-workflows.
    pub(crate) codecs: Vec<Option<Codec>>,
    /// Whether a node of this plan, or of a body nested in it at any depth, is
    /// checkpointed: a nested run of it needs a path.
    pub(crate) checkpoints_any: bool,
    /// Per cached task node ([`CACHED`]), how its key is made and its result kept.
    #[cfg_attr(not(feature = "durable"), allow(dead_code))]
    pub(crate) caches: HashMap<u32, CacheDef>,
    /// Whether a node of this plan, or of a body nested in it at any depth, is cached:
    /// a run of it looks results up in a store, if it has one.
    pub(crate) caches_any: bool,
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plan")
            .field("graph", &self.graph)
            .finish_non_exhaustive()
    }
}

/// What a [`Builder`] hands over for its graph, per node but `durable`.
pub(crate) struct Built {
    pub(crate) resources: usize,
    pub(crate) calls: Vec<Call>,
    pub(crate) unresolved: Vec<fn(Option<TaskError>) -> Value>,
    pub(crate) movers: Vec<Option<Mover>>,
    pub(crate) handled_by: HashMap<u32, Vec<u32>>,
    pub(crate) durable: Option<Durable>,
    pub(crate) codecs: Vec<Option<Codec>>,
    pub(crate) caches: HashMap<u32, CacheDef>,
}

impl Plan {
    /// Compiles a finished graph: successors in CSR form, each node's count of task
    /// inputs to wait for, and the roots.
    pub(crate) fn new(graph: Graph, built: Built) -> Self {
        let Built {
            resources,
            calls,
            unresolved,
            movers,
            handled_by,
            durable,
            codecs,
            caches,
        } = built;
        let n = graph.len();
        let task_inputs = |node: usize| {
            graph
                .node(node)
                .edges()
                .filter(|&(input, _)| graph.kind(input) != Kind::Param)
        };
        // Count, then place, every edge from a task.
        let mut offsets = vec![0u32; n + 1];
        let mut waits_for = vec![0u32; n];
        for (node, waits) in waits_for.iter_mut().enumerate() {
            for (input, _) in task_inputs(node) {
                offsets[input + 1] += 1;
                *waits += 1;
            }
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        let mut cursor = offsets.clone();
        let mut successors = vec![(0u32, true); offsets[n] as usize];
        for node in 0..n {
            for (input, tolerant) in task_inputs(node) {
                successors[cursor[input] as usize] = (node as u32, !tolerant);
                cursor[input] += 1;
            }
        }
        let mut roots: Vec<u32> = (0..n)
            .filter(|&i| graph.kind(i) != Kind::Param && waits_for[i] == 0)
            .map(|i| i as u32)
            .collect();
        let mut arms_of: HashMap<u32, Vec<(u32, u32)>> = HashMap::new();
        for node in 0..n {
            if let Some(arm) = graph.arm(node) {
                arms_of
                    .entry(arm.decision)
                    .or_default()
                    .push((node as u32, arm.arm));
            }
        }
        let flags: Vec<u8> = (0..n)
            .map(|node| {
                let info = graph.info(node);
                let mut flags = 0;
                if graph.arm(node).is_some() {
                    flags |= IN_ARM;
                }
                if info.kind == Kind::Decision {
                    flags |= DECISION;
                }
                if info.is_cleanup() || info.kind == Kind::Branch {
                    flags |= PASSES_SOFT_STOP;
                }
                if caches.contains_key(&(node as u32)) {
                    flags |= CACHED;
                }
                if info.concurrency.is_some() {
                    flags |= LIMITED;
                }
                if info.is_cleanup() {
                    flags |= CLEANUP;
                }
                if info.kind == Kind::Branch || matches!(calls[node], Call::FanOut(_)) {
                    flags |= DROPPED_APART;
                }
                let on_rayon = match info.kind {
                    Kind::Cpu => info.timeout.is_none(),
                    Kind::FanOut | Kind::Workflow | Kind::Decision | Kind::Branch => true,
                    _ => false,
                };
                if !on_rayon {
                    flags |= ON_TOKIO;
                }
                flags
            })
            .collect();
        let cpu_roots = cpu_first(&mut roots, &flags);
        let checkpoints_any = codecs.iter().any(Option::is_some)
            || calls.iter().any(|call| match call {
                Call::FanOut(def) => def.body.checkpoints_any,
                _ => false,
            });
        let caches_any = !caches.is_empty()
            || calls.iter().any(|call| match call {
                Call::FanOut(def) => def.body.caches_any,
                _ => false,
            });
        // A builder's columns grew by doubling: a run holds the plan, so only what it
        // uses is kept (a third of them, for a graph of 10,000 nodes).
        let (mut calls, mut unresolved, mut movers, mut codecs) =
            (calls, unresolved, movers, codecs);
        calls.shrink_to_fit();
        unresolved.shrink_to_fit();
        movers.shrink_to_fit();
        codecs.shrink_to_fit();
        Self {
            resources,
            graph: Arc::new(graph),
            calls,
            unresolved,
            movers,
            handled_by,
            arms_of,
            flags,
            offsets,
            successors,
            waits_for,
            roots,
            cpu_roots,
            durable,
            checkpoints_any,
            codecs,
            caches,
            caches_any,
        }
    }

    /// Drops `node`'s value, a panic in a `Drop` contained: a `for`'s `Vec` item by item
    /// (see [`fanout::drop_gathered`]), any other value as one.
    pub(crate) fn drop_value(&self, node: usize, value: Value) {
        let name = self.graph.name_of(node);
        match &self.calls[node] {
            Call::FanOut(def) => (def.drop_value)(name, value),
            _ => crate::contain::drop_contained(name, value),
        }
    }

    /// Whether a decision reads `node`'s outcome, so that its failure may be handled.
    pub(crate) fn is_handled(&self, node: usize) -> bool {
        self.handled_by.contains_key(&(node as u32))
    }

    /// A succeeded node's value as its readers find it: takeable, if its one reader
    /// takes it by value (checkpoints are encoded before this).
    pub(crate) fn settle(&self, node: usize, value: Value) -> Value {
        match self.movers[node] {
            Some(movable) => movable(value),
            None => value,
        }
    }

    /// How many parameters (and resources) it has: its first nodes.
    pub(crate) fn params(&self) -> usize {
        (0..self.graph.len())
            .take_while(|&node| self.graph.kind(node) == Kind::Param)
            .count()
    }

    /// Makes the parameters whose one reader takes them by value takeable, in a run's
    /// `slots` (filled with the parameters, not yet shared). The parameters are the
    /// graph's first nodes ([`Builder::new`] declares them before anything else).
    pub(crate) fn settle_params(&self, slots: &mut [Slot]) {
        let params = self.params();
        for (node, slot) in slots.iter_mut().enumerate().take(params) {
            if self.movers[node].is_none() {
                continue;
            }
            if let Some(record) = slot.get_mut() {
                let value = std::mem::replace(&mut record.value, Box::new(()));
                record.value = self.settle(node, value);
            }
        }
    }

    /// Whether a fan-out over this body may run its items fused: every node is a
    /// parameter or a CPU task that makes one attempt, with no timeout and no
    /// concurrency limit (so an item needs no scheduling, timer or permit). (A run
    /// that looks cached tasks up in a store runs them scheduled, decided per run.)
    pub(crate) fn fusable(&self) -> bool {
        self.calls
            .iter()
            .enumerate()
            .all(|(node, call)| match call {
                Call::Param => true,
                Call::Task(_) => {
                    let info = self.graph.info(node);
                    info.kind == Kind::Cpu
                        && info.timeout.is_none()
                        && info.retry.retries == 0
                        && info.concurrency.is_none()
                }
                Call::FanOut(_) | Call::Branch(_) => false,
            })
    }

    /// Whether a fused body may run as its typed chain too: no task takes an input as
    /// an outcome (the chain's bindings hold values only).
    pub(crate) fn chainable(&self) -> bool {
        (0..self.graph.len()).all(|node| {
            !self.graph.info(node).is_cleanup()
                && self.graph.node(node).edges().all(|(_, tolerant)| !tolerant)
        })
    }

    /// The nodes that read `node`, each with whether it requires its value.
    pub(crate) fn successors(&self, node: usize) -> &[(u32, bool)] {
        &self.successors[self.offsets[node] as usize..self.offsets[node + 1] as usize]
    }
}

/// Orders `roots` (nodes of a plan with these `flags`) with those whose attempts run
/// on rayon first, keeping their order otherwise; returns how many those are.
pub(crate) fn cpu_first(roots: &mut [u32], flags: &[u8]) -> usize {
    let on_tokio = |root: &u32| flags[*root as usize] & ON_TOKIO != 0;
    roots.sort_by_key(on_tokio);
    roots.iter().take_while(|root| !on_tokio(root)).count()
}

/// A built workflow: run it as often as you like, each run with its own parameters.
///
/// `workflow!` builds one per workflow, once, and returns it from
/// `<name>::workflow()`. `P` is the tuple of its parameters, `O` its output, and `R`
/// the tuple of its resources (`#[resource]` parameters: see [`workflow!`]), `()` for
/// a workflow without: a workflow with resources runs with
/// [`run_with`](Self::run_with) and [`runner_with`](Self::runner_with), which take
/// them.
///
/// [`workflow!`]: crate::workflow
pub struct Workflow<P, O, R = ()> {
    pub(crate) plan: Arc<Plan>,
    _types: PhantomData<fn(P, R) -> O>,
}

impl<P, O, R> Workflow<P, O, R> {
    pub(crate) fn new(plan: Plan) -> Self {
        Self::from_plan(Arc::new(plan))
    }

    pub(crate) fn from_plan(plan: Arc<Plan>) -> Self {
        Self {
            plan,
            _types: PhantomData,
        }
    }
}

impl<P: Params, O> Workflow<P, O> {
    /// The same workflow, its last parameters its resources `R` and the others its
    /// parameters `Q`; `P` must be `Q` then `R`, and the builder must have declared
    /// them ([`Builder::resources`]). What `workflow!` does for `#[resource]`
    /// parameters.
    ///
    /// # Panics
    /// If the counts do not match.
    #[doc(hidden)]
    #[track_caller]
    pub fn with_resources<Q: Params, R: Params>(&self) -> Workflow<Q, O, R> {
        assert!(
            Q::LEN + R::LEN == P::LEN && R::LEN == self.plan.resources,
            "workflow `{}`: {} parameters and {} resources, but it has {} parameters of \
             which {} resources",
            self.plan.graph.name(),
            Q::LEN,
            R::LEN,
            P::LEN,
            self.plan.resources
        );
        Workflow::from_plan(Arc::clone(&self.plan))
    }
}

impl<P, O, R> Clone for Workflow<P, O, R> {
    /// Another handle on the same built workflow (an `Arc` clone).
    fn clone(&self) -> Self {
        Self {
            plan: Arc::clone(&self.plan),
            _types: PhantomData,
        }
    }
}

impl<P: Params, O: Send + Sync + 'static, R> Workflow<P, O, R> {
    /// Whether it was declared `#[durable]`, so that its runs can be checkpointed.
    pub fn is_durable(&self) -> bool {
        self.plan.durable.is_some()
    }

    /// The static description: nodes, tasks, edges; exports to Mermaid and DOT.
    pub fn graph(&self) -> &Graph {
        &self.plan.graph
    }
}

impl<P, O, R> fmt::Debug for Workflow<P, O, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workflow")
            .field("name", &self.plan.graph.name())
            .field("nodes", &self.plan.graph.len())
            .finish()
    }
}
