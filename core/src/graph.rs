//! The typed builder, the built [`Workflow`] and its static description, [`Graph`].
//!
//! `workflow!` expands to calls of this builder; a graph can also be built by hand with
//! the same guarantees: a [`Handle<T>`] exists only for a node already added, so every
//! input names an earlier node (no cycles can be built) and carries its value's type.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::error::Error;
use crate::executor::{self, RunOptions, Value};
#[doc(hidden)]
pub use crate::executor::{Record, Slot};
use crate::report::RunReport;
use crate::retry::RetryPolicy;
use crate::run::{RunOutcome, Runner};
use crate::task::{Kind, Outcome, TaskError, TaskInfo};

/// A typed reference to a node's output, used to wire it into later nodes.
pub struct Handle<T> {
    id: u32,
    _value: PhantomData<fn() -> T>,
}

impl<T> Handle<T> {
    fn new(id: usize) -> Self {
        let id = u32::try_from(id).expect("a workflow holds at most u32::MAX nodes");
        Self {
            id,
            _value: PhantomData,
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

/// A tuple of handles a node reads: `()`, `(Handle<A>,)`, `(Handle<A>, Handle<B>)`, ….
pub trait Inputs: Copy + Send + Sync + 'static {
    /// The values, borrowed from the run: `(&'a A, &'a B, …)`.
    type Refs<'a>;
    /// What became of each input: `(&'a Outcome<A>, &'a Outcome<B>, …)`.
    type Outcomes<'a>;
    /// Borrows every input's value from a run's slots.
    #[doc(hidden)]
    fn refs(self, slots: &[Slot]) -> Self::Refs<'_>;
    /// Borrows every input's outcome from a run's slots.
    #[doc(hidden)]
    fn outcomes(self, slots: &[Slot]) -> Self::Outcomes<'_>;
    /// Appends each input's node index.
    #[doc(hidden)]
    fn indices(self, out: &mut Vec<u32>);
}

/// A tuple of a workflow's parameter types: `()`, `(A,)`, `(A, B)`, ….
pub trait Params: Send + 'static {
    /// One handle per parameter.
    type Handles;
    /// One name per parameter.
    type Names;
    #[doc(hidden)]
    fn declare(builder: &mut Builder<Self>, names: Self::Names) -> Self::Handles
    where
        Self: Sized;
    #[doc(hidden)]
    fn store(self, slots: &[Slot]);
}

fn outcome<T: 'static>(slots: &[Slot], id: u32) -> &Outcome<T> {
    slots[id as usize]
        .get()
        .and_then(|record| record.value.downcast_ref())
        .expect("aqueduct: a node ran before its input was resolved")
}

fn value<T: 'static>(slots: &[Slot], id: u32) -> &T {
    outcome(slots, id)
        .value()
        .expect("aqueduct: a node ran although an input it requires did not succeed")
}

macro_rules! tuples {
    ($( ($($T:ident $i:tt),*) )*) => {$(
        impl<$($T: Send + Sync + 'static),*> Inputs for ($(Handle<$T>,)*) {
            type Refs<'a> = ($(&'a $T,)*);
            type Outcomes<'a> = ($(&'a Outcome<$T>,)*);
            #[allow(clippy::unused_unit)]
            fn refs(self, _slots: &[Slot]) -> Self::Refs<'_> {
                ($(value::<$T>(_slots, self.$i.id),)*)
            }
            #[allow(clippy::unused_unit)]
            fn outcomes(self, _slots: &[Slot]) -> Self::Outcomes<'_> {
                ($(outcome::<$T>(_slots, self.$i.id),)*)
            }
            fn indices(self, _out: &mut Vec<u32>) {
                $(_out.push(self.$i.id);)*
            }
        }

        impl<$($T: Send + Sync + 'static),*> Params for ($($T,)*) {
            type Handles = ($(Handle<$T>,)*);
            type Names = [&'static str; 0 $(+ { let _ = $i; 1 })*];
            #[allow(clippy::unused_unit)]
            fn declare(_builder: &mut Builder<Self>, _names: Self::Names) -> Self::Handles {
                ($(_builder.param::<$T>(_names[$i]),)*)
            }
            fn store(self, _slots: &[Slot]) {
                $(executor::fill(&_slots[$i], Box::new(Outcome::Ok(self.$i)));)*
            }
        }
    )*};
}

tuples! {
    ()
    (A 0)
    (A 0, B 1)
    (A 0, B 1, C 2)
    (A 0, B 1, C 2, D 3)
    (A 0, B 1, C 2, D 3, E 4)
    (A 0, B 1, C 2, D 3, E 4, F 5)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11)
}

