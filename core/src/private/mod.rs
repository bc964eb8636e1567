//! What the macros' expansions call. Not public API: names and shapes change freely.

use std::future::Future;
use std::marker::PhantomData;

mod callee;

pub use crate::fake::{Fake, Fakes, faked};
pub use crate::plan::{Builder, Chain, ChainValue, Decision, Handle, Imports, In, Step};
pub use crate::plan::{CacheKey, Checked, Inputs, Params, fan_over};
pub use crate::retry::{Backoff, RetryPolicy};
pub use crate::task::{CachePolicy, Kind, Outcome, TaskError, TaskInfo, TaskReturn};
pub use crate::value::{Slot, SlotView};
pub use crate::{Error, Workflow};
pub use callee::{Callee, Entered, fake_of};
pub use std::pin::Pin;
pub use std::sync::Arc;
pub use std::sync::OnceLock;
pub use std::time::Duration;

/// Implemented by `#[task]` on the hidden struct named like the task function.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a task",
    label = "not a `#[task]`",
    note = "add `#[task]` to the function so a workflow can call it"
)]
pub trait Task: 'static {
    /// The function's declared return type (for an `async fn`, its future's output).
    type Return;
    /// The value a successful call produces; `#[task]` asserts it is a [`TaskOutput`].
    type Output;
    /// [`Cpu`] or [`Io`].
    type Kind;
    /// Per parameter, [`Required`] (`&T`), [`Tolerant`] (`&Outcome<T>`), [`Owned`]
    /// (`T`) or [`Cloned`] (`T` of a `retry_clones` task), padded with `Required` to
    /// twelve.
    type Inputs;
    /// [`Cached`] for `#[task(cache)]`, else [`NoCache`].
    type Cache;
    /// Name and kind.
    const INFO: TaskInfo;
    /// Splits the return value into success and failure.
    fn finish(ret: Self::Return) -> Result<Self::Output, TaskError>;
}

/// The kind of a plain `fn` task.
pub enum Cpu {}
/// The kind of an `async fn` task.
pub enum Io {}

/// A task's output is shared by reference between tasks on many threads.
#[diagnostic::on_unimplemented(
    message = "the task output `{Self}` cannot be shared between tasks",
    label = "a task's output must be `Send + Sync + 'static`",
    note = "outputs are shared by reference across threads: use `Arc` rather than `Rc`, \
            `Mutex` rather than `RefCell`, and owned data rather than borrows"
)]
pub trait TaskOutput: Send + Sync + 'static {}

#[diagnostic::do_not_recommend]
impl<T: Send + Sync + 'static> TaskOutput for T {}

/// Splits a fallible task's return value.
pub fn split<T, E, R: TaskReturn<Output = T, Error = E>>(ret: R) -> Result<T, E> {
    ret.split()
}

/// How a task's error becomes a [`TaskError`], picked by method resolution in the
/// code `#[task]` writes, `(&error).task_error_kind().convert(error)`: an error that
/// converts into `TaskError` (a `std::error::Error` type, `TaskError` itself) takes
/// [`IntoKind`], found first; anything else [`BoxKind`], whose conversion needs
/// `Into<Box<dyn Error + Send + Sync>>` (`anyhow::Error`, boxed errors, `String`).
pub trait IntoKind {
    /// [`ViaInto`].
    fn task_error_kind(&self) -> ViaInto {
        ViaInto
    }
}

impl<E: Into<TaskError>> IntoKind for E {}

/// See [`IntoKind`].
pub trait BoxKind {
    /// [`ViaBox`].
    fn task_error_kind(&self) -> ViaBox {
        ViaBox
    }
}

impl<E> BoxKind for &E {}

/// Converts through `Into<TaskError>`.
pub struct ViaInto;

impl ViaInto {
    /// The error as a [`TaskError`].
    pub fn convert<E: Into<TaskError>>(self, error: E) -> TaskError {
        error.into()
    }
}

/// Converts through `Into<Box<dyn Error + Send + Sync>>`.
pub struct ViaBox;

