//! What a task is to the runtime: where it runs, how it is retried, how it fails.

use std::cell::{Cell, RefCell};
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::retry::RetryPolicy;

/// Where a task runs, read off its signature by `#[task]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A workflow parameter: a value given to the run, not computed.
    Param,
    /// A plain `fn`: CPU work, run on rayon's pool so it never blocks a tokio worker.
    Cpu,
    /// An `async fn`: IO work, polled on the caller's tokio runtime.
    Io,
    /// A `for` over a collection: runs its body once per item, in parallel, and
    /// collects the results in input order.
    FanOut,
    /// Another workflow, run as one node of this one.
    Workflow,
    /// The condition of an `if` or the scrutinee of a `match`: a small CPU step that
    /// picks the arm to run. The nodes of the other arms are not taken.
    Decision,
    /// The value of an `if` or `match`: the taken arm's value.
    Branch,
}

impl Kind {
    /// A task the user wrote (`Cpu` or `Io`), not a parameter or a group of tasks.
    pub(crate) fn is_task(self) -> bool {
        matches!(self, Kind::Cpu | Kind::Io)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Param => "param",
            Kind::Cpu => "cpu",
            Kind::Io => "io",
            Kind::FanOut => "for",
            Kind::Workflow => "flow",
            Kind::Decision => "decision",
            Kind::Branch => "branch",
        })
    }
}

/// The static facts about a task function: name, kind, retry policy, timeout.
///
/// `#[task]` writes one for every task; a hand-built graph passes its own to
/// [`Builder::node`](crate::Builder::node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// At most this many nodes calling this task run at once in a run (a rate-limited
    /// API, a connection pool); `None` for no limit. The others wait without holding
    /// a thread.
    pub concurrency: Option<u32>,
    /// `#[task(cache)]`: the task's result is kept in the run's store under a key made
    /// of its code and its inputs, and a later run with the same key loads it instead
    /// of calling the task. `None` for a task that is always called.
    pub cache: Option<CachePolicy>,
    /// A hash of the task function's tokens (its signature and body), which `#[task]`
    /// computes; 0 for a node built by hand. A distributed run (module `dist`, feature
    /// `postgres`) is taken only by workers whose workflow's tasks hash the same as the
    /// submitter's. It does not see the functions the task calls.
    pub code: u64,
}

/// How a cached task's results are kept (`#[task(cache)]`, `#[task(cache = "7d",
/// version = 2)]`).
///
/// A result is found again only by a call with the same [`code`](Self::code), the same
/// [`version`](Self::version) and inputs whose serde encodings are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CachePolicy {
    /// A hash of the task function's tokens, which `#[task]` computes: a change of the
    /// function's signature or body makes a new key. It does not see the functions the
    /// task calls, nor the crates it uses: bump `version` when those change.
    pub code: u64,
    /// Bumped by the user when something the code hash does not see changes.
    pub version: u32,
    /// The task's module (`module_path!()` where it is defined): two tasks of one name
    /// and one text in two modules may call different functions, so they never share
    /// results.
    pub module: &'static str,
    /// How long a result stays usable; `None` for ever (until `cache clear`).
    pub ttl: Option<Duration>,
}

impl TaskInfo {
    /// Whether it is a cleanup task: it takes an input as `&Outcome<T>`, so it runs
    /// like a `finally` after a soft stop.
    pub(crate) fn is_cleanup(&self) -> bool {
        self.outcome_inputs != 0 && self.kind.is_task()
    }

    /// A task with no retries, no timeout, and every input required to succeed.
    pub const fn new(name: &'static str, kind: Kind) -> Self {
        Self {
            name,
            kind,
            retry: RetryPolicy::NONE,
            timeout: None,
            outcome_inputs: 0,
            concurrency: None,
            cache: None,
            code: 0,
        }
    }
}

