//! The typed builder, the built [`Workflow`] and its static description, [`Graph`].
//!
//! `workflow!` expands to calls of this builder; a graph can also be built by hand with
//! the same guarantees: a [`Handle<T>`] exists only for a node already added, so every
//! input names an earlier node (no cycles can be built) and carries its value's type.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use crate::error::Error;
pub(crate) use crate::executor::Value;
use crate::executor::{self, RunOptions};
#[doc(hidden)]
pub use crate::executor::{Record, Slot};
use crate::report::RunReport;
use crate::run::Runner;
use crate::task::{Kind, Outcome, TaskError, TaskInfo};

/// A typed reference to a node's output, used to wire it into later nodes.
///
/// A handle belongs to the [`Builder`] that made it: using it in another builder (an
/// outer builder's handle inside a `fan_out` body, say) panics at build time, naming
/// the mistake, instead of silently reading another node.
pub struct Handle<T> {
    id: u32,
    /// The builder it belongs to.
    builder: u32,
    _value: PhantomData<fn() -> T>,
}

/// Where a handle points: its builder and its node.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRef {
    builder: u32,
    node: u32,
}

/// Ids for builders, so a handle knows which one it belongs to.
static BUILDERS: AtomicU32 = AtomicU32::new(0);

impl<T> Handle<T> {
    fn new(builder: u32, id: usize) -> Self {
        let id = u32::try_from(id).expect("a workflow holds at most u32::MAX nodes");
        Self {
            id,
            builder,
            _value: PhantomData,
        }
    }

    fn node_ref(self) -> NodeRef {
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

/// The handles a node reads: a tuple `()`, `(Handle<A>,)`, `(Handle<A>, Handle<B>)`, …
/// of up to twelve, or a `Vec<Handle<T>>` of any length (a wide fan-in).
pub trait Inputs: Send + Sync + 'static {
    /// The values, borrowed from the run: `(&'a A, &'a B, …)`.
    type Refs<'a>;
    /// What became of each input: `(&'a Outcome<A>, &'a Outcome<B>, …)`.
    type Outcomes<'a>;
    /// Borrows every input's value from a run's slots.
    #[doc(hidden)]
    fn refs<'a>(&self, slots: &'a [Slot]) -> Self::Refs<'a>;
    /// Borrows every input's outcome from a run's slots.
    #[doc(hidden)]
    fn outcomes<'a>(&self, slots: &'a [Slot]) -> Self::Outcomes<'a>;
    /// Appends where each input points.
    #[doc(hidden)]
    fn indices(&self, out: &mut Vec<NodeRef>);
    /// The same inputs as parameters of a fan-out's body, named as in `parent`.
    #[doc(hidden)]
    fn import(&self, body: &mut Builder<()>, parent: &Graph) -> Self
    where
        Self: Sized;
}

/// Inputs that match a workflow's parameters `P`, one handle per parameter, in order.
#[diagnostic::on_unimplemented(
    message = "these inputs do not match the workflow's parameters `{P}`",
    label = "the workflow takes `{P}`",
    note = "pass one `&binding` per parameter of the workflow, in order, of the same types"
)]
pub trait Arguments<P> {}

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

fn resolved(slots: &[Slot], id: u32) -> &Value {
    &slots[id as usize]
        .get()
        .expect("aqueduct: a node ran before its input was resolved")
        .value
}

/// The outcome of node `id`, following an import of a fan-out's body to its parent.
pub(crate) fn outcome<T: 'static>(slots: &[Slot], id: u32) -> &Outcome<T> {
    let value = resolved(slots, id);
    match value.downcast_ref() {
        Some(outcome) => outcome,
        None => executor::imported_outcome(value),
    }
}

/// The value of node `id`, following an import of a fan-out's body to its parent or
/// to its item.
pub(crate) fn value<T: 'static>(slots: &[Slot], id: u32) -> &T {
    let value = resolved(slots, id);
    match value.downcast_ref::<Outcome<T>>() {
        Some(outcome) => outcome
            .value()
            .expect("aqueduct: a node ran although an input it requires did not succeed"),
        None => executor::imported_value(value),
    }
}

