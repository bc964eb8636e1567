//! Stopping a run: a cancel, the run's timeout and fail-fast are soft stops (nothing
//! new starts but cleanup tasks, which run like a `finally` within the grace period);
//! a second cancel (`kill`), the grace period's end or a dropped run future are hard
//! stops. Every node ends with a status; nothing aborts the process.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aqueduct::prelude::*;
use aqueduct::{RunOutcome, TaskStatus};

#[task]
async fn slow_check(x: &u64) -> Result<u64, TaskError> {
    if *x == 0 {
        return Err(TaskError::permanent(TaskError::msg("item 0 is bad")));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(*x)
}

#[task]
fn count(xs: &[u64]) -> usize {
    xs.len()
}

workflow! {
    fn capped_checks(xs: Vec<u64>) -> usize {
        let checked = #[concurrency = 2] for x in &xs {
            slow_check(x)
        };
        count(&checked)
    }
}

/// Items `from..to` never started, and are reported cancelled.
fn assert_unstarted_items_cancelled(report: &aqueduct::RunReport, from: usize, to: usize) {
    for i in from..to {
        let node = format!("slow_check[{i}]");
        let task = report
            .task(&node)
            .unwrap_or_else(|| panic!("{node} is reported"));
        assert_eq!(task.status, TaskStatus::Cancelled, "{node}");
        assert!(task.attempts.is_empty(), "{node} never started");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_in_a_capped_fan_out_with_items_waiting_fails_the_run() {
    let xs: Vec<u64> = (0..20).collect();
    let RunOutcome { result, report, .. } = capped_checks::workflow()
        .runner()
        .fail_fast(true)
        .run((xs,))
        .await;
    let error = result.unwrap_err().to_string();
    assert!(error.contains("item 0 is bad"), "{error}");
    assert_eq!(
        report.task("slow_check[0]").unwrap().status,
        TaskStatus::Failed
    );
    assert_unstarted_items_cancelled(&report, 4, 20);
    assert_eq!(report.task("count").unwrap().status, TaskStatus::Skipped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_capped_fan_out_with_items_waiting_cancels_the_run() {
    let xs: Vec<u64> = (1..=20).collect();
    let runner = capped_checks::workflow().runner();
    let cancel = runner.cancel_handle();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        cancel.cancel();
    });
    let RunOutcome { result, report, .. } = runner.run((xs,)).await;
    assert!(
        matches!(result, Err(aqueduct::Error::Cancelled { .. })),
        "{result:?}"
    );
    assert_unstarted_items_cancelled(&report, 6, 20);
    assert_eq!(report.task("count").unwrap().status, TaskStatus::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_timeout_in_a_capped_fan_out_with_items_waiting_times_the_run_out() {
    let xs: Vec<u64> = (1..=20).collect();
    let RunOutcome { result, report, .. } = capped_checks::workflow()
        .runner()
        .timeout(Duration::from_millis(30))
        .run((xs,))
        .await;
    assert!(
        matches!(result, Err(aqueduct::Error::TimedOut { .. })),
        "{result:?}"
    );
    assert_unstarted_items_cancelled(&report, 6, 20);
}

/// What the cleanup task saw, if it ran.
type Log = Arc<Mutex<Vec<String>>>;

#[task]
async fn upload(x: &u64) -> u64 {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    *x
}

#[task]
async fn release_lock(uploaded: &Outcome<u64>, log: &Log) -> u64 {
    // A cleanup may itself wait (close a connection, say).
    tokio::time::sleep(Duration::from_millis(10)).await;
    let seen = match uploaded {
        Outcome::Ok(_) => "ok",
        Outcome::Failed(_) => "failed",
        Outcome::Skipped => "did not run",
    };
    log.lock().unwrap().push(seen.to_owned());
    1
}

/// Async, like every task of these paused-clock tests: the paused clock advances
/// whenever tokio is idle, even while rayon works.
#[task]
async fn lock(x: &u64) -> u64 {
    *x
}

workflow! {
    fn guarded_upload(x: u64, log: Log) -> u64 {
        let held = lock(&x);
        let uploaded = upload(&held);
        release_lock(&uploaded, &log)
    }
}

#[tokio::test(start_paused = true)]
async fn a_cleanup_task_runs_after_a_cancel_like_a_finally() {
    let log = Log::default();
    let runner = guarded_upload::workflow().runner();
    let cancel = runner.cancel_handle();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
    });
    let RunOutcome { result, report, .. } = runner.run((7, log.clone())).await;
    assert_eq!(
        *log.lock().unwrap(),
        ["did not run"],
        "{result:?}\n{report}"
    );
    assert!(
        matches!(result, Err(aqueduct::Error::Cancelled { .. })),
        "{result:?}"
    );
    assert_eq!(
        report.task("uploaded").unwrap().status,
        TaskStatus::Cancelled
    );
    assert_eq!(
        report.task("release_lock").unwrap().status,
        TaskStatus::Succeeded
    );
}

#[tokio::test(start_paused = true)]
async fn a_cleanup_task_runs_after_the_run_timeout() {
    let log = Log::default();
    let RunOutcome { result, .. } = guarded_upload::workflow()
        .runner()
        .timeout(Duration::from_secs(1))
        .run((7, log.clone()))
        .await;
    assert_eq!(*log.lock().unwrap(), ["did not run"]);
    assert!(
        matches!(result, Err(aqueduct::Error::TimedOut { .. })),
        "{result:?}"
    );
}

#[task]
async fn stuck_cleanup(uploaded: &Outcome<u64>, log: &Log) -> u64 {
    let _ = uploaded;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    log.lock().unwrap().push("finished".into());
    1
}

workflow! {
    fn stuck(x: u64, log: Log) -> u64 {
        let held = lock(&x);
        let uploaded = upload(&held);
        stuck_cleanup(&uploaded, &log)
    }
}

#[tokio::test(start_paused = true)]
async fn a_cleanup_task_is_stopped_when_the_grace_period_ends() {
    let log = Log::default();
    let runner = stuck::workflow()
        .runner()
        .cleanup_grace(Duration::from_secs(5));
    let cancel = runner.cancel_handle();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
    });
    let started = tokio::time::Instant::now();
    let RunOutcome { result, report, .. } = runner.run((7, log.clone())).await;
    assert!(log.lock().unwrap().is_empty());
    assert!(matches!(result, Err(aqueduct::Error::Cancelled { .. })));
    assert_eq!(
        report.task("stuck_cleanup").unwrap().status,
        TaskStatus::Cancelled
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(5050) && took < Duration::from_secs(6),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_second_cancel_stops_cleanup_tasks_at_once() {
    let log = Log::default();
    let runner = stuck::workflow().runner();
    let cancel = runner.cancel_handle();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.kill();
    });
    let started = tokio::time::Instant::now();
    let RunOutcome { result, .. } = runner.run((7, log.clone())).await;
    assert!(matches!(result, Err(aqueduct::Error::Cancelled { .. })));
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    assert!(log.lock().unwrap().is_empty());
}

