//! `for item in &collection { … }` in a workflow: one chain per item, in parallel,
//! results in input order.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aqueduct::prelude::*;
use aqueduct::{RunOutcome, TaskStatus};

/// Shared by every item; its address shows it is never copied.
/// The configuration every item reads.
pub struct Config {
    bonus: u64,
    reads: AtomicUsize,
}

#[task]
fn split(n: &u64) -> Vec<Vec<u64>> {
    (0..*n).map(|i| (0..=i).collect()).collect()
}

#[task]
fn total(part: &[u64]) -> Result<u64, TaskError> {
    if part.len() == 4 {
        return Err(TaskError::msg("part of four is cursed"));
    }
    Ok(part.iter().sum())
}

#[task]
async fn enrich(sum: &u64, cfg: &Arc<Config>) -> (u64, usize) {
    cfg.reads.fetch_add(1, Ordering::SeqCst);
    (sum + cfg.bonus, Arc::as_ptr(cfg) as usize)
}

#[task]
fn firsts(stats: &[(u64, usize)]) -> Vec<u64> {
    stats.iter().map(|(v, _)| *v).collect()
}

workflow! {
    /// Sums each part, then enriches each sum with the shared config.
    pub fn per_part(n: u64, cfg: Arc<Config>) -> Vec<u64> {
        let parts = split(&n);
        let stats = for part in &parts {
            let s = total(part);
            enrich(&s, &cfg)
        };
        firsts(&stats)
    }
}

fn config(bonus: u64) -> Arc<Config> {
    Arc::new(Config {
        bonus,
        reads: AtomicUsize::new(0),
    })
}

/// Deliberately not `Clone`.
pub struct Table {
    rows: Vec<u64>,
}

#[task]
fn where_is(_x: &u64, table: &Table) -> usize {
    table.rows.as_ptr() as usize
}

#[task]
fn indices() -> Vec<u64> {
    (0..8).collect()
}

#[task]
fn all_same(addresses: &[usize]) -> bool {
    addresses.windows(2).all(|pair| pair[0] == pair[1])
}