macro_rules! tuples {
    ($( ($($T:ident $i:tt),*) )*) => {$(
        impl<$($T: Send + Sync + 'static),*> Inputs for ($(Handle<$T>,)*) {
            type Refs<'a> = ($(&'a $T,)*);
            type Outcomes<'a> = ($(&'a Outcome<$T>,)*);
            #[allow(clippy::unused_unit)]
            fn refs<'a>(&self, _slots: &'a [Slot]) -> Self::Refs<'a> {
                ($(value::<$T>(_slots, self.$i.id),)*)
            }
            #[allow(clippy::unused_unit)]
            fn outcomes<'a>(&self, _slots: &'a [Slot]) -> Self::Outcomes<'a> {
                ($(outcome::<$T>(_slots, self.$i.id),)*)
            }
            fn indices(&self, _out: &mut Vec<NodeRef>) {
                $(_out.push(self.$i.node_ref());)*
            }
            #[allow(clippy::unused_unit)]
            fn import(&self, _body: &mut Builder<()>, _parent: &Graph) -> Self {
                ($(_body.param::<$T>(_parent.name_of(self.$i.index()).to_owned().into()),)*)
            }
        }

        #[diagnostic::do_not_recommend]
        impl<$($T: Send + Sync + 'static),*> Arguments<($($T,)*)> for ($(Handle<$T>,)*) {}

        impl<$($T: Send + Sync + 'static),*> Params for ($($T,)*) {
            type Handles = ($(Handle<$T>,)*);
            type Names = [&'static str; 0 $(+ { let _ = $i; 1 })*];
            #[allow(clippy::unused_unit)]
            fn declare(_builder: &mut Builder<Self>, _names: Self::Names) -> Self::Handles {
                ($(_builder.param::<$T>(_names[$i].into()),)*)
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

impl<T: Send + Sync + 'static> Inputs for Vec<Handle<T>> {
    type Refs<'a> = Vec<&'a T>;
    type Outcomes<'a> = Vec<&'a Outcome<T>>;
    fn refs<'a>(&self, slots: &'a [Slot]) -> Self::Refs<'a> {
        self.iter().map(|h| value::<T>(slots, h.id)).collect()
    }
    fn outcomes<'a>(&self, slots: &'a [Slot]) -> Self::Outcomes<'a> {
        self.iter().map(|h| outcome::<T>(slots, h.id)).collect()
    }
    fn indices(&self, out: &mut Vec<NodeRef>) {
        out.extend(self.iter().map(|h| h.node_ref()));
    }
    fn import(&self, body: &mut Builder<()>, parent: &Graph) -> Self {
        self.iter()
            .map(|h| body.param::<T>(parent.name_of(h.index()).to_owned().into()))
            .collect()
    }
}

/// What a workflow `for` can iterate over: a `Vec`, an array, a boxed slice or an
/// `Arc<[T]>`. Items are read in place, by index; nothing is cloned.
#[diagnostic::on_unimplemented(
    message = "cannot fan out over `{Self}`",
    label = "a workflow `for` iterates over a `Vec`, an array, a boxed slice or an `Arc<[T]>`",
    note = "have the task that produces it return a `Vec` of the items"
)]
pub trait Collection: Send + Sync + 'static {
    /// One item.
    type Item: Send + Sync + 'static;
    /// Every item, in order.
    fn items(&self) -> &[Self::Item];
}

impl<T: Send + Sync + 'static> Collection for Vec<T> {
    type Item = T;
    fn items(&self) -> &[T] {
        self
    }
}

impl<T: Send + Sync + 'static> Collection for Box<[T]> {
    type Item = T;
    fn items(&self) -> &[T] {
        self
    }
}

impl<T: Send + Sync + 'static> Collection for Arc<[T]> {
    type Item = T;
    fn items(&self) -> &[T] {
        self
    }
}

impl<T: Send + Sync + 'static, const N: usize> Collection for [T; N] {
    type Item = T;
    fn items(&self) -> &[T] {
        self
    }
}

/// A node's declared inputs, borrowed from the run while the node executes.
pub struct In<'a, 'i, I> {
    slots: &'a [Slot],
    inputs: &'i I,
}

impl<'a, I: Inputs> In<'a, '_, I> {
    /// Every input's value, in the order the node declared them.
    pub fn get(&self) -> I::Refs<'a> {
        self.inputs.refs(self.slots)
    }

    /// What became of every input, for a node whose [`TaskInfo::outcome_inputs`] lets
    /// it run whatever happened upstream.
    pub fn outcomes(&self) -> I::Outcomes<'a> {
        self.inputs.outcomes(self.slots)
    }

    /// The run's slots, for reading inputs one by one.
    #[doc(hidden)]
    pub fn slots(&self) -> &'a [Slot] {
        self.slots
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

/// What a node does when it is ready.
pub(crate) enum Call {
    /// A parameter: filled before the run, never called.
    Param,
    /// A task.
    Task(Box<NodeFn>),
    /// A `for`: its body, run once per item.
    FanOut(Box<FanOutDef>),
}

/// A fan-out: the body's plan, and how to reach the collection's items and gather the
/// results, monomorphised for the collection's and the result's types.
pub(crate) struct FanOutDef {
    pub(crate) body: Arc<Plan>,
    /// The node holding the collection; `None` for a sub-workflow, run once.
    pub(crate) collection: Option<u32>,
    /// The parent nodes the body imports, as its parameters after the item (a
    /// sub-workflow's parameters are all imports).
    pub(crate) imports: Vec<u32>,
    /// How many items the collection in `slots[node]` has.
    pub(crate) len: fn(&[Slot], u32) -> usize,
    /// Item `index` of the collection in `slots[node]`.
    pub(crate) item: ItemOf,
    /// Moves every item's result out of its slots into one `Outcome<Vec<T>>`.
    pub(crate) assemble: Assemble,
    /// At most this many items run at once.
    pub(crate) at_once: Option<u32>,
}

/// Gathers the items of a fan-out (each item's slots) given the body's output node.
pub(crate) type Assemble = fn(&mut [Box<[Slot]>], usize) -> Result<Value, TaskError>;