#[task(retries = 5, retry_delay = "100ms", backoff = "fixed", jitter = false)]
async fn retried(x: &u64, calls: &Arc<AtomicUsize>) -> Result<u64, TaskError> {
    calls.fetch_add(1, Ordering::SeqCst);
    let _ = x;
    Err(TaskError::msg("try again"))
}

workflow! {
    fn retried_then_cleanup(x: u64, calls: Arc<AtomicUsize>, log: Log) -> u64 {
        let value = retried(&x, &calls);
        release_lock(&value, &log)
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancel_during_a_retry_delay_cancels_the_task_and_runs_its_cleanup() {
    let (calls, log) = (Arc::new(AtomicUsize::new(0)), Log::default());
    let runner = retried_then_cleanup::workflow().runner();
    let cancel = runner.cancel_handle();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        cancel.cancel();
    });
    let RunOutcome { result, report, .. } = runner.run((1, calls.clone(), log.clone())).await;
    assert!(matches!(result, Err(aqueduct::Error::Cancelled { .. })));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "no retry after the cancel");
    let value = report.task("value").unwrap();
    assert_eq!(value.status, TaskStatus::Cancelled);
    assert_eq!(value.attempts.len(), 2);
    assert_eq!(*log.lock().unwrap(), ["did not run"]);
}

#[task(retries = 3)]
fn slow_then_transient(x: &u64) -> Result<u64, TaskError> {
    std::thread::sleep(Duration::from_millis(100));
    let _ = x;
    Err(TaskError::msg("try again"))
}

workflow! {
    fn stopped_before_a_retry(x: u64) -> u64 {
        slow_then_transient(&x)
    }
}

/// A CPU attempt that fails, with retries left, after the run was cancelled did not
/// fail for good: only the stop kept it from retrying, so it is `Cancelled`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_that_fails_after_a_cancel_with_retries_left_is_cancelled() {
    let runner = stopped_before_a_retry::workflow().runner();
    let cancel = runner.cancel_handle();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        cancel.cancel();
    });
    let RunOutcome { result, report, .. } = runner.run((1,)).await;
    assert!(
        matches!(result, Err(aqueduct::Error::Cancelled { .. })),
        "{result:?}"
    );
    let task = report.task("slow_then_transient").unwrap();
    assert_eq!(task.status, TaskStatus::Cancelled);
    assert_eq!(task.attempts.len(), 1, "its one attempt is kept: {report}");
    assert_eq!(task.attempts[0].error.as_deref(), Some("try again"));
}

#[task]
fn cooperative(x: &u64) -> u64 {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if aqueduct::task::cancelled() {
            return 999; // a partial value
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    x * 2
}

workflow! {
    fn cooperative_flow(x: u64) -> u64 {
        cooperative(&x)
    }
}

/// A CPU task that returns early because `cancelled()` told it to stop did not
/// finish: its (partial) value is discarded, never the run's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_returned_after_being_told_to_stop_is_discarded() {
    let runner = cooperative_flow::workflow().runner();
    let cancel = runner.cancel_handle();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
    });
    let RunOutcome { result, report, .. } = runner.run((21,)).await;
    assert!(
        matches!(result, Err(aqueduct::Error::Cancelled { .. })),
        "{result:?}"
    );
    let task = report.task("cooperative").unwrap();
    assert_eq!(task.status, TaskStatus::Cancelled);

    let RunOutcome { result, report, .. } = cooperative_flow::workflow()
        .runner()
        .timeout(Duration::from_millis(50))
        .run((21,))
        .await;
    assert!(
        matches!(&result, Err(aqueduct::Error::TimedOut { unfinished, .. }) if unfinished == &["cooperative"]),
        "{result:?}"
    );
    assert_eq!(
        report.task("cooperative").unwrap().status,
        TaskStatus::Cancelled
    );
}
