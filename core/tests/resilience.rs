//! Retries, timeouts, panics, isolation, fail-fast, cleanup tasks and cancellation.
//! Time-dependent tests run on tokio's paused clock, so delays are exact.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aqueduct::prelude::*;
use aqueduct::{RunOutcome, TaskStatus};
use tokio::time::Instant;

/// Records when each attempt started; fails the first `failures` attempts.
#[derive(Default)]
struct Flaky {
    failures: usize,
    starts: Mutex<Vec<Instant>>,
}

impl Flaky {
    fn failing(failures: usize) -> Arc<Self> {
        Arc::new(Self {
            failures,
            ..Self::default()
        })
    }

    fn attempt(&self) -> Result<u64, TaskError> {
        let mut starts = self.starts.lock().unwrap();
        starts.push(Instant::now());
        if starts.len() <= self.failures {
            Err(TaskError::msg(format!("attempt {} failed", starts.len())))
        } else {
            Ok(starts.len() as u64)
        }
    }

    fn gaps_ms(&self) -> Vec<u128> {
        let starts = self.starts.lock().unwrap();
        starts
            .windows(2)
            .map(|w| (w[1] - w[0]).as_millis())
            .collect()
    }
}

#[task(retries = 2, retry_delay = "100ms", backoff = "fixed", jitter = false)]
async fn fixed(flaky: &Arc<Flaky>) -> Result<u64, TaskError> {
    flaky.attempt()
}

#[task(retries = 3, retry_delay = "100ms", backoff = "linear", jitter = false)]
async fn linear(flaky: &Arc<Flaky>) -> Result<u64, TaskError> {
    flaky.attempt()
}

#[task(
    retries = 3,
    retry_delay = "100ms",
    backoff = "exponential",
    jitter = false
)]
async fn exponential(flaky: &Arc<Flaky>) -> Result<u64, TaskError> {
    flaky.attempt()
}

#[task(
    retries = 4,
    retry_delay = "100ms",
    max_delay = "250ms",
    jitter = false
)]
async fn capped(flaky: &Arc<Flaky>) -> Result<u64, TaskError> {
    flaky.attempt()
}

#[task(retries = 5, retry_delay = "1s", backoff = "fixed")]
async fn jittered(flaky: &Arc<Flaky>) -> Result<u64, TaskError> {
    flaky.attempt()
}

/// A CPU task retries too: its delay waits on tokio's timer, not on a rayon thread.
#[task(retries = 2, retry_delay = "100ms", backoff = "fixed", jitter = false)]
fn fixed_cpu(flaky: &Arc<Flaky>) -> Result<u64, TaskError> {
    flaky.attempt()
}

workflow! {
    fn retry_fixed(flaky: Arc<Flaky>) -> u64 { fixed(&flaky) }
}
workflow! {
    fn retry_linear(flaky: Arc<Flaky>) -> u64 { linear(&flaky) }
}
workflow! {
    fn retry_exponential(flaky: Arc<Flaky>) -> u64 { exponential(&flaky) }
}
workflow! {
    fn retry_capped(flaky: Arc<Flaky>) -> u64 { capped(&flaky) }
}
workflow! {
    fn retry_jittered(flaky: Arc<Flaky>) -> u64 { jittered(&flaky) }
}
workflow! {
    fn retry_cpu(flaky: Arc<Flaky>) -> u64 { fixed_cpu(&flaky) }
}

#[tokio::test(start_paused = true)]
async fn failing_twice_with_two_retries_succeeds_on_the_third_attempt() {
    let flaky = Flaky::failing(2);
    let RunOutcome { result, report, .. } =
        retry_fixed::workflow().runner().run((flaky.clone(),)).await;
    assert_eq!(result.unwrap(), 3, "the third attempt's value");
    assert_eq!(flaky.gaps_ms(), [100, 100]);
    let task = report.task("fixed").unwrap();
    assert_eq!(task.status, TaskStatus::Succeeded);
    assert_eq!(task.attempts.len(), 3);
    assert_eq!(task.attempts[0].error.as_deref(), Some("attempt 1 failed"));
    assert_eq!(task.attempts[1].error.as_deref(), Some("attempt 2 failed"));
    assert_eq!(task.attempts[2].error, None);
}

#[tokio::test(start_paused = true)]
async fn delays_follow_the_backoff_and_its_cap() {
    let flaky = Flaky::failing(3);
    retry_linear(flaky.clone()).await.unwrap();
    assert_eq!(flaky.gaps_ms(), [100, 200, 300]);

    let flaky = Flaky::failing(3);
    retry_exponential(flaky.clone()).await.unwrap();
    assert_eq!(flaky.gaps_ms(), [100, 200, 400]);

    let flaky = Flaky::failing(4);
    retry_capped(flaky.clone()).await.unwrap();
    assert_eq!(flaky.gaps_ms(), [100, 200, 250, 250]);
}