/// Reads item `index` of the collection held by a node (maybe an import of an outer
/// run, for a loop over another loop's item).
pub(crate) type ItemOf =
    for<'a> fn(&'a [Slot], u32, usize) -> &'a (dyn std::any::Any + Send + Sync);

fn collection_len<C: Collection>(slots: &[Slot], node: u32) -> usize {
    value::<C>(slots, node).items().len()
}

fn collection_item<C: Collection>(
    slots: &[Slot],
    node: u32,
    index: usize,
) -> &(dyn std::any::Any + Send + Sync) {
    &value::<C>(slots, node).items()[index]
}

/// Gathers each item's tail into a `Vec`, in input order; an error names how many
/// items did not succeed (each item's own failure is in the run's report and error).
fn assemble<T: Send + Sync + 'static>(
    items: &mut [Box<[Slot]>],
    tail: usize,
) -> Result<Value, TaskError> {
    let outcomes: Vec<Outcome<T>> = items
        .iter_mut()
        .map(|slots| {
            slots
                .get_mut(tail)
                .and_then(OnceLock::get_mut)
                .map(|record| std::mem::replace(&mut record.value, Box::new(())))
                .and_then(|value| value.downcast::<Outcome<T>>().ok())
                .map_or(Outcome::Skipped, |outcome| *outcome)
        })
        .collect();
    if outcomes.iter().all(|outcome| outcome.value().is_some()) {
        let values = outcomes.into_iter().filter_map(|outcome| match outcome {
            Outcome::Ok(value) => Some(value),
            _ => None,
        });
        return Ok(ok::<Vec<T>>(values.collect()));
    }
    Err(ItemsFailed { outcomes }.into())
}

/// The output of a sub-workflow's single run.
fn assemble_one<T: Send + Sync + 'static>(
    items: &mut [Box<[Slot]>],
    tail: usize,
) -> Result<Value, TaskError> {
    let outcome = items
        .first_mut()
        .and_then(|slots| slots.get_mut(tail))
        .and_then(OnceLock::get_mut)
        .map(|record| std::mem::replace(&mut record.value, Box::new(())))
        .and_then(|value| value.downcast::<Outcome<T>>().ok());
    match outcome.map(|outcome| *outcome) {
        Some(Outcome::Ok(value)) => Ok(ok::<T>(value)),
        Some(Outcome::Failed(error)) => Err(error),
        _ => Err(TaskError::msg("the workflow's output was not produced")),
    }
}

/// Why a fan-out failed: what became of each item, in input order. A task taking the
/// fan-out's result as `&Outcome<Vec<T>>` reads it with [`Outcome::items`].
pub struct ItemsFailed<T> {
    outcomes: Vec<Outcome<T>>,
}

impl<T> ItemsFailed<T> {
    /// Each item's outcome, in input order.
    pub fn outcomes(&self) -> &[Outcome<T>] {
        &self.outcomes
    }
}

impl<T> fmt::Display for ItemsFailed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failed = self.outcomes.iter().filter(|o| o.value().is_none()).count();
        write!(
            f,
            "{failed} of {} items did not succeed",
            self.outcomes.len()
        )
    }
}

impl<T> fmt::Debug for ItemsFailed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ItemsFailed({self})")
    }
}

impl<T> std::error::Error for ItemsFailed<T> {}

impl<T: Send + Sync + 'static> Outcome<Vec<T>> {
    /// What became of each item of a fan-out's result, in input order: every item's
    /// value if the fan-out succeeded; if it failed, each item's value or failure.
    /// Empty if the fan-out never ran.
    pub fn items(&self) -> Vec<Outcome<&T>> {
        match self {
            Outcome::Ok(values) => values.iter().map(Outcome::Ok).collect(),
            Outcome::Failed(error) => error
                .downcast_ref::<ItemsFailed<T>>()
                .map(|failed| failed.outcomes.iter().map(Outcome::as_ref).collect())
                .unwrap_or_default(),
            Outcome::Skipped => Vec::new(),
        }
    }
}

/// The static description of a workflow: node names, the task each calls, edges,
/// kinds and policies. Nodes are numbered in a topological order: every node's inputs
/// come before it, parameters first.
///
/// Stored column by column (one vector per field, edges in one array), so a graph of
/// 100,000 nodes costs tens of bytes per node; [`Graph::node`] gives a view of one.
#[derive(Debug, Clone)]
pub struct Graph {
    name: Cow<'static, str>,
    names: Vec<Cow<'static, str>>,
    /// Per node, its index in `infos`; parameters point at [`PARAM`].
    tasks: Vec<u32>,
    /// Every distinct task of the graph.
    infos: Vec<TaskInfo>,
    /// The inputs of node `i` are `inputs[offsets[i]..offsets[i + 1]]`, ascending.
    offsets: Vec<u32>,
    inputs: Vec<u32>,
    /// Per input edge: whether the node reads it as an [`Outcome`] (it runs even if
    /// that input fails).
    tolerant: Vec<bool>,
    output: usize,
    /// The bodies of the fan-outs, by node, in node order.
    bodies: Vec<(u32, Arc<Plan>)>,
}

/// The `TaskInfo` index of parameters.
const PARAM: u32 = 0;

