//! What makes a `#[durable]` workflow's runs resumable: each checkpointed node's
//! codec, the graph's shape (what a checkpoint's meaning depends on) and its
//! fingerprint. Without the `durable` feature no workflow can be declared durable
//! (serde_json and sha2 are left out), and no plan has a [`Durable`] part.

#[cfg(feature = "durable")]
use std::fmt::Write as _;

use super::Params;
use super::builder::Builder;
use crate::describe::Graph;
#[cfg(feature = "durable")]
use crate::task::Outcome;
use crate::value::Value;
#[cfg(feature = "durable")]
use crate::value::ok;

/// What a checkpoint's meaning depends on, one line per node: the workflow's name and
/// version, then every node's name, task, kind and inputs (`~` marks an input taken as
/// an outcome), the arm of an `if`/`match` it is in, a decision's number of arms, nested
/// bodies' nodes prefixed with their node's name. Stored with each
/// durable run, so a refused resume can say what changed.
#[cfg(feature = "durable")]
pub(super) fn shape(graph: &Graph, version: u32) -> String {
    fn lines(graph: &Graph, prefix: &str, out: &mut String) {
        for node in graph.nodes() {
            let task = node.task().unwrap_or("-");
            let _ = write!(out, "{prefix}{} = {task} ({})", node.name(), node.kind());
            for (index, (input, tolerant)) in node.edges().enumerate() {
                let sep = if index == 0 { " <- " } else { ", " };
                let mark = if tolerant { "~" } else { "" };
                let _ = write!(out, "{sep}{mark}{}", graph.name_of(input));
            }
            if let Some((decision, arm)) = node.arm() {
                let _ = write!(out, " in arm {arm} of {}", graph.name_of(decision));
            }
            // Not the condition's text: rustc may print the same tokens differently.
            if let Some((_, arms)) = node.decides() {
                let _ = write!(out, " deciding among {} arms", arms.len());
            }
            // A durable sub-workflow's version: bumping it invalidates its nodes'
            // checkpoints under this run too.
            if let Some(version) = node.body().and_then(Graph::version) {
                let _ = write!(out, " version {version}");
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

/// Appends a line per node with all its task's facts (`TaskInfo`: its code hash, its
/// retries, timeout, limit and cache) and, for an `if` or `match`, its condition and
/// patterns as written; nested bodies' nodes prefixed with their node's name.
#[cfg(feature = "durable")]
fn codes(graph: &Graph, prefix: &str, out: &mut String) {
    for node in graph.nodes() {
        let _ = write!(out, "task {prefix}{} {:?}", node.name(), node.info());
        if let Some((text, arms)) = node.decides() {
            let _ = write!(out, " deciding {text:?} {arms:?}");
        }
        out.push('\n');
        if let Some(body) = node.body() {
            codes(body, &format!("{prefix}{}.", node.name()), out);
        }
    }
}

/// SHA-256 of the graph's [`shape`], in hex.
#[cfg(feature = "durable")]
fn fingerprint(shape: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(shape.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(feature = "durable")]
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
#[cfg_attr(not(feature = "durable"), allow(dead_code))]
pub(crate) struct Durable {
    /// The graph as text (see [`shape`]), stored with each run.
    pub(crate) shape: String,
    /// SHA-256 of `shape`.
    pub(crate) fingerprint: String,
    /// SHA-256 of `shape` and of every node's `TaskInfo` (its code hash, retries,
    /// timeout, limit, cache) and condition: the build a distributed run is for (a
    /// resume in one process may run fixed code; a run's workers may not mix two
    /// builds' tasks).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) build: String,
}

/// How a node's value is saved and loaded, in the format a run chose: through serde.
#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "durable"), allow(dead_code))]
pub(crate) struct Codec {
    pub(crate) encode: fn(&Value, CheckpointFormat) -> Result<Vec<u8>, String>,
    pub(crate) decode: fn(&[u8], CheckpointFormat) -> Result<Value, String>,
}

/// How a durable run encodes its checkpoints ([`Runner::checkpoint_format`]). Each
/// checkpoint is stored with its format's name, and a resumed run reads each in the
/// format it was written in, so a run may switch formats between resumes.
///
/// [`Runner::checkpoint_format`]: crate::Runner::checkpoint_format
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointFormat {
    /// JSON through serde_json: readable in any SQLite browser (`checkpoints.data`).
    #[default]
    Json,
    /// postcard: a compact binary encoding, about 2.3 times smaller than JSON and
    /// faster to write and read (feature `postcard`; BENCHMARKS.md). It is not
    /// self-describing: a type whose `Deserialize` needs `deserialize_any`
    /// (`serde_json::Value`, untagged or internally tagged enums, `#[serde(flatten)]`)
    /// is written but cannot be read back; keep JSON for workflows holding those.
    #[cfg(feature = "postcard")]
    Postcard,
}

impl CheckpointFormat {
    /// The name stored with each checkpoint: `json`, `postcard`.
    pub fn name(self) -> &'static str {
        match self {
            CheckpointFormat::Json => "json",
            #[cfg(feature = "postcard")]
            CheckpointFormat::Postcard => "postcard",
        }
    }

    /// The format named `name`, if this build reads it.
    #[cfg_attr(not(feature = "durable"), allow(dead_code))]
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        match name {
            "json" => Some(CheckpointFormat::Json),
            #[cfg(feature = "postcard")]
            "postcard" => Some(CheckpointFormat::Postcard),
            _ => None,
        }
    }
}

/// The layout version of a checkpoint's bytes within its format, stored with it.
pub(crate) const SCHEMA: u32 = 1;

/// The format a value saved as `codec` (a format's name) in layout `schema` is read in,
/// if this build reads it; else why not: a checkpoint, a cached result, a distributed
/// run's output are all read through this.
#[cfg(feature = "durable")]
pub(crate) fn readable(codec: &str, schema: u32) -> Result<CheckpointFormat, String> {
    if let Some(format) = CheckpointFormat::from_name(codec).filter(|_| schema == SCHEMA) {
        return Ok(format);
    }
    let postcard = if cfg!(feature = "postcard") {
        format!(", postcard v{SCHEMA}")
    } else if codec == "postcard" {
        " (postcard needs Aqueduct's `postcard` feature)".to_owned()
    } else {
        String::new()
    };
    Err(format!(
        "saved as {codec} v{schema}; this build reads json v{SCHEMA}{postcard}"
    ))
}

#[cfg(feature = "durable")]
pub(super) fn encode<T: serde::Serialize + 'static>(
    value: &Value,
    format: CheckpointFormat,
) -> Result<Vec<u8>, String> {
    let encode = |value: &T| match format {
        CheckpointFormat::Json => serde_json::to_vec(value).map_err(|error| error.to_string()),
        #[cfg(feature = "postcard")]
        CheckpointFormat::Postcard => {
            postcard::to_allocvec(value).map_err(|error| error.to_string())
        }
    };
    if let Some(outcome) = value.downcast_ref::<Outcome<T>>() {
        return encode(outcome.value().ok_or("the node has no value")?);
    }
    // The value of the arm an `if` or `match` took, which a reader will take from it.
    crate::value::peek_moved::<T, _>(value, encode)
        .ok_or("the value has another type than its node")?
}

#[cfg(feature = "durable")]
pub(super) fn decode<T: serde::de::DeserializeOwned + Send + Sync + 'static>(
    bytes: &[u8],
    format: CheckpointFormat,
) -> Result<Value, String> {
    let value: T = match format {
        CheckpointFormat::Json => {
            serde_json::from_slice(bytes).map_err(|error| error.to_string())?
        }
        #[cfg(feature = "postcard")]
        CheckpointFormat::Postcard => {
            postcard::from_bytes(bytes).map_err(|error| error.to_string())?
        }
    };
    Ok(ok(value))
}

/// Stands for the `durable` feature in a bound: without the feature, nothing
/// implements it, so `#[durable]` (`Builder::durable`) is refused with this message.
#[cfg(not(feature = "durable"))]
#[diagnostic::on_unimplemented(
    message = "`#[durable]` needs Aqueduct's `durable` feature",
    label = "this workflow is durable, but Aqueduct was built without checkpoints",
    note = "enable the feature: `aqueduct = {{ version = \"…\", features = [\"sqlite\"] }}` (SQLite store) or `features = [\"durable\"]` (a store of your own), or remove `#[durable]`"
)]
pub trait DurableFeature {}

