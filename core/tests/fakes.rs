//! Test fakes (`aqueduct::fake`): a workflow built with `with_fakes` calls each faked
//! task's fake wherever it calls the task (top level, `for` bodies on every path,
//! branches, sub-workflows), keeps the task's options, never touches the cache, and
//! leaves the workflow itself and its other runs untouched.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aqueduct::prelude::*;
use aqueduct::{RunOutcome, TaskStatus};

#[cfg(feature = "sqlite")]
mod scratch;

#[task]
fn numbers(n: &u64) -> Vec<u64> {
    (1..=*n).collect()
}

#[task]
fn double(x: &u64) -> u64 {
    x * 2
}

#[task]
async fn lookup(x: &u64) -> Result<u64, std::io::Error> {
    Ok(x + 1)
}

#[task]
fn sum(values: &[u64]) -> u64 {
    values.iter().sum()
}

#[task]
fn add(a: &u64, b: &u64) -> u64 {
    a + b
}

workflow! {
    fn top(seed: u64) -> u64 {
        let a = double(&seed);
        let b = lookup(&a);
        add(&a, &b)
    }
}

#[test]
fn a_cpu_and_an_io_task_are_replaced_and_the_workflow_itself_is_not() {
    let faked = top::with_fakes([
        double::fake(|x| x * 100),
        lookup::fake(|x| {
            let x = *x;
            async move { Ok(x + 7) }
        }),
    ])
    .unwrap();
    assert_eq!(faked.run_blocking((3,)).unwrap(), 300 + 307);
    assert_eq!(top::workflow().run_blocking((3,)).unwrap(), 6 + 7);
    // Built anew each time, from the same fakes' constructors.
    let only_double = top::with_fakes([double::fake(|_| 1)]).unwrap();
    assert_eq!(only_double.run_blocking((3,)).unwrap(), 1 + 2);
}

workflow! {
    fn fan(n: u64) -> u64 {
        let items = numbers(&n);
        let doubled = for x in &items {
            let d = double(x);
            add(&d, &n)
        };
        sum(&doubled)
    }
}

workflow! {
    /// An IO task in the body: its items are scheduled one by one.
    fn fan_io(n: u64) -> u64 {
        let items = numbers(&n);
        let looked = for x in &items {
            let d = double(x);
            lookup(&d)
        };
        sum(&looked)
    }
}

#[test]
fn a_fake_reaches_every_item_of_a_for_body_on_every_path() {
    // 1..=4 doubled is 20, plus n for each of the four items.
    assert_eq!(fan::workflow().run_blocking((4,)).unwrap(), 20 + 16);
    let faked = fan::with_fakes([double::fake(|x| x * 10)]).unwrap();
    // The typed chain, the fused path (with every item's row) and the scheduled
    // path (a body with an IO task) all call the fake.
    assert_eq!(faked.run_blocking((4,)).unwrap(), 100 + 16);
    let scheduled = fan_io::with_fakes([double::fake(|x| x * 10)]).unwrap();
    assert_eq!(scheduled.run_blocking((4,)).unwrap(), 100 + 4);
    assert_eq!(fan_io::workflow().run_blocking((4,)).unwrap(), 20 + 4);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let RunOutcome { result, report, .. } = rt.block_on(faked.runner().item_rows(true).run((4,)));
    assert_eq!(result.unwrap(), 100 + 16);
    assert!(
        report
            .tasks
            .iter()
            .filter(|t| t.node.ends_with(".d"))
            .all(|t| t.status == TaskStatus::Succeeded),
        "{report}"
    );
}

workflow! {
    fn inner(x: u64) -> u64 {
        let d = double(&x);
        lookup(&d)
    }
}

workflow! {
    fn outer(x: u64) -> u64 {
        let y = inner(&x).await;
        let z = if y > 10 {
            double(&y)
        } else {
            add(&y, &x)
        };
        z
    }
}