impl ViaBox {
    /// The error as a [`TaskError`].
    pub fn convert<E: BoxedError>(self, error: E) -> TaskError {
        crate::task::boxed_error(error.into())
    }
}

/// A task's error that is not a `std::error::Error` converts through a box.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a task's error",
    label = "a task's `Err` becomes the task's failure",
    note = "implement `std::error::Error` (with `Send + Sync + 'static`) for it, or return \
            `anyhow::Result<T>`, `Result<T, Box<dyn std::error::Error + Send + Sync>>`, \
            `Result<T, String>` or `Result<T, TaskError>`"
)]
pub trait BoxedError: Into<Box<dyn std::error::Error + Send + Sync>> {}

impl<E: Into<Box<dyn std::error::Error + Send + Sync>>> BoxedError for E {}

/// Checks a task's output type at the task's definition.
pub const fn assert_task_output<T: TaskOutput>() {}

/// Turns a call of task `M` into a [`Step`]: a value for CPU tasks, a future for IO tasks.
#[diagnostic::on_unimplemented(
    message = "the future returned by async task `{M}` is not `Send`",
    label = "IO tasks run on tokio's worker threads, so their futures must be `Send`",
    note = "see the error at the task's definition: do not hold an `Rc`, a `RefCell` borrow \
            or a `MutexGuard` across an `.await`"
)]
pub trait Adapter<'a, M: Task<Output: TaskOutput>, X> {
    /// Wraps the call's result.
    fn step(call: X) -> Step<'a, M::Output>;
    /// The call's result, in a typed chain (see [`Chain`]); `None` for an async task,
    /// which a typed chain never runs.
    fn typed(call: X) -> Option<Result<M::Output, TaskError>>;
}

impl<'a, M: Task<Kind = Cpu, Output: TaskOutput>> Adapter<'a, M, M::Return> for Cpu {
    fn step(ret: M::Return) -> Step<'a, M::Output> {
        Step::done(M::finish(ret))
    }
    #[inline]
    fn typed(ret: M::Return) -> Option<Result<M::Output, TaskError>> {
        Some(M::finish(ret))
    }
}

#[diagnostic::do_not_recommend]
impl<'a, M, F> Adapter<'a, M, F> for Io
where
    M: Task<Kind = Io, Output: TaskOutput>,
    F: Future<Output = M::Return> + Send + 'a,
{
    fn step(future: F) -> Step<'a, M::Output> {
        Step::pending(async move { M::finish(future.await) })
    }
    fn typed(_: F) -> Option<Result<M::Output, TaskError>> {
        None
    }
}

/// A parameter `&T`: the task runs only if this input succeeded.
pub enum Required {}
/// A parameter `&Outcome<T>`: the task runs whatever happened to this input.
pub enum Tolerant {}

