//! The typed builder: [`Handle`]s to nodes already added, [`Step`]s a node's call
//! returns, and [`Builder`], which adds nodes, fan-outs and sub-workflows and
//! compiles them into a [`Workflow`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

mod nested;

#[cfg(feature = "durable")]
use super::Checkpointable;
#[cfg(not(feature = "durable"))]
use super::DurableFeature;
use super::branch::MakeBranch;
use super::fanout::{Checked, assemble_one};
use super::{
    Arguments, Call, Called, FanOutDef, In, Inputs, Items, Mover, NodeFn, Params, PendingFuture,
    Plan, Workflow,
};
use crate::describe::{Arm, Graph, PARAM};
use crate::fake::Fakes;
use crate::task::{Kind, TaskError, TaskInfo};
use crate::value::{Value, movable, ok, unresolved};

/// A typed reference to a node's output, used to wire it into later nodes.
///
/// A handle belongs to the [`Builder`] that made it: using it in another builder (an
/// outer builder's handle inside a `fan_out` body, say) panics at build time, naming
/// the mistake, instead of silently reading another node.
pub struct Handle<T> {
    pub(super) id: u32,
    /// The builder it belongs to.
    pub(super) builder: u32,
    _value: PhantomData<fn() -> T>,
}

/// Where a handle points: its builder and its node.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRef {
    pub(super) builder: u32,
    pub(super) node: u32,
}

/// Ids for builders, so a handle knows which one it belongs to.
static BUILDERS: AtomicU32 = AtomicU32::new(0);

impl<T> Handle<T> {
    pub(super) fn new(builder: u32, id: usize) -> Self {
        let id = u32::try_from(id).expect("a workflow holds at most u32::MAX nodes");
        Self {
            id,
            builder,
            _value: PhantomData,
        }
    }

    pub(crate) fn node_ref(self) -> NodeRef {
        NodeRef {
            builder: self.builder,
            node: self.id,
        }
    }

    /// The node's position in its [`Graph`].
    pub fn index(self) -> usize {
        self.id as usize
    }
}

impl<T> Clone for Handle<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Handle<T> {}

impl<T> fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handle({})", self.id)
    }
}

/// What calling a node gives the executor: a finished result, or a future to poll.
pub struct Step<'a, T> {
    pub(crate) inner: Called<'a>,
    _output: PhantomData<fn() -> T>,
}

impl<'a, T: Send + Sync + 'static> Step<'a, T> {
    /// A node that has finished (CPU work).
    pub fn done(result: Result<T, TaskError>) -> Self {
        Self::wrap(Called::Done(result.map(ok::<T>)))
    }

    /// A node whose work is a future (IO work), polled on tokio.
    pub fn pending(future: impl Future<Output = Result<T, TaskError>> + Send + 'a) -> Self {
        Self::wrap(Called::Pending(Box::pin(async move {
            future.await.map(ok::<T>)
        })))
    }

    /// This step with its future, if it has one, replaced by `map`'s.
    pub(crate) fn map_future(
        self,
        map: impl FnOnce(PendingFuture<'a>) -> PendingFuture<'a>,
    ) -> Self {
        match self.inner {
            Called::Pending(future) => Self::wrap(Called::Pending(map(future))),
            done => Self::wrap(done),
        }
    }

    fn wrap(inner: Called<'a>) -> Self {
        Self {
            inner,
            _output: PhantomData,
        }
    }
}

