//! Durable runs: checkpoints in a SQLite file, resumed runs, and the errors that
//! refuse a run before anything runs or changes.
#![cfg(feature = "sqlite")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use aqueduct::graph::Params;
use aqueduct::prelude::*;
use aqueduct::store::{SqliteStore, Store};
use aqueduct::{RunOutcome, TaskStatus, Workflow};

mod scratch;
use scratch::TempDir;

#[path = "durable/faults.rs"]
mod faults;
#[path = "durable/items.rs"]
mod items;
#[path = "durable/lease.rs"]
mod lease;
#[path = "durable/resume.rs"]
mod resume;

fn open_store(dir: &TempDir) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(dir.db()).unwrap())
}

/// Starts (or, for a known id, resumes with the same parameters) run `id` in `store`.
async fn start<P, O>(
    workflow: &Workflow<P, O>,
    store: &Arc<dyn Store>,
    id: &str,
    params: P,
) -> RunOutcome<O>
where
    P: Params + serde::Serialize + serde::de::DeserializeOwned,
    O: Send + Sync + 'static,
{
    let runner = workflow.runner().store(Arc::clone(store)).run_id(id);
    runner.run(params).await
}

/// Resumes run `id` in `store` with the parameters it was started with.
async fn resume<P, O>(workflow: &Workflow<P, O>, store: &Arc<dyn Store>, id: &str) -> RunOutcome<O>
where
    P: Params + serde::Serialize + serde::de::DeserializeOwned,
    O: Send + Sync + 'static,
{
    let runner = workflow.runner().store(Arc::clone(store)).run_id(id);
    runner.resume().await
}

static LOADS: AtomicUsize = AtomicUsize::new(0);
static SCALES: AtomicUsize = AtomicUsize::new(0);
static BROKEN: AtomicBool = AtomicBool::new(true);

#[task]
fn load(n: &u64) -> Vec<u64> {
    LOADS.fetch_add(1, Ordering::SeqCst);
    (1..=*n).collect()
}

#[task]
fn scale(values: &[u64]) -> u64 {
    SCALES.fetch_add(1, Ordering::SeqCst);
    values.iter().sum::<u64>() * 10
}

#[task]
fn publish(total: &u64) -> Result<String, TaskError> {
    if BROKEN.load(Ordering::SeqCst) {
        return Err(TaskError::msg("the printer is on fire"));
    }
    Ok(format!("total {total}"))
}

workflow! {
    #[durable]
    fn pipeline(n: u64) -> String {
        let values = load(&n);
        let total = scale(&values);
        publish(&total)
    }
}

#[tokio::test]
async fn a_failed_run_resumes_from_its_checkpoints_and_finishes_like_an_uninterrupted_one() {
    let dir = TempDir::new("durable-resume");
    let store = open_store(&dir);
    BROKEN.store(true, Ordering::SeqCst);
    let first = start(pipeline::workflow(), &store, "night-1", (4,)).await;
    assert!(
        first
            .result
            .unwrap_err()
            .to_string()
            .contains("the printer is on fire")
    );
    assert_eq!(
        (LOADS.load(Ordering::SeqCst), SCALES.load(Ordering::SeqCst)),
        (1, 1)
    );
    assert_eq!(first.run_id.as_deref(), Some("night-1"));
    // How each task ended is in the store as it ends, not only in the final report.
    let ends = store.task_ends("night-1").unwrap();
    let summary: Vec<_> = ends
        .iter()
        .map(|e| {
            (
                e.node.as_str(),
                e.status.as_str(),
                e.attempts,
                e.errors.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("values", "succeeded", 1, vec![]),
            ("total", "succeeded", 1, vec![]),
            (
                "publish",
                "failed",
                1,
                vec!["the printer is on fire".to_owned()]
            ),
        ]
    );

    BROKEN.store(false, Ordering::SeqCst);
    let again = resume(pipeline::workflow(), &store, "night-1").await;
    assert_eq!(
        again.result.unwrap(),
        "total 100",
        "what an uninterrupted run returns"
    );
    assert_eq!(
        (LOADS.load(Ordering::SeqCst), SCALES.load(Ordering::SeqCst)),
        (1, 1),
        "finished tasks were loaded, not run again"
    );
    assert_eq!(
        again.report.task("values").unwrap().status,
        TaskStatus::Restored
    );
    assert_eq!(
        again.report.task("publish").unwrap().status,
        TaskStatus::Succeeded
    );

    let runs = store.runs().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].status.as_str(), runs[0].checkpoints),
        ("succeeded", 3),
        "values, total, publish"
    );
    let report = store.report("night-1").unwrap().unwrap();
    assert!(report.contains("\"restored\""), "{report}");
    // The resumed run's end of `publish` replaced the failed one.
    let publish = store
        .task_ends("night-1")
        .unwrap()
        .into_iter()
        .find(|e| e.node == "publish")
        .unwrap();
    assert_eq!(
        (publish.status.as_str(), publish.errors.len()),
        ("succeeded", 0)
    );
}

