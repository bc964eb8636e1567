//! The read-only description of a workflow: [`Graph`] and its [`Node`]s, their serde
//! form, Mermaid and DOT.
//!
//! Built by the [`Builder`](crate::graph::Builder) of the `plan` layer, which is the
//! only code that adds to a graph.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::task::{Kind, TaskInfo};

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
    /// Per input edge: whether the node reads it as an [`Outcome`](crate::Outcome) (it runs even if
    /// that input fails).
    tolerant: Vec<bool>,
    output: usize,
    /// The bodies of the fan-outs and sub-workflows, by node, in node order.
    bodies: Vec<(u32, Arc<Graph>)>,
    /// Per node, the arm of an `if` or `match` it belongs to, if any.
    arms: Vec<Option<Arm>>,
    /// The decisions of the `if`s and `match`es, by node, in node order.
    decisions: Vec<(u32, Decision)>,
    /// A durable workflow's version (`#[durable(version = N)]`).
    #[cfg_attr(not(feature = "durable"), allow(dead_code))]
    version: Option<u32>,
    /// The nodes that call a fake (a workflow built `with_fakes`), ascending.
    fakes: Vec<u32>,
}

/// Where a node sits in an `if` or `match`: the decision node, and which of its arms.
/// The node runs only if the decision picks that arm; otherwise it is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Arm {
    pub(crate) decision: u32,
    pub(crate) arm: u32,
}

/// What a decision node decides: its condition or scrutinee as written, and a label
/// per arm (`then`/`else`, or each `match` arm's pattern).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) text: Cow<'static, str>,
    pub(crate) arms: Vec<Cow<'static, str>>,
}

/// The `TaskInfo` index of parameters.
pub(crate) const PARAM: u32 = 0;

