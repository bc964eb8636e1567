//! Typed chains: a fused `for` whose body is task calls only runs each item through
//! the body as `workflow!` wrote it out in plain Rust, with the fused path's results,
//! failures, rows and stops. Which path a fan-out took is a `debug` event.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aqueduct::prelude::*;
use aqueduct::{RunOutcome, TaskStatus};

mod capture;
use capture::Capture;

/// The debug log of every test in this file (tasks run on rayon's threads, so the
/// subscriber is global).
fn log() -> &'static Capture {
    static LOG: OnceLock<Capture> = OnceLock::new();
    LOG.get_or_init(|| Capture::install(tracing::Level::DEBUG))
}

/// Whether fan-out `node` of a run of workflow `name` ran its typed chain.
fn ran_typed(name: &str, node: &str) -> bool {
    let log = log().text();
    log.lines().any(|line| {
        line.contains(&format!("workflow{{name={name} run={name}-"))
            && line.contains(&format!("node=\"{node}\""))
            && line.contains("fan-out runs its typed chain")
    })
}

#[derive(Debug)]
struct Settings {
    bias: u64,
}

#[derive(Debug)]
struct Pair {
    low: u64,
    high: u64,
}

#[task]
fn numbers(n: &u64) -> Vec<u64> {
    (0..*n).collect()
}

#[task]
fn settings(bias: &u64) -> Settings {
    Settings { bias: *bias }
}

#[task]
fn pair(x: &u64, by: &u64) -> Pair {
    Pair {
        low: *x,
        high: x + by,
    }
}

#[task]
fn spread(pair: Pair) -> u64 {
    pair.high - pair.low
}

#[task]
fn add(a: &u64, b: &u64) -> u64 {
    a + b
}

#[task]
fn total(values: &[u64]) -> u64 {
    values.iter().sum()
}