/// Real time: a CPU task records its attempts on rayon threads, outside tokio's
/// paused clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_task_retries_after_its_delay() {
    let flaky = Flaky::failing(2);
    assert_eq!(retry_cpu(flaky.clone()).await.unwrap(), 3);
    let gaps = flaky.gaps_ms();
    assert_eq!(gaps.len(), 2);
    assert!(gaps.iter().all(|ms| (100..250).contains(ms)), "{gaps:?}");
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_each_delay_over_its_upper_half() {
    let flaky = Flaky::failing(5);
    retry_jittered(flaky.clone()).await.unwrap();
    let gaps = flaky.gaps_ms();
    assert_eq!(gaps.len(), 5);
    assert!(gaps.iter().all(|ms| (500..=1000).contains(ms)), "{gaps:?}");
    assert!(
        gaps.windows(2).any(|w| w[0] != w[1]),
        "jittered delays differ: {gaps:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_last_error_is_reported_with_the_attempt_count() {
    let flaky = Flaky::failing(10);
    let error = retry_fixed(flaky.clone()).await.unwrap_err();
    assert_eq!(
        flaky.starts.lock().unwrap().len(),
        3,
        "retries = 2: three attempts, no more"
    );
    assert_eq!(
        error.to_string(),
        "workflow `retry_fixed` failed: task `fixed` failed after 3 attempts: attempt 3 failed"
    );
    assert_eq!(error.failures()[0].attempts, 3);
}

#[derive(Debug)]
struct NotFound;
impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no such product")
    }
}
impl std::error::Error for NotFound {}

#[task(retries = 3, retry_delay = "10ms")]
async fn lookup(calls: &Arc<AtomicUsize>) -> Result<u64, TaskError> {
    calls.fetch_add(1, Ordering::SeqCst);
    Err(TaskError::permanent(NotFound))
}