impl Graph {
    fn new(name: Cow<'static, str>) -> Self {
        Self {
            name,
            names: Vec::new(),
            tasks: Vec::new(),
            infos: vec![TaskInfo::new("", Kind::Param)],
            offsets: vec![0],
            inputs: Vec::new(),
            tolerant: Vec::new(),
            output: 0,
            bodies: Vec::new(),
        }
    }

    /// The workflow's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many nodes, parameters included.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the graph has no node at all.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Node `index`.
    pub fn node(&self, index: usize) -> Node<'_> {
        assert!(
            index < self.len(),
            "node {index} of a graph of {}",
            self.len()
        );
        Node { graph: self, index }
    }

    /// Every node, in order.
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = Node<'_>> {
        (0..self.len()).map(|index| Node { graph: self, index })
    }

    /// The index of the node whose value a run returns.
    pub fn output(&self) -> usize {
        self.output
    }

    pub(crate) fn info(&self, node: usize) -> &TaskInfo {
        &self.infos[self.task_index(node)]
    }

    /// Where node `node`'s task sits in [`Graph::infos`].
    pub(crate) fn task_index(&self, node: usize) -> usize {
        self.tasks[node] as usize
    }

    /// Every distinct task of the graph (the first entry stands for parameters).
    pub(crate) fn infos(&self) -> &[TaskInfo] {
        &self.infos
    }

    pub(crate) fn kind(&self, node: usize) -> Kind {
        self.info(node).kind
    }

    pub(crate) fn name_of(&self, node: usize) -> &str {
        &self.names[node]
    }

    fn edges(&self, node: usize) -> std::ops::Range<usize> {
        self.offsets[node] as usize..self.offsets[node + 1] as usize
    }

    /// The graph as a Mermaid flowchart: parameters as parallelograms, CPU tasks as
    /// rectangles, IO tasks as rounded boxes, the output with a double border, inputs
    /// read as outcomes as dotted arrows.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        self.mermaid_into(&mut out, "n", 1);
        out
    }

    /// Nodes as `{prefix}{index}`; a fan-out's body as a subgraph of its own.
    fn mermaid_into(&self, out: &mut String, prefix: &str, depth: usize) {
        let pad = "    ".repeat(depth);
        for node in self.nodes() {
            let i = node.index;
            let (open, close) = match node.kind() {
                _ if i == self.output && depth == 1 => ("[[", "]]"),
                Kind::Param => ("[/", "/]"),
                Kind::Cpu => ("[", "]"),
                Kind::Io => ("(", ")"),
                Kind::FanOut => ("{{", "}}"),
                Kind::Workflow => (">", "]"),
            };
            let label = node.label().replace('"', "#quot;");
            let _ = writeln!(out, "{pad}{prefix}{i}{open}\"{label}\"{close}");
            if let Some(body) = node.body() {
                let title = match node.kind() {
                    Kind::FanOut => format!("each {}", body.name_of(0)),
                    _ => format!("workflow {}", body.name()),
                }
                .replace('"', "#quot;");
                let _ = writeln!(out, "{pad}subgraph {prefix}{i}_body [\"{title}\"]");
                body.mermaid_into(out, &format!("{prefix}{i}_"), depth + 1);
                let _ = writeln!(out, "{pad}end");
                let _ = writeln!(out, "{pad}{prefix}{i}_body --> {prefix}{i}");
            }
        }
        for node in self.nodes() {
            for (input, tolerant) in node.edges() {
                let arrow = if tolerant { "-.->" } else { "-->" };
                let _ = writeln!(out, "{pad}{prefix}{input} {arrow} {prefix}{}", node.index);
            }
        }
    }

    /// The graph in Graphviz DOT; inputs read as outcomes are dashed, a fan-out's body
    /// is a cluster.
    pub fn to_dot(&self) -> String {
        let mut out = format!("digraph \"{}\" {{\n", dot_escape(&self.name));
        self.dot_into(&mut out, "n", 1);
        out.push_str("}\n");
        out
    }

    fn dot_into(&self, out: &mut String, prefix: &str, depth: usize) {
        let pad = "    ".repeat(depth);
        for node in self.nodes() {
            let i = node.index;
            let shape = match node.kind() {
                Kind::Param => "parallelogram",
                Kind::Cpu => "box",
                Kind::Io => "box, style=rounded",
                Kind::FanOut => "hexagon",
                Kind::Workflow => "box3d",
            };
            let periphery = if i == self.output && depth == 1 {
                ", peripheries=2"
            } else {
                ""
            };
            let label = dot_escape(&node.label());
            let _ = writeln!(
                out,
                "{pad}{prefix}{i} [label=\"{label}\", shape={shape}{periphery}];"
            );
            if let Some(body) = node.body() {
                let title = match node.kind() {
                    Kind::FanOut => format!("each {}", body.name_of(0)),
                    _ => format!("workflow {}", body.name()),
                };
                let _ = writeln!(out, "{pad}subgraph cluster_{prefix}{i} {{");
                let _ = writeln!(out, "{pad}    label=\"{}\";", dot_escape(&title));
                body.dot_into(out, &format!("{prefix}{i}_"), depth + 1);
                let _ = writeln!(out, "{pad}}}");
            }
        }
        for node in self.nodes() {
            for (input, tolerant) in node.edges() {
                let style = if tolerant { " [style=dashed]" } else { "" };
                let _ = writeln!(
                    out,
                    "{pad}{prefix}{input} -> {prefix}{}{style};",
                    node.index
                );
            }
        }
    }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// One node of a [`Graph`].
