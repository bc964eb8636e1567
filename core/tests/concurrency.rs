//! `#[task(concurrency = N)]`: at most N nodes of a task run at once; the others wait
//! without holding a thread, and other work goes on meanwhile.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aqueduct::RunOutcome;
use aqueduct::prelude::*;

mod gauge;
use gauge::Gauge;

#[task(concurrency = 2)]
async fn call_api(gauge: &Arc<Gauge>) -> u64 {
    gauge.enter();
    tokio::time::sleep(Duration::from_millis(100)).await;
    gauge.leave();
    1
}

#[task]
async fn unrelated() -> u64 {
    7
}

#[task]
fn sum6(a: &u64, b: &u64, c: &u64, d: &u64, e: &u64, f: &u64) -> u64 {
    a + b + c + d + e + f
}

workflow! {
    fn rate_limited(gauge: Arc<Gauge>) -> u64 {
        let a = call_api(&gauge);
        let b = call_api(&gauge);
        let c = call_api(&gauge);
        let d = call_api(&gauge);
        let e = call_api(&gauge);
        let other = unrelated();
        sum6(&a, &b, &c, &d, &e, &other)
    }
}

#[tokio::test(start_paused = true)]
async fn at_most_n_instances_of_a_limited_task_run_at_once() {
    let gauge = Arc::new(Gauge::default());
    let started = tokio::time::Instant::now();
    let RunOutcome { result, report, .. } = rate_limited::workflow()
        .runner()
        .run((gauge.clone(),))
        .await;
    assert_eq!(result.unwrap(), 12);
    assert_eq!(gauge.peak.load(Ordering::SeqCst), 2, "the cap holds");
    // Five calls of 100 ms, two at a time: three rounds.
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    // The unlimited task did not wait for the limited ones.
    assert_eq!(report.task("other").unwrap().attempts.len(), 1);
    let waits: Vec<_> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|node| report.task(node).unwrap().attempts.len())
        .collect();
    assert_eq!(waits, [1, 1, 1, 1, 1]);
}

#[task(concurrency = 1)]
fn exclusive(gauge: &Arc<Gauge>) -> u64 {
    gauge.enter();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(20) {
        std::hint::spin_loop();
    }
    gauge.leave();
    1
}

#[task]
fn free(gauge: &Arc<Gauge>) -> u64 {
    gauge.enter();
    gauge.leave();
    1
}

workflow! {
    fn serialised(gauge: Arc<Gauge>, others: Arc<Gauge>) -> u64 {
        let a = exclusive(&gauge);
        let b = exclusive(&gauge);
        let c = exclusive(&gauge);
        let d = exclusive(&gauge);
        let e = free(&others);
        let f = free(&others);
        sum6(&a, &b, &c, &d, &e, &f)
    }
}

/// Real time: CPU tasks on rayon. A limit of one makes them take turns, and the
/// waiting ones hold no rayon thread: the unlimited tasks still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_of_one_serialises_cpu_tasks_without_blocking_others() {
    let (gauge, others) = (Arc::new(Gauge::default()), Arc::new(Gauge::default()));
    let started = std::time::Instant::now();
    let RunOutcome { result, report, .. } = serialised::workflow()
        .runner()
        .run((gauge.clone(), others.clone()))
        .await;
    assert_eq!(result.unwrap(), 6);
    assert_eq!(gauge.peak.load(Ordering::SeqCst), 1);
    assert!(
        started.elapsed() >= Duration::from_millis(80),
        "{:?}",
        started.elapsed()
    );
    let last_exclusive_start = ["a", "b", "c", "d"]
        .iter()
        .filter_map(|node| report.task(node).unwrap().started_at)
        .max()
        .unwrap();
    for node in ["e", "f"] {
        let start = report.task(node).unwrap().started_at.unwrap();
        assert!(
            start < last_exclusive_start,
            "{node} did not wait behind the limited tasks\n{report}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_limit_is_part_of_the_static_description() {
    let graph = rate_limited::workflow().graph();
    let limits: Vec<_> = graph.nodes().map(|n| n.info().concurrency).collect();
    assert_eq!(
        limits,
        [
            None,
            Some(2),
            Some(2),
            Some(2),
            Some(2),
            Some(2),
            None,
            None
        ]
    );
}

#[task(concurrency = 3)]
async fn limited_item(x: &u64, gauge: &Arc<Gauge>) -> u64 {
    gauge.enter();
    tokio::time::sleep(Duration::from_millis(10)).await;
    gauge.leave();
    *x
}

#[task]
fn item_sum(xs: &[u64]) -> u64 {
    xs.iter().sum()
}

workflow! {
    fn limited_fan_out(xs: Vec<u64>, gauge: Arc<Gauge>) -> u64 {
        let each = for x in &xs {
            limited_item(x, &gauge)
        };
        item_sum(&each)
    }
}

/// Issue 9, finding 2: items that wait for a permit inside a fan-out wait, as they do
/// at the top level; none is reported cancelled. Real time: items start from rayon,
/// which tokio's paused clock does not wait for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_of_a_fan_out_wait_for_a_limited_task_instead_of_being_cancelled() {
    let gauge = Arc::new(Gauge::default());
    let started = std::time::Instant::now();
    let RunOutcome { result, report, .. } = limited_fan_out::workflow()
        .runner()
        .run(((1..=30).collect(), gauge.clone()))
        .await;
    assert_eq!(result.unwrap(), (1..=30).sum::<u64>());
    // The cap is reached and holds.
    assert_eq!(gauge.peak.load(Ordering::SeqCst), 3);
    // 30 calls of 10 ms, at most three at a time: at least ten rounds.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(100), "{took:?}");
    for i in 0..30 {
        let task = report.task(&format!("limited_item[{i}]")).unwrap();
        assert_eq!(task.status, aqueduct::TaskStatus::Succeeded);
    }
}