#[task]
fn double(x: &u64) -> u64 {
    x * 2
}

workflow! {
    #[durable]
    fn small(x: u64) -> u64 {
        double(&x)
    }
}

workflow! {
    #[durable]
    fn other_shape(x: u64) -> u64 {
        let d = double(&x);
        double(&d)
    }
}

workflow! {
    fn plain(x: u64) -> u64 {
        double(&x)
    }
}

#[tokio::test]
async fn a_run_recorded_by_another_graph_is_refused() {
    let dir = TempDir::new("durable-fingerprint");
    let store = open_store(&dir);
    start(small::workflow(), &store, "r", (2,))
        .await
        .result
        .unwrap();
    let refused = resume(other_shape::workflow(), &store, "r").await;
    let message = refused.result.unwrap_err().to_string();
    assert!(
        message.contains("run `r` was recorded by another version of this workflow"),
        "{message}"
    );
    assert!(
        message.contains("new run id"),
        "it says how to start fresh: {message}"
    );
    // It says what changed, node by node.
    assert!(
        message.contains("\n  - double = double (cpu) <- x\n")
            && message.contains("\n  + d = double (cpu) <- x\n")
            && message.ends_with("\n  + double = double (cpu) <- d"),
        "{message}"
    );
    assert!(
        !message.contains("- x = "),
        "unchanged nodes are not listed: {message}"
    );
    assert_eq!(store.checkpoints("r").unwrap().len(), 1, "nothing lost");
}

mod bumped {
    use super::*;

    workflow! {
        /// `small` with its version bumped: same nodes, other meaning.
        #[durable(version = 2)]
        pub fn small(x: u64) -> u64 {
            double(&x)
        }
    }
}

#[tokio::test]
async fn a_bumped_version_refuses_old_runs_and_says_so() {
    let dir = TempDir::new("durable-version");
    let store = open_store(&dir);
    start(small::workflow(), &store, "r", (2,))
        .await
        .result
        .unwrap();
    let refused = resume(bumped::small::workflow(), &store, "r").await;
    let message = refused.result.unwrap_err().to_string();
    assert!(
        message.ends_with(
            "What changed (- recorded, + now):\n  - workflow small version 1\n  + workflow small version 2"
        ),
        "{message}"
    );
}

#[tokio::test]
async fn a_checkpoint_that_cannot_be_decoded_names_the_run_and_the_node() {
    let dir = TempDir::new("durable-corrupt");
    let store = open_store(&dir);
    start(small::workflow(), &store, "r", (2,))
        .await
        .result
        .unwrap();
    let db = rusqlite::Connection::open(dir.db()).unwrap();
    for (data, what) in [
        (&b"{\"trunc"[..], "truncated"),
        (&b"\"four\""[..], "wrong type"),
    ] {
        db.execute(
            "UPDATE checkpoints SET data = ?1 WHERE node = 'double'",
            [data],
        )
        .unwrap();
        let refused = resume(small::workflow(), &store, "r").await;
        let message = refused.result.unwrap_err().to_string();
        assert!(
            message.contains("run `r`: the checkpoint of node `double` cannot be loaded"),
            "{what}: {message}"
        );
    }
    db.execute(
        "UPDATE checkpoints SET schema = 99 WHERE node = 'double'",
        [],
    )
    .unwrap();
    let refused = resume(small::workflow(), &store, "r").await;
    let message = refused.result.unwrap_err().to_string();
    assert!(
        message.contains("saved as json v99; this build reads json v1"),
        "{message}"
    );
}

#[tokio::test]
async fn reusing_a_run_id_with_other_parameters_is_refused() {
    let dir = TempDir::new("durable-input");
    let store = open_store(&dir);
    start(small::workflow(), &store, "r", (2,))
        .await
        .result
        .unwrap();
    let same = start(small::workflow(), &store, "r", (2,)).await;
    assert_eq!(
        same.result.unwrap(),
        4,
        "the same parameters resume the run"
    );
    let other = start(small::workflow(), &store, "r", (3,)).await;
    let message = other.result.unwrap_err().to_string();
    assert!(
        message.contains("run `r` was started with other parameters"),
        "{message}"
    );
    assert!(
        message.contains("give the same ones, or choose a new run id"),
        "{message}"
    );
}

