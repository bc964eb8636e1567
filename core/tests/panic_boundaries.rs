//! A panic outside a task's own body — in a checkpointed type's `Serialize`, in a
//! `Collection`, in an error's `Display`, in the scheduler — fails the run with a
//! message. It never aborts the process.

use std::fmt;

use aqueduct::graph::Builder;
use aqueduct::graph::Step;
use aqueduct::prelude::*;
use aqueduct::task::TaskInfo;
use aqueduct::{Collection, Kind, RunOutcome, TaskStatus};

#[cfg(feature = "sqlite")]
mod scratch;

/// An error whose `Display` panics.
#[derive(Debug)]
struct Rude;

impl fmt::Display for Rude {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        panic!("Display of Rude")
    }
}

impl std::error::Error for Rude {}

#[task]
fn rude(x: &u64) -> Result<u64, Rude> {
    let _ = x;
    Err(Rude)
}

#[task]
fn after(x: &u64) -> u64 {
    *x
}

workflow! {
    fn rude_flow(x: u64) -> u64 {
        let r = rude(&x);
        after(&r)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_whose_display_panics_is_reported_not_propagated() {
    let RunOutcome { result, report, .. } = rude_flow::workflow().runner().run((1,)).await;
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("the error's `Display` panicked: Display of Rude"),
        "{message}"
    );
    assert_eq!(report.task("r").unwrap().status, TaskStatus::Failed);
    assert_eq!(report.task("after").unwrap().status, TaskStatus::Skipped);
    let _ = report.to_string();
}

/// A collection whose `items` panics.
struct Cursed(Vec<u64>);

impl Collection for Cursed {
    type Item = u64;
    fn items(&self) -> &[u64] {
        panic!("Cursed::items")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_that_panics_fails_its_fan_out() {
    let (mut b, (seed,)) = Builder::<(u64,)>::new("cursed", ["seed"]);
    let make = TaskInfo::new("make", Kind::Cpu);
    let each = TaskInfo::new("each", Kind::Cpu);
    let sum = TaskInfo::new("sum", Kind::Cpu);
    let cursed = b.node(make, "cursed", (seed,), |i| {
        let (seed,) = i.get();
        Step::done(Ok(Cursed(vec![*seed; 3])))
    });
    let doubled = b.fan_out("doubled", cursed, "x", (), |body, x, ()| {
        body.node(each, "d", (x,), |i| {
            let (x,) = i.get();
            Step::done(Ok(x * 2))
        })
    });
    let total = b.node(sum, "total", (doubled,), |i| {
        let (all,) = i.get();
        Step::done(Ok(all.iter().sum::<u64>()))
    });
    let workflow = b.output(total);
    let RunOutcome { result, report, .. } = workflow.runner().run((2,)).await;
    let message = result.unwrap_err().to_string();
    assert!(message.contains("panicked: Cursed::items"), "{message}");
    assert_eq!(report.task("doubled").unwrap().status, TaskStatus::Failed);
    assert_eq!(report.task("total").unwrap().status, TaskStatus::Skipped);
    let _ = Cursed(Vec::new()).0;
}

/// Only with the `sqlite` feature (a default one).
#[cfg(feature = "sqlite")]
mod checkpoints {
    use std::sync::Arc;

    use super::scratch::TempDir;
    use super::*;

    /// A value whose `Serialize` panics, in a durable workflow.
    #[derive(Debug, serde::Deserialize)]
    struct Explosive(u64);

    impl serde::Serialize for Explosive {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            panic!("Serialize of Explosive")
        }
    }

    #[task]
    fn arm(x: &u64) -> Explosive {
        Explosive(*x)
    }

    #[task]
    fn defuse(e: &Explosive) -> u64 {
        e.0
    }

    workflow! {
        #[durable]
        fn explosive(x: u64) -> u64 {
            let armed = arm(&x);
            defuse(&armed)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_checkpoint_whose_serialize_panics_fails_its_task() {
        let dir = TempDir::new("panicking-serialize");
        let store = Arc::new(aqueduct::store::SqliteStore::open(dir.db()).unwrap());
        let RunOutcome { result, report, .. } =
            explosive::workflow().runner().store(store).run((5,)).await;
        let message = result.unwrap_err().to_string();
        assert!(
            message.contains("cannot checkpoint its output: panicked: Serialize of Explosive"),
            "{message}"
        );
        assert_eq!(report.task("armed").unwrap().status, TaskStatus::Failed);
        assert_eq!(report.task("defuse").unwrap().status, TaskStatus::Skipped);
    }
}

#[test]
fn a_zero_concurrency_limit_is_refused_when_the_graph_is_built() {
    let built = std::panic::catch_unwind(|| {
        let (mut b, (seed,)) = Builder::<(u64,)>::new("zero", ["seed"]);
        let mut info = TaskInfo::new("never", Kind::Cpu);
        info.concurrency = Some(0);
        let node = b.node(info, "never", (seed,), |i| {
            let (x,) = i.get();
            Step::done(Ok(*x))
        });
        b.output(node)
    });
    let panic = built.expect_err("refused");
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("a concurrency limit of 0 lets no attempt run"),
        "{message}"
    );
}

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

/// Drops of the values `counted` makes.
static DROPPED: AtomicUsize = AtomicUsize::new(0);
/// Drops of the parameter of `counted_param_flow`'s test.
static PARAMS_DROPPED: AtomicUsize = AtomicUsize::new(0);

/// A value that counts its drops, and whose `Drop` panics if asked to.
struct Counted {
    panics: bool,
    drops: &'static AtomicUsize,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
        if self.panics && !std::thread::panicking() {
            panic!("Drop of Counted");
        }
    }
}

#[task]
fn counted(panics: &bool) -> Counted {
    Counted {
        panics: *panics,
        drops: &DROPPED,
    }
}

#[task]
fn read_counted(value: &Counted) -> u64 {
    u64::from(value.panics)
}

workflow! {
    fn counted_flow(panics: bool) -> u64 {
        let first = counted(&panics);
        let second = counted(&panics);
        let a = read_counted(&first);
        let b = read_counted(&second);
        sum_two(&a, &b)
    }
}

#[task]
fn sum_two(a: &u64, b: &u64) -> u64 {
    a + b
}

/// Every value a run made but its output is dropped before the run returns, and a
/// value whose `Drop` panics does not reach the caller: the run still returns its
/// output, and the other values are still dropped.
#[tokio::test]
async fn values_are_dropped_before_the_run_returns_and_a_panicking_drop_stays_inside() {
    let before = DROPPED.load(SeqCst);
    let outcome = counted_flow::workflow().run((false,)).await;
    assert_eq!(outcome.unwrap(), 0);
    assert_eq!(
        DROPPED.load(SeqCst) - before,
        2,
        "both values were dropped by the time the run returned"
    );
    let before = DROPPED.load(SeqCst);
    let outcome = counted_flow::workflow().run((true,)).await;
    assert_eq!(outcome.unwrap(), 2);
    assert_eq!(
        DROPPED.load(SeqCst) - before,
        2,
        "a panicking Drop does not keep the other value from being dropped"
    );
}

#[task]
async fn read_counted_io(value: &Counted) -> u64 {
    u64::from(value.panics)
}

workflow! {
    /// A body whose values are dropped when its item ends: run fused (CPU only) and
    /// scheduled (an IO task).
    fn counted_items(flags: Vec<bool>) -> u64 {
        let fused = for panics in &flags {
            let value = counted(panics);
            read_counted(&value)
        };
        let scheduled = for panics in &flags {
            let value = counted(panics);
            read_counted_io(&value)
        };
        let a = sum_all(&fused);
        let b = sum_all(&scheduled);
        sum_two(&a, &b)
    }
}

workflow! {
    fn counted_inner(panics: bool) -> u64 {
        let value = counted(&panics);
        read_counted(&value)
    }
}

workflow! {
    fn counted_outer(panics: bool) -> u64 {
        let a = counted_inner(&panics).await;
        let b = counted_inner(&panics).await;
        sum_two(&a, &b)
    }
}

#[task]
fn make_counted(flags: &Vec<bool>) -> Vec<Counted> {
    flags
        .iter()
        .map(|&panics| Counted {
            panics,
            drops: &DROPPED,
        })
        .collect()
}

workflow! {
    /// Items taken by value, read by reference: each stays in its item's run until
    /// the item ends.
    fn counted_owned(flags: Vec<bool>) -> u64 {
        let values = make_counted(&flags);
        let each = for value in values {
            read_counted(&value)
        };
        sum_all(&each)
    }
}

#[task]
fn sum_all(values: &Vec<u64>) -> u64 {
    values.iter().sum()
}

/// A value inside a fan-out's item or a sub-workflow whose `Drop` panics is contained
/// as a top-level value's is: the run still returns its output, and every other value
/// is still dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_drop_inside_an_item_or_a_sub_workflow_stays_inside() {
    let before = DROPPED.load(SeqCst);
    let outcome = counted_items::workflow()
        .run((vec![true, false, true],))
        .await;
    assert_eq!(outcome.unwrap(), 4);
    assert_eq!(
        DROPPED.load(SeqCst) - before,
        6,
        "every item's value was dropped"
    );
    let before = DROPPED.load(SeqCst);
    let flags: Vec<bool> = (0..64).map(|i| i % 3 == 0).collect();
    let outcome = counted_owned::workflow().run((flags,)).await;
    assert_eq!(outcome.unwrap(), 22, "items taken by value");
    assert_eq!(DROPPED.load(SeqCst) - before, 64, "every item was dropped");
    let before = DROPPED.load(SeqCst);
    let outcome = counted_outer::workflow().run((true,)).await;
    assert_eq!(outcome.unwrap(), 2);
    assert_eq!(
        DROPPED.load(SeqCst) - before,
        2,
        "both sub-workflows' values were dropped"
    );
}

/// A value whose `Drop` takes a while (a file flushed, a connection closed).
struct SlowToDrop;

impl Drop for SlowToDrop {
    fn drop(&mut self) {
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

#[task]
fn slow_to_drop(x: &u64) -> SlowToDrop {
    let _ = x;
    SlowToDrop
}

#[task]
fn after_slow(value: &SlowToDrop) -> u64 {
    let _ = value;
    7
}

workflow! {
    fn slow_drop_flow(x: u64) -> u64 {
        let value = slow_to_drop(&x);
        after_slow(&value)
    }
}

workflow! {
    fn counted_param_flow(value: Counted) -> u64 {
        read_counted(&value)
    }
}

/// A run whose tasks all finished within its timeout succeeds even if dropping its
/// values takes the deadline past; a parameter whose `Drop` panics stays inside too.
#[tokio::test]
async fn a_deadline_passed_while_values_drop_and_a_panicking_parameter_change_nothing() {
    let outcome = slow_drop_flow::workflow()
        .runner()
        .timeout(std::time::Duration::from_millis(100))
        .run((1,))
        .await;
    assert_eq!(
        outcome.result.unwrap(),
        7,
        "every task finished in time: the slow drop is not a timeout"
    );
    let outcome = counted_param_flow::workflow()
        .run((Counted {
            panics: true,
            drops: &PARAMS_DROPPED,
        },))
        .await;
    assert_eq!(outcome.unwrap(), 1);
    assert_eq!(PARAMS_DROPPED.load(SeqCst), 1);
}