workflow! {
    fn imports_fields_and_moves(n: u64, by: u64) -> u64 {
        let xs = numbers(&n);
        let config = settings(&by);
        let each = for x in &xs {
            let p = pair(x, &by);
            let q = pair(x, &config.bias);
            let low_plus = add(&q.low, &config.bias);
            let s = spread(p);
            add(&s, &low_plus)
        };
        total(&each)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_reads_imports_and_fields_and_moves_between_its_tasks() {
    log();
    // Per item: spread = by, low_plus = x + by, so by + x + by.
    let out = imports_fields_and_moves(100, 3).await.unwrap();
    assert_eq!(out, (0..100).map(|x| x + 6).sum::<u64>());
    assert!(ran_typed("imports_fields_and_moves", "each"));
}

static SIDE: AtomicUsize = AtomicUsize::new(0);

#[task]
fn odd_fails(x: &u64) -> Result<u64, TaskError> {
    if x % 2 == 1 {
        return Err(TaskError::msg(format!("{x} is odd")));
    }
    Ok(*x)
}

#[task]
fn side(x: &u64) -> u64 {
    SIDE.fetch_add(1, Ordering::SeqCst);
    *x
}

workflow! {
    fn independent_tasks(n: u64) -> u64 {
        let xs = numbers(&n);
        let each = for x in &xs {
            let a = odd_fails(x);
            let b = side(x);
            add(&a, &b)
        };
        total(&each)
    }
}

/// A task whose input failed is skipped; a task beside it still runs, as in a
/// scheduled item. Only the items that did not succeed keep rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_skips_what_reads_it_and_nothing_else() {
    log();
    let RunOutcome { result, report, .. } = independent_tasks::workflow().runner().run((10,)).await;
    let error = result.unwrap_err().to_string();
    assert!(error.contains("is odd"), "{error}");
    assert_eq!(SIDE.load(Ordering::SeqCst), 10, "every item's `side` ran");
    let items = report.task("each").unwrap().items.unwrap();
    assert_eq!((items.count, items.fused, items.rows), (10, true, 5));
    let status = |name: &str| report.task(name).map(|task| task.status);
    assert_eq!(status("a[3]"), Some(TaskStatus::Failed));
    assert_eq!(status("b[3]"), Some(TaskStatus::Succeeded));
    assert_eq!(status("add[3]"), Some(TaskStatus::Skipped));
    assert_eq!(status("add[4]"), None, "a succeeded item keeps no row");
    assert!(
        report
            .task("a[3]")
            .unwrap()
            .error
            .as_deref()
            .is_some_and(|error| error.contains("3 is odd")),
        "{report}"
    );
    assert!(ran_typed("independent_tasks", "each"));
}

#[task]
fn items_seen(all: &Outcome<Vec<u64>>) -> (usize, usize) {
    match all {
        Outcome::Ok(values) => (values.len(), 0),
        Outcome::Failed(error) => {
            let failed = error
                .downcast_ref::<aqueduct::ItemsFailed<u64>>()
                .map_or(0, |items| {
                    items
                        .outcomes()
                        .iter()
                        .filter(|o| matches!(o, Outcome::Failed(_)))
                        .count()
                });
            (0, failed)
        }
        Outcome::Skipped => (0, 0),
    }
}

workflow! {
    fn outcomes_of_items(n: u64) -> (usize, usize) {
        let xs = numbers(&n);
        let each = for x in &xs {
            odd_fails(x)
        };
        items_seen(&each)
    }
}

/// A reader of the fan-out's outcome runs, and the run's error names each failed item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tolerant_reader_sees_every_item_outcome() {
    log();
    let RunOutcome { result, report, .. } = outcomes_of_items::workflow().runner().run((9,)).await;
    let Err(aqueduct::Error::Failed { failures, .. }) = result else {
        panic!("{result:?}");
    };
    let nodes: Vec<_> = failures.iter().map(|f| f.node.as_str()).collect();
    assert_eq!(
        nodes,
        [
            "odd_fails[1]",
            "odd_fails[3]",
            "odd_fails[5]",
            "odd_fails[7]"
        ]
    );
    assert_eq!(
        report.task("items_seen").map(|t| t.status),
        Some(TaskStatus::Succeeded)
    );
    assert!(ran_typed("outcomes_of_items", "each"));
}

#[task]
fn cooperative(x: &u64) -> u64 {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if aqueduct::task::cancelled() {
            return 999; // a partial value
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    *x
}

workflow! {
    fn cancellable(n: u64) -> u64 {
        let xs = numbers(&n);
        let each = for x in &xs {
            cooperative(x)
        };
        total(&each)
    }
}

/// `cancelled()` tells a chain's running tasks to stop; their values are discarded
/// and the items not started keep no rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_the_tasks_of_a_chain() {
    log();
    let runner = cancellable::workflow().runner();
    let cancel = runner.cancel_handle();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
    });
    let started = std::time::Instant::now();
    let RunOutcome { result, report, .. } = runner.run((100,)).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the tasks did not see the cancel"
    );
    assert!(
        matches!(result, Err(aqueduct::Error::Cancelled { .. })),
        "{result:?}"
    );
    let cancelled = (0..100)
        .filter_map(|i| report.task(&format!("cooperative[{i}]")))
        .filter(|task| task.status == TaskStatus::Cancelled)
        .count();
    assert!((1..=4).contains(&cancelled), "{report}");
    assert_eq!(
        report.task("each").unwrap().status,
        TaskStatus::Cancelled,
        "{report}"
    );
    assert!(ran_typed("cancellable", "each"));
}

#[task]
fn flaky(x: &u64) -> u64 {
    *x
}

#[task(retries = 1)]
fn retried(x: &u64) -> u64 {
    *x
}

workflow! {
    fn not_typed(n: u64) -> u64 {
        let xs = numbers(&n);
        let with_retries = for x in &xs {
            retried(x)
        };
        let capped = #[concurrency = 2] for x in &xs {
            flaky(x)
        };
        let a = total(&with_retries);
        let b = total(&capped);
        add(&a, &b)
    }
}