#[derive(Debug, Clone, Copy)]
pub struct Node<'g> {
    graph: &'g Graph,
    index: usize,
}

impl<'g> Node<'g> {
    /// Its position in the graph.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The binding it is assigned to (`let name = …`), or the task's name for the tail.
    pub fn name(&self) -> &'g str {
        &self.graph.names[self.index]
    }

    /// The task it calls; `None` for a workflow parameter.
    pub fn task(&self) -> Option<&'static str> {
        let info = self.graph.info(self.index);
        (info.kind != Kind::Param).then_some(info.name)
    }

    /// Where it runs.
    pub fn kind(&self) -> Kind {
        self.graph.kind(self.index)
    }

    /// When a failed attempt is retried, and how long one may take.
    pub fn info(&self) -> &'g TaskInfo {
        self.graph.info(self.index)
    }

    /// The nodes whose outputs it reads, ascending, without repeats.
    pub fn inputs(&self) -> impl Iterator<Item = usize> + 'g {
        self.edges().map(|(input, _)| input)
    }

    /// Those of its inputs it reads as an [`Outcome`]: it runs even if they fail.
    pub fn outcome_inputs(&self) -> impl Iterator<Item = usize> + 'g {
        self.edges()
            .filter(|&(_, tolerant)| tolerant)
            .map(|(input, _)| input)
    }

    fn edges(&self) -> impl Iterator<Item = (usize, bool)> + 'g {
        let graph = self.graph;
        graph
            .edges(self.index)
            .map(|e| (graph.inputs[e] as usize, graph.tolerant[e]))
    }

    /// For a fan-out, the graph of its body: its parameters are the item, then the
    /// values it reads from this graph.
    pub fn body(&self) -> Option<&'g Graph> {
        let bodies = &self.graph.bodies;
        let at = bodies
            .binary_search_by_key(&(self.index as u32), |(node, _)| *node)
            .ok()?;
        Some(&bodies[at].1.graph)
    }

    fn label(&self) -> String {
        match self.task() {
            Some(task) if task != self.name() => format!("{} = {task}", self.name()),
            _ => self.name().to_owned(),
        }
    }
}

/// A graph serialises as `{ name, output, nodes: [{ name, task, kind, inputs,
/// outcome_inputs, retry, timeout }] }`.
impl serde::Serialize for Graph {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut graph = serializer.serialize_struct("Graph", 3)?;
        graph.serialize_field("name", &self.name)?;
        graph.serialize_field("output", &self.output)?;
        let nodes: Vec<_> = self.nodes().collect();
        graph.serialize_field("nodes", &nodes)?;
        graph.end()
    }
}

impl serde::Serialize for Node<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let info = self.info();
        let mut node = serializer.serialize_struct("Node", 7)?;
        node.serialize_field("name", self.name())?;
        node.serialize_field("task", &self.task())?;
        node.serialize_field("kind", &self.kind())?;
        node.serialize_field("inputs", &self.inputs().collect::<Vec<_>>())?;
        node.serialize_field("outcome_inputs", &self.outcome_inputs().collect::<Vec<_>>())?;
        node.serialize_field("retry", &(info.kind != Kind::Param).then_some(info.retry))?;
        node.serialize_field("timeout", &info.timeout)?;
        node.end()
    }
}

/// Everything a run needs that does not change between runs.
pub(crate) struct Plan {
    pub(crate) graph: Graph,
    /// Per node, what it does when ready.
    pub(crate) calls: Vec<Call>,
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
    /// For a `#[durable]` workflow: how each checkpointed node's value is encoded, and
    /// the graph's fingerprint.
    pub(crate) durable: Option<Durable>,
}

/// What a checkpoint's meaning depends on, one line per node: the workflow's name and
/// version, then every node's name, task, kind and inputs (`~` marks an input taken as
/// an outcome), nested bodies' nodes prefixed with their node's name. Stored with each
/// durable run, so a refused resume can say what changed.
fn shape(graph: &Graph, version: u32) -> String {
    fn lines(graph: &Graph, prefix: &str, out: &mut String) {
        use std::fmt::Write as _;
        for node in graph.nodes() {
            let task = node.task().unwrap_or("-");
            let _ = write!(out, "{prefix}{} = {task} ({})", node.name(), node.kind());
            for (index, (input, tolerant)) in node.edges().enumerate() {
                let sep = if index == 0 { " <- " } else { ", " };
                let mark = if tolerant { "~" } else { "" };
                let _ = write!(out, "{sep}{mark}{}", graph.name_of(input));
            }
            out.push('\n');
            if let Some(body) = node.body() {
                lines(body, &format!("{prefix}{}.", node.name()), out);
            }
        }
    }
    let mut out = format!("workflow {} version {version}\n", graph.name());
    lines(graph, "", &mut out);
    out
}