/// What a node's closure passes for one input, given how the task takes it.
pub trait Arg<'a, T: ?Sized + 'static> {
    /// `&'a T` or `&'a Outcome<T>`.
    type Out;
    /// Reads the input from the run: its value, or its outcome.
    fn read(slots: SlotView<'a>, input: Handle<T>) -> Self::Out
    where
        T: Sized;
    /// The input in a typed chain (see [`Chain`]), given its binding's value if it
    /// succeeded: `None` for an outcome, which a typed chain does not hold (a body
    /// that reads one never runs as its chain).
    fn typed(value: Option<&'a T>) -> Option<Self::Out>;
}

/// `&T` for a parameter `&T`, and for a by-value one (so that `&input` given to `T`
/// is rustc's mismatch at the user's token).
macro_rules! reads_value {
    ($($kind:ty),*) => {$(
        // Unsized `T` too, so that a typed chain's input whose type inference left
        // unsized (a `for` over a non-collection) is not reported once more.
        impl<'a, T: ?Sized + 'static> Arg<'a, T> for $kind {
            type Out = &'a T;
            fn read(slots: SlotView<'a>, input: Handle<T>) -> &'a T
            where
                T: Sized,
            {
                crate::value::value(slots, input.index() as u32)
            }
            #[inline]
            fn typed(value: Option<&'a T>) -> Option<&'a T> {
                value
            }
        }
    )*};
}

reads_value!(Required, Owned, Cloned);

impl<'a, T: 'static> Arg<'a, T> for Tolerant {
    type Out = &'a Outcome<T>;
    fn read(slots: SlotView<'a>, input: Handle<T>) -> &'a Outcome<T> {
        crate::value::outcome(slots, input.index() as u32)
    }
    fn typed(_: Option<&'a T>) -> Option<&'a Outcome<T>> {
        None
    }
}

/// A parameter `T` taken by value: the task's one attempt takes the input.
pub enum Owned {}
/// A parameter `T` taken by value by a task with `retry_clones = true`: every attempt
/// but the last gets a clone, the last takes the input.
pub enum Cloned {}

/// What a node's closure passes for an input moved into the task (written without
/// `&`): the value itself. Only a parameter taken by value takes it.
#[diagnostic::on_unimplemented(
    message = "this input is moved into the task, but the task takes it by reference",
    label = "moved here: written without `&`",
    note = "share it with `&name`, or change the task's parameter to take the value (`T`, not `&T`)"
)]
pub trait Take<T: 'static> {
    /// `T`. (A projection rather than `T` itself, so that when this is not
    /// implemented rustc reports that alone, not also the call's type mismatch.)
    type Out;
    /// Takes the input out of the run (or clones it, for an attempt before the last of
    /// a task with `retry_clones`).
    fn take(slots: SlotView<'_>, input: Handle<T>, attempts: u32) -> Self::Out;
    /// Takes the input out of its binding in a typed chain (see [`Chain`]), which runs
    /// one attempt.
    fn typed(value: &mut Option<T>) -> Option<Self::Out>;
}

impl<T: 'static> Take<T> for Owned {
    type Out = T;
    fn take(slots: SlotView<'_>, input: Handle<T>, _: u32) -> T {
        crate::value::take(slots, input.index() as u32)
    }
    #[inline]
    fn typed(value: &mut Option<T>) -> Option<T> {
        value.take()
    }
}

impl<T: RetryClone + 'static> Take<T> for Cloned {
    type Out = T;
    fn take(slots: SlotView<'_>, input: Handle<T>, attempts: u32) -> T {
        crate::value::take_or_clone(slots, input.index() as u32, attempts)
    }
    #[inline]
    fn typed(value: &mut Option<T>) -> Option<T> {
        value.take()
    }
}

/// A by-value input of a task with `retry_clones = true` is cloned for every attempt
/// but the last.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cloned for a retry",
    label = "`retry_clones` gives every attempt but the last a clone of this input",
    note = "derive or implement `Clone` for it, or take it by reference (`&{Self}`), or remove `retry_clones` and `retries`"
)]
pub trait RetryClone: Clone {}

impl<T: Clone> RetryClone for T {}

/// Checks, at a task's definition, that a by-value input of a `retry_clones` task is
/// `Clone`.
pub const fn assert_retry_clone<T: RetryClone>() {}

/// The `N`th element of a task's [`Task::Inputs`].
pub trait Nth<const N: usize> {
    /// `Required`, `Tolerant`, `Owned` or `Cloned`.
    type Kind;
}

macro_rules! nth {
    ($($n:literal => $K:ident),*) => {$(
        impl<A, B, C, D, E, F, G, H, I, J, K, L> Nth<$n> for (A, B, C, D, E, F, G, H, I, J, K, L) {
            type Kind = $K;
        }
    )*};
}

nth!(0 => A, 1 => B, 2 => C, 3 => D, 4 => E, 5 => F, 6 => G, 7 => H, 8 => I, 9 => J, 10 => K, 11 => L);

/// A task without `cache`: its calls are never looked up.
pub enum NoCache {}
/// A task with `cache`: each call's inputs make its key.
pub enum Cached {}

/// Registers a node of a cached task, with inputs `I`, with its key function; nothing
/// for the others (which put no bound on `I`: a wrong input is reported once, where
/// the node is added).
pub trait CacheMode<T, I> {
    /// `builder.cache(node, inputs, key)` for a cached task.
    fn register<P, K>(builder: &mut Builder<P>, node: Handle<T>, inputs: I, key: K)
    where
        P: Params,
        K: for<'a, 'i> Fn(In<'a, 'i, I>, &mut CacheKey) -> Result<(), String>
            + Send
            + Sync
            + 'static;
}