workflow! {
    fn permanent(calls: Arc<AtomicUsize>) -> u64 { lookup(&calls) }
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_is_not_retried() {
    let calls = Arc::new(AtomicUsize::new(0));
    let error = permanent(calls.clone()).await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let failure = &error.failures()[0];
    assert!(failure.error.is_permanent());
    assert!(
        failure.error.downcast_ref::<NotFound>().is_some(),
        "the typed error survives"
    );
}

#[task(retries = 1, retry_delay = "10ms", jitter = false, timeout = "100ms")]
async fn slow_then_fast(starts: &Arc<AtomicUsize>) -> u64 {
    if starts.fetch_add(1, Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    7
}

#[task(timeout = "100ms")]
async fn always_slow() -> u64 {
    tokio::time::sleep(Duration::from_secs(10)).await;
    7
}

workflow! {
    fn timeouts(starts: Arc<AtomicUsize>) -> u64 {
        let recovered = slow_then_fast(&starts);
        recovered
    }
}
workflow! {
    fn timing_out() -> u64 { always_slow() }
}

#[tokio::test(start_paused = true)]
async fn a_timeout_bounds_each_attempt_and_a_retry_can_recover() {
    let started = Instant::now();
    let RunOutcome { result, report, .. } = timeouts::workflow()
        .runner()
        .run((Arc::new(AtomicUsize::new(0)),))
        .await;
    assert_eq!(result.unwrap(), 7);
    let task = report.task("recovered").unwrap();
    assert_eq!(task.attempts.len(), 2);
    assert_eq!(
        task.attempts[0].error.as_deref(),
        Some("timed out after 100ms")
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(110),
        "100 ms timeout, 10 ms delay"
    );

    let RunOutcome { result, report, .. } = timing_out::workflow().runner().run(()).await;
    assert!(
        result
            .unwrap_err()
            .to_string()
            .contains("timed out after 100ms")
    );
    assert_eq!(
        report.task("always_slow").unwrap().status,
        TaskStatus::TimedOut
    );
}

#[task(timeout = "50ms")]
fn cooperative(saw_cancel: &Arc<AtomicUsize>) -> u64 {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if aqueduct::task::cancelled() {
            saw_cancel.fetch_add(1, Ordering::SeqCst);
            return 0;
        }
        std::hint::spin_loop();
    }
    1
}

workflow! {
    fn cpu_timeout(saw_cancel: Arc<AtomicUsize>) -> u64 { cooperative(&saw_cancel) }
}

/// Real time: a CPU task cannot be preempted, so it is abandoned at its timeout and
/// told to stop through `aqueduct::task::cancelled()`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_task_past_its_timeout_is_abandoned_and_told_to_stop() {
    let saw_cancel = Arc::new(AtomicUsize::new(0));
    let started = std::time::Instant::now();
    let RunOutcome { result, report, .. } = cpu_timeout::workflow()
        .runner()
        .run((saw_cancel.clone(),))
        .await;
    let error = result.unwrap_err().to_string();
    assert!(error.contains("timed out after 50ms"), "{error}");
    assert_eq!(
        report.task("cooperative").unwrap().status,
        TaskStatus::TimedOut
    );
    assert_eq!(
        saw_cancel.load(Ordering::SeqCst),
        1,
        "the task saw the signal and stopped"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[task(retries = 2, retry_delay = "10ms")]
fn buggy(calls: &Arc<AtomicUsize>) -> u64 {
    calls.fetch_add(1, Ordering::SeqCst);
    panic!("index out of bounds")
}

#[task(retries = 2, retry_delay = "10ms", retry_panics = true)]
fn buggy_but_retried(calls: &Arc<AtomicUsize>) -> u64 {
    calls.fetch_add(1, Ordering::SeqCst);
    panic!("index out of bounds")
}

workflow! {
    fn panics(calls: Arc<AtomicUsize>) -> u64 { buggy(&calls) }
}
workflow! {
    fn retried_panics(calls: Arc<AtomicUsize>) -> u64 { buggy_but_retried(&calls) }
}

#[tokio::test]
async fn panics_are_failures_retried_only_when_the_policy_says_so() {
    let calls = Arc::new(AtomicUsize::new(0));
    let error = panics(calls.clone()).await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(
        error.to_string().contains("panicked: index out of bounds"),
        "{error}"
    );
    assert!(error.failures()[0].error.is_panic());

    let calls = Arc::new(AtomicUsize::new(0));
    retried_panics(calls.clone()).await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// Counts running instances; a drop before the end counts as dropped.
#[derive(Default)]
struct Tracker {
    running: AtomicUsize,
    finished: AtomicUsize,
    dropped: AtomicUsize,
}

struct Running<'a>(&'a Tracker, bool);

impl<'a> Running<'a> {
    fn start(tracker: &'a Tracker) -> Self {
        tracker.running.fetch_add(1, Ordering::SeqCst);
        Self(tracker, false)
    }
    fn finish(mut self) {
        self.1 = true;
        self.0.finished.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        if !self.1 {
            self.0.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[task]
async fn slow(tracker: &Arc<Tracker>) -> u64 {
    let running = Running::start(tracker);
    tokio::time::sleep(Duration::from_secs(60)).await;
    running.finish();
    1
}

#[task]
async fn broken(_tracker: &Arc<Tracker>) -> Result<u64, TaskError> {
    tokio::time::sleep(Duration::from_millis(10)).await;
    Err(TaskError::msg("disk full"))
}

#[task]
fn after(x: &u64) -> u64 {
    *x
}

#[task]
fn sum(a: &u64, b: &u64) -> u64 {
    a + b
}

workflow! {
    fn two_branches(tracker: Arc<Tracker>) -> u64 {
        let long = slow(&tracker);
        let bad = broken(&tracker);
        let later = after(&long);
        sum(&later, &bad)
    }
}

#[tokio::test(start_paused = true)]
async fn by_default_independent_branches_finish_after_a_failure() {
    let tracker = Arc::new(Tracker::default());
    let RunOutcome { result, report, .. } = two_branches::workflow()
        .runner()
        .run((tracker.clone(),))
        .await;
    assert!(result.is_err());
    assert_eq!(tracker.finished.load(Ordering::SeqCst), 1);
    assert_eq!(report.task("later").unwrap().status, TaskStatus::Succeeded);
    assert_eq!(report.task("sum").unwrap().status, TaskStatus::Skipped);
}

#[tokio::test(start_paused = true)]
async fn fail_fast_stops_the_run_at_the_first_failure() {
    let tracker = Arc::new(Tracker::default());
    let started = Instant::now();
    let RunOutcome { result, report, .. } = two_branches::workflow()
        .runner()
        .fail_fast(true)
        .run((tracker.clone(),))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "it did not wait for the slow branch"
    );
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("task `bad` (`broken`) failed: disk full"),
        "{message}"
    );
    assert_eq!(
        tracker.dropped.load(Ordering::SeqCst),
        1,
        "the running async task was dropped"
    );
    assert_eq!(
        tracker.running.load(Ordering::SeqCst),
        0,
        "no task left running"
    );
    assert_eq!(report.task("long").unwrap().status, TaskStatus::Cancelled);
    assert_eq!(report.task("later").unwrap().status, TaskStatus::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn a_cancel_handle_stops_the_run_and_leaves_no_task_running() {
    let tracker = Arc::new(Tracker::default());
    let runner = two_branches::workflow().runner();
    let cancel = runner.cancel_handle();
    let run = tokio::spawn(runner.run((tracker.clone(),)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(tracker.running.load(Ordering::SeqCst), 1);
    cancel.cancel();
    let RunOutcome { result, report, .. } = run.await.unwrap();
    assert_eq!(tracker.running.load(Ordering::SeqCst), 0);
    assert_eq!(tracker.dropped.load(Ordering::SeqCst), 1);
    // `bad` had already failed; the error names it, and the slow branch is cancelled.
    assert!(result.is_err());
    assert_eq!(report.task("long").unwrap().status, TaskStatus::Cancelled);
}

workflow! {
    fn only_slow(tracker: Arc<Tracker>) -> u64 {
        let long = slow(&tracker);
        after(&long)
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_run_says_so() {
    let tracker = Arc::new(Tracker::default());
    let runner = only_slow::workflow().runner();
    let cancel = runner.cancel_handle();
    let run = tokio::spawn(runner.run((tracker.clone(),)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    cancel.cancel();
    let error = run.await.unwrap().result.unwrap_err();
    assert!(
        matches!(error, aqueduct::Error::Cancelled { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "workflow `only_slow` was cancelled; unfinished: long, after"
    );
    assert_eq!(tracker.running.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_run_future_cancels_the_run() {
    let tracker = Arc::new(Tracker::default());
    let run = tokio::spawn(only_slow(tracker.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(tracker.running.load(Ordering::SeqCst), 1);
    run.abort();
    let _ = run.await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(
        tracker.running.load(Ordering::SeqCst),
        0,
        "the slow task was dropped"
    );
    assert_eq!(tracker.dropped.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_run_timeout_stops_the_run() {
    let tracker = Arc::new(Tracker::default());
    let started = Instant::now();
    let RunOutcome { result, .. } = only_slow::workflow()
        .runner()
        .timeout(Duration::from_secs(5))
        .run((tracker.clone(),))
        .await;
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    let error = result.unwrap_err();
    assert_eq!(
        error.to_string(),
        "workflow `only_slow` timed out after 5s; unfinished: long, after"
    );
    assert_eq!(tracker.running.load(Ordering::SeqCst), 0);
}

/// What a cleanup task saw.
#[derive(Debug, PartialEq)]
struct Seen {
    report: String,
    notified: String,
}

fn describe(outcome: &Outcome<u64>) -> String {
    match outcome {
        Outcome::Ok(value) => format!("ok {value}"),
        Outcome::Failed(error) => format!("failed: {error}"),
        Outcome::Skipped => "skipped".into(),
    }
}

#[task]
async fn publish(x: &u64) -> u64 {
    *x
}

#[task]
async fn notify(_x: &u64) -> Result<u64, TaskError> {
    Err(TaskError::msg("smtp refused"))
}

#[task]
fn cleanup(
    report: &Outcome<u64>,
    notified: &Outcome<u64>,
    log: &Arc<Mutex<Option<Seen>>>,
) -> usize {
    *log.lock().unwrap() = Some(Seen {
        report: describe(report),
        notified: describe(notified),
    });
    1
}

workflow! {
    fn with_cleanup(x: u64, log: Arc<Mutex<Option<Seen>>>) -> usize {
        let report = publish(&x);
        let sent = notify(&x);
        let after_sent = after(&sent);
        cleanup(&report, &after_sent, &log)
    }
}

#[tokio::test]
async fn a_cleanup_task_runs_after_a_failure_and_sees_each_outcome() {
    let log = Arc::new(Mutex::new(None));
    let RunOutcome { result, report, .. } = with_cleanup::workflow()
        .runner()
        .run((3, log.clone()))
        .await;
    assert_eq!(
        log.lock().unwrap().take(),
        Some(Seen {
            report: "ok 3".into(),
            notified: "skipped".into(),
        })
    );
    assert_eq!(
        report.task("cleanup").unwrap().status,
        TaskStatus::Succeeded
    );
    assert_eq!(
        report.task("after_sent").unwrap().status,
        TaskStatus::Skipped
    );
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("task `sent` (`notify`) failed: smtp refused"),
        "the run still fails: {message}"
    );
}

workflow! {
    fn cleanup_sees_failure(x: u64, log: Arc<Mutex<Option<Seen>>>) -> usize {
        let report = publish(&x);
        let sent = notify(&x);
        cleanup(&report, &sent, &log)
    }
}

#[tokio::test]
async fn a_cleanup_task_receives_the_failure_itself() {
    let log = Arc::new(Mutex::new(None));
    let _ = cleanup_sees_failure(3, log.clone()).await;
    let seen = log.lock().unwrap().take().unwrap();
    assert_eq!(seen.notified, "failed: smtp refused");
    let graph = cleanup_sees_failure::workflow().graph();
    assert!(
        graph.to_mermaid().contains("-.->"),
        "outcome edges are dashed"
    );
}
