//! Fused fan-outs: a `for` whose body is CPU tasks only (one attempt each, no timeout,
//! no concurrency limit) and which is not capped runs its items in chunks on rayon,
//! without scheduling each one, with the scheduled path's results and failures.

use std::sync::atomic::{AtomicUsize, Ordering};

use aqueduct::prelude::*;
use aqueduct::{RunOutcome, TaskStatus};

#[task]
fn numbers(n: &u64) -> Vec<u64> {
    (0..*n).collect()
}

#[task]
fn plus_one(x: &u64) -> u64 {
    x + 1
}

#[task]
fn double(x: &u64) -> u64 {
    x * 2
}

#[task]
fn total(values: &[u64]) -> u64 {
    values.iter().sum()
}

workflow! {
    fn chained(n: u64) -> u64 {
        let xs = numbers(&n);
        let each = for x in &xs {
            let y = plus_one(x);
            double(&y)
        };
        total(&each)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_body_runs_fused_with_a_summary_and_no_rows() {
    let RunOutcome { result, report, .. } = chained::workflow().runner().run((10_000,)).await;
    // Σ 2(x + 1) for x < 10,000
    assert_eq!(result.unwrap(), 2 * (10_000 * 9_999 / 2 + 10_000));
    let each = report.task("each").unwrap();
    let items = each.items.expect("a fan-out reports its items");
    assert_eq!((items.count, items.fused, items.rows), (10_000, true, 0));
    assert!(report.task("plus_one[0]").is_none());
    assert!(report.to_string().contains("10000 items ran fused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_rows_reports_every_item_of_a_fused_fan_out() {
    let RunOutcome { result, report, .. } = chained::workflow()
        .runner()
        .item_rows(true)
        .run((50,))
        .await;
    assert_eq!(result.unwrap(), 2 * (50 * 49 / 2 + 50));
    let items = report.task("each").unwrap().items.unwrap();
    assert_eq!((items.count, items.fused, items.rows), (50, true, 50));
    assert_eq!(
        report.task("double[49]").unwrap().status,
        TaskStatus::Succeeded
    );
}

#[task]
fn checked(x: &u64) -> Result<u64, TaskError> {
    if x % 10 == 3 {
        return Err(TaskError::msg(format!("{x} is bad")));
    }
    Ok(*x)
}

#[task]
fn outcomes(all: &Outcome<Vec<u64>>) -> (usize, usize) {
    let items = all.items();
    let ok = items.iter().filter(|o| o.value().is_some()).count();
    (ok, items.len() - ok)
}

workflow! {
    fn partly_failing(n: u64) -> (usize, usize) {
        let xs = numbers(&n);
        let each = for x in &xs {
            let c = checked(x);
            double(&c)
        };
        outcomes(&each)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_items_keep_their_rows_and_skip_their_chain() {
    let RunOutcome { result, report, .. } = partly_failing::workflow().runner().run((100,)).await;
    // The cleanup-style reader sees every item's outcome: 10 failed.
    let error = result.unwrap_err().to_string();
    assert!(error.contains("3 is bad"), "{error}");
    let items = report.task("each").unwrap().items.unwrap();
    assert_eq!((items.count, items.fused, items.rows), (100, true, 10));
    assert_eq!(report.task("c[13]").unwrap().status, TaskStatus::Failed);
    assert_eq!(
        report.task("double[13]").unwrap().status,
        TaskStatus::Skipped
    );
    assert!(
        report.task("c[12]").is_none(),
        "succeeded items have no rows"
    );
    assert_eq!(
        report.task("outcomes").map(|t| t.status),
        Some(TaskStatus::Succeeded),
        "{report}"
    );
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

#[task]
fn explodes(x: &u64) -> u64 {
    if *x == 7 {
        PANICS.fetch_add(1, Ordering::SeqCst);
        panic!("item {x} exploded");
    }
    *x
}

workflow! {
    fn panicking(n: u64) -> u64 {
        let xs = numbers(&n);
        let each = for x in &xs {
            explodes(x)
        };
        total(&each)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_fused_item_fails_that_item() {
    let RunOutcome { result, report, .. } = panicking::workflow().runner().run((20,)).await;
    let error = result.unwrap_err().to_string();
    assert!(error.contains("item 7 exploded"), "{error}");
    assert_eq!(
        report.task("explodes[7]").unwrap().status,
        TaskStatus::Failed
    );
    assert_eq!(PANICS.load(Ordering::SeqCst), 1);
}

static STARTED: AtomicUsize = AtomicUsize::new(0);

#[task]
fn slow_bad(x: &u64) -> Result<u64, TaskError> {
    STARTED.fetch_add(1, Ordering::SeqCst);
    if *x == 0 {
        return Err(TaskError::msg("the first item fails"));
    }
    std::thread::sleep(std::time::Duration::from_millis(2));
    Ok(*x)
}

workflow! {
    fn fail_fast_items(n: u64) -> u64 {
        let xs = numbers(&n);
        let each = for x in &xs {
            slow_bad(x)
        };
        total(&each)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_stops_the_items_not_started() {
    let RunOutcome { result, report, .. } = fail_fast_items::workflow()
        .runner()
        .fail_fast(true)
        .run((2_000,))
        .await;
    assert!(
        result
            .unwrap_err()
            .to_string()
            .contains("the first item fails")
    );
    let started = STARTED.load(Ordering::SeqCst);
    assert!(
        started < 2_000,
        "fail-fast left {started} of 2000 items to start"
    );
    let items = report.task("each").unwrap().items.unwrap();
    assert!(items.fused);
    assert_eq!(
        report.task("slow_bad[0]").unwrap().status,
        TaskStatus::Failed
    );
    // Items the stop kept from starting have no rows (only a summary).
    assert!(report.task("slow_bad[1999]").is_none(), "{report}");
    assert!(items.rows < items.count);
}

#[task(retries = 1, retry_delay = "1ms")]
fn retried(x: &u64) -> u64 {
    *x
}

workflow! {
    fn not_fused(n: u64) -> u64 {
        let xs = numbers(&n);
        let each = for x in &xs {
            retried(x)
        };
        total(&each)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_with_retries_is_scheduled_item_by_item() {
    let RunOutcome { result, report, .. } = not_fused::workflow().runner().run((5,)).await;
    assert_eq!(result.unwrap(), 10);
    let items = report.task("each").unwrap().items.unwrap();
    assert_eq!((items.count, items.fused, items.rows), (5, false, 5));
}

#[task]
fn owned_plus(x: u64) -> u64 {
    x + 1
}

workflow! {
    fn moved_items(n: u64) -> u64 {
        let xs = numbers(&n);
        let each = for x in xs {
            owned_plus(x)
        };
        total(&each)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_that_takes_its_collection_runs_fused_too() {
    let RunOutcome { result, report, .. } = moved_items::workflow().runner().run((1_000,)).await;
    assert_eq!(result.unwrap(), 1_000 * 999 / 2 + 1_000);
    assert!(report.task("each").unwrap().items.unwrap().fused);
}

workflow! {
    fn ends_with_binding(n: u64) -> u64 {
        let xs = numbers(&n);
        let each = for x in &xs {
            let y = plus_one(x);
            let z = double(&y);
            z
        };
        total(&each)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_body_may_end_with_one_of_its_bindings() {
    assert_eq!(ends_with_binding(4).await.unwrap(), 2 * (1 + 2 + 3 + 4));
}

workflow! {
    /// A `for` as the workflow's output, and as a loop body's result.
    fn loops_as_outputs(n: u64) -> Vec<Vec<u64>> {
        let xs = numbers(&n);
        for x in &xs {
            let ys = numbers(x);
            for y in &ys {
                plus_one(y)
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_for_may_be_the_output_of_a_workflow_or_of_a_loop_body() {
    assert_eq!(
        loops_as_outputs(3).await.unwrap(),
        vec![vec![], vec![1], vec![1, 2]]
    );
    let report = loops_as_outputs::workflow().runner().run((3,)).await.report;
    assert!(report.task("for").is_some(), "{report}");
}

/// A value whose `Drop` panics, made and read inside a fused item.
struct Bomb(u64);

impl Drop for Bomb {
    fn drop(&mut self) {
        if self.0 == 5 && !std::thread::panicking() {
            panic!("bomb {} went off", self.0);
        }
    }
}

#[task]
fn arm(x: &u64) -> Bomb {
    Bomb(*x)
}

#[task]
fn defuse(bomb: &Bomb) -> u64 {
    bomb.0
}

workflow! {
    fn bombs(n: u64) -> u64 {
        let xs = numbers(&n);
        let each = for x in &xs {
            let b = arm(x);
            defuse(&b)
        };
        total(&each)
    }
}

/// A panic in a value's `Drop` inside a fused item is contained, as at the end of a
/// run: no abort, no fault, and item 5 keeps its output; so in summary mode and with
/// every row kept, and the other items' buffers are reused after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_drop_in_a_fused_item_is_contained() {
    for every_row in [false, true] {
        let RunOutcome { result, report, .. } = bombs::workflow()
            .runner()
            .item_rows(every_row)
            .run((20,))
            .await;
        assert_eq!(result.unwrap(), (0..20).sum::<u64>(), "{report}");
    }
}
