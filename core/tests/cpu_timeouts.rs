//! CPU tasks with a timeout: a supervised attempt on rayon whose clock starts when it
//! starts, and which keeps its task's concurrency permit until it really returns.
//! A binary of its own: these tests keep rayon's threads busy on purpose.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aqueduct::RunOutcome;
use aqueduct::prelude::*;

mod gauge;
use gauge::Gauge;

#[task]
fn sum6(a: &u64, b: &u64, c: &u64, d: &u64, e: &u64, f: &u64) -> u64 {
    a + b + c + d + e + f
}

#[task]
fn hog(ms: &u64) -> u64 {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(*ms) {
        std::hint::spin_loop();
    }
    *ms
}

#[task(timeout = "100ms")]
fn quick_with_timeout(ms: &u64) -> u64 {
    *ms + 1
}

#[task]
fn add5(a: &u64, b: &u64, c: &u64, d: &u64, e: &u64) -> u64 {
    a + b + c + d + e
}

workflow! {
    fn queued_behind_hogs(ms: u64) -> u64 {
        let a = hog(&ms);
        let b = hog(&ms);
        let c = hog(&ms);
        let d = hog(&ms);
        let quick = quick_with_timeout(&ms);
        add5(&a, &b, &c, &d, &quick)
    }
}

/// Issue 9, finding 6: a CPU task's timeout counts from when its attempt starts on
/// rayon, not while it waits behind other CPU work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_timeout_does_not_count_time_spent_queued() {
    let RunOutcome { result, report, .. } =
        queued_behind_hogs::workflow().runner().run((250,)).await;
    assert_eq!(result.unwrap(), 4 * 250 + 251, "{report}");
}

#[derive(Default)]
struct Peak(Gauge);

#[task(concurrency = 1, timeout = "30ms")]
fn exclusive_only(peak: &Arc<Peak>) -> u64 {
    peak.0.enter();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(80) {
        std::hint::spin_loop();
    }
    peak.0.leave();
    1
}

workflow! {
    fn exclusive_timeouts(peak: Arc<Peak>) -> u64 {
        let a = exclusive_only(&peak);
        let b = exclusive_only(&peak);
        let c = exclusive_only(&peak);
        sum6(&a, &b, &c, &a, &b, &c)
    }
}

/// Issue 9, finding 6: an abandoned CPU attempt (its time ran out) keeps its task's
/// permit until it returns, so the limit holds even for attempts that run late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_cpu_attempts_never_exceed_the_limit() {
    let peak = Arc::new(Peak::default());
    let _ = exclusive_timeouts::workflow()
        .runner()
        .run((peak.clone(),))
        .await;
    assert_eq!(peak.0.peak.load(Ordering::SeqCst), 1);
    assert_eq!(
        peak.0.now.load(Ordering::SeqCst),
        0,
        "every attempt returned"
    );
}