/// A node's declared inputs, borrowed from the run while the node executes.
pub struct In<'a, I> {
    slots: &'a [Slot],
    inputs: I,
}

impl<'a, I: Inputs> In<'a, I> {
    /// Every input's value, in the order the node declared them.
    pub fn get(&self) -> I::Refs<'a> {
        self.inputs.refs(self.slots)
    }

    /// What became of every input, for a node whose [`TaskInfo::outcome_inputs`] lets
    /// it run whatever happened upstream.
    pub fn outcomes(&self) -> I::Outcomes<'a> {
        self.inputs.outcomes(self.slots)
    }
}

/// What calling a node gives the executor: a finished result, or a future to poll.
pub struct Step<'a, T> {
    pub(crate) inner: executor::Step<'a>,
    _output: PhantomData<fn() -> T>,
}

impl<'a, T: Send + Sync + 'static> Step<'a, T> {
    /// A node that has finished (CPU work).
    pub fn done(result: Result<T, TaskError>) -> Self {
        Self::wrap(executor::Step::Done(result.map(ok::<T>)))
    }

    /// A node whose work is a future (IO work), polled on tokio.
    pub fn pending(future: impl Future<Output = Result<T, TaskError>> + Send + 'a) -> Self {
        Self::wrap(executor::Step::Pending(Box::pin(async move {
            future.await.map(ok::<T>)
        })))
    }

    fn wrap(inner: executor::Step<'a>) -> Self {
        Self {
            inner,
            _output: PhantomData,
        }
    }
}

fn ok<T: Send + Sync + 'static>(value: T) -> Value {
    Box::new(Outcome::Ok(value))
}

/// The value of a node that did not succeed: `Outcome::Failed` or `Outcome::Skipped`.
fn unresolved<T: Send + Sync + 'static>(error: Option<TaskError>) -> Value {
    Box::new(error.map_or(Outcome::<T>::Skipped, Outcome::Failed))
}

pub(crate) type NodeFn = dyn for<'a> Fn(&'a [Slot]) -> executor::Step<'a> + Send + Sync;

/// One node of a [`Graph`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct GraphNode {
    /// The binding it is assigned to (`let name = …`), or the task's name for the tail.
    pub name: Cow<'static, str>,
    /// The task it calls; `None` for a workflow parameter.
    pub task: Option<&'static str>,
    /// Where it runs.
    pub kind: Kind,
    /// The nodes whose outputs it reads, by index, without repeats.
    pub inputs: Vec<usize>,
    /// Those of `inputs` it reads as an [`Outcome`]: it runs even if they fail.
    pub outcome_inputs: Vec<usize>,
    /// When a failed attempt is retried.
    pub retry: RetryPolicy,
    /// The longest one attempt may take.
    pub timeout: Option<std::time::Duration>,
}

/// The static description of a workflow: node names, the task each calls, edges and kinds.
///
/// Nodes are in a topological order: every node's inputs come before it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Graph {
    /// The workflow's name.
    pub name: Cow<'static, str>,
    /// Every node, parameters first.
    pub nodes: Vec<GraphNode>,
    /// The node whose value the run returns.
    pub output: usize,
}

impl Graph {
    /// The graph as a Mermaid flowchart: parameters as parallelograms, CPU tasks as
    /// rectangles, IO tasks as rounded boxes, the output with a double border.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        for (i, node) in self.nodes.iter().enumerate() {
            let label = mermaid_escape(&self.label(i));
            let (open, close) = match node.kind {
                _ if i == self.output => ("[[", "]]"),
                Kind::Param => ("[/", "/]"),
                Kind::Cpu => ("[", "]"),
                Kind::Io => ("(", ")"),
            };
            let _ = writeln!(out, "    n{i}{open}\"{label}\"{close}");
        }
        for (i, node) in self.nodes.iter().enumerate() {
            for input in &node.inputs {
                let arrow = if node.outcome_inputs.contains(input) {
                    "-.->"
                } else {
                    "-->"
                };
                let _ = writeln!(out, "    n{input} {arrow} n{i}");
            }
        }
        out
    }

    /// The graph in Graphviz DOT.
    pub fn to_dot(&self) -> String {
        let mut out = format!("digraph \"{}\" {{\n", dot_escape(&self.name));
        for (i, node) in self.nodes.iter().enumerate() {
            let shape = match node.kind {
                Kind::Param => "parallelogram",
                Kind::Cpu => "box",
                Kind::Io => "box, style=rounded",
            };
            let periphery = if i == self.output {
                ", peripheries=2"
            } else {
                ""
            };
            let label = dot_escape(&self.label(i));
            let _ = writeln!(
                out,
                "    n{i} [label=\"{label}\", shape={shape}{periphery}];"
            );
        }
        for (i, node) in self.nodes.iter().enumerate() {
            for input in &node.inputs {
                let style = if node.outcome_inputs.contains(input) {
                    " [style=dashed]"
                } else {
                    ""
                };
                let _ = writeln!(out, "    n{input} -> n{i}{style};");
            }
        }
        out.push_str("}\n");
        out
    }

    fn label(&self, i: usize) -> String {
        let node = &self.nodes[i];
        match node.task {
            Some(task) if task != node.name => format!("{} = {task}", node.name),
            _ => node.name.to_string(),
        }
    }
}