/// What became of a task's input, for a task that runs whatever happened upstream.
///
/// A task parameter `&Outcome<T>` (instead of `&T`) makes the task run even when that
/// input's task failed or was skipped: a cleanup task. In `workflow!`, a `match` whose
/// patterns name `Outcome` matches what became of a binding: a fallback
/// (`match fetched { Outcome::Ok(data) => data, _ => cached(&url) }`), which handles
/// the binding's failure.
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
    /// The task did not produce a value: an input it requires failed or was skipped,
    /// or the run stopped (a cancel, the run's timeout, fail-fast) before it finished.
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

    /// The same outcome, borrowing the value.
    pub fn as_ref(&self) -> Outcome<&T> {
        match self {
            Outcome::Ok(value) => Outcome::Ok(value),
            Outcome::Failed(error) => Outcome::Failed(error.clone()),
            Outcome::Skipped => Outcome::Skipped,
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
pub struct TaskError(Arc<Inner>);

/// Behind one thin pointer, so an `Outcome<T>` in every slot stays small.
struct Inner {
    source: Box<dyn StdError + Send + Sync + 'static>,
    cause: Cause,
}

/// A shared error re-classified: keeps pointing at the original.
#[derive(Debug)]
struct Shared(TaskError);

impl fmt::Display for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.0.source, f)
    }
}

impl StdError for Shared {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.0.source.source()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Transient,
    Permanent,
    Panic,
    Timeout,
    /// Told by [`cancelled`] to stop, it returned: whatever it returned is discarded.
    Cancelled,
    /// A fan-out's items did not all succeed; each item's failure was its own.
    Items,
}

impl TaskError {
    /// A fan-out's failure because some of its items did not succeed (whose own
    /// failures are logged and reported each).
    pub(crate) fn items(error: impl StdError + Send + Sync + 'static) -> Self {
        Self::with_cause(Box::new(error), Cause::Items)
    }

    /// Whether it is a fan-out's failure for its items (see [`items`](Self::items)).
    pub(crate) fn is_items(&self) -> bool {
        self.0.cause == Cause::Items
    }

    /// A transient failure described by a message alone.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::with_cause(message.to_string().into(), Cause::Transient)
    }

    /// A failure no retry can mend (bad input, a 404): the task is not retried.
    pub fn permanent(error: impl Into<TaskError>) -> Self {
        error.into().classified(Cause::Permanent)
    }

    /// A failure a retry may mend (a timeout, a 503). This is the default.
    pub fn transient(error: impl Into<TaskError>) -> Self {
        error.into().classified(Cause::Transient)
    }

    fn classified(mut self, cause: Cause) -> Self {
        match Arc::get_mut(&mut self.0) {
            Some(inner) => {
                inner.cause = cause;
                self
            }
            None => Self::with_cause(Box::new(Shared(self)), cause),
        }
    }

    /// Whether it was marked permanent.
    pub fn is_permanent(&self) -> bool {
        self.0.cause == Cause::Permanent
    }

    /// Whether the attempt panicked.
    pub fn is_panic(&self) -> bool {
        self.0.cause == Cause::Panic
    }

    /// Whether the attempt ran past its timeout.
    pub fn is_timeout(&self) -> bool {
        self.0.cause == Cause::Timeout
    }

    /// The underlying error.
    pub fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        match self.0.source.downcast_ref::<Shared>() {
            Some(shared) => shared.0.as_error(),
            None => &*self.0.source,
        }
    }

    /// The underlying error, if it is an `E`.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        self.as_error().downcast_ref()
    }

    fn with_cause(source: Box<dyn StdError + Send + Sync>, cause: Cause) -> Self {
        Self(Arc::new(Inner { source, cause }))
    }

    pub(crate) fn panicked(payload: &(dyn std::any::Any + Send)) -> Self {
        let message = panic_message(payload);
        Self::with_cause(format!("panicked: {message}").into(), Cause::Panic)
    }

    /// The same message and class, without the error value itself: what a report
    /// keeps of a nested fan-out's failure, whose `ItemsFailed` holds its items' values.
    pub(crate) fn detached(&self) -> Self {
        Self::with_cause(self.to_string().into(), self.0.cause)
    }

    /// An attempt that returned after [`cancelled`] told it to stop.
    pub(crate) fn stopped_early() -> Self {
        Self::with_cause(
            "returned early: it was told to stop".into(),
            Cause::Cancelled,
        )
    }

    /// Whether the attempt returned after [`cancelled`] told it to stop.
    pub(crate) fn is_stopped_early(&self) -> bool {
        self.0.cause == Cause::Cancelled
    }

    pub(crate) fn timed_out(after: Duration) -> Self {
        Self::with_cause(format!("timed out after {after:?}").into(), Cause::Timeout)
    }
}

/// The text of a panic's payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_owned())
}