#[tokio::test]
async fn resuming_an_unknown_run_and_storing_a_plain_workflow_are_clear_errors() {
    let dir = TempDir::new("durable-errors");
    let store = open_store(&dir);
    let unknown = resume(small::workflow(), &store, "nope").await;
    assert_eq!(
        unknown.result.unwrap_err().to_string(),
        "the store has no run `nope`"
    );
    let plain = plain::workflow()
        .runner()
        .store(Arc::clone(&store))
        .run((1,))
        .await;
    let message = plain.result.unwrap_err().to_string();
    assert!(
        message.contains("workflow `plain` is not durable: declare it `#[durable]`"),
        "{message}"
    );
    assert!(store.runs().unwrap().is_empty(), "nothing was recorded");
}

#[tokio::test]
async fn a_durable_run_without_an_id_gets_a_fresh_one() {
    let dir = TempDir::new("durable-fresh");
    let store = open_store(&dir);
    let first = small::workflow()
        .runner()
        .store(Arc::clone(&store))
        .run((5,))
        .await;
    let second = small::workflow()
        .runner()
        .store(Arc::clone(&store))
        .run((5,))
        .await;
    assert_eq!((first.result.unwrap(), second.result.unwrap()), (10, 10));
    assert_ne!(first.run_id, second.run_id);
    assert_eq!(store.runs().unwrap().len(), 2);
}

#[test]
#[should_panic(expected = "two checkpointed nodes are named `step`")]
fn a_built_durable_workflow_refuses_two_checkpoints_with_one_name() {
    use aqueduct::graph::{Builder, Step};
    use aqueduct::task::TaskInfo;
    const STEP: TaskInfo = TaskInfo::new("step", aqueduct::Kind::Cpu);
    let (mut b, (seed,)) = Builder::<(u64,)>::new("twice", ["seed"]);
    b.durable(1);
    let first = b.node(STEP, "step", (seed,), |i| Step::done(Ok(*i.get().0 + 1)));
    let second = b.node(STEP, "step", (first,), |i| Step::done(Ok(*i.get().0 + 1)));
    b.checkpoint(first);
    b.checkpoint(second);
    let _ = b.output(second);
}

static ITEMS: AtomicUsize = AtomicUsize::new(0);

#[task]
fn parts(n: &u64) -> Vec<u64> {
    (1..=*n).collect()
}

#[task]
fn square(x: &u64) -> u64 {
    ITEMS.fetch_add(1, Ordering::SeqCst);
    x * x
}

#[task]
fn add_all(xs: &[u64]) -> u64 {
    xs.iter().sum()
}

workflow! {
    /// Durable itself, and used as a node of `nested` below.
    #[durable]
    fn inner(n: u64) -> u64 {
        let again = double(&n);
        double(&again)
    }
}

workflow! {
    #[durable]
    fn nested(n: u64) -> u64 {
        let xs = parts(&n);
        let squares = for x in &xs {
            square(x)
        };
        let sum = add_all(&squares);
        inner(&sum).await
    }
}

#[tokio::test]
async fn fan_out_items_and_durable_sub_workflows_are_checkpointed_node_by_node() {
    let dir = TempDir::new("durable-nested");
    let store = open_store(&dir);
    let first = start(nested::workflow(), &store, "r", (3,)).await;
    assert_eq!(first.result.unwrap(), (1 + 4 + 9) * 4);
    let mut nodes: Vec<_> = store
        .checkpoints("r")
        .unwrap()
        .into_iter()
        .map(|c| c.node)
        .collect();
    nodes.sort();
    // Every item's nodes (`squares[i].square`) and the durable inner workflow's own
    // (`inner.again`), under their paths, besides the outer nodes.
    assert_eq!(
        nodes,
        [
            "inner",
            "inner.again",
            "inner.double",
            "squares",
            "squares[0].square",
            "squares[1].square",
            "squares[2].square",
            "sum",
            "xs"
        ]
    );

    let items = ITEMS.load(Ordering::SeqCst);
    let again = resume(nested::workflow(), &store, "r").await;
    assert_eq!(again.result.unwrap(), 56);
    assert_eq!(ITEMS.load(Ordering::SeqCst), items, "no item ran again");
}

#[tokio::test]
async fn resume_without_a_run_id_is_an_error_not_a_panic() {
    let dir = TempDir::new("durable-no-id");
    let store = open_store(&dir);
    let outcome = small::workflow().runner().store(store).resume().await;
    let store_is_empty = |dir: &TempDir| open_store(dir).runs().unwrap().is_empty();
    let message = outcome.result.unwrap_err().to_string();
    assert_eq!(
        message,
        "workflow `small`: `resume` needs the id of the run to resume: give it with `Runner::run_id`"
    );
    assert!(store_is_empty(&dir));
}
