//! Typed workflows for Rust.
//!
//! Tasks are plain functions marked [`#[task]`](macro@task): a plain `fn` is CPU work
//! and runs on rayon, an `async fn` is IO work and runs on tokio. [`workflow!`] wires
//! them with `let` bindings, so a missing dependency, a wrong type or a wrong arity is
//! a compile error at your own token. The result runs as parallel as its graph allows.
//!
//! ```
//! use aqueduct::prelude::*;
//!
//! #[task]
//! fn double(x: &u64) -> u64 {
//!     x * 2
//! }
//!
//! #[task]
//! async fn describe(x: &u64, label: &str) -> String {
//!     format!("{label}: {x}")
//! }
//!
//! workflow! {
//!     /// Doubles a number and describes it.
//!     pub fn doubled(seed: u64, label: String) -> String {
//!         let twice = double(&seed);
//!         describe(&twice, &label)
//!     }
//! }
//!
//! # #[tokio::main] async fn main() {
//! let text = doubled(21, "answer".into()).await.unwrap();
//! assert_eq!(text, "answer: 42");
//! # }
//! ```
//!
//! The graph is known without running it:
//!
//! ```
//! # use aqueduct::prelude::*;
//! # #[task] fn double(x: &u64) -> u64 { x * 2 }
//! # workflow! { fn doubled(seed: u64) -> u64 { double(&seed) } }
//! let graph = doubled::workflow().graph();
//! assert!(graph.to_mermaid().contains("double"));
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate self as aqueduct;

// The layers: their order is the table that opens docs/DESIGN.md, which
// tests/layers.rs checks (rustfmt sorts this list).
#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod cli;
mod describe;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod dist;
mod error;
mod exec;
mod plan;
mod private;
mod progress;
pub mod report;
pub mod retry;
pub mod run;
pub mod store;
pub mod task;
mod value;

pub mod graph {
    //! Building a workflow by hand and reading its static description.
    //!
    //! `workflow!` expands to calls of the [`Builder`]; a graph can also be built by
    //! hand with the same guarantees: a [`Handle<T>`] exists only for a node already
    //! added, so every input names an earlier node (no cycles can be built) and
    //! carries its value's type. A built [`Workflow`] describes itself as a [`Graph`]
    //! of [`Node`]s.
    //!
    //! A hand-built node names its task with a [`TaskInfo`](crate::task::TaskInfo) (`TaskInfo::new(name, kind)`,
    //! then its `retry`, `timeout`, `concurrency`, `cache` fields; a cached node is
    //! registered with [`Builder::cache`](crate::graph::Builder::cache)); a `#[task]` function's own is
    //! `<task_name as aqueduct::__private::Task>::INFO`, but a hand-built graph usually
    //! calls plain functions.
    pub use crate::describe::{Graph, Node};
    #[cfg(feature = "durable")]
    pub use crate::plan::Checkpointable;
    #[doc(hidden)]
    #[cfg(not(feature = "durable"))]
    pub use crate::plan::DurableFeature;
    #[doc(hidden)]
    pub use crate::plan::NodeRef;
    pub use crate::plan::{
        Arguments, Builder, CacheKey, Collection, Decision, Handle, In, Inputs, ItemsFailed,
        Params, Step, Workflow,
    };
    #[doc(hidden)]
    pub use crate::value::{Record, Slot};
}

pub use aqueduct_macros::{task, workflow};
pub use error::{Error, TaskFailure};
#[cfg(feature = "durable")]
pub use graph::Checkpointable;
pub use graph::{Arguments, Builder, Collection, Graph, Handle, ItemsFailed, Workflow};
pub use plan::CheckpointFormat;
pub use progress::Progress;
pub use report::{ItemsReport, RunReport, TaskReport, TaskStatus};
pub use retry::{Backoff, RetryPolicy};
pub use run::{CancelHandle, RunOutcome, Runner};
pub use task::{Kind, Outcome, TaskError};

/// What a workflow file needs: the macros, the error and outcome types, the workflow.
pub mod prelude {
    pub use crate::{Error, Outcome, TaskError, Workflow, task, workflow};
}

#[doc(hidden)]
pub mod __private {
    pub use crate::private::*;
}

/// The README's example, compiled and run as a doctest so it stays true (it keeps
/// its runs in SQLite).
#[cfg(all(doctest, feature = "sqlite"))]
#[doc = include_str!("../../README.md")]
struct ReadmeExample;