/// Here rather than in `retry`, which stays below `task`: the decision reads the
/// error's class.
impl RetryPolicy {
    /// Whether attempt number `attempt` (from 1), which failed with `error`, is retried.
    pub fn retries_after(&self, attempt: u32, error: &TaskError) -> bool {
        attempt <= self.retries && !error.is_permanent() && (self.retry_panics || !error.is_panic())
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for TaskError {
    fn from(error: E) -> Self {
        Self::with_cause(Box::new(error), Cause::Transient)
    }
}

impl fmt::Display for TaskError {
    /// The error and its chain of sources, `: `-separated. The user's `Display` runs
    /// behind a panic boundary: a panic in it is shown, never propagated into the
    /// executor or a logger.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            use fmt::Write as _;
            let mut text = String::new();
            let source = self.as_error();
            let _ = write!(text, "{source}");
            let mut cause = source.source();
            while let Some(error) = cause {
                let _ = write!(text, ": {error}");
                cause = error.source();
            }
            text
        }));
        match text {
            Ok(text) => f.write_str(&text),
            Err(panic) => write!(
                f,
                "(the error's `Display` panicked: {})",
                panic_message(&*panic)
            ),
        }
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskError")
            .field("source", &self.as_error())
            .field("cause", &self.0.cause)
            .finish()
    }
}

/// A task's return type spelled `…Result<…>`: a `Result` whose `Err` fails the task.
///
/// The error may be any `std::error::Error + Send + Sync + 'static` type, a
/// [`TaskError`], or anything that converts into `Box<dyn Error + Send + Sync>`:
/// `anyhow::Error`, a boxed error, a `String`.
#[diagnostic::on_unimplemented(
    message = "a task returning `{Self}` must return `T` or `Result<T, E>`",
    label = "this return type is named `Result` but is not `std::result::Result`",
    note = "the error may be a `std::error::Error + Send + Sync + 'static` type, `TaskError`, \
            `anyhow::Error`, `Box<dyn Error + Send + Sync>` or `String`"
)]
pub trait TaskReturn {
    /// The value the task produces when it succeeds.
    type Output;
    /// Its error.
    type Error;
    /// Splits the return value into success and failure.
    fn split(self) -> Result<Self::Output, Self::Error>;
}

impl<T, E> TaskReturn for Result<T, E> {
    type Output = T;
    type Error = E;
    fn split(self) -> Result<T, E> {
        self
    }
}

/// Turns a task's error into a [`TaskError`] (see [`TaskReturn`]).
pub(crate) fn boxed_error(error: Box<dyn StdError + Send + Sync>) -> TaskError {
    TaskError::with_cause(error, Cause::Transient)
}