/// A body with retries, and a capped `for`, keep their own paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_fused_bodies_run_typed() {
    log();
    assert_eq!(not_typed(10).await.unwrap(), 90);
    assert!(!ran_typed("not_typed", "with_retries"));
    assert!(!ran_typed("not_typed", "capped"));
    // Every row asked for: the fused path, which times each task.
    let RunOutcome { result, report, .. } = imports_fields_and_moves::workflow()
        .runner()
        .item_rows(true)
        .run((4, 1))
        .await;
    assert_eq!(result.unwrap(), 4 * 2 + 6);
    assert_eq!(report.task("each").unwrap().items.unwrap().rows, 4);
}

/// The progress bar counts a chain's tasks as they end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_counts_its_tasks_for_progress() {
    log();
    let runner = imports_fields_and_moves::workflow().runner();
    let progress = runner.progress();
    runner.run((6, 1)).await.result.unwrap();
    // numbers, settings, 5 tasks for each of 6 items, total.
    assert_eq!(progress.total(), 2 + 5 * 6 + 1);
    assert_eq!(progress.done(), progress.total());
    assert_eq!(progress.running(), 0);
}

/// Whether task `task` fails (1), panics (2) or succeeds (0) on value `x`.
fn fault(x: u64, task: u64) -> u8 {
    let h = (x ^ (task << 40))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17);
    match h % 13 {
        0 => 1,
        1 => 2,
        _ => 0,
    }
}

fn faulty(x: u64, task: u64) -> Result<u64, TaskError> {
    match fault(x, task) {
        1 => Err(TaskError::msg(format!("task {task} failed on {x}"))),
        2 => panic!("task {task} panicked on {x}"),
        _ => Ok(x.wrapping_mul(31).wrapping_add(task)),
    }
}

#[task]
fn seeded(n: &u64, seed: &u64) -> Vec<u64> {
    (0..*n).map(|i| seed * 1_000 + i).collect()
}

#[task]
fn first(x: &u64) -> Result<u64, TaskError> {
    faulty(*x, 1)
}

#[task]
fn second(x: &u64, by: &Settings) -> Result<Pair, TaskError> {
    faulty(*x, 2).map(|v| Pair {
        low: v,
        high: v + by.bias,
    })
}

#[task]
fn third(a: &u64, b: &u64) -> Result<u64, TaskError> {
    faulty(a ^ b, 3)
}

#[task]
fn fourth(p: Pair, c: &u64) -> Result<u64, TaskError> {
    faulty(p.high ^ c, 4)
}