workflow! {
    fn shared_outer(table: Table) -> bool {
        let xs = indices();
        let seen = for x in &xs {
            where_is(x, &table)
        };
        all_same(&seen)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outer_values_are_shared_with_every_item_not_cloned() {
    let table = Table {
        rows: vec![1, 2, 3],
    };
    assert!(
        shared_outer(table).await.unwrap(),
        "every item saw the one table"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_item_runs_its_chain_and_results_keep_input_order() {
    let cfg = config(100);
    assert_eq!(per_part(3, cfg.clone()).await.unwrap(), [100, 101, 103]);
    assert_eq!(
        cfg.reads.load(Ordering::SeqCst),
        3,
        "every item read the one shared config"
    );
}

#[tokio::test]
async fn an_empty_collection_gives_an_empty_vec() {
    assert_eq!(per_part(0, config(1)).await.unwrap(), Vec::<u64>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_item_fails_only_its_chain_and_the_consumer_is_skipped() {
    let cfg = config(0);
    let RunOutcome { result, report, .. } =
        per_part::workflow().runner().run((6, cfg.clone())).await;
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("task `s[3]` (`total`) failed: part of four is cursed"),
        "{message}"
    );
    let status = |node: &str| {
        report
            .task(node)
            .unwrap_or_else(|| panic!("no {node} in\n{report}"))
            .status
    };
    assert_eq!(status("s[3]"), TaskStatus::Failed);
    assert_eq!(status("enrich[3]"), TaskStatus::Skipped);
    for i in [0, 1, 2, 4, 5] {
        assert_eq!(
            status(&format!("enrich[{i}]")),
            TaskStatus::Succeeded,
            "item {i}"
        );
    }
    assert_eq!(status("stats"), TaskStatus::Failed);
    assert_eq!(status("firsts"), TaskStatus::Skipped);
    assert_eq!(cfg.reads.load(Ordering::SeqCst), 5);
}

#[task]
async fn slow_first(ms: &u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(*ms)).await;
    *ms
}

#[task]
async fn second(x: &u64) -> u64 {
    *x
}

#[task]
fn keep(all: &[u64]) -> Vec<u64> {
    all.to_vec()
}

workflow! {
    fn chains(delays: Vec<u64>) -> Vec<u64> {
        let done = for ms in &delays {
            let first = slow_first(ms);
            second(&first)
        };
        keep(&done)
    }
}

/// Real time: the report's clock is the machine's, and items start from rayon, which
/// tokio's paused clock would not wait for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_moves_on_without_waiting_for_the_other_items() {
    let RunOutcome { result, report, .. } = chains::workflow().runner().run((vec![10, 200],)).await;
    assert_eq!(result.unwrap(), [10, 200]);
    let fast_second = report.task("second[0]").unwrap().started_at.unwrap();
    let slow_first = report.task("first[1]").unwrap();
    let slow_first_end = slow_first.started_at.unwrap() + slow_first.duration;
    assert!(fast_second < slow_first_end, "{report}");
}

#[task]
fn rows(n: &u64) -> Vec<Vec<u64>> {
    (1..=*n).map(|r| (1..=r).collect()).collect()
}

#[task]
fn times(x: &u64, factor: &u64) -> u64 {
    x * factor
}

#[task]
fn add_up(values: &[u64]) -> u64 {
    values.iter().sum()
}

workflow! {
    fn nested(n: u64, factor: u64) -> u64 {
        let grid = rows(&n);
        let sums = for row in &grid {
            let cells = for cell in row {
                times(cell, &factor)
            };
            add_up(&cells)
        };
        add_up(&sums)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loops_nest_and_import_from_every_enclosing_scope() {
    // rows 1..=3: [1], [1, 2], [1, 2, 3]; each cell times 10.
    assert_eq!(nested(3, 10).await.unwrap(), 10 * (1 + 3 + 6));
}

#[test]
fn a_fan_out_is_one_node_of_the_graph() {
    let graph = per_part::workflow().graph();
    let stats = graph.nodes().find(|n| n.name() == "stats").unwrap();
    assert_eq!(stats.kind(), aqueduct::Kind::FanOut);
    let inputs: Vec<_> = stats
        .inputs()
        .map(|i| graph.node(i).name().to_owned())
        .collect();
    assert_eq!(inputs, ["cfg", "parts"]);
    assert!(
        graph.to_mermaid().contains("{{\"stats = for\"}}"),
        "{}",
        graph.to_mermaid()
    );
}

#[task]
fn describe_items(
    stats: &Outcome<Vec<(u64, usize)>>,
    seen: &Arc<std::sync::Mutex<Vec<String>>>,
) -> usize {
    let described: Vec<String> = stats
        .items()
        .iter()
        .map(|item| match item {
            Outcome::Ok((value, _)) => format!("ok {value}"),
            Outcome::Failed(error) => format!("failed: {error}"),
            Outcome::Skipped => "skipped".to_owned(),
        })
        .collect();
    let count = described.len();
    *seen.lock().unwrap() = described;
    count
}

workflow! {
    fn tolerant(n: u64, cfg: Arc<Config>, seen: Arc<std::sync::Mutex<Vec<String>>>) -> usize {
        let parts = split(&n);
        let stats = for part in &parts {
            let s = total(part);
            enrich(&s, &cfg)
        };
        describe_items(&stats, &seen)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_taking_the_outcome_sees_each_item() {
    let seen = Arc::default();
    let RunOutcome { result, report, .. } = tolerant::workflow()
        .runner()
        .run((5, config(0), Arc::clone(&seen)))
        .await;
    assert!(result.is_err(), "the run still fails: item 3 failed");
    assert_eq!(
        report.task("describe_items").unwrap().status,
        TaskStatus::Succeeded
    );
    // Item 3 failed in `total`, so its chain's tail (`enrich`) was skipped.
    assert_eq!(
        *seen.lock().unwrap(),
        ["ok 0", "ok 1", "ok 3", "skipped", "ok 10"]
    );
}

/// Counts how many run at once and the most that ever did.
#[derive(Default)]
pub struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
    /// When the task outside the fan-out ran, on tokio's (paused) clock.
    other_ran: std::sync::Mutex<Option<tokio::time::Instant>>,
}

#[task]
async fn step_one(ms: &u64, gauge: &Arc<Gauge>) -> u64 {
    let now = gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
    gauge.peak.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(*ms)).await;
    *ms
}

#[task]
async fn step_two(x: &u64, gauge: &Arc<Gauge>) -> u64 {
    tokio::time::sleep(Duration::from_millis(10)).await;
    gauge.now.fetch_sub(1, Ordering::SeqCst);
    *x
}

#[task]
async fn elsewhere(gauge: &Arc<Gauge>) -> u64 {
    tokio::time::sleep(Duration::from_millis(5)).await;
    *gauge.other_ran.lock().unwrap() = Some(tokio::time::Instant::now());
    1
}

#[task]
fn count(all: &[u64], other: &u64) -> usize {
    all.len() + *other as usize
}

workflow! {
    fn capped(delays: Vec<u64>, gauge: Arc<Gauge>) -> usize {
        let done = #[concurrency = 2] for ms in &delays {
            let first = step_one(ms, &gauge);
            step_two(&first, &gauge)
        };
        let other = elsewhere(&gauge);
        count(&done, &other)
    }
}

// Real time, not tokio's paused clock: the clock would jump ahead while rayon starts
// the items, and on a loaded machine an item could end before the next one starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_fan_out_runs_at_most_n_items_at_once() {
    let gauge = Arc::new(Gauge::default());
    let started = tokio::time::Instant::now();
    let RunOutcome { result, report, .. } = capped::workflow()
        .runner()
        .run((vec![100; 6], gauge.clone()))
        .await;
    assert_eq!(result.unwrap(), 7);
    assert_eq!(
        gauge.peak.load(Ordering::SeqCst),
        2,
        "items in flight, first step to last"
    );
    // Six items of 110 ms, two at a time: three rounds (no cap: one; a cap of one: six).
    // Bounded below the 660 ms of a cap of one, with room for a loaded machine.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(330) && elapsed < Duration::from_millis(600),
        "{elapsed:?}"
    );
    // The task outside the fan-out did not wait for the capped items.
    let other_ran = gauge.other_ran.lock().unwrap().unwrap();
    assert!(
        other_ran - started < Duration::from_millis(100),
        "it ran before the first capped item ended: {report}"
    );
}

#[test]
fn the_body_of_a_fan_out_is_a_subgraph_of_the_export() {
    let graph = per_part::workflow().graph();
    let stats = graph.nodes().find(|n| n.name() == "stats").unwrap();
    let body = stats.body().expect("a fan-out has a body");
    let names: Vec<_> = body.nodes().map(|n| n.name()).collect();
    assert_eq!(names, ["part", "cfg", "s", "enrich"]);
    let mermaid = graph.to_mermaid();
    for line in [
        "    subgraph n3_body [\"each part\"]",
        "        n3_2[\"s = total\"]",
        "        n3_0 --> n3_2",
        "        n3_2 --> n3_3",
        "    n3_body --> n3",
    ] {
        assert!(mermaid.contains(line), "missing {line:?} in\n{mermaid}");
    }
    let dot = graph.to_dot();
    assert!(
        dot.contains("subgraph cluster_n3 {") && dot.contains("n3_1 -> n3_3;"),
        "{dot}"
    );
}

#[task(retries = 2, retry_delay = "1ms", jitter = false)]
async fn flaky_item(x: &u64, seen: &Arc<std::sync::Mutex<Vec<u64>>>) -> Result<u64, TaskError> {
    let mut seen = seen.lock().unwrap();
    let first_time = !seen.contains(x);
    seen.push(*x);
    if first_time && x % 2 == 1 {
        return Err(TaskError::msg(format!("item {x} stumbled")));
    }
    Ok(*x)
}

workflow! {
    fn retried_items(xs: Vec<u64>, seen: Arc<std::sync::Mutex<Vec<u64>>>) -> Vec<u64> {
        let done = for x in &xs {
            flaky_item(x, &seen)
        };
        keep(&done)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_item_is_retried_on_its_own() {
    let seen = Arc::default();
    let RunOutcome { result, report, .. } = retried_items::workflow()
        .runner()
        .run(((0..4).collect(), seen))
        .await;
    assert_eq!(result.unwrap(), [0, 1, 2, 3]);
    let attempts: Vec<usize> = (0..4)
        .map(|i| {
            report
                .task(&format!("flaky_item[{i}]"))
                .unwrap()
                .attempts
                .len()
        })
        .collect();
    assert_eq!(
        attempts,
        [1, 2, 1, 2],
        "odd items failed once and were retried\n{report}"
    );
    let first_error = &report.task("flaky_item[1]").unwrap().attempts[0].error;
    assert_eq!(first_error.as_deref(), Some("item 1 stumbled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_counts_every_item_task_including_failed_and_skipped_ones() {
    let runner = per_part::workflow().runner();
    let progress = runner.progress();
    assert_eq!(progress.total(), 0, "nothing is counted before the run");
    let outcome = runner.run((6, config(1))).await;
    // Item 3 (a part of four) fails, its `enrich` and the final `firsts` are skipped.
    assert!(outcome.result.is_err());
    // `split` and `firsts`, then `total` and `enrich` for each of the six items.
    assert_eq!(progress.total(), 2 + 6 * 2);
    assert_eq!(progress.done(), progress.total());
    assert_eq!(progress.running(), 0);
}

/// A MiB that counts how many of its kind are alive.
struct Blob {
    _bytes: Vec<u8>,
    alive: Arc<AtomicUsize>,
}

impl Drop for Blob {
    fn drop(&mut self) {
        self.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

#[task]
fn inflate(x: &u64, alive: &Arc<AtomicUsize>) -> Blob {
    alive.fetch_add(1, Ordering::SeqCst);
    let _ = x;
    Blob {
        _bytes: vec![1; 1 << 20],
        alive: Arc::clone(alive),
    }
}

#[task]
fn measure(blob: &Blob) -> usize {
    blob._bytes.len()
}

#[task]
fn alive_now(sizes: &[usize], alive: &Arc<AtomicUsize>) -> (usize, usize) {
    (sizes.len(), alive.load(Ordering::SeqCst))
}

workflow! {
    fn blobs(xs: Vec<u64>, alive: Arc<AtomicUsize>) -> (usize, usize) {
        let sizes = for x in &xs {
            let blob = inflate(x, &alive);
            measure(&blob)
        };
        alive_now(&sizes, &alive)
    }
}

/// Issue 9, finding 11: an item's intermediate values are dropped when the item ends,
/// not kept until the run ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_items_intermediate_values_are_dropped_when_the_item_ends() {
    let alive = Arc::new(AtomicUsize::new(0));
    let (items, alive_then) = blobs((0..200).collect(), alive.clone()).await.unwrap();
    assert_eq!(items, 200);
    assert_eq!(alive_then, 0, "no item's blob outlives its item");
    assert_eq!(alive.load(Ordering::SeqCst), 0);
}
