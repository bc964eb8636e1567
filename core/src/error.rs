//! The error a run returns.

use std::fmt;

use crate::task::TaskError;

/// Why a workflow run did not produce its output.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// One or more tasks failed. Tasks that did not depend on them still ran; tasks
    /// that did were skipped.
    Failed {
        /// The workflow's name.
        workflow: String,
        /// Every task that failed, in the graph's order.
        failures: Vec<TaskFailure>,
        /// The nodes skipped because an input's task failed.
        skipped: Vec<String>,
    },
    /// The run was cancelled (a [`CancelHandle`](crate::CancelHandle), or its future
    /// dropped) and the cancel kept a node from finishing (`unfinished`), or the output
    /// from existing. A cancel that came after every node finished changes nothing.
    Cancelled {
        /// The workflow's name.
        workflow: String,
        /// The tasks that had not finished.
        unfinished: Vec<String>,
    },
    /// The run's own timeout passed before its output existed.
    TimedOut {
        /// The workflow's name.
        workflow: String,
        /// The run's timeout.
        after: std::time::Duration,
        /// The tasks that had not finished.
        unfinished: Vec<String>,
    },
    /// A durable run's store failed; what it already holds is intact.
    Store(crate::store::StoreError),
    /// A store was given to a workflow not declared `#[durable]`.
    NotDurable {
        /// The workflow's name.
        workflow: String,
    },
    /// `resume` of a run id the store does not know, or a wait for a distributed run the
    /// cluster does not know.
    UnknownRun {
        /// The run id.
        run: String,
    },
    /// A run id was reused with other parameters.
    InputChanged {
        /// The run id.
        run: String,
    },
    /// The run was recorded by a workflow of another shape or version.
    FingerprintMismatch {
        /// The run id.
        run: String,
        /// What differs, one line per node: `-` as recorded, `+` as built now.
        changes: String,
    },
    /// A checkpoint could not be loaded: the run is refused, the store untouched.
    Checkpoint {
        /// The run id.
        run: String,
        /// The checkpointed node.
        node: String,
        /// Why it could not be loaded.
        message: String,
    },
    /// [`Runner::resume`](crate::Runner::resume) without a
    /// [`run_id`](crate::Runner::run_id): there is no run to resume.
    NoRunId {
        /// The workflow's name.
        workflow: String,
    },
    /// A run id given to [`Runner::run_id`](crate::Runner::run_id), the CLI or
    /// `dist::Cluster::submit` (feature `postgres`) that no run may have: empty,
    /// longer than 256 bytes, with a control character, or with whitespace around it.
    /// Nothing was run or changed.
    InvalidRunId {
        /// The id as given.
        run: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Another runner (this process or another) owns the run and is running it: its
    /// lease holds. Nothing was run or changed.
    RunInUse {
        /// The run id.
        run: String,
        /// Who holds the run: `host:pid:tag`.
        owner: String,
    },
    /// The run was polled outside a tokio runtime, which IO tasks need.
    NoRuntime {
        /// The workflow's name.
        workflow: String,
    },
    /// A workflow with resources (`#[resource]` parameters) was run without them: only
    /// `run_with`, `runner_with` (or the workflow's function) give them. Nothing was run
    /// or saved.
    MissingResources {
        /// The workflow's name.
        workflow: String,
    },
    /// A blocking entry point ([`Workflow::run_blocking`](crate::Workflow::run_blocking)
    /// and the `Runner`'s) was called inside a tokio runtime or a task on rayon's
    /// threads, one of whose threads it would block (the run's own tasks could then
    /// never get one): `.await` the run there instead. Nothing was run.
    BlockingInRuntime {
        /// The workflow's name.
        workflow: String,
    },
    /// A fake given to a workflow's `with_fakes` ([`fake`](crate::fake)) that it cannot
    /// use. Nothing was built.
    BadFake {
        /// The workflow's name.
        workflow: String,
        /// The faked task's name.
        task: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A workflow that this version cannot run distributed (module `dist`, feature
    /// `postgres`).
    NotDistributable {
        /// The workflow's name.
        workflow: String,
        /// Why, and what to do.
        reason: String,
    },
    /// Something outside any task panicked (the scheduler, a `Drop`, a store's or a
    /// collection's code): the run was stopped at once. A bug to report; the process
    /// itself goes on.
    Fault {
        /// The workflow's name.
        workflow: String,
        /// What panicked, and its message.
        message: String,
    },
}

/// One task that failed in a run.
#[derive(Debug)]
pub struct TaskFailure {
    /// The node's name: its binding in the workflow.
    pub node: String,
    /// The task function it called.
    pub task: &'static str,
    /// How many attempts it made.
    pub attempts: u32,
    /// Why its last attempt failed.
    pub error: TaskError,
}

impl Error {
    /// A run of `workflow` that ended without a failure yet without its `output`: a
    /// graph built by hand may make its output read an arm that was not taken.
    pub(crate) fn output_missing(workflow: &str, output: &str, not_taken: bool) -> Self {
        let why = if not_taken {
            "was not taken (it is in, or reads, an arm of an `if` or `match` that was not \
             taken)"
        } else {
            "was not produced"
        };
        Error::Fault {
            workflow: workflow.to_owned(),
            message: format!("the run ended without a failure but its output `{output}` {why}"),
        }
    }

    /// Every task that failed; empty for errors that are not task failures.
    pub fn failures(&self) -> &[TaskFailure] {
        match self {
            Error::Failed { failures, .. } => failures,
            _ => &[],
        }
    }
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task `{}`", self.node)?;
        if self.node != self.task {
            write!(f, " (`{}`)", self.task)?;
        }
        f.write_str(" failed")?;
        if self.attempts > 1 {
            write!(f, " after {} attempts", self.attempts)?;
        }
        write!(f, ": {}", self.error)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Failed {
                workflow,
                failures,
                skipped,
            } => {
                write!(f, "workflow `{workflow}` failed: ")?;
                for (i, failure) in failures.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{failure}")?;
                }
                list(f, "skipped because of it", skipped)
            }
            Error::Cancelled {
                workflow,
                unfinished,
            } => {
                write!(f, "workflow `{workflow}` was cancelled")?;
                list(f, "unfinished", unfinished)
            }
            Error::TimedOut {
                workflow,
                after,
                unfinished,
            } => {
                write!(f, "workflow `{workflow}` timed out after {after:?}")?;
                list(f, "unfinished", unfinished)
            }
            Error::Store(error) => write!(f, "{error}"),
            Error::NotDurable { workflow } => write!(
                f,
                "workflow `{workflow}` is not durable: declare it `#[durable]` in `workflow!` to run it with a store"
            ),
            Error::UnknownRun { run } => write!(f, "the store has no run `{run}`"),
            Error::InputChanged { run } => write!(
                f,
                "run `{run}` was started with other parameters: give the same ones, or choose a new run id"
            ),
            Error::FingerprintMismatch { run, changes } => write!(
                f,
                "run `{run}` was recorded by another version of this workflow, so its checkpoints may not fit; \
                 start a fresh run with a new run id, or delete the old run. What changed (- recorded, + now):{changes}"
            ),
            Error::Checkpoint { run, node, message } => write!(
                f,
                "run `{run}`: the checkpoint of node `{node}` cannot be loaded ({message}); nothing was run or changed"
            ),
            Error::Fault { workflow, message } => write!(
                f,
                "workflow `{workflow}` stopped on a fault outside its tasks: {message}"
            ),
            Error::NotDistributable { workflow, reason } => {
                write!(f, "workflow `{workflow}` cannot run distributed: {reason}")
            }
            Error::NoRunId { workflow } => write!(
                f,
                "workflow `{workflow}`: `resume` needs the id of the run to resume: give it with `Runner::run_id`"
            ),
            Error::InvalidRunId { run, reason } => {
                write!(f, "invalid run id {run:?}: {reason}")
            }
            Error::RunInUse { run, owner } => write!(
                f,
                "run `{run}` is in use: `{owner}` (host:pid:tag) is running it; wait for that run \
                 to end or cancel it, then resume. A run whose process died is free at once on its \
                 own host, or once its lease expires ({}s without a heartbeat)",
                crate::store::LEASE_TTL.as_secs()
            ),
            Error::MissingResources { workflow } => write!(
                f,
                "workflow `{workflow}` has resources, and this run was not given them: run it \
                 with `{workflow}::workflow().run_with(params, resources)` or `runner_with`"
            ),
            Error::BadFake {
                workflow,
                task,
                reason,
            } => write!(
                f,
                "workflow `{workflow}` cannot use the fake of task `{task}`: {reason}"
            ),
            Error::BlockingInRuntime { workflow } => write!(
                f,
                "workflow `{workflow}`: `run_blocking` was called inside a tokio runtime or a \
                 task, whose thread it would block: `.await` the run there (`run(params).await`)"
            ),
            Error::NoRuntime { workflow } => write!(
                f,
                "workflow `{workflow}` must run inside a tokio runtime \
                 (its IO tasks are spawned on it): use #[tokio::main] or Runtime::block_on, \
                 or `run_blocking` from synchronous code"
            ),
        }
    }
}

/// `; {what}: a, b, c`, or nothing for no names.
fn list(f: &mut fmt::Formatter<'_>, what: &str, names: &[String]) -> fmt::Result {
    if names.is_empty() {
        return Ok(());
    }
    write!(f, "; {what}: {}", names.join(", "))
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.failures().first().map(|f| f.error.as_error() as _)
    }
}

pub(crate) fn run_status<O>(result: &Result<O, Error>) -> &'static str {
    match result {
        Ok(_) => "succeeded",
        Err(Error::Cancelled { .. }) => "cancelled",
        Err(Error::TimedOut { .. }) => "timed out",
        Err(_) => "failed",
    }
}