impl<T, I> CacheMode<T, I> for NoCache {
    fn register<P, K>(_: &mut Builder<P>, _: Handle<T>, _: I, _: K) {}
}

#[cfg(feature = "durable")]
impl<T: CacheOutput + Send + Sync + 'static, I: Inputs> CacheMode<T, I> for Cached {
    fn register<P, K>(builder: &mut Builder<P>, node: Handle<T>, inputs: I, key: K)
    where
        P: Params,
        K: for<'a, 'i> Fn(In<'a, 'i, I>, &mut CacheKey) -> Result<(), String>
            + Send
            + Sync
            + 'static,
    {
        builder.cache(node, inputs, key);
    }
}

/// Adds one input of a call to its cache key: nothing for a task that is not cached.
pub trait KeyPart<A: ?Sized> {
    /// Adds `part`.
    fn add(key: &mut CacheKey, part: &A) -> Result<(), String>;
}

impl<A: ?Sized> KeyPart<A> for NoCache {
    fn add(_: &mut CacheKey, _: &A) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(feature = "durable")]
impl<A: CacheInput + ?Sized> KeyPart<A> for Cached {
    fn add(key: &mut CacheKey, part: &A) -> Result<(), String> {
        key.add(part)
    }
}

/// A cached task's input is hashed through serde.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an input of a cached task",
    label = "`cache` keys this task's results by its inputs' serde encoding",
    note = "derive `serde::Serialize` for it, or remove `cache`"
)]
pub trait CacheInput: serde::Serialize {}

#[diagnostic::do_not_recommend]
impl<T: serde::Serialize + ?Sized> CacheInput for T {}

/// A cached task's output is saved and loaded through serde.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the output of a cached task",
    label = "`cache` saves this task's result and loads it in later runs",
    note = "derive `serde::Serialize` and `serde::Deserialize` for it, or remove `cache`"
)]
pub trait CacheOutput: serde::Serialize + serde::de::DeserializeOwned {}

#[diagnostic::do_not_recommend]
impl<T: serde::Serialize + serde::de::DeserializeOwned> CacheOutput for T {}

/// Checks a cached task's input type at `cache`.
pub const fn assert_cache_input<T: CacheInput + ?Sized>() {}

/// Checks a cached task's output type at `cache`.
pub const fn assert_cache_output<T: CacheOutput>() {}

/// Names task `M` once in the expansion, so a missing `#[task]` is reported once.
pub struct Marker<M>(PhantomData<fn() -> M>);

/// Gives every task its [`Marker`].
pub trait HasMarker: Task + Sized {
    /// This task's marker.
    const MARKER: Marker<Self> = Marker(PhantomData);
}

impl<M: Task> HasMarker for M {}

impl<M> Clone for Marker<M> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<M> Copy for Marker<M> {}

impl<M: Task<Output: TaskOutput>> Marker<M> {
    /// The task's name and kind.
    pub const fn info(self) -> TaskInfo {
        M::INFO
    }

    /// Input `N` as the task takes it: its value, or its outcome.
    pub fn arg<'a, const N: usize, T: 'static>(
        self,
        slots: SlotView<'a>,
        input: Handle<T>,
    ) -> <<M::Inputs as Nth<N>>::Kind as Arg<'a, T>>::Out
    where
        M::Inputs: Nth<N>,
        <M::Inputs as Nth<N>>::Kind: Arg<'a, T>,
    {
        <<M::Inputs as Nth<N>>::Kind as Arg<'a, T>>::read(slots, input)
    }

