//! Test fakes: a workflow built with some of its tasks replaced.
//!
//! `#[task]` gives every task a constructor of its fake, `task_name::fake(f)`, where
//! `f` has the task's own signature: a closure or function taking the task's inputs
//! and returning what the task returns, `Fn + Send + Sync + 'static` (it may run on
//! many threads at once). A fake of another signature does not compile.
//! `workflow!` gives every workflow `name::with_fakes(fakes)`: the same workflow,
//! built anew with every call of each faked task replaced, in its `for` bodies,
//! branches and sub-workflows too.
//!
//! For an `async fn` task, `f` returns a `Send + 'static` future of what the task
//! returns: one that owns what it uses, so copy it out of the inputs first (as below).
//! An `async` closure, or an `async fn` whose future borrows its inputs, does not fit;
//! call such a helper from a closure: `|page| { let page = *page; async move {
//! offline(&page).await } }`.
//!
//! ```
//! use aqueduct::prelude::*;
//!
//! #[task]
//! async fn fetch(page: &u32) -> Result<String, std::io::Error> {
//!     unimplemented!("goes to the network")
//! }
//!
//! #[task]
//! fn words(body: &String) -> usize {
//!     body.split_whitespace().count()
//! }
//!
//! workflow! {
//!     fn count(page: u32) -> usize {
//!         let body = fetch(&page);
//!         words(&body)
//!     }
//! }
//!
//! # fn main() -> Result<(), aqueduct::Error> {
//! // The fake's future owns what it needs: copy it out of the inputs first.
//! let offline = count::with_fakes([fetch::fake(|page| {
//!     let page = *page;
//!     async move { Ok(format!("page {page} of the fake")) }
//! })])?;
//! assert_eq!(offline.run_blocking((7,))?, 5); // "page 7 of the fake"
//! # Ok(())
//! # }
//! ```
//!
//! The faked workflow's graph and reports say which nodes call a fake
//! ([`Node::is_fake`](crate::graph::Node::is_fake), [`TaskReport::fake`](crate::TaskReport::fake),
//! `task (fake)` in the report's table, the timeline and the Mermaid and DOT drawings).
//!
//! A faked task keeps its options (retries, timeout, concurrency);
//! [`Fake::without_retry_delays`] keeps its retries but drops their delays. It never
//! reads or writes the cache: a fake's result is not the task's. A `#[durable]`
//! workflow's fingerprint names its faked tasks, so the real workflow refuses to
//! resume a faked run (and the other way round).
//!
//! Fakes replace the workflow's calls, its nodes: a task function called directly,
//! inside another task's body or inside the fake itself (a spy that counts calls and
//! runs the task), runs its own body. A `const fn` task, or one with a parameter of an
//! `impl Trait` type, has no fake. A fake that no node calls, or two
//! fakes of one task, are refused by `with_fakes` ([`Error::BadFake`](crate::Error::BadFake)),
//! when the test runs: the workflow does not know at compile time which tasks its
//! sub-workflows call.

use std::any::{Any, TypeId};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// One task's replacement, made by `task_name::fake(f)` (see the [module](self)),
/// given to a workflow's `with_fakes`.
pub struct Fake {
    task: TypeId,
    name: &'static str,
    /// An `Arc<dyn Fn(..)>` of the task's signature (`#[task]` spells it).
    call: Arc<dyn Any + Send + Sync>,
    /// Whether the faked nodes retry at once.
    no_delays: bool,
}

impl Fake {
    /// The fake of the task whose marker type is `task`, named `name`, that calls
    /// `call` (an `Arc<dyn Fn(..)>` of the task's signature). What `task_name::fake` returns.
    pub(crate) fn new(task: TypeId, name: &'static str, call: Arc<dyn Any + Send + Sync>) -> Self {
        Self {
            task,
            name,
            call,
            no_delays: false,
        }
    }

    /// The faked task retries as often as its options say, but at once: no delay
    /// between attempts, so a test of a failing fake does not wait out the task's
    /// `retry_delay`.
    #[must_use]
    pub fn without_retry_delays(mut self) -> Self {
        self.no_delays = true;
        self
    }

    /// The name of the task this fake replaces.
    pub fn task(&self) -> &'static str {
        self.name
    }
}

impl std::fmt::Debug for Fake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fake").field("task", &self.name).finish()
    }
}

/// The fakes a workflow is built with, each marked once a node calls it.
#[doc(hidden)]
pub struct Fakes {
    fakes: Vec<(Fake, AtomicBool)>,
}

impl Fakes {
    /// The fakes given to `with_fakes`; a task faked twice is refused.
    pub(crate) fn new(
        workflow: &str,
        fakes: impl IntoIterator<Item = Fake>,
    ) -> Result<Self, crate::Error> {
        let mut list: Vec<(Fake, AtomicBool)> = Vec::new();
        for fake in fakes {
            if list.iter().any(|(known, _)| known.task == fake.task) {
                return Err(crate::Error::BadFake {
                    workflow: workflow.to_owned(),
                    task: fake.name,
                    reason: "it is faked twice: give one fake per task",
                });
            }
            list.push((fake, AtomicBool::new(false)));
        }
        Ok(Self { fakes: list })
    }

    /// The fake of the task whose marker type is `task`, if there is one (an `Arc` of
    /// its `dyn Fn`), and whether it retries at once; marks it used.
    pub(crate) fn get(&self, task: TypeId) -> Option<(Arc<dyn Any + Send + Sync>, bool)> {
        let (fake, used) = self.fakes.iter().find(|(fake, _)| fake.task == task)?;
        used.store(true, Ordering::Relaxed);
        Some((Arc::clone(&fake.call), fake.no_delays))
    }

    /// The faked tasks' names, sorted: the fakes' order does not matter.
    #[cfg_attr(not(feature = "durable"), allow(dead_code))]
    pub(crate) fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.fakes.iter().map(|(fake, _)| fake.name).collect();
        names.sort_unstable();
        names
    }

    /// Refuses a fake no node of the workflow (or of its sub-workflows) called.
    pub(crate) fn all_used(&self, workflow: &str) -> Result<(), crate::Error> {
        match self
            .fakes
            .iter()
            .find(|(_, used)| !used.load(Ordering::Relaxed))
        {
            Some((fake, _)) => Err(crate::Error::BadFake {
                workflow: workflow.to_owned(),
                task: fake.name,
                reason: "no node of the workflow or of its sub-workflows calls it",
            }),
            None => Ok(()),
        }
    }
}

/// Builds a workflow with `fakes`: `build` is the workflow's own builder given them.
/// What a workflow's `with_fakes` does.
#[doc(hidden)]
pub fn faked<W>(
    workflow: &str,
    fakes: impl IntoIterator<Item = Fake>,
    build: impl FnOnce(&Arc<Fakes>) -> W,
) -> Result<W, crate::Error> {
    let fakes = Arc::new(Fakes::new(workflow, fakes)?);
    let built = build(&fakes);
    fakes.all_used(workflow)?;
    Ok(built)
}