impl Graph {
    pub(crate) fn new(name: Cow<'static, str>) -> Self {
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
            arms: Vec::new(),
            decisions: Vec::new(),
            version: None,
            fakes: Vec::new(),
        }
    }

    /// Marks the graph as a durable workflow's, at `version`.
    #[cfg_attr(not(feature = "durable"), allow(dead_code))]
    pub(crate) fn set_version(&mut self, version: u32) {
        self.version = Some(version);
    }

    /// The durable workflow's version, if it is one.
    #[cfg_attr(not(feature = "durable"), allow(dead_code))]
    pub(crate) fn version(&self) -> Option<u32> {
        self.version
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

    /// Adds a task to [`Graph::infos`]; returns its index.
    pub(crate) fn add_info(&mut self, info: TaskInfo) -> u32 {
        self.infos.push(info);
        self.infos.len() as u32 - 1
    }

    /// Adds a node calling task `info` (an index in [`Graph::infos`]) that reads
    /// `edges` (input, read as an outcome), ascending.
    pub(crate) fn add_node(&mut self, name: Cow<'static, str>, info: u32, edges: &[(u32, bool)]) {
        self.names.push(name);
        self.tasks.push(info);
        self.inputs.extend(edges.iter().map(|&(node, _)| node));
        self.tolerant
            .extend(edges.iter().map(|&(_, tolerant)| tolerant));
        self.offsets.push(self.inputs.len() as u32);
        self.arms.push(None);
    }

    /// Marks the last node added as calling a fake.
    pub(crate) fn set_fake(&mut self) {
        self.fakes.push(self.len() as u32 - 1);
    }

    /// Whether node `node` calls a fake.
    pub(crate) fn is_fake(&self, node: usize) -> bool {
        self.fakes.binary_search(&(node as u32)).is_ok()
    }

    /// Puts the last node added in an arm of a decision.
    pub(crate) fn set_arm(&mut self, arm: Arm) {
        if let Some(last) = self.arms.last_mut() {
            *last = Some(arm);
        }
    }

    /// Describes the last node added, a decision.
    pub(crate) fn add_decision(&mut self, decision: Decision) {
        self.decisions.push((self.len() as u32 - 1, decision));
    }

    /// The arm node `node` belongs to, if it is in one.
    pub(crate) fn arm(&self, node: usize) -> Option<Arm> {
        self.arms[node]
    }

    /// What decision node `node` decides, if it is one.
    pub(crate) fn decision(&self, node: usize) -> Option<&Decision> {
        let at = self
            .decisions
            .binary_search_by_key(&(node as u32), |(n, _)| *n)
            .ok()?;
        Some(&self.decisions[at].1)
    }

    /// Gives the last node added a body: a fan-out's or a sub-workflow's graph.
    pub(crate) fn add_body(&mut self, body: Arc<Graph>) {
        self.bodies.push((self.len() as u32 - 1, body));
    }

    /// Makes `output` the node whose value a run returns, and frees spare capacity.
    pub(crate) fn finish(&mut self, output: usize) {
        self.output = output;
        self.names.shrink_to_fit();
        self.tasks.shrink_to_fit();
        self.inputs.shrink_to_fit();
        self.tolerant.shrink_to_fit();
        self.offsets.shrink_to_fit();
        self.arms.shrink_to_fit();
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
                Kind::Decision => ("{", "}"),
                Kind::Branch => ("((", "))"),
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
            for (input, tolerant) in node.edges().filter(|&(i, _)| self.drawn(node.index, i)) {
                let arrow = if tolerant { "-.->" } else { "-->" };
                let arm = self
                    .arm_label(node.index, input)
                    .map_or_else(String::new, |arm| {
                        format!("|\"{}\"|", arm.replace('"', "#quot;"))
                    });
                let _ = writeln!(
                    out,
                    "{pad}{prefix}{input} {arrow}{arm} {prefix}{}",
                    node.index
                );
            }
        }
    }

    /// Whether the edge from `input` to `node` is drawn: not the one from a node's
    /// decision when another of its inputs is in the same arm (the arm's first nodes
    /// carry the arrow from the decision; the rest follow from them).
    fn drawn(&self, node: usize, input: usize) -> bool {
        let Some(arm) = self.arm(node).filter(|arm| arm.decision as usize == input) else {
            return true;
        };
        !Node {
            graph: self,
            index: node,
        }
        .inputs()
        .any(|other| other != input && self.arm(other) == Some(arm))
    }

    /// The label of the arm `node` is in, if `input` is the decision of that arm.
    fn arm_label(&self, node: usize, input: usize) -> Option<&str> {
        let arm = self
            .arm(node)
            .filter(|arm| arm.decision as usize == input)?;
        let decision = self.decision(input)?;
        decision.arms.get(arm.arm as usize).map(|label| &**label)
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
                Kind::Decision => "diamond",
                Kind::Branch => "circle",
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
            for (input, tolerant) in node.edges().filter(|&(i, _)| self.drawn(node.index, i)) {
                let mut attributes = Vec::new();
                if tolerant {
                    attributes.push("style=dashed".to_owned());
                }
                if let Some(arm) = self.arm_label(node.index, input) {
                    attributes.push(format!("label=\"{}\"", dot_escape(arm)));
                }
                let attributes = if attributes.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", attributes.join(", "))
                };
                let _ = writeln!(
                    out,
                    "{pad}{prefix}{input} -> {prefix}{}{attributes};",
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

    /// Those of its inputs it reads as an [`Outcome`](crate::Outcome): it runs even if they fail.
    pub fn outcome_inputs(&self) -> impl Iterator<Item = usize> + 'g {
        self.edges()
            .filter(|&(_, tolerant)| tolerant)
            .map(|(input, _)| input)
    }

    /// Its inputs, each with whether it is read as an outcome.
    pub(crate) fn edges(&self) -> impl Iterator<Item = (usize, bool)> + use<'g> {
        let graph = self.graph;
        graph
            .edges(self.index)
            .map(|e| (graph.inputs[e] as usize, graph.tolerant[e]))
    }

    /// For a node inside an arm of an `if` or `match`: the decision node (its index)
    /// and which arm, counted from 0 in the order written (an `if`'s `else` is arm 1).
    /// The node runs only if the decision picks that arm.
    pub fn arm(&self) -> Option<(usize, usize)> {
        let arm = self.graph.arm(self.index)?;
        Some((arm.decision as usize, arm.arm as usize))
    }

    /// For a decision node (kind [`Kind::Decision`]): its condition or scrutinee as
    /// written, and each arm's label (`then`/`else`, or a `match` arm's pattern).
    pub fn decides(&self) -> Option<(&'g str, Vec<&'g str>)> {
        let decision = self.graph.decision(self.index)?;
        Some((
            &decision.text,
            decision.arms.iter().map(|arm| &**arm).collect(),
        ))
    }

    /// For a fan-out, the graph of its body: its parameters are the item, then the
    /// values it reads from this graph.
    pub fn body(&self) -> Option<&'g Graph> {
        let bodies = &self.graph.bodies;
        let at = bodies
            .binary_search_by_key(&(self.index as u32), |(node, _)| *node)
            .ok()?;
        Some(&bodies[at].1)
    }

    /// Whether it calls a fake of its task: the workflow was built with
    /// `with_fakes` (see [`crate::fake`]).
    pub fn is_fake(&self) -> bool {
        self.graph.is_fake(self.index)
    }

    fn label(&self) -> String {
        if let Some(decision) = self.graph.decision(self.index) {
            return format!("{}: {}", self.name(), decision.text);
        }
        if self.kind() == Kind::Branch {
            return self.name().to_owned();
        }
        self.label_with(" = ")
    }

    /// `name`, then `between` and the task when it is named otherwise, and `(fake)`
    /// after a fake's: how drawings label a task node.
    pub(crate) fn label_with(&self, between: &str) -> String {
        let fake = if self.is_fake() { " (fake)" } else { "" };
        match self.task() {
            Some(task) if task != self.name() => format!("{}{between}{task}{fake}", self.name()),
            _ => format!("{}{fake}", self.name()),
        }
    }
}

/// A graph serialises as `{ name, output, nodes: [{ name, task, kind, inputs,
/// outcome_inputs, retry, timeout_ms, arm }] }`; `arm` is `[decision, arm]` for a node
/// inside an arm of an `if` or `match`, else `null`; `body` is a fan-out's or
/// sub-workflow's own graph, in the same layout, else `null`; durations are
/// milliseconds; `"fake": true` marks a node that calls a fake.
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
        let mut node = serializer.serialize_struct("Node", 9)?;
        node.serialize_field("name", self.name())?;
        node.serialize_field("task", &self.task())?;
        node.serialize_field("kind", &self.kind())?;
        node.serialize_field("inputs", &self.inputs().collect::<Vec<_>>())?;
        node.serialize_field("outcome_inputs", &self.outcome_inputs().collect::<Vec<_>>())?;
        node.serialize_field("retry", &(info.kind != Kind::Param).then_some(info.retry))?;
        node.serialize_field(
            "timeout_ms",
            &info.timeout.map(|timeout| timeout.as_secs_f64() * 1e3),
        )?;
        node.serialize_field("arm", &self.arm())?;
        node.serialize_field("body", &self.body())?;
        if self.is_fake() {
            node.serialize_field("fake", &true)?;
        } else {
            node.skip_field("fake")?;
        }
        node.end()
    }
}
