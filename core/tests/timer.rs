//! CPU tasks never block the async runtime. Alone in its binary so that no other test's
//! CPU load muddies the measurement.

use std::time::{Duration, Instant};

mod common;

use common::cpu_heavy;

/// On a single-threaded runtime, any CPU work on the runtime's thread would stall the
/// timer for the whole 4 × 150 ms; on rayon it does not stall it at all.
#[tokio::test(flavor = "current_thread")]
async fn a_tokio_timer_keeps_firing_while_cpu_tasks_run() {
    let run = tokio::spawn(cpu_heavy(150));
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut latest = Instant::now();
    let mut worst = Duration::ZERO;
    while !run.is_finished() {
        ticker.tick().await;
        let now = Instant::now();
        worst = worst.max(now - latest);
        latest = now;
    }
    assert_eq!(run.await.unwrap().unwrap(), 600);
    assert!(
        worst < Duration::from_millis(60),
        "the timer stalled for {worst:?}"
    );
}