    /// Input `N`, moved into the task: taken out of the run (cloned for an attempt but
    /// the last of a `retry_clones` task).
    pub fn take<const N: usize, T: 'static>(
        self,
        slots: SlotView<'_>,
        input: Handle<T>,
    ) -> <<M::Inputs as Nth<N>>::Kind as Take<T>>::Out
    where
        M::Inputs: Nth<N>,
        <M::Inputs as Nth<N>>::Kind: Take<T>,
    {
        <<M::Inputs as Nth<N>>::Kind as Take<T>>::take(slots, input, M::INFO.retry.retries + 1)
    }

    /// Input `N` of a typed chain (see [`Chain`]), given the binding's value.
    #[inline]
    pub fn typed_arg<'a, const N: usize, T: ?Sized + 'static>(
        self,
        value: Option<&'a T>,
    ) -> Option<<<M::Inputs as Nth<N>>::Kind as Arg<'a, T>>::Out>
    where
        M::Inputs: Nth<N>,
        <M::Inputs as Nth<N>>::Kind: Arg<'a, T>,
    {
        <<M::Inputs as Nth<N>>::Kind as Arg<'a, T>>::typed(value)
    }

    /// Input `N` of a typed chain, moved into the task: taken out of its binding.
    #[inline]
    pub fn typed_take<const N: usize, T: 'static>(
        self,
        value: &mut Option<T>,
    ) -> Option<<<M::Inputs as Nth<N>>::Kind as Take<T>>::Out>
    where
        M::Inputs: Nth<N>,
        <M::Inputs as Nth<N>>::Kind: Take<T>,
    {
        <<M::Inputs as Nth<N>>::Kind as Take<T>>::typed(value)
    }

    /// The call's result in a typed chain: `None` for an async task.
    #[inline]
    pub fn typed<'a, X>(self, call: X) -> Option<Result<M::Output, TaskError>>
    where
        M::Kind: Adapter<'a, M, X>,
    {
        <M::Kind as Adapter<'a, M, X>>::typed(call)
    }

    /// Registers this node's key function if the task is cached.
    pub fn cache<P, I, K>(
        self,
        builder: &mut Builder<P>,
        node: Handle<M::Output>,
        inputs: I,
        key: K,
    ) where
        M::Cache: CacheMode<M::Output, I>,
        P: Params,
        K: for<'a, 'i> Fn(In<'a, 'i, I>, &mut CacheKey) -> Result<(), String>
            + Send
            + Sync
            + 'static,
    {
        <M::Cache as CacheMode<M::Output, I>>::register(builder, node, inputs, key);
    }

    /// Adds an input read by reference to a cached call's key.
    pub fn key_part<A: ?Sized>(self, key: &mut CacheKey, part: &A) -> Result<(), String>
    where
        M::Cache: KeyPart<A>,
    {
        <M::Cache as KeyPart<A>>::add(key, part)
    }

    /// Adds input `N`, which the task takes by value, to a cached call's key, before the
    /// call takes it.
    pub fn key_moved<const N: usize, T: 'static>(
        self,
        key: &mut CacheKey,
        slots: SlotView<'_>,
        input: Handle<T>,
    ) -> Result<(), String>
    where
        M::Cache: KeyPart<T>,
    {
        crate::value::peek_slot::<T, _>(slots, input.index() as u32, |value| {
            <M::Cache as KeyPart<T>>::add(key, value)
        })
        .unwrap_or_else(|| Err("the input was moved already".to_owned()))
    }

    /// Wraps a call of the task's function.
    pub fn step<'a, X>(self, call: X) -> Step<'a, M::Output>
    where
        M::Kind: Adapter<'a, M, X>,
    {
        <M::Kind as Adapter<'a, M, X>>::step(call)
    }
}