/// A value a `#[durable]` workflow can checkpoint.
#[cfg(feature = "durable")]
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be checkpointed",
    label = "a `#[durable]` workflow saves this node's value, so its type must implement serde's `Serialize` and `Deserialize`",
    note = "derive `serde::Serialize` and `serde::Deserialize` for it, or remove `#[durable]`"
)]
pub trait Checkpointable:
    serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static
{
}

#[cfg(feature = "durable")]
#[diagnostic::do_not_recommend]
impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static> Checkpointable
    for T
{
}

impl<P: Params> Builder<P> {
    /// The durable part of the plan, if the workflow was declared durable.
    ///
    /// # Panics
    /// If two checkpointed nodes share a name.
    #[track_caller]
    #[cfg(feature = "durable")]
    pub(super) fn durable_plan(&mut self, graph: &Graph) -> Option<Durable> {
        // Checkpoints are keyed by name, in a fan-out's body too (`each[3].name`), and
        // a fan-out's or sub-workflow's name is the path of its nested runs' ones.
        let mut seen = std::collections::HashSet::new();
        for (node, codec) in self.codecs.iter().enumerate() {
            let name = graph.name_of(node);
            let nests =
                matches!(&self.calls[node], super::Call::FanOut(def) if def.body.checkpoints_any);
            assert!(
                (codec.is_none() && !nests) || seen.insert(name),
                "workflow `{}`: two checkpointed nodes are named `{name}`; a durable \
                 workflow's checkpoints are keyed by node name, so give each its own",
                graph.name()
            );
        }
        let version = self.version?;
        let mut shape = shape(graph, version);
        // Only when there are: the shapes of workflows without resources are as before,
        // and a parameter made a resource is a change of shape (a run saved before
        // holds it in its input).
        if self.resources > 0 {
            let _ = writeln!(
                shape,
                "the last {} parameters are resources",
                self.resources
            );
        }
        // A faked workflow's runs are not the real one's, and neither resumes the other.
        if let Some(fakes) = &self.fakes {
            let _ = writeln!(shape, "built with fakes of {}", fakes.names().join(", "));
        }
        let mut build = shape.clone();
        codes(graph, "", &mut build);
        Some(Durable {
            fingerprint: fingerprint(&shape),
            build: fingerprint(&build),
            shape,
        })
    }