#[test]
fn the_graph_and_the_report_mark_the_nodes_that_call_a_fake() {
    let faked = top::with_fakes([double::fake(|x| x + 1)]).unwrap();
    let graph = faked.graph();
    let fakes: Vec<(&str, bool)> = graph.nodes().map(|n| (n.name(), n.is_fake())).collect();
    assert_eq!(
        fakes,
        [("seed", false), ("a", true), ("b", false), ("add", false)]
    );
    assert!(
        graph.to_mermaid().contains("a = double (fake)"),
        "{}",
        graph.to_mermaid()
    );
    let json = serde_json::to_value(graph).unwrap();
    assert_eq!(json["nodes"][1]["fake"], true);
    assert!(json["nodes"][2].get("fake").is_none(), "only fakes say so");
    assert!(!top::workflow().graph().nodes().any(|n| n.is_fake()));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let RunOutcome { result, report, .. } = rt.block_on(faked.runner().run((3,)));
    assert_eq!(result.unwrap(), 4 + 5);
    let rows: Vec<(&str, bool)> = report
        .tasks
        .iter()
        .map(|t| (t.node.as_str(), t.fake))
        .collect();
    assert_eq!(rows, [("a", true), ("b", false), ("add", false)]);
    assert!(report.to_string().contains("double (fake)"), "{report}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["tasks"][0]["fake"], true);
    assert!(json["tasks"][1].get("fake").is_none());
}

#[test]
fn a_fake_reaches_sub_workflows_and_branch_arms() {
    // 3 → 6 → 7, and 7 is not over 10: 7 + 3.
    assert_eq!(outer::workflow().run_blocking((3,)).unwrap(), 10);
    let faked = outer::with_fakes([double::fake(|x| x * 10)]).unwrap();
    // 3 → 30 → 31, over 10: 310.
    assert_eq!(faked.run_blocking((3,)).unwrap(), 310);
    // The sub-workflow itself is untouched.
    assert_eq!(inner::workflow().run_blocking((3,)).unwrap(), 7);
}

#[test]
fn a_fake_of_a_task_the_workflow_does_not_call_or_two_of_one_task_are_refused() {
    let error = top::with_fakes([sum::fake(|_| 0)]).unwrap_err();
    assert!(
        matches!(&error, Error::BadFake { workflow, task: "sum", .. } if workflow == "top"),
        "{error:?}"
    );
    assert!(error.to_string().contains("no node"), "{error}");
    let error = top::with_fakes([double::fake(|_| 0), double::fake(|_| 1)]).unwrap_err();
    assert!(error.to_string().contains("faked twice"), "{error}");
}

static FLAKY_CALLS: AtomicUsize = AtomicUsize::new(0);

#[task(retries = 2)]
fn flaky(x: &u64) -> Result<u64, String> {
    Ok(*x)
}

workflow! {
    fn retried(x: u64) -> u64 {
        flaky(&x)
    }
}

#[test]
fn a_faked_task_keeps_its_retries_and_a_panicking_fake_is_a_task_failure() {
    let faked = retried::with_fakes([flaky::fake(|x| {
        match FLAKY_CALLS.fetch_add(1, Ordering::SeqCst) {
            0 => Err("first attempt fails".to_owned()),
            _ => Ok(x + 1),
        }
    })])
    .unwrap();
    assert_eq!(faked.run_blocking((5,)).unwrap(), 6);
    assert_eq!(FLAKY_CALLS.load(Ordering::SeqCst), 2);

    let panics = retried::with_fakes([flaky::fake(|_| panic!("the fake panics"))]).unwrap();
    match panics.run_blocking((5,)) {
        Err(Error::Failed { failures, .. }) => {
            assert_eq!(failures.len(), 1);
            assert!(failures[0].error.to_string().contains("the fake panics"));
        }
        other => panic!("expected the task to fail, got {other:?}"),
    }
}

static PATIENT_CALLS: AtomicUsize = AtomicUsize::new(0);

#[task(retries = 2, retry_delay = "10s")]
fn patient(x: &u64) -> Result<u64, String> {
    Ok(*x)
}

workflow! {
    fn waits(x: u64) -> u64 {
        patient(&x)
    }
}

#[test]
fn a_fake_without_retry_delays_retries_at_once() {
    let faked = waits::with_fakes([patient::fake(|x| {
        match PATIENT_CALLS.fetch_add(1, Ordering::SeqCst) {
            0 | 1 => Err("not yet".to_owned()),
            _ => Ok(x * 2),
        }
    })
    .without_retry_delays()])
    .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(faked.run_blocking((4,)).unwrap(), 8);
    assert_eq!(PATIENT_CALLS.load(Ordering::SeqCst), 3, "both retries ran");
    // Two retries of the task's own delay would take 20 s and more.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[task]
fn pairs(n: &u64) -> Vec<(u64, u64)> {
    (0..*n).map(|i| (i, i * i)).collect()
}

/// A parameter that is a pattern: the fake still gets the whole input.
#[task]
fn spread(&(low, high): &(u64, u64)) -> u64 {
    high - low
}

workflow! {
    fn spreads(n: u64) -> u64 {
        let ps = pairs(&n);
        let each = for p in &ps {
            spread(p)
        };
        sum(&each)
    }
}

#[test]
fn a_task_whose_parameter_is_a_pattern_runs_and_fakes() {
    // (0,0) (1,1) (2,4) (3,9): 0 + 0 + 2 + 6.
    assert_eq!(spreads::workflow().run_blocking((4,)).unwrap(), 8);
    let faked = spreads::with_fakes([spread::fake(|(low, high)| low + high)]).unwrap();
    assert_eq!(faked.run_blocking((4,)).unwrap(), 6 + 14);
}

workflow! {
    fn wide(n: u64) -> u64 {
        let items = numbers(&n);
        let doubled = for x in &items {
            double(x)
        };
        sum(&doubled)
    }
}

#[test]
fn faked_and_real_runs_at_the_same_time_do_not_mix() {
    let faked = Arc::new(wide::with_fakes([double::fake(|x| x * 3)]).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let n = 20_000u64;
    let total: u64 = (1..=n).sum();
    rt.block_on(async {
        let mut runs = Vec::new();
        for i in 0..8 {
            let faked = Arc::clone(&faked);
            runs.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    (2, wide::workflow().run((n,)).await.unwrap())
                } else {
                    (3, faked.run((n,)).await.unwrap())
                }
            }));
        }
        for run in runs {
            let (by, got) = run.await.unwrap();
            assert_eq!(got, by * total);
        }
    });
}

