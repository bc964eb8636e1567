//! The report of a run: what each task did and how well the run used its parallelism.

use std::fmt;
use std::time::Duration;

use crate::task::Kind;

mod millis;

/// How a task's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// It returned its value.
    Succeeded,
    /// Its last attempt returned an error or panicked.
    Failed,
    /// Its last attempt ran past the task's timeout.
    TimedOut,
    /// It never ran: an input it requires failed or was skipped.
    Skipped,
    /// The run stopped (cancelled, timed out, or fail-fast) before it finished.
    Cancelled,
    /// Its value was loaded from a checkpoint of an earlier run: it did not run again.
    Restored,
    /// It is in an arm of an `if` or `match` that was not taken: it never ran, and
    /// nothing went wrong.
    NotTaken,
    /// Its last attempt failed, and a `match` on its outcome handled the failure (a
    /// fallback ran): the run does not fail because of it. Its attempts and error are
    /// kept.
    Handled,
    /// A cached task (`#[task(cache)]`) whose result an earlier run computed with the
    /// same code and inputs: loaded from the store, not run ([`TaskReport::cached_from`]
    /// names that run).
    Cached,
}

impl TaskStatus {
    /// Whether the node has its value: it succeeded, now, in the run it was restored
    /// from, or in the run whose cached result it loaded.
    pub fn succeeded(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded | TaskStatus::Restored | TaskStatus::Cached
        )
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::TimedOut => "timed out",
            TaskStatus::Skipped => "skipped",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Restored => "restored",
            TaskStatus::NotTaken => "not taken",
            TaskStatus::Handled => "handled",
            TaskStatus::Cached => "cached",
        })
    }
}

/// What one task did in one run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TaskReport {
    /// The node's name: its binding in the workflow (a tail call's task name). Nested
    /// nodes are named after what holds them: a fan-out's items `task[2]`, a
    /// sub-workflow's tasks `node.task`, an arm's nodes `branch.arm.name` (`label.then.
    /// praise`, `rows.Csv.parse`) with the decision `branch.if` or `branch.match`.
    pub node: String,
    /// The task function it called; for the nodes that are not tasks, what they are:
    /// `for`, `workflow`, `if`/`match` (a decision), `branch` (the value of an `if` or
    /// `match`).
    pub task: String,
    /// Where it ran.
    pub kind: Kind,
    /// How it ended.
    pub status: TaskStatus,
    /// When it started, from the start of the run; `None` if it never ran. (In JSON
    /// `started_at_ms`, like every duration of a report: milliseconds, a number.)
    ///
    /// A CPU task that a rayon thread runs right after another (the one that made it
    /// ready, or the one before it in a batch of ready tasks) starts when that one
    /// ended: the thread reads the clock once per task, so the scheduler's work between
    /// the two (well under a microsecond) counts in the later task's duration.
    #[serde(
        rename = "started_at_ms",
        alias = "started_at",
        with = "millis::option",
        default
    )]
    pub started_at: Option<Duration>,
    /// From all its inputs existing to its start: time spent waiting for a thread or
    /// for a permit of its task's `concurrency` limit.
    #[serde(rename = "queue_wait_ms", alias = "queue_wait", with = "millis")]
    pub queue_wait: Duration,
    /// From its first attempt's start to its last attempt's end, retry delays included.
    #[serde(rename = "duration_ms", alias = "duration", with = "millis")]
    pub duration: Duration,
    /// Why it failed.
    pub error: Option<String>,
    /// Every attempt, in order; empty if it never ran.
    pub attempts: Vec<AttemptReport>,
    /// For a fan-out that had items: how many, and how they ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<ItemsReport>,
    /// Whether it called a fake of its task (a workflow built `with_fakes`, see
    /// [`crate::fake`]); the table shows it as `task (fake)`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fake: bool,
    /// For a [`Cached`](TaskStatus::Cached) task, the id of the run that computed the
    /// result it loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_from: Option<String>,
}

/// The items of a fan-out: how many, how they ran, how many have rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ItemsReport {
    /// How many items it had.
    pub count: usize,
    /// Whether they ran fused: its body is CPU tasks only (one attempt each, no
    /// timeout, no concurrency limit) and it is not capped, so rayon's threads ran the
    /// items in chunks without scheduling each one.
    pub fused: bool,
    /// How many items have their tasks in this report (`task[i]`): every item of a
    /// scheduled fan-out; of a fused one, those that did not succeed, unless the run
    /// asked for every row (`Runner::item_rows`).
    pub rows: usize,
}

/// One attempt of a task.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AttemptReport {
    /// When it started, from the start of the run.
    #[serde(rename = "started_at_ms", alias = "started_at", with = "millis")]
    pub started_at: Duration,
    /// How long it ran.
    #[serde(rename = "duration_ms", alias = "duration", with = "millis")]
    pub duration: Duration,
    /// Why it failed; `None` if it succeeded.
    pub error: Option<String>,
}

