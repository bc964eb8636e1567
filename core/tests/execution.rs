//! How a workflow runs: parallelism, pools, sharing, failures, reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aqueduct::TaskStatus;
use aqueduct::prelude::*;

mod common;

#[derive(Debug)]
struct Boom(&'static str);
impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "boom: {}", self.0)
    }
}
impl std::error::Error for Boom {}

mod overlap {
    use super::*;

    #[task]
    async fn load(n: &u64) -> u64 {
        *n
    }

    #[task]
    async fn wait(n: &u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        *n
    }

    #[task]
    fn gather(a: &u64, b: &u64, c: &u64) -> u64 {
        a + b + c
    }

    workflow! {
        pub fn fan(n: u64) -> u64 {
            let start = load(&n);
            let a = wait(&start);
            let b = wait(&start);
            let c = wait(&start);
            gather(&a, &b, &c)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_tasks_overlap_in_time() {
    let aqueduct::RunOutcome {
        result: out,
        report,
        ..
    } = overlap::fan::workflow().runner().run((1,)).await;
    assert_eq!(out.unwrap(), 3);
    let window = |node: &str| {
        let t = report.task(node).unwrap();
        let start = t.started_at.unwrap();
        (start, start + t.duration)
    };
    let (a, b, c) = (window("a"), window("b"), window("c"));
    for (x, y) in [(a, b), (a, c), (b, c)] {
        assert!(
            x.0 < y.1 && y.0 < x.1,
            "{x:?} and {y:?} do not overlap\n{report}"
        );
    }
    // Three 150 ms waits at once: well under the 450 ms they take one after another.
    assert!(report.wall < Duration::from_millis(400), "{report}");
}

mod pools {
    use super::*;

    #[task]
    fn on_rayon(_: &()) -> Option<usize> {
        rayon::current_thread_index()
    }

    #[task]
    async fn on_tokio(_: &()) -> (bool, Option<usize>) {
        let runtime = tokio::runtime::Handle::try_current().is_ok();
        (runtime, rayon::current_thread_index())
    }

    #[task]
    fn both(
        cpu: &Option<usize>,
        io: &(bool, Option<usize>),
    ) -> (Option<usize>, bool, Option<usize>) {
        (*cpu, io.0, io.1)
    }

    workflow! {
        pub fn where_they_run(unit: ()) -> (Option<usize>, bool, Option<usize>) {
            let cpu = on_rayon(&unit);
            let io = on_tokio(&unit);
            both(&cpu, &io)
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn cpu_tasks_run_on_rayon_and_io_tasks_on_tokio() {
    let (cpu, io_has_runtime, io_rayon) = pools::where_they_run(()).await.unwrap();
    assert!(cpu.is_some(), "a plain fn task runs on a rayon thread");
    assert!(
        io_has_runtime,
        "an async task runs inside the tokio runtime"
    );
    assert_eq!(io_rayon, None, "an async task does not run on rayon");
}

mod sharing {
    use super::*;

    /// Deliberately not `Clone`: the runtime must share it by reference.
    pub(crate) struct Big {
        pub(crate) values: Vec<u64>,
        pub(crate) reads: AtomicUsize,
    }

    #[task]
    fn make(n: &usize) -> Big {
        Big {
            values: (0..*n as u64).collect(),
            reads: AtomicUsize::new(0),
        }
    }

    #[task]
    fn sum(big: &Big) -> (u64, usize) {
        big.reads.fetch_add(1, Ordering::SeqCst);
        (big.values.iter().sum(), big.values.as_ptr() as usize)
    }

    #[task]
    async fn count(big: &Big) -> (usize, usize) {
        big.reads.fetch_add(1, Ordering::SeqCst);
        (big.values.len(), big.values.as_ptr() as usize)
    }

    #[task]
    fn report(big: &Big, s: &(u64, usize), c: &(usize, usize)) -> (u64, usize, usize, bool) {
        let same = s.1 == c.1 && s.1 == big.values.as_ptr() as usize;
        (s.0, c.0, big.reads.load(Ordering::SeqCst), same)
    }

    workflow! {
        pub fn share(n: usize) -> (u64, usize, usize, bool) {
            let big = make(&n);
            let s = sum(&big);
            let c = count(&big);
            report(&big, &s, &c)
        }
    }
}

#[tokio::test]
async fn a_non_clone_output_is_read_in_place_by_every_reader() {
    let (sum, len, reads, same_allocation) = sharing::share(1000).await.unwrap();
    assert_eq!((sum, len, reads), (499_500, 1000, 2));
    assert!(
        same_allocation,
        "every reader saw the one value the producer made"
    );
}

mod failing {
    use super::*;

    #[task]
    fn fine(x: &u64) -> u64 {
        *x
    }

    #[task]
    async fn fail(_x: &u64) -> Result<u64, Boom> {
        Err(Boom("the disk is full"))
    }

    #[task]
    fn after(x: &u64) -> u64 {
        *x
    }

    #[task]
    async fn slow_side(x: &u64, done: &Arc<AtomicUsize>) -> u64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        done.fetch_add(1, Ordering::SeqCst);
        *x
    }

    #[task]
    fn join(a: &u64, b: &u64) -> u64 {
        a + b
    }

    workflow! {
        pub fn isolated(x: u64, done: Arc<AtomicUsize>) -> u64 {
            let start = fine(&x);
            let broken = fail(&start);
            let downstream = after(&broken);
            let side = slow_side(&start, &done);
            join(&downstream, &side)
        }
    }

    #[task]
    fn explode(_x: &u64) -> u64 {
        panic!("index out of range")
    }

    workflow! {
        pub fn panics(x: u64) -> u64 {
            let kept = fine(&x);
            let bad = explode(&x);
            join(&kept, &bad)
        }
    }
}

#[tokio::test]
async fn a_failed_task_names_itself_and_independent_branches_finish() {
    let done = Arc::new(AtomicUsize::new(0));
    let aqueduct::RunOutcome {
        result: out,
        report,
        ..
    } = failing::isolated::workflow()
        .runner()
        .run((1, done.clone()))
        .await;
    let error = out.unwrap_err();
    let message = error.to_string();
    assert!(message.contains("`broken`"), "{message}");
    assert!(message.contains("`fail`"), "{message}");
    assert!(message.contains("the disk is full"), "{message}");
    assert_eq!(error.failures().len(), 1);
    assert_eq!(error.failures()[0].node, "broken");

    assert_eq!(
        done.load(Ordering::SeqCst),
        1,
        "the independent branch ran to its end"
    );
    let status = |node: &str| report.task(node).unwrap().status;
    assert_eq!(status("side"), TaskStatus::Succeeded);
    assert_eq!(status("broken"), TaskStatus::Failed);
    assert_eq!(status("downstream"), TaskStatus::Skipped);
    assert_eq!(status("join"), TaskStatus::Skipped);
    assert!(
        message.contains("downstream") && message.contains("join"),
        "{message}"
    );
    assert_eq!(
        report.task("broken").unwrap().error.as_deref(),
        Some("boom: the disk is full")
    );
}

#[tokio::test]
async fn a_panicking_task_fails_without_crashing_the_process() {
    let aqueduct::RunOutcome {
        result: out,
        report,
        ..
    } = failing::panics::workflow().runner().run((7,)).await;
    let message = out.unwrap_err().to_string();
    assert!(
        message.contains("`bad` (`explode`) failed: panicked: index out of range"),
        "{message}"
    );
    assert_eq!(report.task("kept").unwrap().status, TaskStatus::Succeeded);
}

#[test]
fn running_outside_tokio_is_a_clear_error() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let mut run = std::pin::pin!(failing::panics(1));
    let Poll::Ready(Err(error)) = run.as_mut().poll(&mut Context::from_waker(Waker::noop())) else {
        panic!("expected an immediate error");
    };
    assert!(
        error
            .to_string()
            .contains("must run inside a tokio runtime"),
        "{error}"
    );
}

mod shapes {
    use super::*;

    #[task]
    fn one() -> u64 {
        1
    }

    workflow! {
        pub fn returns_param(x: String) -> String {
            let _ignored = one();
            x
        }
    }

    workflow! {
        pub fn no_params() -> u64 {
            one()
        }
    }
}

#[tokio::test]
async fn the_output_can_be_a_parameter_and_a_workflow_can_take_none() {
    assert_eq!(shapes::returns_param("kept".into()).await.unwrap(), "kept");
    assert_eq!(shapes::no_params().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_runs_many_times_and_concurrently() {
    let started = Instant::now();
    let runs: Vec<_> = (0..20u64).map(|i| tokio::spawn(overlap::fan(i))).collect();
    for (i, run) in runs.into_iter().enumerate() {
        assert_eq!(run.await.unwrap().unwrap(), 3 * i as u64);
    }
    // Twenty runs of three 150 ms waits, all at once.
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_report_measures_the_run() {
    let aqueduct::RunOutcome {
        result: out,
        report,
        ..
    } = common::cpu_heavy::workflow().runner().run((20,)).await;
    assert_eq!(out.unwrap(), 80);
    assert_eq!(report.tasks.len(), 5);
    assert!(
        report
            .tasks
            .iter()
            .all(|t| t.status == TaskStatus::Succeeded)
    );
    // Four tasks of 20 ms; the report's TSC clock and the tasks' own clock may differ
    // by a little.
    assert!(
        report.total_task_time() >= Duration::from_millis(70),
        "{report}"
    );
    assert_eq!(report.critical_path.len(), 2, "{report}");
    assert_eq!(
        report.critical_path.last().map(String::as_str),
        Some("total")
    );
    let table = report.to_string();
    assert!(
        table.contains("burn") && table.contains("speed-up") && table.contains("efficiency"),
        "{table}"
    );
    // Four 20 ms tasks on at most two cores, then a sum: well above one task at a time.
    let efficiency = report.parallel_efficiency();
    assert!(
        efficiency > 0.3 && efficiency <= 1.05,
        "{efficiency}\n{table}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["tasks"][0]["status"], "succeeded");
    assert_eq!(json["tasks"][0]["kind"], "cpu");
}
