//! How a fake replaces a task (see [`fake`](crate::fake)): a node whose task is faked
//! marks the call it makes, and the task's function, which `#[task]` begins with a
//! look for that mark ([`fake_of`]), calls the fake instead of its body.
//!
//! The mark is a thread-local while a CPU task's call runs, and a tokio task-local
//! while an IO task's future is polled. The workflow's own tokens call the task's
//! function as always, so rustc checks them against the function and reports a
//! mistake as it would in a hand-written call.

use std::any::{Any, TypeId};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Marker, Task, TaskInfo};
use crate::fake::Fake;
use crate::plan::{Builder, Params, Step};

/// Whether any workflow was ever built with a fake: until then, a task's look for its
/// fake is one relaxed load.
static ANY_FAKES: AtomicBool = AtomicBool::new(false);

/// A fake in force: the faked task and its call (an `Arc<dyn Fn(..)>` of its signature).
#[derive(Clone)]
pub(crate) struct Active {
    task: TypeId,
    call: Arc<dyn Any + Send + Sync>,
}

impl Active {
    pub(crate) fn new(task: TypeId, call: Arc<dyn Any + Send + Sync>) -> Self {
        ANY_FAKES.store(true, Ordering::Relaxed);
        Self { task, call }
    }

    /// Its call, if it is task `T`'s, whose fakes are `C`s.
    fn call_of<T: 'static, C: ?Sized + 'static>(&self) -> Option<Arc<C>> {
        if self.task != TypeId::of::<T>() {
            return None;
        }
        self.call.downcast_ref::<Arc<C>>().cloned()
    }
}

thread_local! {
    /// The fake of the CPU call running on this thread.
    static CPU: Cell<Option<Active>> = const { Cell::new(None) };
}

tokio::task_local! {
    /// The fake of the IO task being polled, until its function takes it.
    static IO: Cell<Option<Active>>;
}

/// The fake of task `T` (of type `C`: `dyn Fn` of the task's signature) in force for
/// this call, if any: what a `#[task]` function looks for before its body. Inlined
/// into it: one load, unless fakes were built.
///
/// A fake found is taken: while it runs, nothing is marked, so the fake may call the
/// task itself (a spy), and rayon work stolen while it waits runs as it would.
#[inline(always)]
pub fn fake_of<T: 'static, C: ?Sized + 'static>() -> Option<Arc<C>> {
    if !ANY_FAKES.load(Ordering::Relaxed) {
        return None;
    }
    fake_in_force::<T, C>()
}

/// [`fake_of`] once fakes were built: out of line, so a task's body stays small.
#[cold]
#[inline(never)]
fn fake_in_force<T: 'static, C: ?Sized + 'static>() -> Option<Arc<C>> {
    let take = |mark: &Cell<Option<Active>>| {
        let active = mark.take()?;
        let call = active.call_of::<T, C>();
        if call.is_none() {
            mark.set(Some(active));
        }
        call
    };
    if let Ok(Some(call)) = IO.try_with(take) {
        return Some(call);
    }
    CPU.try_with(take).ok().flatten()
}

/// What a node calls for its task: the task's body (`None`), or a fake.
#[derive(Clone)]
pub struct Callee(Option<Active>);

impl Callee {
    /// Marks this thread's calls as this node's until the guard drops: its fake for a
    /// fake, none for the task itself (a thread that runs a faked call may run
    /// another node's inside it, stealing rayon work).
    #[inline(always)]
    pub fn enter(&self) -> Entered {
        if self.0.is_none() && !ANY_FAKES.load(Ordering::Relaxed) {
            return Entered(None);
        }
        self.mark()
    }

    /// [`enter`](Self::enter) once fakes were built.
    #[cold]
    #[inline(never)]
    fn mark(&self) -> Entered {
        let active = self.0.clone();
        Entered(CPU.try_with(|cpu| cpu.replace(active)).ok())
    }

    /// An IO task's future, polled with its fake in force; a CPU task's step as it is.
    #[inline]
    pub fn scope<'a, T: Send + Sync + 'static>(&self, step: Step<'a, T>) -> Step<'a, T> {
        match &self.0 {
            None => step,
            Some(active) => step
                .map_future(|future| Box::pin(IO.scope(Cell::new(Some(active.clone())), future))),
        }
    }
}

/// Puts back the thread's mark as it was before [`Callee::enter`].
pub struct Entered(Option<Option<Active>>);

impl Drop for Entered {
    #[inline]
    fn drop(&mut self) {
        if let Some(before) = self.0.take() {
            let _ = CPU.try_with(|cpu| cpu.set(before));
        }
    }
}

impl<M: Task<Output: super::TaskOutput>> Marker<M> {
    /// The task's name and kind, and what the next node of `builder` calls for it; a
    /// fake marks that node faked. One call, the first on the marker: a call of
    /// something that is not a task is then reported once, at its name.
    pub fn info_callee<P: Params>(self, builder: &mut Builder<P>) -> (TaskInfo, Callee) {
        let mut info = M::INFO;
        let Some((active, no_delays)) = fake_in::<M, P>(builder) else {
            return (info, Callee(None));
        };
        builder.faking();
        if no_delays {
            info.retry.delay = std::time::Duration::ZERO;
            info.retry.max_delay = Some(std::time::Duration::ZERO);
        }
        (info, Callee(Some(active)))
    }
}

impl<M: 'static> Marker<M> {
    /// What a typed chain calls for this task, in `builder`'s fan-out body.
    pub fn chain_callee<P: Params>(self, builder: &Builder<P>) -> Callee {
        Callee(fake_in::<M, P>(builder).map(|(active, _)| active))
    }
}

/// The fake of task `M` that `builder` builds with, if any, and whether it retries at
/// once.
fn fake_in<M: 'static, P: Params>(builder: &Builder<P>) -> Option<(Active, bool)> {
    let (call, no_delays) = builder.fakes()?.get(TypeId::of::<M>())?;
    Some((Active::new(TypeId::of::<M>(), call), no_delays))
}

impl<M: Task> Marker<M> {
    /// The fake of this task that calls `call`: what `task_name::fake` returns.
    pub fn fake<C: ?Sized + Send + Sync + 'static>(self, call: Arc<C>) -> Fake {
        Fake::new(TypeId::of::<M>(), M::INFO.name, Arc::new(call))
    }
}