/// The report of one run, whether it succeeded or not.
///
/// It prints as a table (`{}`) and serialises with serde, every duration in
/// milliseconds as a number in a field named `…_ms` (`wall_ms`, `duration_ms`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunReport {
    /// The workflow's name.
    pub workflow: String,
    /// From the start of the run to its end.
    #[serde(rename = "wall_ms", alias = "wall", with = "millis")]
    pub wall: Duration,
    /// Every task, in the graph's order.
    pub tasks: Vec<TaskReport>,
    /// The tasks, each an input of the next, whose durations add up to the most.
    pub critical_path: Vec<String>,
    /// The cores the run could use (`std::thread::available_parallelism`).
    pub cores: usize,
    /// What went wrong that did not fail the run: a cached task whose result could not
    /// be looked up, read or saved (it ran instead).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl RunReport {
    pub(crate) fn not_started(workflow: &str) -> Self {
        Self {
            workflow: workflow.to_owned(),
            wall: Duration::ZERO,
            tasks: Vec::new(),
            critical_path: Vec::new(),
            cores: cores(),
            warnings: Vec::new(),
        }
    }

    /// The report of the task bound to `node`.
    pub fn task(&self, node: &str) -> Option<&TaskReport> {
        self.tasks.iter().find(|t| t.node == node)
    }

    /// The sum of every attempt's duration: what the run would take one task at a time.
    /// A fan-out's own span is not counted: its items' tasks are.
    pub fn total_task_time(&self) -> Duration {
        self.tasks
            .iter()
            .filter(|t| !matches!(t.kind, Kind::FanOut | Kind::Workflow))
            .flat_map(|t| &t.attempts)
            .map(|a| a.duration)
            .sum()
    }

    /// Total task time over wall time: how many tasks ran at once, on average.
    pub fn speedup(&self) -> f64 {
        let wall = self.wall.as_secs_f64();
        if wall == 0.0 {
            0.0
        } else {
            self.total_task_time().as_secs_f64() / wall
        }
    }

    /// Speed-up over the cores available: 1.0 when every core was busy with tasks for
    /// the whole run. IO tasks wait rather than compute, so a run of many at once can
    /// exceed 1.0.
    pub fn parallel_efficiency(&self) -> f64 {
        self.speedup() / self.cores.max(1) as f64
    }

    /// The critical path's duration: a lower bound on the wall time of any schedule.
    pub fn critical_path_time(&self) -> Duration {
        self.critical_path
            .iter()
            .filter_map(|node| self.task(node))
            .map(|t| t.duration)
            .sum()
    }

    /// Tasks with the given status.
    pub fn with_status(&self, status: TaskStatus) -> impl Iterator<Item = &TaskReport> {
        self.tasks.iter().filter(move |t| t.status == status)
    }
}

pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A fan-out's item rows are summarised beyond this many per body task.
pub(crate) const ITEMS_SHOWN: usize = 20;

/// `parse[*]` for `parse[17]` (every index starred): the rows of one body task across
/// items; `None` for a row that is not an item's.
pub(crate) fn item_key(node: &str) -> Option<String> {
    let mut key = String::with_capacity(node.len());
    let mut rest = node;
    let mut starred = false;
    while let Some(open) = rest.find('[') {
        let close = rest[open..].find(']')? + open;
        let index = &rest[open + 1..close];
        key.push_str(&rest[..=open]);
        if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) {
            key.push('*');
            starred = true;
        } else {
            key.push_str(index);
        }
        key.push(']');
        rest = &rest[close + 1..];
    }
    key.push_str(rest);
    starred.then_some(key)
}

/// How many rows of one body task ended in each status.
#[derive(Default)]
pub(crate) struct ItemCounts(std::collections::BTreeMap<String, usize>, usize);

impl ItemCounts {
    /// `9000 items: 8997 succeeded, 3 failed`.
    pub(crate) fn line(&self) -> String {
        let counts: Vec<String> = self
            .0
            .iter()
            .map(|(status, n)| format!("{n} {status}"))
            .collect();
        format!("{} items: {}", self.1, counts.join(", "))
    }
}

/// Sums up a fan-out's item rows: past [`ITEMS_SHOWN`] rows of one body task, one
/// line of counts (`parse[*]  9000 items: 3 failed, 8997 succeeded`) where its first
/// row was, then only the rows that failed or were skipped. For the report's table and
/// the CLI's `show` of an unfinished run (whose rows carry statuses as text).
pub(crate) struct ItemSummary {
    groups: std::collections::HashMap<String, ItemCounts>,
    shown: std::collections::HashSet<String>,
}

