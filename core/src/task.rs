//! What a task is to the runtime: where it runs, how it is retried, how it fails.

use std::cell::RefCell;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::retry::RetryPolicy;

/// Where a task runs, read off its signature by `#[task]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A workflow parameter: a value given to the run, not computed.
    Param,
    /// A plain `fn`: CPU work, run on rayon's pool so it never blocks a tokio worker.
    Cpu,
    /// An `async fn`: IO work, polled on the caller's tokio runtime.
    Io,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Param => "param",
            Kind::Cpu => "cpu",
            Kind::Io => "io",
        })
    }
}

/// The static facts about a task function: name, kind, retry policy, timeout.
///
/// `#[task]` writes one for every task; a hand-built graph passes its own to
/// [`Builder::node`](crate::Builder::node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskInfo {
    /// The task function's name, as written.
    pub name: &'static str,
    /// Where it runs.
    pub kind: Kind,
    /// When a failed attempt is tried again.
    pub retry: RetryPolicy,
    /// The longest one attempt may take.
    pub timeout: Option<Duration>,
    /// Bit `i` is set when input `i` is taken as an [`Outcome`]: the task then runs
    /// whatever happened to that input.
    pub outcome_inputs: u16,
}

impl TaskInfo {
    /// A task with no retries, no timeout, and every input required to succeed.
    pub const fn new(name: &'static str, kind: Kind) -> Self {
        Self {
            name,
            kind,
            retry: RetryPolicy::NONE,
            timeout: None,
            outcome_inputs: 0,
        }
    }
}

/// What became of a task's input, for a task that runs whatever happened upstream.
///
/// A task parameter `&Outcome<T>` (instead of `&T`) makes the task run even when that
/// input's task failed or was skipped: a cleanup task.
///
/// ```
/// use aqueduct::prelude::*;
///
/// #[task]
/// fn cleanup(report: &Outcome<String>) -> &'static str {
///     match report {
///         Outcome::Ok(_) => "published",
///         Outcome::Failed(_) => "report failed; temporary files removed",
///         Outcome::Skipped => "nothing to clean",
///     }
/// }
/// ```
#[derive(Debug)]
pub enum Outcome<T> {
    /// The task succeeded with this value.
    Ok(T),
    /// The task failed for good: its last attempt's error.
    Failed(TaskError),
    /// The task never ran: one of its own inputs failed.
    Skipped,
}

impl<T> Outcome<T> {
    /// The value, if the task succeeded.
    pub fn value(&self) -> Option<&T> {
        match self {
            Outcome::Ok(value) => Some(value),
            _ => None,
        }
    }

    /// The error, if the task failed.
    pub fn error(&self) -> Option<&TaskError> {
        match self {
            Outcome::Failed(error) => Some(error),
            _ => None,
        }
    }
}

/// Why one attempt of a task failed, and whether trying again can help.
///
/// Any `std::error::Error + Send + Sync + 'static` converts into it with `?` or
/// `.into()`, so a task can return `Result<T, MyError>` or `Result<T, TaskError>`.
/// Like `anyhow::Error`, it does not implement `std::error::Error` itself: that is what
/// lets every error type convert into it. Cloning is cheap (the error is shared).
///
/// An error is *transient* (worth retrying) unless marked [`permanent`](Self::permanent).
#[derive(Clone)]
pub struct TaskError {
    source: Arc<dyn StdError + Send + Sync + 'static>,
    cause: Cause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Transient,
    Permanent,
    Panic,
    Timeout,
}

impl TaskError {
    /// A transient failure described by a message alone.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::with_cause(message.to_string().into(), Cause::Transient)
    }

    /// A failure no retry can mend (bad input, a 404): the task is not retried.
    pub fn permanent(error: impl Into<TaskError>) -> Self {
        Self {
            cause: Cause::Permanent,
            ..error.into()
        }
    }

    /// A failure a retry may mend (a timeout, a 503). This is the default.
    pub fn transient(error: impl Into<TaskError>) -> Self {
        Self {
            cause: Cause::Transient,
            ..error.into()
        }
    }

    /// Whether it was marked permanent.
    pub fn is_permanent(&self) -> bool {
        self.cause == Cause::Permanent
    }

    /// Whether the attempt panicked.
    pub fn is_panic(&self) -> bool {
        self.cause == Cause::Panic
    }

    /// Whether the attempt ran past its timeout.
    pub fn is_timeout(&self) -> bool {
        self.cause == Cause::Timeout
    }

    /// The underlying error.
    pub fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.source
    }

    /// The underlying error, if it is an `E`.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        self.source.downcast_ref()
    }

    fn with_cause(source: Box<dyn StdError + Send + Sync>, cause: Cause) -> Self {
        Self {
            source: source.into(),
            cause,
        }
    }

    pub(crate) fn panicked(payload: &(dyn std::any::Any + Send)) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("a non-string payload");
        Self::with_cause(format!("panicked: {message}").into(), Cause::Panic)
    }

    pub(crate) fn timed_out(after: Duration) -> Self {
        Self::with_cause(format!("timed out after {after:?}").into(), Cause::Timeout)
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for TaskError {
    fn from(error: E) -> Self {
        Self::with_cause(Box::new(error), Cause::Transient)
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)?;
        let mut cause = self.source.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskError")
            .field("source", &self.source)
            .field("cause", &self.cause)
            .finish()
    }
}

/// A task's return type: either the value itself or a `Result` whose `Err` fails the task.
#[diagnostic::on_unimplemented(
    message = "a task returning `{Self}` must return `T` or `Result<T, E>` with `E: Into<TaskError>`",
    label = "this return type is named `Result` but is not `std::result::Result`",
    note = "an error type converts into `TaskError` when it implements `std::error::Error + Send + Sync + 'static`"
)]
pub trait TaskReturn {
    /// The value the task produces when it succeeds.
    type Output;
    /// Splits the return value into success and failure.
    fn into_result(self) -> Result<Self::Output, TaskError>;
}

impl<T, E: Into<TaskError>> TaskReturn for Result<T, E> {
    type Output = T;
    fn into_result(self) -> Result<T, TaskError> {
        self.map_err(Into::into)
    }
}

thread_local! {
    static CANCEL: RefCell<Option<CancellationToken>> = const { RefCell::new(None) };
}

/// Whether the current CPU task should stop early: its attempt timed out or the run
/// was cancelled.
///
/// A plain `fn` task cannot be preempted: when it times out its result is ignored, but
/// it runs on until it returns, and the run waits for it. A long computation can check
/// this now and then and return early. Always `false` outside a CPU task (an `async`
/// task is simply dropped when cancelled).
pub fn cancelled() -> bool {
    CANCEL.with(|cancel| {
        cancel
            .borrow()
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
    })
}

/// Runs `f` with `token` as what [`cancelled`] reports.
pub(crate) fn with_cancel<R>(token: &CancellationToken, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CANCEL.with(|cancel| cancel.borrow_mut().take());
        }
    }
    CANCEL.with(|cancel| *cancel.borrow_mut() = Some(token.clone()));
    let _reset = Reset;
    f()
}