/// Implemented by `workflow!` on the struct named like the workflow, so another
/// workflow can run it as a node (`let out = other(&a, &b).await;`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a workflow",
    label = "`.await` runs another workflow as one node of this one",
    note = "call a task without `.await`; a workflow is declared with `workflow!`"
)]
pub trait Subflow {
    /// The workflow's parameter types.
    type Params: crate::plan::Params;
    /// What it returns.
    type Output: Send + Sync + 'static;
    /// Whether it moves one of its parameters into a task: then it cannot run as a
    /// node of another workflow, whose inputs it would share.
    const MOVES_PARAMS: bool = false;
    /// The built workflow.
    fn workflow() -> &'static Workflow<Self::Params, Self::Output>;
    /// The workflow built anew, with `fakes` if given (see [`crate::fake`]).
    fn build(fakes: Option<&Arc<Fakes>>) -> Workflow<Self::Params, Self::Output>;
    /// The workflow as a node of another built with `fakes`: itself, or built with
    /// them too.
    fn built_for(
        fakes: Option<&Arc<Fakes>>,
    ) -> std::borrow::Cow<'static, Workflow<Self::Params, Self::Output>> {
        match fakes {
            None => std::borrow::Cow::Borrowed(Self::workflow()),
            Some(fakes) => std::borrow::Cow::Owned(Self::build(Some(fakes))),
        }
    }
}

/// Checks that an async task's future is `Send`, at the task's definition.
pub fn assert_send<F: Future + Send>(_: F) {}

/// A workflow's tail must produce the declared output type.
#[diagnostic::on_unimplemented(
    message = "the workflow returns `{O}`, but its tail produces `{Self}`",
    label = "this produces `{Self}`",
    note = "change the workflow's return type to `{Self}`, or end it with a task that returns `{O}`"
)]
pub trait Produces<O> {
    /// The same handle, typed as the workflow's output.
    fn cast(handle: Handle<Self>) -> Handle<O>
    where
        Self: Sized;
}

impl<T> Produces<T> for T {
    fn cast(handle: Handle<T>) -> Handle<T> {
        handle
    }
}

/// The handle of the workflow's output, checked against the declared return type.
pub fn output<O, T: Produces<O>>(tail: Handle<T>) -> Handle<O> {
    T::cast(tail)
}

/// What a `for` without `&` can take apart: its items are moved out, one per run.
#[diagnostic::on_unimplemented(
    message = "a `for` cannot take the items out of `{Self}`",
    label = "a `for` without `&` takes its collection and moves each item out of it",
    note = "iterate `&collection` to read the items in place; to move them, have the task that makes it return a `Vec` (an `Arc<[T]>` or a shared value cannot give its items away)"
)]
pub trait OwnedCollection: Send + Sync + 'static {
    /// The collection itself (a projection: when this is not implemented, rustc
    /// reports it here alone).
    type Is;
}

#[diagnostic::do_not_recommend]
impl<C> OwnedCollection for C
where
    C: IntoIterator + Send + Sync + 'static,
    C::Item: Send + Sync + 'static,
{
    type Is = C;
}

/// The collection of a `for` without `&`, checked at the user's token.
pub fn owned_collection<C>(collection: Handle<C>) -> Handle<C::Is>
where
    C: OwnedCollection<Is = C>,
{
    collection
}

/// The value of `input`, by reference: what a decision (an `if` condition, a `match`
/// scrutinee) reads.
pub fn value_in<T: 'static>(slots: SlotView<'_>, input: Handle<T>) -> &T {
    crate::value::value(slots, input.index() as u32)
}

/// What became of `input`: what a `match` on a binding's outcome reads.
pub fn outcome_in<T: 'static>(slots: SlotView<'_>, input: Handle<T>) -> &Outcome<T> {
    crate::value::outcome(slots, input.index() as u32)
}

/// Why a part a `match` arm bound could not be read: the value no longer matches the
/// arm's pattern (its type's `PartialEq` or the like is not deterministic).
pub fn mismatched() -> TaskError {
    TaskError::permanent(TaskError::msg(
        "the value no longer matches the pattern of the `match` arm that was taken",
    ))
}

/// A node's place, untyped: the arms' values of a branch, whose type the branch's
/// never-called check closure gives.
pub fn node_ref<T>(handle: Handle<T>) -> crate::plan::NodeRef {
    handle.node_ref()
}

/// The value of a node, for the types of a never-called closure only: a branch checks
/// that its arms' values have one type with a real `if` or `match` over them, which
/// rustc reports in the user's types. The closure is dropped without being called.
pub fn value_of<T>(_handle: Handle<T>) -> T {
    unreachable!("aqueduct: a branch's type check is never called")
}