fn mermaid_escape(s: &str) -> String {
    s.replace('"', "#quot;")
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Everything a run needs that does not change between runs.
pub(crate) struct Plan {
    pub(crate) graph: Graph,
    /// Per node, its call; `None` for parameters.
    pub(crate) calls: Vec<Option<Box<NodeFn>>>,
    /// Per node, its value when it does not succeed (an `Outcome<T>` of its type).
    pub(crate) unresolved: Vec<fn(Option<TaskError>) -> Value>,
    /// Successors of node `i` are `successors[offsets[i]..offsets[i + 1]]`; `required`
    /// says, per edge, whether the successor needs the value (else it takes an outcome).
    pub(crate) offsets: Vec<u32>,
    pub(crate) successors: Vec<u32>,
    pub(crate) required: Vec<bool>,
    /// Per node, how many task (non-parameter) inputs it waits for.
    pub(crate) waits_for: Vec<u32>,
    /// Tasks that wait for nothing.
    pub(crate) roots: Vec<u32>,
}

impl Plan {
    pub(crate) fn successors(&self, node: usize) -> impl Iterator<Item = (&u32, &bool)> {
        let range = self.offsets[node] as usize..self.offsets[node + 1] as usize;
        self.successors[range.clone()]
            .iter()
            .zip(&self.required[range])
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
/// assert_eq!(workflow.graph().nodes.len(), 2);
/// # let rt = tokio::runtime::Runtime::new().unwrap();
/// assert_eq!(rt.block_on(workflow.run((21,))).unwrap(), 42);
/// ```
pub struct Builder<P> {
    name: Cow<'static, str>,
    nodes: Vec<GraphNode>,
    calls: Vec<Option<Box<NodeFn>>>,
    unresolved: Vec<fn(Option<TaskError>) -> Value>,
    _params: PhantomData<fn(P)>,
}

impl<P: Params> Builder<P> {
    /// Starts a workflow whose parameters have the types of `P` and the given names.
    pub fn new(name: impl Into<Cow<'static, str>>, params: P::Names) -> (Self, P::Handles) {
        let mut builder = Self {
            name: name.into(),
            nodes: Vec::new(),
            calls: Vec::new(),
            unresolved: Vec::new(),
            _params: PhantomData,
        };
        let handles = P::declare(&mut builder, params);
        (builder, handles)
    }

    fn param<T: Send + Sync + 'static>(&mut self, name: &'static str) -> Handle<T> {
        self.push(
            GraphNode {
                name: name.into(),
                task: None,
                kind: Kind::Param,
                inputs: Vec::new(),
                outcome_inputs: Vec::new(),
                retry: RetryPolicy::NONE,
                timeout: None,
            },
            None,
        )
    }

    /// Adds a node that calls `task` with the values of `inputs`.
    ///
    /// `call` receives the inputs (borrowed from the run; [`In::get`] gives them as a
    /// tuple of references) and returns a [`Step`]: [`Step::done`] for CPU work, which
    /// runs on rayon, [`Step::pending`] for IO work, polled on tokio. `task.kind` says
    /// which pool calls it; `task.retry` and `task.timeout` govern its attempts. An
    /// input whose bit is set in `task.outcome_inputs` may fail without skipping this
    /// node: read it with [`In::outcomes`].
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
        F: for<'a> Fn(In<'a, I>) -> Step<'a, T> + Send + Sync + 'static,
    {
        let mut positions = Vec::new();
        inputs.indices(&mut positions);
        let is_outcome =
            |position: usize| position < 16 && task.outcome_inputs & (1 << position) != 0;
        let inputs_of = |tolerant: bool| {
            let mut nodes: Vec<usize> = positions
                .iter()
                .enumerate()
                .filter(|&(position, _)| is_outcome(position) == tolerant)
                .map(|(_, &node)| node as usize)
                .collect();
            nodes.sort_unstable();
            nodes.dedup();
            nodes
        };
        let required = inputs_of(false);
        // An input passed both ways is required.
        let outcome_inputs: Vec<usize> = inputs_of(true)
            .into_iter()
            .filter(|n| !required.contains(n))
            .collect();
        let mut all: Vec<usize> = required.iter().chain(&outcome_inputs).copied().collect();
        all.sort_unstable();
        let call: Box<NodeFn> = Box::new(move |slots| call(In { slots, inputs }).inner);
        self.push(
            GraphNode {
                name: name.into(),
                task: Some(task.name),
                kind: task.kind,
                inputs: all,
                outcome_inputs,
                retry: task.retry,
                timeout: task.timeout,
            },
            Some(call),
        )
    }

    fn push<T: Send + Sync + 'static>(
        &mut self,
        node: GraphNode,
        call: Option<Box<NodeFn>>,
    ) -> Handle<T> {
        self.nodes.push(node);
        self.calls.push(call);
        self.unresolved.push(unresolved::<T>);
        Handle::new(self.nodes.len() - 1)
    }

    /// Finishes the graph; a run returns the value of `output`.
    pub fn output<O: Send + Sync + 'static>(self, output: Handle<O>) -> Workflow<P, O> {
        let n = self.nodes.len();
        let mut counts = vec![0u32; n + 1];
        let mut waits_for = vec![0u32; n];
        for (i, node) in self.nodes.iter().enumerate() {
            for &input in &node.inputs {
                if self.nodes[input].kind != Kind::Param {
                    counts[input + 1] += 1;
                    waits_for[i] += 1;
                }
            }
        }
        for i in 0..n {
            counts[i + 1] += counts[i];
        }
        let offsets = counts;
        let mut cursor = offsets.clone();
        let mut successors = vec![0u32; offsets[n] as usize];
        let mut required = vec![true; offsets[n] as usize];
        for (i, node) in self.nodes.iter().enumerate() {
            for &input in &node.inputs {
                if self.nodes[input].kind != Kind::Param {
                    successors[cursor[input] as usize] = i as u32;
                    required[cursor[input] as usize] = !node.outcome_inputs.contains(&input);
                    cursor[input] += 1;
                }
            }
        }
        let roots = (0..n)
            .filter(|&i| self.nodes[i].kind != Kind::Param && waits_for[i] == 0)
            .map(|i| i as u32)
            .collect();
        let plan = Plan {
            graph: Graph {
                name: self.name,
                nodes: self.nodes,
                output: output.index(),
            },
            calls: self.calls,
            unresolved: self.unresolved,
            offsets,
            successors,
            required,
            waits_for,
            roots,
        };
        Workflow {
            plan: Arc::new(plan),
            _types: PhantomData,
        }
    }
}