/// Rows the summary's counts stand for: nothing went wrong with them.
const QUIET: [TaskStatus; 5] = [
    TaskStatus::Succeeded,
    TaskStatus::Restored,
    TaskStatus::Cached,
    TaskStatus::NotTaken,
    TaskStatus::Cancelled,
];

impl ItemSummary {
    /// Over every row, `(node, status)`.
    pub(crate) fn new<'a>(rows: impl Iterator<Item = (&'a str, String)>) -> Self {
        let mut groups: std::collections::HashMap<String, ItemCounts> = Default::default();
        for (node, status) in rows {
            if let Some(key) = item_key(node) {
                let counts = groups.entry(key).or_default();
                *counts.0.entry(status).or_default() += 1;
                counts.1 += 1;
            }
        }
        groups.retain(|_, counts| counts.1 > ITEMS_SHOWN);
        Self {
            groups,
            shown: Default::default(),
        }
    }

    /// For row `node` ending with `status`: the line of counts to print before it (once
    /// per body task: its key and counts), and whether to print the row itself.
    pub(crate) fn row(&mut self, node: &str, status: &str) -> (Option<(String, String)>, bool) {
        let Some(key) = item_key(node).filter(|key| self.groups.contains_key(key)) else {
            return (None, true);
        };
        let quiet = QUIET.iter().any(|quiet| status == quiet.to_string());
        let line = self.shown.insert(key.clone()).then(|| {
            let counts = self.groups[&key].line();
            (key, counts)
        });
        (line, !quiet)
    }
}

impl TaskReport {
    /// The task as tables and timelines show it: its name, `(fake)` after a fake's.
    pub(crate) fn task_shown(&self) -> std::borrow::Cow<'_, str> {
        if self.fake {
            format!("{} (fake)", self.task).into()
        } else {
            self.task.as_str().into()
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = |title: &str, cell: &dyn Fn(&TaskReport) -> usize| {
            self.tasks
                .iter()
                .map(cell)
                .chain([title.len()])
                .max()
                .unwrap_or(0)
        };
        let node_w = width("node", &|t| t.node.len());
        let task_w = width("task", &|t| t.task_shown().len());
        let kind_w = width("kind", &|t| t.kind.to_string().len());
        writeln!(f, "run of `{}`", self.workflow)?;
        writeln!(
            f,
            "  {:node_w$}  {:task_w$}  {:kind_w$}  {:9}  {:>8}  {:>10}  {:>10}  {:>10}",
            "node", "task", "kind", "status", "attempts", "start", "wait", "duration"
        )?;
        let mut summary = ItemSummary::new(
            self.tasks
                .iter()
                .map(|t| (t.node.as_str(), t.status.to_string())),
        );
        for t in &self.tasks {
            let (line, shown) = summary.row(&t.node, &t.status.to_string());
            if let Some((key, counts)) = line {
                writeln!(f, "  {key:node_w$}  {counts}")?;
            }
            if !shown {
                continue;
            }
            let start = t.started_at.map(ms).unwrap_or_else(|| "-".into());
            let status = match t.status {
                TaskStatus::Succeeded => "ok".to_owned(),
                other => other.to_string(),
            };
            writeln!(
                f,
                "  {:node_w$}  {:task_w$}  {:kind_w$}  {:9}  {:>8}  {:>10}  {:>10}  {:>10}",
                t.node,
                t.task_shown(),
                t.kind.to_string(),
                status,
                t.attempts.len(),
                start,
                ms(t.queue_wait),
                ms(t.duration)
            )?;
            for (n, attempt) in t.attempts.iter().enumerate() {
                if let Some(error) = &attempt.error {
                    writeln!(f, "  {:node_w$}  attempt {}: {error}", "", n + 1)?;
                }
            }
            if let Some(run) = &t.cached_from {
                writeln!(f, "  {:node_w$}  result computed by run {run}", "")?;
            }
            if let Some(items) = t
                .items
                .filter(|items| items.fused && items.rows < items.count)
            {
                writeln!(
                    f,
                    "  {:node_w$}  {} items ran fused; rows below for the {} that did not succeed",
                    "", items.count, items.rows
                )?;
            }
        }
        writeln!(
            f,
            "  wall {}, task time {}, speed-up {:.2}x, parallel efficiency {:.0}% of {} cores",
            ms(self.wall),
            ms(self.total_task_time()),
            self.speedup(),
            self.parallel_efficiency() * 100.0,
            self.cores
        )?;
        write!(
            f,
            "  critical path ({}): {}",
            ms(self.critical_path_time()),
            self.critical_path.join(" -> ")
        )?;
        for warning in &self.warnings {
            write!(f, "\n  warning: {warning}")?;
        }
        Ok(())
    }
}