thread_local! {
    /// The cancel signal of the run (or attempt) this thread last ran a task for, with
    /// its id: replaced only when the id changes, so a thread running many tasks of one
    /// run clones the token once.
    static CANCEL: RefCell<Option<(u64, CancellationToken)>> = const { RefCell::new(None) };
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
    /// Whether the running task was told, by [`cancelled`], to stop.
    static TOLD: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current CPU task should stop early: its attempt timed out or the run
/// was cancelled.
///
/// A plain `fn` task cannot be preempted: when it times out its result is ignored, but
/// it runs on until it returns, and the run waits for it. A long computation can check
/// this now and then and return early, with any value: once it has been told `true`,
/// what the attempt returns is discarded, never taken for its output (the task is
/// reported timed out or cancelled, and a durable run does not checkpoint it). Always
/// `false` outside a CPU task (an `async` task is simply dropped when cancelled).
pub fn cancelled() -> bool {
    let told = IN_TASK.get()
        && CANCEL.with_borrow(|cancel| {
            cancel
                .as_ref()
                .is_some_and(|(_, token)| token.is_cancelled())
        });
    if told {
        TOLD.set(true);
    }
    told
}

/// Runs `f` as a CPU task's attempt: [`cancelled`] reads `token` (cached per thread
/// under `id`). Returns what `f` returned, and whether [`cancelled`] told it to stop.
pub(crate) fn with_cancel<R>(
    id: u64,
    token: &CancellationToken,
    f: impl FnOnce() -> R,
) -> (R, bool) {
    let _scope = CancelScope::enter(id, token);
    let result = f();
    (result, TOLD.get())
}

/// While it lives, the thread runs CPU tasks whose [`cancelled`] reads `token`
/// (cached per thread under an id): [`with_cancel`] for one task, or a fused
/// fan-out's typed chain for many, each between [`clear_told`] and [`was_told`].
/// Its drop puts back what the thread had before: a task's `par_iter` may run another
/// task on this same thread (rayon's work stealing), and the outer task must see its
/// own signal again afterwards.
pub(crate) struct CancelScope {
    in_task: bool,
    told: bool,
    previous: Option<Option<(u64, CancellationToken)>>,
}

impl CancelScope {
    pub(crate) fn enter(id: u64, token: &CancellationToken) -> Self {
        let (in_task, told) = (IN_TASK.get(), TOLD.get());
        let replaced = CANCEL.with_borrow_mut(|cancel| {
            if cancel.as_ref().is_none_or(|(current, _)| *current != id) {
                Some(cancel.replace((id, token.clone())))
            } else {
                None
            }
        });
        IN_TASK.set(true);
        TOLD.set(false);
        // Outside a task the cached signal is kept for the next task on this thread.
        Self {
            in_task,
            told,
            previous: replaced.filter(|_| in_task),
        }
    }
}

impl Drop for CancelScope {
    fn drop(&mut self) {
        IN_TASK.set(self.in_task);
        TOLD.set(self.told);
        if let Some(previous) = self.previous.take() {
            CANCEL.set(previous);
        }
    }
}

/// Before one task in a [`CancelScope`] held across several: the thread is in a task
/// that has not been told to stop yet.
pub(crate) fn enter_task() {
    IN_TASK.set(true);
    TOLD.set(false);
}

/// After a task [`enter_task`] began: the thread is outside a task again (until the
/// next, or until the scope's drop puts back what it had before); whether
/// [`cancelled`] told the task to stop.
pub(crate) fn leave_task() -> bool {
    IN_TASK.set(false);
    TOLD.get()
}

/// Before a task of a [`CancelScope`]: it has not been told to stop yet.
pub(crate) fn clear_told() {
    TOLD.set(false);
}

/// After a task of a [`CancelScope`]: whether [`cancelled`] told it to stop.
pub(crate) fn was_told() -> bool {
    TOLD.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 9, finding 6: a task's `par_iter` may run another task on the same
    /// thread; the outer task sees its own signal again afterwards.
    #[test]
    fn a_nested_task_leaves_the_outer_signal_in_place() {
        let (outer, inner) = (CancellationToken::new(), CancellationToken::new());
        outer.cancel();
        let (seen, told) = with_cancel(u64::MAX - 1, &outer, || {
            assert!(cancelled());
            let (nested, nested_told) = with_cancel(u64::MAX - 2, &inner, cancelled);
            assert!(!nested_told);
            (nested, cancelled())
        });
        assert_eq!(seen, (false, true));
        assert!(told, "the outer task was told to stop");
        assert!(!cancelled(), "outside a task nothing is cancelled");
    }

    /// A scope a rayon job holds across its tasks: a task sees its signal, the
    /// scheduler's work between tasks is outside a task, and the scope's drop puts
    /// back the thread's state.
    #[test]
    fn a_scope_held_across_tasks_is_in_a_task_only_during_each() {
        let token = CancellationToken::new();
        token.cancel();
        {
            let _scope = CancelScope::enter(u64::MAX - 3, &token);
            enter_task();
            assert!(cancelled(), "in a task, the run's stop is seen");
            assert!(leave_task(), "the task was told to stop");
            assert!(!cancelled(), "between tasks nothing is cancelled");
            enter_task();
            assert!(!leave_task(), "the next task starts untold");
        }
        assert!(!cancelled(), "outside a task nothing is cancelled");
    }

    #[test]
    fn only_transient_errors_within_the_budget_are_retried() {
        let p = RetryPolicy {
            retries: 5,
            ..RetryPolicy::NONE
        };
        let transient = TaskError::msg("503");
        assert!(p.retries_after(1, &transient));
        assert!(p.retries_after(5, &transient));
        assert!(
            !p.retries_after(6, &transient),
            "5 retries: the 6th attempt is the last"
        );
        assert!(!p.retries_after(1, &TaskError::permanent(TaskError::msg("404"))));
        let panic = TaskError::panicked(&"bug");
        assert!(!p.retries_after(1, &panic));
        assert!(
            RetryPolicy {
                retry_panics: true,
                ..p
            }
            .retries_after(1, &panic)
        );
    }
}
