//! What a task is to the runtime: where it runs, what it is called, how it fails.

use std::error::Error as StdError;
use std::fmt;

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

/// The static facts about a task function: its name and where it runs.
///
/// `#[task]` writes one for every task; a hand-built graph passes its own to
/// [`Builder::node`](crate::Builder::node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskInfo {
    /// The task function's name, as written.
    pub name: &'static str,
    /// Where it runs.
    pub kind: Kind,
}

/// Why one attempt of a task failed.
///
/// Any `std::error::Error + Send + Sync + 'static` converts into it with `?` or
/// `.into()`, so a task can return `Result<T, MyError>` or `Result<T, TaskError>`.
/// Like `anyhow::Error`, it does not implement `std::error::Error` itself: that is what
/// lets every error type convert into it.
pub struct TaskError {
    source: Box<dyn StdError + Send + Sync + 'static>,
}

impl TaskError {
    /// A failure described by a message alone.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self {
            source: message.to_string().into(),
        }
    }

    /// The underlying error.
    pub fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.source
    }

    pub(crate) fn panicked(payload: &(dyn std::any::Any + Send)) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("a non-string payload");
        Self::msg(format_args!("panicked: {message}"))
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for TaskError {
    fn from(error: E) -> Self {
        Self {
            source: Box::new(error),
        }
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
        fmt::Debug::fmt(&self.source, f)
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