/// A built workflow: run it as often as you like, each run with its own parameters.
///
/// `workflow!` builds one per workflow, once, and returns it from
/// `<name>::workflow()`.
pub struct Workflow<P, O> {
    plan: Arc<Plan>,
    _types: PhantomData<fn(P) -> O>,
}

impl<P: Params, O: Send + Sync + 'static> Workflow<P, O> {
    /// The static description: nodes, tasks, edges; exports to Mermaid and DOT.
    pub fn graph(&self) -> &Graph {
        &self.plan.graph
    }

    /// Runs the workflow to its end and returns its output, or why there is none.
    ///
    /// Must be polled inside a tokio runtime: IO tasks are spawned on it. CPU tasks
    /// run on rayon's global pool. Dropping the future cancels the run.
    pub fn run(&self, params: P) -> impl Future<Output = Result<O, Error>> + Send + use<P, O> {
        let run = self.runner().run(params);
        async move { run.await.result }
    }

    /// A configured run: fail-fast, a timeout, a cancel handle, and the run's report.
    pub fn runner(&self) -> Runner<P, O> {
        Runner::new(Arc::clone(&self.plan))
    }
}

/// Runs `plan` once with `options`; the typed half of [`Runner::run`].
pub(crate) async fn run_plan<P: Params, O: 'static>(
    plan: Arc<Plan>,
    options: RunOptions,
    cancel: tokio_util::sync::CancellationToken,
    params: P,
) -> RunOutcome<O> {
    let (result, report) =
        match executor::execute(Arc::clone(&plan), options, cancel, move |slots| {
            params.store(slots)
        })
        .await
        {
            Ok(finished) => finished.into_output::<O>(&plan),
            Err(error) => (Err(error), RunReport::not_started(&plan.graph.name)),
        };
    RunOutcome { result, report }
}

impl<P, O> fmt::Debug for Workflow<P, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workflow")
            .field("name", &self.plan.graph.name)
            .field("nodes", &self.plan.graph.nodes.len())
            .finish()
    }
}