/// SHA-256 of the graph's [`shape`], in hex.
fn fingerprint(shape: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(shape.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// What differs between two graph shapes, for a person: lines only in `before`,
/// then lines only in `after`.
pub(crate) fn shape_diff(before: &str, after: &str) -> String {
    let old: std::collections::BTreeSet<&str> = before.lines().collect();
    let new: std::collections::BTreeSet<&str> = after.lines().collect();
    let mut out = String::new();
    for line in before.lines().filter(|l| !new.contains(l)) {
        out.push_str("\n  - ");
        out.push_str(line);
    }
    for line in after.lines().filter(|l| !old.contains(l)) {
        out.push_str("\n  + ");
        out.push_str(line);
    }
    out
}

/// What makes a workflow's runs resumable.
pub(crate) struct Durable {
    /// Per node, its codec; `None` for nodes not checkpointed.
    pub(crate) codecs: Vec<Option<Codec>>,
    /// The graph as text (see [`shape`]), stored with each run.
    pub(crate) shape: String,
    /// SHA-256 of `shape`.
    pub(crate) fingerprint: String,
}

/// How a node's value is saved and loaded: JSON through serde.
#[derive(Clone, Copy)]
pub(crate) struct Codec {
    pub(crate) encode: fn(&Value) -> Result<Vec<u8>, String>,
    pub(crate) decode: fn(&[u8]) -> Result<Value, String>,
}

/// The codec's name and layout version, stored with every checkpoint.
pub(crate) const CODEC: &str = "json";
pub(crate) const SCHEMA: u32 = 1;

fn encode<T: serde::Serialize + 'static>(value: &Value) -> Result<Vec<u8>, String> {
    let value = value
        .downcast_ref::<Outcome<T>>()
        .and_then(Outcome::value)
        .ok_or("the value has another type than its node")?;
    serde_json::to_vec(value).map_err(|error| error.to_string())
}

fn decode<T: serde::de::DeserializeOwned + Send + Sync + 'static>(
    bytes: &[u8],
) -> Result<Value, String> {
    let value: T = serde_json::from_slice(bytes).map_err(|error| error.to_string())?;
    Ok(ok(value))
}

/// A value a `#[durable]` workflow can checkpoint.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be checkpointed",
    label = "a `#[durable]` workflow saves this node's value, so its type must implement serde's `Serialize` and `Deserialize`",
    note = "derive `serde::Serialize` and `serde::Deserialize` for it, or remove `#[durable]`"
)]
pub trait Checkpointable:
    serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static
{
}

#[diagnostic::do_not_recommend]
impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static> Checkpointable
    for T
{
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plan")
            .field("graph", &self.graph)
            .finish_non_exhaustive()
    }
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
/// assert_eq!(workflow.graph().len(), 2);
/// # let rt = tokio::runtime::Runtime::new().unwrap();
/// assert_eq!(rt.block_on(workflow.run((21,))).unwrap(), 42);
/// ```
pub struct Builder<P> {
    /// This builder's id, carried by its handles.
    id: u32,
    graph: Graph,
    /// Where each distinct task sits in `graph.infos`.
    known: HashMap<TaskInfo, u32>,
    /// `Some(version)` once the workflow is declared durable.
    version: Option<u32>,
    codecs: Vec<Option<Codec>>,
    calls: Vec<Call>,
    unresolved: Vec<fn(Option<TaskError>) -> Value>,
    _params: PhantomData<fn(P)>,
}

impl<P: Params> Builder<P> {
    /// Starts a workflow whose parameters have the types of `P` and the given names.
    pub fn new(name: impl Into<Cow<'static, str>>, params: P::Names) -> (Self, P::Handles) {
        let mut builder = Self {
            id: BUILDERS.fetch_add(1, Ordering::Relaxed),
            graph: Graph::new(name.into()),
            known: HashMap::new(),
            version: None,
            codecs: Vec::new(),
            calls: Vec::new(),
            unresolved: Vec::new(),
            _params: PhantomData,
        };
        let handles = P::declare(&mut builder, params);
        (builder, handles)
    }