/// The same body three times: typed (and fused, with every row asked for), and
/// scheduled (a `for` with a cap never runs fused).
macro_rules! three_ways {
    ($($name:ident $(#[$cap:meta])?;)*) => {$(
        workflow! {
            fn $name(n: u64, seed: u64) -> u64 {
                let xs = seeded(&n, &seed);
                let config = settings(&seed);
                let each = $(#[$cap])? for x in &xs {
                    let a = first(x);
                    let p = second(x, &config);
                    let q = second(&a, &config);
                    let c = third(&a, &q.low);
                    fourth(p, &c)
                };
                total(&each)
            }
        }
    )*};
}

three_ways! {
    differential_typed;
    differential_scheduled #[concurrency = 1000];
}

/// Pairs of node and error (or status).
type Named = Vec<(String, String)>;
type Summary = (Result<u64, Named>, Named);

/// What a run ended with, comparable across the paths: its output or its failures
/// (node and error, sorted), and every task row of an item that did not succeed.
fn summary(outcome: RunOutcome<u64>) -> Summary {
    let RunOutcome { result, report, .. } = outcome;
    let result = result.map_err(|error| match error {
        aqueduct::Error::Failed { failures, .. } => {
            let mut failures: Vec<_> = failures
                .iter()
                .map(|f| (f.node.clone(), f.error.to_string()))
                .collect();
            failures.sort();
            failures
        }
        other => vec![("run".to_owned(), other.to_string())],
    });
    let mut failed_items: Vec<usize> = Vec::new();
    for task in &report.tasks {
        if let Some((_, index)) = task.node.trim_end_matches(']').rsplit_once('[')
            && task.status != TaskStatus::Succeeded
        {
            failed_items.push(index.parse().unwrap());
        }
    }
    let mut rows: Vec<(String, String)> = report
        .tasks
        .iter()
        .filter(|task| {
            task.node
                .trim_end_matches(']')
                .rsplit_once('[')
                .is_some_and(|(_, index)| failed_items.contains(&index.parse().unwrap()))
        })
        .map(|task| (task.node.clone(), format!("{:?}", task.status)))
        .collect();
    rows.sort();
    (result, rows)
}

/// The typed chain against the fused and scheduled paths (which the fault harness
/// checks against its model), over seeded errors and panics: the same output or
/// failures, and the same rows for the items that did not succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_chain_ends_as_the_other_paths_do() {
    log();
    let mut failing = 0;
    for seed in 0..60 {
        let n = 1 + seed % 17;
        let typed = summary(differential_typed::workflow().runner().run((n, seed)).await);
        let fused = summary(
            differential_typed::workflow()
                .runner()
                .item_rows(true)
                .run((n, seed))
                .await,
        );
        let scheduled = summary(
            differential_scheduled::workflow()
                .runner()
                .run((n, seed))
                .await,
        );
        assert_eq!(typed, fused, "seed {seed}: typed vs fused");
        assert_eq!(typed, scheduled, "seed {seed}: typed vs scheduled");
        failing += usize::from(typed.0.is_err());
    }
    assert!(failing > 10 && failing < 60, "{failing} of 60 runs failed");
    assert!(ran_typed("differential_typed", "each"));
    assert!(!ran_typed("differential_scheduled", "each"));
}

#[task]
fn offset(x: &u64) -> u64 {
    x + 1_000
}

#[task]
fn label(i: &u64) -> u64 {
    i * 10
}

workflow! {
    fn shadowing(n: u64, x: u64) -> u64 {
        let ids = numbers(&n);
        let each = for i in &ids {
            let a = offset(&x);
            let x = label(i);
            add(&a, &x)
        };
        total(&each)
    }
}

/// A body may read an outer name, then shadow it with a binding of its own: the
/// chain reads the import where it is read, and the binding after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_that_shadows_an_import_reads_as_written() {
    log();
    // Per item i: (x + 1000) + 10 i.
    let out = shadowing(4, 5).await.unwrap();
    assert_eq!(out, 4 * 1_005 + 10 * (1 + 2 + 3));
    assert!(ran_typed("shadowing", "each"));
}

/// Panics in its `Drop`, whatever is going on.
struct Grenade(u64);

impl Drop for Grenade {
    fn drop(&mut self) {
        panic!("grenade {} went off", self.0);
    }
}

#[task]
fn grenade(x: &u64) -> Grenade {
    Grenade(*x)
}

#[task]
fn both(a: &Grenade, b: &Grenade) -> u64 {
    a.0 + b.0
}

workflow! {
    fn grenades(n: u64) -> u64 {
        let xs = numbers(&n);
        let each = for x in &xs {
            let a = grenade(x);
            let b = grenade(x);
            both(&a, &b)
        };
        total(&each)
    }
}

/// Two values of an item whose `Drop`s both panic: each binding contains its own
/// value's panic, so neither aborts (the second is not dropped while the first
/// unwinds) nor faults the run, and every item keeps its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_whose_drop_panics_are_contained_one_by_one() {
    log();
    let RunOutcome { result, report, .. } = grenades::workflow().runner().run((3,)).await;
    assert_eq!(result.unwrap(), 2 * (1 + 2), "{report}");
    assert!(ran_typed("grenades", "each"));
}