/// Builds a [`Workflow`] node by node; each node's inputs are handles to earlier nodes.
///
/// ```
/// use aqueduct::graph::{Builder, Step};
/// use aqueduct::task::{Kind, TaskInfo};
///
/// let (mut b, (seed,)) = Builder::<(u64,)>::new("by_hand", ["seed"]);
/// let double = TaskInfo::new("double", Kind::Cpu);
/// let twice = b.node(double, "twice", (seed,), |input| {
///     let (x,) = input.get();
///     Step::done(Ok(x * 2))
/// });
/// let workflow = b.output(twice);
/// assert_eq!(workflow.graph().len(), 2);
/// let rt = tokio::runtime::Runtime::new().unwrap();
/// assert_eq!(rt.block_on(workflow.run((21,))).unwrap(), 42);
/// ```
pub struct Builder<P> {
    /// This builder's id, carried by its handles.
    id: u32,
    pub(super) graph: Graph,
    /// Where each distinct task sits in `graph.infos`.
    known: HashMap<TaskInfo, u32>,
    /// The arms being built (`Builder::arm`), innermost last: a node added belongs to
    /// the innermost.
    pub(super) arms: Vec<Arm>,
    /// Per node, the decision that reads its outcome, which handles its failure.
    pub(super) handled_by: HashMap<u32, Vec<u32>>,
    /// `Some(version)` once the workflow is declared durable.
    #[cfg_attr(not(feature = "durable"), allow(dead_code))]
    pub(super) version: Option<u32>,
    /// Per node, how its checkpoint is encoded, if it has one.
    pub(super) codecs: Vec<Option<super::Codec>>,
    /// Per cached node, its key and codec.
    pub(super) caches: HashMap<u32, super::CacheDef>,
    pub(super) calls: Vec<Call>,
    unresolved: Vec<fn(Option<TaskError>) -> Value>,
    /// Per node, how its value is made takeable, if its one reader takes it.
    movers: Vec<Option<Mover>>,
    /// A fan-out body's typed chain ([`chain`](Self::chain)): a
    /// [`TypedBody`](super::chain::TypedBody), until the fan-out takes it.
    chain: Option<Box<dyn std::any::Any + Send + Sync>>,
    /// How many of the last parameters are resources ([`resources`](Self::resources)).
    pub(super) resources: usize,
    /// The fakes the workflow is built with ([`crate::fake`]), if any.
    pub(super) fakes: Option<Arc<Fakes>>,
    /// Whether the next node calls a fake (the graph keeps which nodes do).
    faking: bool,
    _params: PhantomData<fn(P)>,
}

impl<P: Params> Builder<P> {
    /// Starts a workflow whose parameters have the types of `P` and the given names.
    pub fn new(name: impl Into<Cow<'static, str>>, params: P::Names) -> (Self, P::Handles) {
        let mut builder = Self {
            id: BUILDERS.fetch_add(1, Ordering::Relaxed),
            graph: Graph::new(name.into()),
            known: HashMap::new(),
            arms: Vec::new(),
            handled_by: HashMap::new(),
            version: None,
            codecs: Vec::new(),
            caches: HashMap::new(),
            calls: Vec::new(),
            unresolved: Vec::new(),
            movers: Vec::new(),
            chain: None,
            resources: 0,
            fakes: None,
            faking: false,
            _params: PhantomData,
        };
        let handles = P::declare(&mut builder, params);
        (builder, handles)
    }

    /// This builder, mutably: what an expansion passes on, whether it holds the builder
    /// or a `&mut` of it (a loop's body).
    #[doc(hidden)]
    pub fn by_ref(&mut self) -> &mut Self {
        self
    }

    /// Builds the workflow with `fakes`, which its task calls look up (see
    /// [`crate::fake`]).
    #[doc(hidden)]
    pub fn use_fakes(&mut self, fakes: &Arc<Fakes>) {
        self.fakes = Some(Arc::clone(fakes));
    }

    /// The fakes the workflow is built with.
    #[doc(hidden)]
    pub fn fakes(&self) -> Option<&Arc<Fakes>> {
        self.fakes.as_ref()
    }

    /// Marks the next node added as calling a fake.
    pub(crate) fn faking(&mut self) {
        self.faking = true;
    }