    /// Without the `durable` feature, no workflow is durable.
    #[cfg(not(feature = "durable"))]
    #[allow(clippy::unused_self)]
    pub(super) fn durable_plan(&mut self, _graph: &Graph) -> Option<Durable> {
        None
    }
}

/// The restored nodes' values, and per node whether it counts as restored.
#[cfg(feature = "durable")]
pub(crate) type Restored = (Vec<(usize, Value)>, Vec<bool>);

/// Which checkpointed nodes of a run of `plan` a resume restores, in one pass in node
/// (topological) order: a node with a checkpoint (`has`) is restored if every input it
/// read is (parameters always are) — a branch needs only its decision and the arm the
/// decision took — and is then decoded (`decode`, whose error stops the resume); a
/// checkpoint not restored is `stale`, to be discarded. Returns the restored nodes'
/// values, and per node whether it counts as restored (parameters do).
#[cfg(feature = "durable")]
pub(crate) fn restore<E>(
    plan: &super::Plan,
    has: impl Fn(usize) -> bool,
    mut decode: impl FnMut(usize) -> Result<Value, E>,
    mut stale: impl FnMut(usize),
) -> Result<Restored, E> {
    use crate::task::Kind;
    let graph = &plan.graph;
    let mut restored = vec![false; graph.len()];
    // The arm each restored decision took.
    let mut arms: std::collections::HashMap<usize, u32> = std::collections::HashMap::new();
    let mut values = Vec::new();
    for node in 0..graph.len() {
        if graph.kind(node) == Kind::Param {
            restored[node] = true;
            continue;
        }
        if !has(node) {
            continue;
        }
        let inputs_restored = match &plan.calls[node] {
            super::Call::Branch(def) => arms
                .get(&(def.decision as usize))
                .is_some_and(|&arm| def.restores_with(arm).all(|input| restored[input])),
            _ => graph.node(node).inputs().all(|input| restored[input]),
        };
        if !inputs_restored {
            stale(node);
            continue;
        }
        let value = decode(node)?;
        if graph.kind(node) == Kind::Decision
            && let Some(arm) = value.downcast_ref::<Outcome<u32>>()
        {
            arms.extend(arm.value().map(|&arm| (node, arm)));
        }
        values.push((node, value));
        restored[node] = true;
    }
    Ok((values, restored))
}