#[test]
fn a_task_called_outside_a_workflow_runs_its_body() {
    let _faked = top::with_fakes([double::fake(|_| 0)]).unwrap();
    assert_eq!(double(&4), 8);
}

#[cfg(feature = "sqlite")]
mod stored {
    use super::*;
    use aqueduct::store::{SqliteStore, Store};

    use crate::scratch;

    static PRICED: AtomicUsize = AtomicUsize::new(0);

    #[task(cache)]
    fn price(x: &u64) -> u64 {
        PRICED.fetch_add(1, Ordering::SeqCst);
        x * 10
    }

    workflow! {
        #[durable]
        fn shop(x: u64) -> u64 {
            price(&x)
        }
    }

    #[tokio::test]
    async fn a_faked_task_neither_reads_nor_writes_the_cache_and_runs_do_not_cross() {
        let dir = scratch::TempDir::new("fakes-stored");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.db()).unwrap());
        let faked = shop::with_fakes([price::fake(|_| 1)]).unwrap();
        let run = |wf: &Workflow<(u64,), u64>, id: &str| {
            wf.runner()
                .cache(Arc::clone(&store))
                .store(Arc::clone(&store))
                .run_id(id)
                .run((3,))
        };
        assert_eq!(run(&faked, "fake-1").await.result.unwrap(), 1);
        // The fake's result was not saved as the task's: the real run computes it.
        assert_eq!(run(shop::workflow(), "real-1").await.result.unwrap(), 30);
        assert_eq!(PRICED.load(Ordering::SeqCst), 1);
        // And the task's saved result is not the fake's.
        assert_eq!(run(&faked, "fake-2").await.result.unwrap(), 1);
        assert_eq!(run(shop::workflow(), "real-2").await.result.unwrap(), 30);
        assert_eq!(
            PRICED.load(Ordering::SeqCst),
            1,
            "the real runs share the cache"
        );

        // A faked run is not the real workflow's: neither takes the other's run id.
        let refused = run(shop::workflow(), "fake-1").await.result.unwrap_err();
        assert!(
            matches!(refused, Error::FingerprintMismatch { .. }),
            "{refused:?}"
        );
        assert!(
            refused.to_string().contains("built with fakes of price"),
            "{refused}"
        );
        let refused = run(&faked, "real-1").await.result.unwrap_err();
        assert!(
            matches!(refused, Error::FingerprintMismatch { .. }),
            "{refused:?}"
        );
    }
}

#[task]
fn triple(x: &u64) -> u64 {
    x * 3
}

#[task]
async fn bump(x: &u64) -> Result<u64, std::io::Error> {
    Ok(x + 1)
}

workflow! {
    fn spied(x: u64) -> u64 {
        let a = triple(&x);
        bump(&a)
    }
}

#[test]
fn a_fake_may_call_the_task_it_replaces() {
    let (cpu_calls, io_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (cpu_seen, io_seen) = (Arc::clone(&cpu_calls), Arc::clone(&io_calls));
    let spy = spied::with_fakes([
        triple::fake(move |x| {
            cpu_seen.fetch_add(1, Ordering::SeqCst);
            triple(x)
        }),
        bump::fake(move |x| {
            io_seen.fetch_add(1, Ordering::SeqCst);
            let x = *x;
            async move { bump(&x).await }
        }),
    ])
    .unwrap();
    assert_eq!(spy.run_blocking((3,)).unwrap(), 10);
    assert_eq!(cpu_calls.load(Ordering::SeqCst), 1);
    assert_eq!(io_calls.load(Ordering::SeqCst), 1);
}

#[test]
fn rayon_work_stolen_while_a_fake_runs_calls_the_real_task() {
    use rayon::prelude::*;
    // The fake waits on rayon work of its own, so its thread steals other jobs.
    let faked = Arc::new(
        spied::with_fakes([triple::fake(|x| {
            let (a, b) = rayon::join(
                || std::thread::sleep(std::time::Duration::from_millis(1)),
                || std::thread::sleep(std::time::Duration::from_millis(1)),
            );
            let ((), ()) = (a, b);
            x * 1_000
        })])
        .unwrap(),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let runs = {
        let (faked, stop) = (Arc::clone(&faked), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(faked.run_blocking((1,)).unwrap(), 1_001);
            }
        })
    };
    let mut wrong = 0;
    for _ in 0..100 {
        wrong += (0..2_000u64)
            .into_par_iter()
            .filter(|i| triple(i) != i * 3)
            .count();
    }
    stop.store(true, Ordering::Relaxed);
    runs.join().unwrap();
    assert_eq!(
        wrong, 0,
        "direct calls of the real task got the fake's value"
    );
}