    fn param<T: Send + Sync + 'static>(&mut self, name: Cow<'static, str>) -> Handle<T> {
        self.push(name, PARAM, &mut [], Call::Param)
    }

    fn intern(&mut self, task: TaskInfo) -> u32 {
        let next = self.graph.infos.len() as u32;
        let info = *self.known.entry(task).or_insert(next);
        if info == next {
            self.graph.infos.push(task);
        }
        info
    }

    /// The nodes `refs` point at, checked to be this builder's.
    #[track_caller]
    fn own(&self, refs: &[NodeRef]) -> Vec<u32> {
        refs.iter()
            .map(|r| {
                assert!(
                    r.builder == self.id && (r.node as usize) < self.graph.len(),
                    "workflow `{}`: a `Handle` of another builder was used here; inside a \
                     `fan_out` body, read the outer graph's values through the handles the \
                     body closure receives (its `outer` argument), never by capturing them",
                    self.graph.name()
                );
                r.node
            })
            .collect()
    }

    /// Adds a fan-out: `body` builds the graph run once per item of `collection`, given
    /// the item's handle and the handles of `outer` (values of this graph the body
    /// reads, shared by reference with every item). The node's value is the body's
    /// output for every item, in input order.
    ///
    /// Each item's nodes run as soon as their own inputs exist, independently of the
    /// other items. If an item fails, the fan-out fails after every item has ended.
    ///
    /// # Panics
    /// If `collection` or a handle of `outer` belongs to another builder, or if the
    /// body uses a handle it did not get from its own builder.
    #[track_caller]
    pub fn fan_out<C, O, T, F>(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        collection: Handle<C>,
        item: impl Into<Cow<'static, str>>,
        outer: O,
        body: F,
    ) -> Handle<Vec<T>>
    where
        C: Collection,
        O: Inputs,
        T: Send + Sync + 'static,
        F: FnOnce(&mut Builder<()>, Handle<C::Item>, O) -> Handle<T>,
    {
        let name = name.into();
        let mut refs = vec![collection.node_ref()];
        outer.indices(&mut refs);
        let mut imports = self.own(&refs);
        imports.remove(0);
        let (mut inner, ()) = Builder::<()>::new(name.clone(), []);
        let item = inner.param::<C::Item>(item.into());
        let imported = outer.import(&mut inner, &self.graph);
        let tail = body(&mut inner, item, imported);
        let body = inner.output(tail).plan;
        let mut edges: Vec<(u32, bool)> = std::iter::once(collection.id)
            .chain(imports.iter().copied())
            .map(|node| (node, false))
            .collect();
        edges.sort_unstable();
        edges.dedup();
        let def = FanOutDef {
            body,
            collection: Some(collection.id),
            imports,
            len: collection_len::<C>,
            item: collection_item::<C>,
            assemble: assemble::<T>,
            at_once: None,
        };
        let info = self.intern(TaskInfo::new("for", Kind::FanOut));
        let node = self.graph.len() as u32;
        self.graph.bodies.push((node, Arc::clone(&def.body)));
        self.push(name, info, &mut edges, Call::FanOut(Box::new(def)))
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
                    position < 16 && task.outcome_inputs & (1 << position) != 0,
                )
            })
            .collect();
        edges.sort_unstable();
        edges.dedup_by(|later, first| {
            let same = later.0 == first.0;
            first.1 &= !same || later.1;
            same
        });
        let info = self.intern(task);
        let call: Box<NodeFn> = Box::new(move |slots| {
            call(In {
                slots,
                inputs: &inputs,
            })
            .inner
        });
        self.push(name.into(), info, &mut edges, Call::Task(call))
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
        let mut edges: Vec<(u32, bool)> = imports.iter().map(|&node| (node, false)).collect();
        edges.sort_unstable();
        edges.dedup();
        let def = FanOutDef {
            body: Arc::clone(&workflow.plan),
            collection: None,
            imports,
            len: |_, _| 1,
            item: |_, _, _| unreachable!("a sub-workflow has no item"),
            assemble: assemble_one::<O2>,
            at_once: None,
        };
        let info = self.intern(TaskInfo::new("workflow", Kind::Workflow));
        let node = self.graph.len() as u32;
        self.graph.bodies.push((node, Arc::clone(&def.body)));
        self.push(name.into(), info, &mut edges, Call::FanOut(Box::new(def)))
    }

    /// Makes runs of this workflow resumable from a [`Store`](crate::store::Store):
    /// `version` goes into the graph's fingerprint, so bump it when a task's meaning
    /// changes and old checkpoints must not be reused. `workflow!` calls it for
    /// `#[durable]` (or `#[durable(version = N)]`) workflows.
    pub fn durable(&mut self, version: u32) {
        self.version = Some(version);
    }

    /// Checkpoints a node: when it succeeds in a durable run, its value is saved, and
    /// a resumed run loads it instead of running the task again. Checkpoints are keyed
    /// by node name: [`output`](Self::output) panics if two checkpointed nodes share
    /// one, and this panics if `node` belongs to another builder.
    #[track_caller]
    pub fn checkpoint<T: Checkpointable>(&mut self, node: Handle<T>) {
        let node = self.own(&[node.node_ref()])[0] as usize;
        self.codecs[node] = Some(Codec {
            encode: encode::<T>,
            decode: decode::<T>,
        });
    }

    /// Caps a fan-out: at most `at_once` of its items run at a time, whatever tasks
    /// their bodies call; the next item starts when one ends. Items not yet started
    /// cost nothing but their place in the queue.
    ///
    /// # Panics
    /// If `fan_out` is not a fan-out's handle of this builder, or `at_once` is zero.
    #[track_caller]
    pub fn cap_items<T>(&mut self, fan_out: Handle<Vec<T>>, at_once: u32) {
        assert!(at_once > 0, "a fan-out's cap is at least 1");
        let node = self.own(&[fan_out.node_ref()])[0] as usize;
        match &mut self.calls[node] {
            Call::FanOut(def) => def.at_once = Some(at_once),
            _ => panic!("`cap_items` takes a handle returned by `fan_out`"),
        }
    }

    fn push<T: Send + Sync + 'static>(
        &mut self,
        name: Cow<'static, str>,
        info: u32,
        edges: &mut [(u32, bool)],
        call: Call,
    ) -> Handle<T> {
        let graph = &mut self.graph;
        graph.names.push(name);
        graph.tasks.push(info);
        graph.inputs.extend(edges.iter().map(|&(node, _)| node));
        graph
            .tolerant
            .extend(edges.iter().map(|&(_, tolerant)| tolerant));
        graph.offsets.push(graph.inputs.len() as u32);
        self.calls.push(call);
        self.codecs.push(None);
        self.unresolved.push(unresolved::<T>);
        Handle::new(self.id, graph.len() - 1)
    }

    /// Finishes the graph; a run returns the value of `output`.
    ///
    /// # Panics
    /// If `output` belongs to another builder, or (in a durable workflow) two
    /// checkpointed nodes share a name.
    #[track_caller]
    pub fn output<O: Send + Sync + 'static>(self, output: Handle<O>) -> Workflow<P, O> {
        let output = self.own(&[output.node_ref()])[0] as usize;
        let mut graph = self.graph;
        graph.output = output;
        let n = graph.len();
        // Count, then place, every edge from a task: successors in CSR form.
        let mut offsets = vec![0u32; n + 1];
        let mut waits_for = vec![0u32; n];
        for (node, waits) in waits_for.iter_mut().enumerate() {
            for edge in graph.edges(node) {
                let input = graph.inputs[edge] as usize;
                if graph.kind(input) != Kind::Param {
                    offsets[input + 1] += 1;
                    *waits += 1;
                }
            }
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        let mut cursor = offsets.clone();
        let mut successors = vec![0u32; offsets[n] as usize];
        let mut required = vec![true; offsets[n] as usize];
        for node in 0..n {
            for edge in graph.edges(node) {
                let input = graph.inputs[edge] as usize;
                if graph.kind(input) != Kind::Param {
                    successors[cursor[input] as usize] = node as u32;
                    required[cursor[input] as usize] = !graph.tolerant[edge];
                    cursor[input] += 1;
                }
            }
        }
        let roots = (0..n)
            .filter(|&i| graph.kind(i) != Kind::Param && waits_for[i] == 0)
            .map(|i| i as u32)
            .collect();
        graph.names.shrink_to_fit();
        graph.tasks.shrink_to_fit();
        graph.inputs.shrink_to_fit();
        graph.tolerant.shrink_to_fit();
        graph.offsets.shrink_to_fit();
        let mut calls = self.calls;
        calls.shrink_to_fit();
        let mut unresolved = self.unresolved;
        unresolved.shrink_to_fit();
        if self.version.is_some() {
            let mut seen = std::collections::HashSet::new();
            for (node, codec) in self.codecs.iter().enumerate() {
                let name = graph.name_of(node);
                assert!(
                    codec.is_none() || seen.insert(name),
                    "workflow `{}`: two checkpointed nodes are named `{name}`; a durable \
                     workflow's checkpoints are keyed by node name, so give each its own",
                    graph.name()
                );
            }
        }
        let durable = self.version.map(|version| {
            let shape = shape(&graph, version);
            Durable {
                fingerprint: fingerprint(&shape),
                shape,
                codecs: self.codecs,
            }
        });
        let plan = Plan {
            graph,
            calls,
            unresolved,
            offsets,
            successors,
            required,
            waits_for,
            roots,
            durable,
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

impl<P, O> Clone for Workflow<P, O> {
    /// Another handle on the same built workflow (an `Arc` clone).
    fn clone(&self) -> Self {
        Self {
            plan: Arc::clone(&self.plan),
            _types: PhantomData,
        }
    }
}

impl<P: Params, O: Send + Sync + 'static> Workflow<P, O> {
    /// Whether it was declared `#[durable]`, so that its runs can be checkpointed.
    pub fn is_durable(&self) -> bool {
        self.plan.durable.is_some()
    }

    /// The static description: nodes, tasks, edges; exports to Mermaid and DOT.
    pub fn graph(&self) -> &Graph {
        &self.plan.graph
    }

    /// Runs the workflow to its end and returns its output, or why there is none.
    ///
    /// Must be polled inside a tokio runtime: IO tasks are spawned on it. CPU tasks
    /// run on rayon's global pool. Dropping the future cancels the run.
    pub fn run(&self, params: P) -> impl Future<Output = Result<O, Error>> + Send + use<P, O> {
        let run = run_plan(
            Arc::clone(&self.plan),
            RunOptions::default(),
            executor::Stop::default(),
            params,
            false,
            executor::Extras::default(),
        );
        async move { run.await.0 }
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
    stop: executor::Stop,
    params: P,
    with_report: bool,
    extras: executor::Extras,
) -> (Result<O, Error>, Option<RunReport>) {
    let store = move |slots: &[Slot]| params.store(slots);
    match executor::execute(Arc::clone(&plan), options, stop, store, extras).await {
        Ok(finished) => {
            let report = with_report.then(|| finished.report(&plan));
            (finished.into_output::<O>(&plan), report)
        }
        Err(error) => (
            Err(error),
            with_report.then(|| RunReport::not_started(&plan.graph.name)),
        ),
    }
}

impl<P, O> fmt::Debug for Workflow<P, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workflow")
            .field("name", &self.plan.graph.name)
            .field("nodes", &self.plan.graph.len())
            .finish()
    }
}
