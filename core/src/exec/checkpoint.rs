//! What a durable run records as a node ends: its checkpoint (the encoded value) and,
//! for a task, how it ended; both go to the writer in one entry.

use super::*;
use crate::store::{Checkpoint, TaskEnd};

/// What the writer saves for one node: its checkpoint and how it ended.
#[cfg_attr(not(feature = "durable"), allow(dead_code))]
pub(crate) struct Entry {
    pub(crate) checkpoint: Option<Checkpoint>,
    pub(crate) end: Option<TaskEnd>,
    /// A cached task's result, to be found by later runs.
    pub(crate) cached: Option<crate::store::CachedResult>,
}

#[cfg(feature = "durable")]
pub(crate) use super::writer::{BACKLOG, Flushed, Sink};

/// Without the `durable` feature there is no writer: no run has a sink.
#[cfg(not(feature = "durable"))]
pub(crate) enum Sink {}

#[cfg(not(feature = "durable"))]
impl Sink {
    pub(crate) fn send(&self, _entry: Entry) {
        match *self {}
    }

    pub(crate) fn backlog(&self) -> usize {
        match *self {}
    }
}

/// How many entries may wait for the writer before a recording fan-out stops starting
/// items (without the `durable` feature there is no writer, so never asked).
#[cfg(not(feature = "durable"))]
pub(crate) const BACKLOG: usize = 0;

/// Per nested run of a resumed run (`each[17].`, `stats.`), the nodes it restores as
/// it starts, decoded.
pub(crate) type Nested = std::collections::BTreeMap<String, Vec<(usize, Value)>>;

/// What a runner may bring to the executor besides options: values restored from
/// checkpoints and where new checkpoints go (a durable run), and live progress counts.
#[derive(Default)]
pub(crate) struct Extras {
    /// The run's id, for its span; a fresh one if `None`.
    pub(crate) run_id: Option<String>,
    /// The workflow's resources, put in their slots as it starts.
    pub(crate) resources: Option<super::Provide>,
    /// (node, value) of every node restored.
    pub(crate) restored: Vec<(usize, Value)>,
    /// Per nested run's path, the nodes it restores as it starts.
    pub(crate) nested: Nested,
    /// How new checkpoints are encoded.
    pub(crate) format: crate::plan::CheckpointFormat,
    pub(crate) sink: Option<Sink>,
    /// Where cached tasks look their results up and save them.
    pub(crate) cache: Option<CacheRun>,
    pub(crate) progress: Option<Arc<crate::progress::Progress>>,
}

impl Shared {
    /// Where this run's nodes are checkpointed and recorded: the run itself, if durable,
    /// and its nested runs whose bodies are checkpointed.
    pub(super) fn records(&self) -> Option<&Sink> {
        let top = matches!(self.completion, Some(Completion::Run(_)));
        self.run
            .sink
            .as_ref()
            .filter(|_| top || self.path.is_some())
    }

    /// The name node `node` is checkpointed and recorded under: its own, after the
    /// prefix of the nested run it is in (`each[17].sum`).
    pub(super) fn recorded_name(&self, node: usize) -> String {
        let name = self.plan.graph.name_of(node);
        match &self.path {
            Some(path) => format!("{path}{name}"),
            None => name.to_owned(),
        }
    }

    /// A succeeded node's checkpoint, if the plan checkpoints it. A value that cannot
    /// be encoded (its `Serialize` fails or panics) fails the task: a durable run must
    /// not go on with an output it could not save.
    pub(super) fn checkpoint_of(
        &self,
        node: usize,
        attempts: u32,
        value: &Value,
    ) -> Result<Option<Checkpoint>, TaskError> {
        let codec = self.plan.codecs[node];
        let Some(codec) = codec else { return Ok(None) };
        // The value of an `if` or `match` is saved as the value of the arm it took.
        let slots = self.board.slots();
        let value = crate::value::shared(slots.into(), value).unwrap_or(value);
        let format = self.run.format;
        let encoded = catch_unwind(AssertUnwindSafe(|| (codec.encode)(value, format)))
            .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_message(&*panic))));
        let data = encoded.map_err(|error| {
            TaskError::permanent(TaskError::msg(format_args!(
                "cannot checkpoint its output: {error}"
            )))
        })?;
        Ok(Some(Checkpoint {
            node: self.recorded_name(node),
            codec: format.name().to_owned(),
            schema: crate::plan::SCHEMA,
            data,
            attempts,
        }))
    }

    /// Sends the writer a node's checkpoint, if it has one, and how it ended if it is
    /// a task or a decision (status, attempts and their errors, times), in one entry so that both
    /// land in the same commit.
    pub(super) fn record_end(
        &self,
        sink: &Sink,
        node: usize,
        attempts: u32,
        record: &Record,
        checkpoint: Option<Checkpoint>,
    ) {
        // Tasks, and the decisions of `if`s and `match`es, which run the user's code too.
        let kind = self.plan.graph.kind(node);
        let end = (kind.is_task() || kind == Kind::Decision)
            .then(|| self.task_end(node, attempts, record));
        if checkpoint.is_some() || end.is_some() {
            sink.send(Entry {
                checkpoint,
                end,
                cached: None,
            });
        }
    }

    pub(super) fn task_end(&self, node: usize, attempts: u32, record: &Record) -> TaskEnd {
        let mut errors: Vec<String> = record
            .retried()
            .iter()
            .map(|failed| failed.error.to_string())
            .collect();
        errors.extend(record.error().map(ToString::to_string));
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let span_ms = record.duration().map_or(0, |d| d.as_millis() as u64);
        TaskEnd {
            node: self.recorded_name(node),
            status: record.status.to_string(),
            attempts,
            errors,
            started_ms: now_ms.saturating_sub(span_ms),
            duration_ms: span_ms,
        }
    }
}
