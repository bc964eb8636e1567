#![cfg_attr(feature = "sqlite", doc = include_str!("../README.md"))]
#![cfg_attr(
    not(feature = "sqlite"),
    doc = "Typed workflows for Rust: see the README of the `aqueduct` repository."
)]
//!
//! # Tracing
//!
//! Aqueduct reports through [`tracing`](https://docs.rs/tracing); install any
//! subscriber (`tracing_subscriber::fmt().init()`, or an OpenTelemetry layer) to see it.
//!
//! Spans:
//!
//! | span | fields | covers |
//! | --- | --- | --- |
//! | `workflow` | `name` (the workflow), `run` (the run's id: the durable run's, or a fresh `<workflow>-<ms>-<hex>` for a run in memory) | the whole run; two runs of one workflow are told apart by `run` |
//! | `task` | `task` (the task function), `node` (its binding), `attempt` (from 1) | one attempt of a scheduled task, inside `workflow` |
//! | `item` | `index` | one item of a scheduled fan-out, inside `workflow` |
//!
//! Events (target `aqueduct::…`); those of a run are inside its `workflow` span:
//!
//! | level | message | fields |
//! | --- | --- | --- |
//! | `info` | `run started` | |
//! | `info` | `run ended` | `status` (`succeeded`, `failed`, `cancelled`, `timed out`), `duration_ms` |
//! | `debug` | `task started` | `node`, `attempt` |
//! | `debug` | `task ended` | `node`, `status` (as [`TaskStatus`] prints), `attempts`, `duration_ms` (first attempt's start to the end) |
//! | `error` | `task failed` | `node`, `attempts` (or `item`, in a fused fan-out), `error` |
//! | `debug` | `fan-out ended` (some of its items did not succeed: each logged its own `task failed`) | `node`, `error` |
//! | `warn` | a retry | `node`, `attempt`, `error` |
//! | `warn` | a cached result not looked up or read (it runs) | `node`, `task` |
//! | `warn` | cached results not saved (outside any run's span) | `error`, `results` |
//! | `error` | `the run stops on a fault` (outside any run's span) | `message` |
//! | `debug` | `fan-out runs its typed chain` | `node`, `items` |
//!
//! Tasks of a fused fan-out's items (see [`ItemsReport::fused`]) have no span and no
//! `task started`/`task ended` events, so that a million items cost no more than their
//! work; their failures are still logged at `error`, with the item's index. A
//! distributed worker (`aqueduct::dist`, feature `postgres`) runs each attempt it claims
//! inside the same `workflow` and `task` spans, with an `item` span between them for a
//! task of a fan-out's item (the task's own events, on the rayon or tokio thread that
//! runs it, are inside them), with `task started` and `task ended` at `debug` per
//! attempt (`node`, `attempt`, `duration_ms`, and `status` as the worker saw it:
//! `succeeded`, `expanded` for a fan-out's row that made its items, `failed`,
//! `failed, to be retried`, `skipped` or `not taken` for the value of an `if` or
//! `match`; its commit may still find the attempt lost), and `task failed` at `error`
//! for an attempt that failed for good (`node`, `attempts`, `error`); workers log no
//! `run started` or `run ended`.

#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate self as aqueduct;

// The layers: their order is the table that opens docs/DESIGN.md, which
// tests/layers.rs checks (rustfmt sorts this list).
#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod cli;
mod contain;
mod describe;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod dist;
mod error;
mod exec;
pub mod fake;
mod plan;
mod private;
mod progress;
pub mod report;
pub mod retry;
pub mod run;
mod run_id;
pub mod store;
pub mod task;
pub mod timeline;
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
    pub use crate::value::{Record, Slot, SlotView};
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