    pub(super) fn param<T: Send + Sync + 'static>(&mut self, name: Cow<'static, str>) -> Handle<T> {
        self.push(name, PARAM, &mut [], Call::Param)
    }

    pub(super) fn intern(&mut self, task: TaskInfo) -> u32 {
        let next = self.graph.infos().len() as u32;
        let info = *self.known.entry(task).or_insert(next);
        if info == next {
            self.graph.add_info(task);
        }
        info
    }

    /// The nodes `refs` point at, checked to be this builder's.
    #[track_caller]
    pub(super) fn own(&self, refs: &[NodeRef]) -> Vec<u32> {
        // A loop, not a closure: `#[track_caller]` reaches no closure, and the panic
        // must name the user's line.
        let mut nodes = Vec::with_capacity(refs.len());
        for r in refs {
            assert!(
                r.builder == self.id && (r.node as usize) < self.graph.len(),
                "graph `{}`: a `Handle` of another builder was used here; inside a \
                 `fan_out` body, read the outer graph's values through the handles the \
                 body closure receives (its `outer` argument), never by capturing them",
                self.graph.name()
            );
            nodes.push(r.node);
        }
        nodes
    }

    /// Declares the last `count` parameters resources: values each run is given beside
    /// its parameters (a connection pool, a client), never saved, checkpointed or part
    /// of a durable run's input. Split the built workflow with
    /// [`Workflow::with_resources`]. What `workflow!` does for `#[resource]` parameters.
    ///
    /// # Panics
    /// If the workflow has fewer parameters.
    #[doc(hidden)]
    #[track_caller]
    pub fn resources(&mut self, count: usize) {
        assert!(
            count <= P::LEN,
            "{count} resources, but the workflow has {} parameters",
            P::LEN
        );
        self.resources = count;
    }

    /// Hands `node`'s value to its one reader by value: once it succeeds, the reader
    /// takes it out of the run with [`In::take`] instead of borrowing it. `workflow!`
    /// calls it for every binding passed without `&` and checks, at compile time, that
    /// nothing else reads it; by hand, give such a node no other reader: a second take,
    /// or a borrow of the moved value, panics, failing the task that reads it.
    ///
    /// # Panics
    /// If `node` belongs to another builder.
    #[track_caller]
    pub fn moved<T: Send + Sync + 'static>(&mut self, node: Handle<T>) {
        let node = self.own(&[node.node_ref()])[0] as usize;
        self.movers[node] = Some(movable::<T>);
        // The value of an `if` or `match` is its arms' values, shared in place: moving
        // it moves the value of the arm it took.
        if let Call::Branch(def) = &self.calls[node]
            && matches!(def.make, MakeBranch::Shared)
        {
            let tails: Vec<u32> = def.tails.iter().flatten().copied().collect();
            for tail in tails {
                self.moved(Handle::<T>::new(self.id, tail as usize));
            }
        }
    }

    /// Adds a node that calls `task` with the values of `inputs`.
    ///
    /// `call` receives the inputs (borrowed from the run; [`In::get`] gives them as a
    /// tuple of references) and returns a [`Step`]: [`Step::done`] for CPU work, which
    /// runs on rayon, [`Step::pending`] for IO work, polled on tokio. `task.kind` says
    /// which pool calls it; `task.retry` and `task.timeout` govern its attempts. An
    /// input whose bit is set in `task.outcome_inputs` may fail without skipping this
    /// node: read it with [`In::outcomes`].
    ///
    /// # Panics
    /// If a handle of `inputs` belongs to another builder, or `task.concurrency` is
    /// `Some(0)` (no attempt could ever run).
    #[track_caller]
    pub fn node<I, T, F>(
        &mut self,
        task: TaskInfo,
        name: impl Into<Cow<'static, str>>,
        inputs: I,
        call: F,
    ) -> Handle<T>
    where
        I: Inputs,
        T: Send + Sync + 'static,
        F: for<'a, 'i> Fn(In<'a, 'i, I>) -> Step<'a, T> + Send + Sync + 'static,
    {
        self.node_with(task, name, inputs, 0, call)
    }

    /// [`node`](Self::node), with the inputs whose bit is set in `tolerant` read
    /// whatever became of them, whatever the task takes there: `workflow!` passes a
    /// part of a binding a `match` took apart on its outcome (`Outcome::Failed(e)`),
    /// which the node reads as an outcome although the task takes the part by
    /// reference.
    #[doc(hidden)]
    #[track_caller]
    pub fn node_with<I, T, F>(
        &mut self,
        task: TaskInfo,
        name: impl Into<Cow<'static, str>>,
        inputs: I,
        tolerant: u16,
        call: F,
    ) -> Handle<T>
    where
        I: Inputs,
        T: Send + Sync + 'static,
        F: for<'a, 'i> Fn(In<'a, 'i, I>) -> Step<'a, T> + Send + Sync + 'static,
    {
        assert!(
            task.concurrency != Some(0),
            "task `{}`: a concurrency limit of 0 lets no attempt run; give at least 1",
            task.name
        );
        let mut refs = Vec::new();
        inputs.indices(&mut refs);
        let positions = self.own(&refs);
        // Per distinct input, whether it may fail: only if every position that reads it
        // takes an outcome.
        let mut edges: Vec<(u32, bool)> = positions
            .iter()
            .enumerate()
            .map(|(position, &node)| {
                (
                    node,
                    position < 16 && (task.outcome_inputs | tolerant) & (1 << position) != 0,
                )
            })
            .collect();
        merge_edges(&mut edges);
        let info = self.intern(task);
        let call: Box<NodeFn> = Box::new(move |slots| {
            call(In {
                slots,
                inputs: &inputs,
            })
            .inner
        });
        let handle = self.push(name.into(), info, &mut edges, Call::Task(call));
        if std::mem::take(&mut self.faking) {
            self.graph.set_fake();
        }
        handle
    }

    /// [`fan_out`](Self::fan_out) over a collection checked by `fan_over`: what a `for`
    /// of `workflow!` calls, so that one that is not a collection is reported once.
    #[doc(hidden)]
    #[track_caller]
    pub fn fan_out_checked<I, O, T, F>(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        collection: Checked<I>,
        item: impl Into<Cow<'static, str>>,
        outer: O,
        body: F,
    ) -> Handle<Vec<T>>
    where
        I: Send + Sync + 'static,
        O: Inputs,
        T: Send + Sync + 'static,
        F: FnOnce(&mut Builder<()>, Handle<I>, O) -> Handle<T>,
    {
        let handle = Handle::<()>::new(collection.builder, collection.node as usize);
        let items = (collection.items, Some(collection.items_of));
        self.add_fan_out(name.into(), handle, item.into(), outer, body, items)
    }

    /// Adds another workflow as one node: it runs with `inputs` as its parameters
    /// (read in place, never cloned), its tasks are scheduled, retried and reported as
    /// this run's (named `node.task`), and its output is this node's value.
    ///
    /// # Panics
    /// If a handle of `inputs` belongs to another builder.
    #[track_caller]
    pub fn subflow<P2, O2, I>(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        workflow: &Workflow<P2, O2>,
        inputs: I,
    ) -> Handle<O2>
    where
        P2: Params,
        O2: Send + Sync + 'static,
        I: Inputs + Arguments<P2>,
    {
        let mut refs = Vec::new();
        inputs.indices(&mut refs);
        let imports = self.own(&refs);
        let callee = &workflow.plan;
        let moved = (0..callee.graph.len())
            .find(|&n| callee.graph.kind(n) == Kind::Param && callee.movers[n].is_some());
        if let Some(param) = moved {
            panic!(
                "workflow `{}` moves its parameter `{}` into a task, so it cannot run as a \
                 node of `{}`, whose inputs it would share: have it share the parameter",
                callee.graph.name(),
                callee.graph.name_of(param),
                self.graph.name()
            );
        }
        let mut edges: Vec<(u32, bool)> = imports.iter().map(|&node| (node, false)).collect();
        edges.sort_unstable();
        edges.dedup();
        let def = FanOutDef {
            body: Arc::clone(&workflow.plan),
            collection: None,
            imports,
            items: Items::One,
            assemble: assemble_one::<O2>,
            drop_value: crate::contain::drop_contained::<Value>,
            at_once: None,
            fused: None,
            typed: None,
        };
        let info = self.intern(TaskInfo::new("workflow", Kind::Workflow));
        let body = Arc::clone(&def.body.graph);
        let handle = self.push(name.into(), info, &mut edges, Call::FanOut(Box::new(def)));
        self.graph.add_body(body);
        handle
    }

    /// Makes runs of this workflow resumable from a [`Store`](crate::store::Store):
    /// `version` goes into the graph's fingerprint, so bump it when a task's meaning
    /// changes and old checkpoints must not be reused. `workflow!` calls it for
    /// `#[durable]` (or `#[durable(version = N)]`) workflows.
    #[cfg_attr(docsrs, doc(cfg(feature = "durable")))]
    #[cfg(feature = "durable")]
    pub fn durable(&mut self, version: u32) {
        self.version = Some(version);
        self.graph.set_version(version);
    }

    /// Checkpoints a node: when it succeeds in a durable run, its value is saved, and
    /// a resumed run loads it instead of running the task again. Checkpoints are keyed
    /// by node name: [`output`](Self::output) panics if two checkpointed nodes share
    /// one, and this panics if `node` belongs to another builder.
    #[cfg_attr(docsrs, doc(cfg(feature = "durable")))]
    #[cfg(feature = "durable")]
    #[track_caller]
    pub fn checkpoint<T: Checkpointable>(&mut self, node: Handle<T>) {
        let node = self.own(&[node.node_ref()])[0] as usize;
        self.codecs[node] = Some(super::Codec {
            encode: super::durable::encode::<T>,
            decode: super::durable::decode::<T>,
        });
    }

    /// Without the `durable` feature: refused at compile time, naming the feature, so
    /// that `#[durable]` without it is one clear error.
    #[cfg(not(feature = "durable"))]
    #[doc(hidden)]
    pub fn durable(&mut self, _version: u32)
    where
        P: DurableFeature,
    {
    }

    /// Without the `durable` feature nothing is checkpointed; only reached after the
    /// error of [`durable`](Self::durable).
    #[cfg(not(feature = "durable"))]
    #[doc(hidden)]
    pub fn checkpoint<T>(&mut self, _node: Handle<T>) {}

    pub(super) fn push<T: Send + Sync + 'static>(
        &mut self,
        name: Cow<'static, str>,
        info: u32,
        edges: &mut [(u32, bool)],
        call: Call,
    ) -> Handle<T> {
        // Inside an arm, the node also waits for its decision, which it requires.
        let arm = self.arms.last().copied();
        let mut guarded;
        let edges = match arm {
            Some(arm) => {
                guarded = edges.to_vec();
                match guarded.binary_search_by_key(&arm.decision, |&(node, _)| node) {
                    Ok(at) => guarded[at].1 = false,
                    Err(at) => guarded.insert(at, (arm.decision, false)),
                }
                &mut guarded[..]
            }
            None => edges,
        };
        self.graph.add_node(name, info, edges);
        if let Some(arm) = arm {
            self.graph.set_arm(arm);
        }
        self.calls.push(call);
        self.codecs.push(None);
        self.unresolved.push(unresolved::<T>);
        self.movers.push(None);
        Handle::new(self.id, self.graph.len() - 1)
    }

    /// Finishes the graph; a run returns the value of `output`.
    ///
    /// # Panics
    /// If `output` belongs to another builder, or (in a durable workflow) two
    /// checkpointed nodes share a name.
    #[track_caller]
    pub fn output<O: Send + Sync + 'static>(mut self, output: Handle<O>) -> Workflow<P, O> {
        let output = self.own(&[output.node_ref()])[0] as usize;
        let mut graph = std::mem::replace(&mut self.graph, Graph::new(Cow::Borrowed("")));
        graph.finish(output);
        let durable = self.durable_plan(&graph);
        Workflow::new(Plan::new(
            graph,
            super::Built {
                resources: self.resources,
                calls: self.calls,
                unresolved: self.unresolved,
                movers: self.movers,
                handled_by: self.handled_by,
                durable,
                codecs: self.codecs,
                caches: self.caches,
            },
        ))
    }
}

/// Sorts `edges` (input, read as an outcome) and keeps one per input, read as an
/// outcome only if every position that reads it takes one.
pub(super) fn merge_edges(edges: &mut Vec<(u32, bool)>) {
    edges.sort_unstable();
    edges.dedup_by(|later, first| {
        let same = later.0 == first.0;
        first.1 &= !same || later.1;
        same
    });
}
