//! Distributed runs (feature `postgres`) against a real server: workers in this
//! process claim, run and commit the tasks of submitted runs. (Worker processes killed
//! and stalled: `examples/tests/distributed.rs`.) Needs `DATABASE_URL`; see
//! `core/tests/postgres.rs`.
#![cfg(feature = "postgres")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aqueduct::dist::{Cluster, Worker, WorkerStats};
use aqueduct::graph::{Builder, Handle, Step};
use aqueduct::prelude::*;
use aqueduct::store::Store;
use aqueduct::task::TaskInfo;
use aqueduct::{Error, Kind};

#[path = "postgres/database.rs"]
mod database;
#[path = "postgres/workers.rs"]
mod running;
use database::{Database, off_runtime};

/// `width` tasks reading the parameter, each `x * i` (CPU and IO alternating, the IO
/// ones 5 ms each), then their sum: a run with `width + 1` tasks.
fn wide(width: usize) -> Workflow<(u64,), u64> {
    let (mut b, (x,)) = Builder::<(u64,)>::new("wide", ["x"]);
    b.durable(1);
    let mut parts: Vec<Handle<u64>> = Vec::new();
    for i in 0..width as u64 {
        let name = format!("part{i}");
        let part = if i % 2 == 0 {
            b.node(
                TaskInfo::new("times", Kind::Cpu),
                name,
                (x,),
                move |input| {
                    let (x,) = input.get();
                    Step::done(Ok(x * i))
                },
            )
        } else {
            b.node(
                TaskInfo::new("times_io", Kind::Io),
                name,
                (x,),
                move |input| {
                    let (x,) = input.get();
                    let x = *x;
                    Step::pending(async move {
                        // Long enough that one worker cannot drain the run before
                        // the other claims: both must do work.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        Ok(x * i)
                    })
                },
            )
        };
        b.checkpoint(part);
        parts.push(part);
    }
    let total = b.node(TaskInfo::new("sum", Kind::Cpu), "total", parts, |input| {
        Step::done(Ok(input.get().into_iter().sum()))
    });
    b.checkpoint(total);
    b.output(total)
}

async fn workers<P, O>(
    cluster: &Cluster,
    workflow: &'static Workflow<P, O>,
    count: usize,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<WorkerStats>>
where
    P: aqueduct::graph::Params + serde::de::DeserializeOwned,
    O: Send + Sync + 'static,
{
    let serve = |worker: Worker| {
        let worker = worker.serve(workflow).unwrap();
        worker.slots(4).lease(Duration::from_secs(2))
    };
    running::workers(cluster, serve, count, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_finish_a_run_and_each_does_work() {
    let Some(db) = Database::new("dist_wide") else {
        return;
    };
    let cluster = Cluster::connect(&db.url).unwrap();
    static WIDE: std::sync::OnceLock<Workflow<(u64,), u64>> = std::sync::OnceLock::new();
    let workflow = WIDE.get_or_init(|| wide(200));
    let expected = workflow.run((3,)).await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = workers(&cluster, workflow, 2, &stopped).await;
    cluster.submit(workflow, "wide-1", (3,)).await.unwrap();
    // Submitting the same run again is the same run.
    cluster.submit(workflow, "wide-1", (3,)).await.unwrap();
    let changed = cluster.submit(workflow, "wide-1", (4,)).await.unwrap_err();
    assert!(matches!(changed, Error::InputChanged { .. }), "{changed}");
    let output = tokio::time::timeout(Duration::from_secs(60), cluster.wait(workflow, "wide-1"))
        .await
        .expect("the run ends")
        .unwrap();
    assert_eq!(output, expected);
    stop.send(true).unwrap();
    let mut committed = 0;
    for worker in running {
        let stats = worker.await.unwrap();
        assert!(stats.committed > 0, "every worker did work: {stats:?}");
        assert_eq!(stats.lost, 0);
        committed += stats.committed;
    }
    assert_eq!(committed, 201, "each task's end committed once");
    let status = cluster.status("wide-1").await.unwrap().unwrap();
    assert_eq!(status.status, "succeeded");
    assert!(
        status
            .tasks
            .iter()
            .all(|t| t.state == "done" && t.workers.len() == 1)
    );
}

static FLAKY: AtomicUsize = AtomicUsize::new(0);

/// The attempts tasks saw themselves run as (`dist::current_attempt`).
static SEEN: std::sync::Mutex<Vec<aqueduct::dist::AttemptId>> = std::sync::Mutex::new(Vec::new());

fn seen() {
    let id = aqueduct::dist::current_attempt().expect("a worker runs the task");
    SEEN.lock().unwrap().push(id);
}

#[task(retries = 2, retry_delay = "10ms")]
fn flaky(x: &u64) -> Result<u64, TaskError> {
    seen();
    if FLAKY.fetch_add(1, Ordering::SeqCst) < 2 {
        return Err(TaskError::msg("not yet"));
    }
    Ok(x + 1)
}

#[task]
fn broken(_x: &u64) -> Result<u64, TaskError> {
    Err(TaskError::permanent(TaskError::msg("the disk is full")))
}

#[task]
fn after(x: &u64) -> u64 {
    x * 2
}

#[task]
async fn report(fixed: &u64, broken: &Outcome<u64>) -> String {
    tokio::task::yield_now().await;
    seen();
    format!(
        "{fixed} {}",
        if broken.value().is_some() {
            "ok"
        } else {
            "failed"
        }
    )
}

workflow! {
    #[durable]
    fn mixed(x: u64) -> String {
        let fixed = flaky(&x);
        let b = broken(&x);
        let skipped = after(&b);
        report(&fixed, &b)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_failures_skips_and_cleanups_behave_as_in_one_process() {
    let Some(db) = Database::new("dist_mixed") else {
        return;
    };
    let cluster = Cluster::connect(&db.url).unwrap();
    let workflow = mixed::workflow();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = workers(&cluster, workflow, 1, &stopped).await;
    cluster.submit(workflow, "mixed-1", (5,)).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(30), cluster.wait(workflow, "mixed-1"))
        .await
        .expect("the run ends");
    let Err(Error::Failed {
        failures, skipped, ..
    }) = ended
    else {
        panic!("{ended:?}")
    };
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].node, "b");
    assert!(failures[0].error.to_string().contains("the disk is full"));
    assert_eq!(skipped, vec!["skipped".to_owned()]);
    let status = cluster.status("mixed-1").await.unwrap().unwrap();
    let task = |node: &str| {
        status
            .tasks
            .iter()
            .find(|t| t.node == node)
            .unwrap()
            .clone()
    };
    assert_eq!(
        (task("fixed").state.as_str(), task("fixed").attempts),
        ("done", 3)
    );
    // What failed before it succeeded is still told.
    assert_eq!(task("fixed").error.as_deref(), Some("not yet"));
    assert_eq!(task("report").error, None);
    // The cleanup read the failure and ran.
    assert_eq!(task("report").state, "done");
    // Each attempt knew which it was (CPU on rayon, IO on tokio after an await).
    let seen: Vec<(String, String, u32)> = SEEN
        .lock()
        .unwrap()
        .iter()
        .map(|a| (a.run_id.clone(), a.node.clone(), a.attempt))
        .collect();
    let expected = |node: &str, attempt| ("mixed-1".to_owned(), node.to_owned(), attempt);
    assert_eq!(
        seen,
        [
            expected("fixed", 1),
            expected("fixed", 2),
            expected("fixed", 3),
            expected("report", 1)
        ]
    );
    assert_eq!(aqueduct::dist::current_attempt(), None, "not in a task");
    stop.send(true).unwrap();
    for worker in running {
        worker.await.unwrap();
    }
}

#[tokio::test]
async fn what_workers_do_not_run_is_refused_with_the_reason() {
    #[task]
    fn one(x: &u64) -> u64 {
        x + 1
    }
    workflow! {
        #[durable]
        fn nested(xss: Vec<Vec<u64>>) -> Vec<Vec<u64>> {
            for xs in &xss { for x in xs { one(x) } }
        }
    }
    let Some(db) = Database::new("dist_refused") else {
        return;
    };
    let cluster = Cluster::connect(&db.url).unwrap();
    let refused = cluster
        .submit(nested::workflow(), "n", (vec![vec![1]],))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, Error::NotDistributable { .. }),
        "{refused}"
    );
    assert!(
        refused
            .to_string()
            .contains("a `for` or sub-workflow inside a `for`"),
        "{refused}"
    );
    let worker = Worker::new(cluster.clone()).serve(nested::workflow());
    assert!(worker.is_err());
}

/// The same workflow, its task's body or its condition changed: another build each.
mod rebuilt {
    use aqueduct::prelude::*;

    #[task]
    fn kept(x: &u64) -> u64 {
        x + 10
    }

    /// A module `$build` whose `step` adds `$add` and whose condition is `x > $bound`.
    macro_rules! build {
        ($build:ident, $add:literal, $bound:literal) => {
            // Only `stepped::workflow()` is used, not the function itself.
            #[allow(dead_code)]
            pub(crate) mod $build {
                use super::*;
                #[task]
                fn step(x: &u64) -> u64 {
                    x + $add
                }
                workflow! {
                    #[durable]
                    pub(crate) fn stepped(x: u64) -> u64 {
                        if x > $bound { step(&x) } else { kept(&x) }
                    }
                }
            }
        };
    }

    build!(before, 1, 3);
    build!(body, 2, 3);
    build!(condition, 1, 0);
}

/// Workers of a build whose task bodies or conditions differ never take a run's tasks,
/// though the workflow's shape is the same: a run waits for a worker of its own build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_of_a_build_with_other_code_does_not_take_the_run() {
    let Some(db) = Database::new("dist_rebuilt") else {
        return;
    };
    let cluster = Cluster::connect(&db.url).unwrap();
    let old = rebuilt::before::stepped::workflow();
    let others = [
        rebuilt::body::stepped::workflow(),
        rebuilt::condition::stepped::workflow(),
    ];
    // 5 takes `step` in this build (6) and in the others (7 with `step`'s new body).
    cluster.submit(old, "old", (5,)).await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut running = Vec::new();
    for other in others {
        running.extend(workers(&cluster, other, 1, &stopped).await);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = cluster.status("old").await.unwrap().unwrap();
    assert!(
        status.tasks.iter().all(|t| t.attempts == 0),
        "a worker of another build took a task: {status:?}"
    );
    let listed = cluster.runs(None).await.unwrap();
    let old_run = listed.iter().find(|r| r.id == "old").unwrap();
    assert_eq!(
        old_run.workers, 0,
        "no worker serves its build: {old_run:?}"
    );
    running.extend(workers(&cluster, old, 1, &stopped).await);
    let output = tokio::time::timeout(Duration::from_secs(30), cluster.wait(old, "old"))
        .await
        .expect("the run ends")
        .unwrap();
    assert_eq!(output, 6, "computed by the submitting build's code");
    stop.send(true).unwrap();
    let mut stats = Vec::new();
    for worker in running {
        stats.push(worker.await.unwrap());
    }
    assert_eq!(stats[0].committed + stats[1].committed, 0, "{stats:?}");
    assert!(stats[2].committed > 0, "its own build's worker: {stats:?}");
}

/// On a new database the planner has no statistics of the tasks' table, and claims read
/// and sort every ready task before their limit: the first submission analyzes it.
#[tokio::test]
async fn the_first_submission_to_a_new_database_gives_the_planner_statistics() {
    #[task]
    fn one(x: &u64) -> u64 {
        x + 1
    }
    workflow! {
        #[durable]
        fn plus_one(x: u64) -> u64 { one(&x) }
    }
    let Some(db) = Database::new("dist_analyzed") else {
        return;
    };
    let cluster = Cluster::connect(&db.url).unwrap();
    let analyzed = || {
        off_runtime(|| {
            db.sql()
                .query_one(
                    "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables
                     WHERE relname = 'aqueduct_dist_tasks'",
                    &[],
                )
                .unwrap()
                .get::<_, bool>(0)
        })
    };
    assert!(!analyzed(), "a new database's tables have no statistics");
    cluster
        .submit(plus_one::workflow(), "first", (1,))
        .await
        .unwrap();
    assert!(analyzed());
    // A run the cluster does not have is an error that says so (not a wait).
    let unknown = cluster
        .wait(plus_one::workflow(), "nope")
        .await
        .unwrap_err();
    assert!(matches!(unknown, Error::UnknownRun { .. }), "{unknown}");
    assert_eq!(unknown.to_string(), "the store has no run `nope`");
}

#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_submits_a_run_and_waits_for_the_workers() {
    #[task]
    fn tripled(x: &u64) -> u64 {
        x * 3
    }
    workflow! {
        #[durable]
        fn triple(x: u64) -> u64 { tripled(&x) }
    }
    let Some(db) = Database::new("dist_cli") else {
        return;
    };
    let cluster = Cluster::connect(&db.url).unwrap();
    // Submitted with no worker at work: `runs` says it waits for one.
    cluster
        .submit(triple::workflow(), "cli-0", (1,))
        .await
        .unwrap();
    let listed = cluster.runs(Some("triple")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].status.as_str(), listed[0].workers),
        ("running", 0)
    );
    assert_eq!((listed[0].tasks, listed[0].unfinished), (1, 1));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = workers(&cluster, triple::workflow(), 1, &stopped).await;
    let mut got = None;
    let code = aqueduct::cli::Cli::new(triple::workflow())
        .main_from(
            [
                "triple",
                "run",
                "--distributed",
                "--database-url",
                &db.url,
                "--run-id",
                "cli-1",
            ],
            || (14,),
            |out, _| got = Some(out),
        )
        .await;
    assert_eq!((code, got), (std::process::ExitCode::SUCCESS, Some(42)));
    let status = cluster.status("cli-1").await.unwrap().unwrap();
    assert_eq!(status.status, "succeeded");
    assert_eq!(cluster.wait(triple::workflow(), "cli-0").await.unwrap(), 3);
    let listed = cluster.runs(Some("triple")).await.unwrap();
    let ids: Vec<(&str, &str, u32, u32)> = listed
        .iter()
        .map(|r| (r.id.as_str(), r.status.as_str(), r.unfinished, r.workers))
        .collect();
    assert_eq!(
        ids,
        [("cli-1", "succeeded", 0, 1), ("cli-0", "succeeded", 0, 1)]
    );
    assert!(cluster.runs(Some("other")).await.unwrap().is_empty());
    let cli = |args: &[&str]| {
        let args: Vec<String> = ["triple"]
            .iter()
            .chain(args)
            .map(|a| a.to_string())
            .collect();
        async move {
            aqueduct::cli::Cli::new(triple::workflow())
                .main_from(args, || (0,), |_, _| {})
                .await
        }
    };
    let url = db.url.as_str();
    let success = std::process::ExitCode::SUCCESS;
    assert_eq!(
        cli(&["runs", "--distributed", "--database-url", url]).await,
        success
    );
    assert_eq!(
        cli(&["show", "cli-1", "--distributed", "--database-url", url]).await,
        success
    );
    let unknown = cli(&["show", "nope", "--distributed", "--database-url", url]).await;
    assert_ne!(unknown, success, "an unknown run is an error");
    // What reads the local store's report is refused with `--distributed`, not ignored.
    for local in [&["--timeline"][..], &["--html", "never.html"]] {
        let args = [
            &["show", "cli-1", "--distributed", "--database-url", url][..],
            local,
        ];
        assert_ne!(cli(&args.concat()).await, success, "{local:?}");
    }
    assert!(!std::path::Path::new("never.html").exists());
    stop.send(true).unwrap();
    for worker in running {
        worker.await.unwrap();
    }
    // A worker that stops says so.
    let listed = cluster.runs(Some("triple")).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|r| r.workers == 0), "{listed:?}");
    // Ended runs are forgotten when old enough; a day is not yet.
    let delete = [
        "delete",
        "--older-than-days",
        "1",
        "--distributed",
        "--database-url",
        url,
    ];
    assert_eq!(cli(&delete).await, success);
    assert_eq!(cluster.runs(Some("triple")).await.unwrap().len(), 2);
    let delete = [
        "delete",
        "--older-than-days",
        "0",
        "--distributed",
        "--database-url",
        url,
    ];
    assert_eq!(cli(&delete).await, success);
    assert!(cluster.runs(Some("triple")).await.unwrap().is_empty());
    assert!(
        cluster.status("cli-1").await.unwrap().is_none(),
        "its tasks went too"
    );
}

/// Attempts of `throttled` running now in each run (by its `x`), on any worker, and
/// the most seen at once.
static THROTTLED: std::sync::Mutex<Vec<(u64, usize, usize)>> = std::sync::Mutex::new(Vec::new());

fn throttled_count(x: u64, change: isize) {
    let mut runs = THROTTLED.lock().unwrap();
    let at = match runs.iter().position(|run| run.0 == x) {
        Some(at) => at,
        None => {
            runs.push((x, 0, 0));
            runs.len() - 1
        }
    };
    let run = &mut runs[at];
    run.1 = run.1.checked_add_signed(change).unwrap();
    run.2 = run.2.max(run.1);
}

#[task(concurrency = 2)]
async fn throttled(x: &u64, i: &u64) -> u64 {
    throttled_count(*x, 1);
    tokio::time::sleep(Duration::from_millis(40)).await;
    throttled_count(*x, -1);
    x + i
}

#[task]
async fn free(x: &u64, i: &u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(40)).await;
    x * i
}

#[task]
fn add_four(a: &u64, b: &u64, c: &u64, d: &u64) -> u64 {
    a + b + c + d
}

#[task]
fn add_two(a: &u64, b: &u64) -> u64 {
    a + b
}

workflow! {
    #[durable]
    fn rate_limited(x: u64, one: u64, two: u64, three: u64, four: u64) -> u64 {
        let a = throttled(&x, &one);
        let b = throttled(&x, &two);
        let c = throttled(&x, &three);
        let d = throttled(&x, &four);
        let e = free(&x, &one);
        let f = free(&x, &two);
        let g = free(&x, &three);
        let h = free(&x, &four);
        let limited = add_four(&a, &b, &c, &d);
        let unlimited = add_four(&e, &f, &g, &h);
        add_two(&limited, &unlimited)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_limit_holds_across_workers_within_a_run() {
    let Some(db) = Database::new("dist_limit") else {
        return;
    };
    let cluster = Cluster::connect(&db.url).unwrap();
    let workflow = rate_limited::workflow();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // Three workers of four slots: room for every task at once but for the limit.
    let running = workers(&cluster, workflow, 3, &stopped).await;
    // Two runs: the limit is each run's (as in one process).
    let runs = [("limit-1", 10), ("limit-2", 20)];
    for (run, x) in runs {
        cluster
            .submit(workflow, run, (x, 1, 2, 3, 4))
            .await
            .unwrap();
    }
    for (run, x) in runs {
        let output = tokio::time::timeout(Duration::from_secs(60), cluster.wait(workflow, run))
            .await
            .expect("the run ends")
            .unwrap();
        assert_eq!(output, 4 * x + 10 + 10 * x);
    }
    stop.send(true).unwrap();
    for worker in running {
        worker.await.unwrap();
    }
    let seen = THROTTLED.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (x, _, most) in seen {
        assert_eq!(
            most, 2,
            "two attempts of `throttled` at once in run x={x}, never more"
        );
    }
}

#[task]
fn numbers(count: &u64) -> Vec<u64> {
    (0..*count).collect()
}

#[task]
fn squared(x: &u64) -> u64 {
    x * x
}

#[task]
async fn plus(x: &u64, offset: &u64) -> Result<u64, TaskError> {
    if *x == 49 && *offset == 1 {
        return Err(TaskError::msg("49 is refused"));
    }
    Ok(x + offset)
}

#[task]
fn labelled(x: &u64) -> String {
    format!("n{x}")
}

#[task]
fn shout(label: String) -> String {
    label.to_uppercase()
}

#[task]
fn total(values: &[u64], labels: &[String], inner: &u64) -> String {
    format!(
        "{} {} {}",
        values.iter().sum::<u64>(),
        labels.join(","),
        inner
    )
}

/// What `outcome` saw, run after run.
static OUTCOMES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

#[task]
fn outcome(values: &Outcome<Vec<u64>>) -> String {
    let items: Vec<String> = values
        .items()
        .iter()
        .map(|item| match item {
            Outcome::Ok(value) => value.to_string(),
            Outcome::Failed(error) => format!("failed: {error}"),
            Outcome::Skipped => "skipped".into(),
        })
        .collect();
    let seen = match values.value() {
        Some(values) => format!("{} values", values.len()),
        None => format!("no values; items {}", items.join(", ")),
    };
    OUTCOMES.lock().unwrap().push(seen.clone());
    seen
}

workflow! {
    /// `x * x + offset`: run as a node of `items`.
    #[durable]
    pub fn offset_square(x: u64, offset: u64) -> u64 {
        let s = squared(&x);
        plus(&s, &offset)
    }
}

workflow! {
    #[durable]
    fn items(count: u64, offset: u64) -> String {
        let xs = numbers(&count);
        // Borrowed items, each a chain of a CPU and an IO task reading an import.
        let values = for x in &xs {
            let s = squared(x);
            plus(&s, &offset)
        };
        // Owned items: each item's task takes its item.
        let labels = for x in &xs { labelled(x) };
        let loud = for label in labels { shout(label) };
        let inner = offset_square(&count, &offset).await;
        total(&values, &loud, &inner)
    }
}

workflow! {
    #[durable]
    fn tolerant(count: u64, offset: u64) -> String {
        let xs = numbers(&count);
        let values = for x in &xs {
            let s = squared(x);
            plus(&s, &offset)
        };
        outcome(&values)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_items_and_sub_workflows_run_item_by_item_on_any_worker() {
    let Some(db) = Database::new("dist_items") else {
        return;
    };
    let cluster = Cluster::connect(&db.url).unwrap();
    let workflow = items::workflow();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = workers(&cluster, workflow, 2, &stopped).await;
    for (run, count) in [("items-5", 5), ("items-0", 0), ("items-40", 40)] {
        let expected = workflow.run((count, 3)).await.unwrap();
        cluster.submit(workflow, run, (count, 3)).await.unwrap();
        let output = tokio::time::timeout(Duration::from_secs(60), cluster.wait(workflow, run))
            .await
            .expect("the run ends")
            .unwrap();
        assert_eq!(output, expected, "{run}");
    }
    stop.send(true).unwrap();
    let mut committed = 0;
    for worker in running {
        let stats = worker.await.unwrap();
        assert!(stats.committed > 0, "every worker did work: {stats:?}");
        committed += stats.committed;
    }
    let status = cluster.status("items-40").await.unwrap().unwrap();
    let names: Vec<&str> = status.tasks.iter().map(|t| t.node.as_str()).collect();
    for name in [
        "values",
        "values[0].s",
        "values[39].plus",
        "loud[7].shout",
        "inner.plus",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    assert!(status.tasks.iter().all(|t| t.state == "done"), "{status:?}");
    // Each task's end once, each fan-out's twice (its items made, then gathered;
    // once with no item): 6 nodes of the workflow, 4 of them fan-outs or the
    // sub-workflow, whose body has 2 tasks; 4 tasks per item.
    let rows = |count: u64| 6 + 4 + 2 + 4 * count;
    assert_eq!(committed, rows(5) + rows(0) - 3 + rows(40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_item_fails_its_fan_out_and_a_tolerant_reader_sees_it() {
    let Some(db) = Database::new("dist_item_fails") else {
        return;
    };
    let cluster = Cluster::connect(&db.url).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = workers(&cluster, tolerant::workflow(), 2, &stopped).await;
    // Item 7 (7 * 7 = 49, with offset 1) fails: the fan-out fails, the reader runs.
    cluster
        .submit(tolerant::workflow(), "t", (10, 1))
        .await
        .unwrap();
    let failed = tokio::time::timeout(
        Duration::from_secs(60),
        cluster.wait(tolerant::workflow(), "t"),
    )
    .await
    .expect("the run ends")
    .unwrap_err();
    // What the tolerant reader saw on a worker (before a run in this process adds its own).
    let distributed = OUTCOMES.lock().unwrap().pop().unwrap();
    let Error::Failed { failures, .. } = &failed else {
        panic!("{failed}");
    };
    // Named as one process names them: the fan-out is represented by its item's task.
    let nodes: Vec<&str> = failures.iter().map(|f| f.node.as_str()).collect();
    assert_eq!(nodes, ["plus[7]"], "{failed}");
    assert!(
        failures[0].error.to_string().contains("49 is refused"),
        "{failed}"
    );
    let Err(Error::Failed {
        failures: alone, ..
    }) = tolerant::workflow().run((10, 1)).await
    else {
        panic!("one process fails too")
    };
    let alone: Vec<&str> = alone.iter().map(|f| f.node.as_str()).collect();
    assert_eq!(nodes, alone);
    let status = cluster.status("t").await.unwrap().unwrap();
    let outcome = status.tasks.iter().find(|t| t.node == "outcome").unwrap();
    assert_eq!(outcome.state, "done", "the tolerant reader ran: {status:?}");
    // It saw each item's outcome, as in one process.
    assert!(
        tolerant::workflow().run((10, 1)).await.is_err(),
        "one process fails too"
    );
    let one_process = OUTCOMES.lock().unwrap().pop().unwrap();
    assert_eq!(distributed, one_process);
    assert!(
        distributed.contains("failed: 49 is refused"),
        "{distributed}"
    );
    stop.send(true).unwrap();
    for worker in running {
        worker.await.unwrap();
    }
}

/// Calls of `fetched`, on any worker.
static FETCHED: AtomicUsize = AtomicUsize::new(0);

#[task(cache)]
async fn fetched(page: &u64) -> String {
    FETCHED.fetch_add(1, Ordering::SeqCst);
    format!("page {page}")
}

#[task]
fn joined(pages: &[String]) -> String {
    pages.join("; ")
}

workflow! {
    #[durable]
    fn crawl(pages: Vec<u64>) -> String {
        let fetched = for page in &pages { fetched(page) };
        joined(&fetched)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_look_cached_results_up_and_save_them_item_by_item() {
    let Some(db) = Database::new("dist_cache") else {
        return;
    };
    let cluster = Cluster::connect(&db.url).unwrap();
    let workflow = crawl::workflow();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = workers(&cluster, workflow, 2, &stopped).await;
    let crawl = |run: &'static str, pages: Vec<u64>| {
        let cluster = cluster.clone();
        async move {
            cluster.submit(workflow, run, (pages,)).await.unwrap();
            tokio::time::timeout(Duration::from_secs(60), cluster.wait(workflow, run))
                .await
                .expect("the run ends")
                .unwrap()
        }
    };
    assert_eq!(
        crawl("first", vec![1, 2, 3]).await,
        "page 1; page 2; page 3"
    );
    assert_eq!(FETCHED.load(Ordering::SeqCst), 3);
    // One page more: only it is fetched; the others are the first run's.
    assert_eq!(
        crawl("second", vec![1, 2, 3, 4]).await,
        "page 1; page 2; page 3; page 4"
    );
    assert_eq!(FETCHED.load(Ordering::SeqCst), 4);
    let status = cluster.status("second").await.unwrap().unwrap();
    let from: Vec<(&str, Option<&str>)> = status
        .tasks
        .iter()
        .filter(|t| t.node.starts_with("fetched["))
        .map(|t| (t.node.as_str(), t.cached_from.as_deref()))
        .collect();
    assert_eq!(
        from,
        [
            ("fetched[0].fetched", Some("first")),
            ("fetched[1].fetched", Some("first")),
            ("fetched[2].fetched", Some("first")),
            ("fetched[3].fetched", None),
        ]
    );
    // The results are the store's too: listed, and cleared like any.
    let store = db.open();
    let listed = database::off_runtime(|| store.cache_entries().unwrap());
    assert_eq!(listed.len(), 4, "{listed:?}");
    // A corrupt result is not used: the task runs, and its result replaces it.
    database::off_runtime(|| {
        db.sql()
            .execute("UPDATE aqueduct_cache SET data = 'not json'", &[])
            .unwrap()
    });
    assert_eq!(crawl("third", vec![1]).await, "page 1");
    assert_eq!(FETCHED.load(Ordering::SeqCst), 5);
    assert_eq!(crawl("fourth", vec![1]).await, "page 1");
    assert_eq!(
        FETCHED.load(Ordering::SeqCst),
        5,
        "the replaced result is used"
    );
    stop.send(true).unwrap();
    for worker in running {
        worker.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stops_when_a_newer_build_migrated_its_database() {
    let Some(db) = Database::new("dist_newer") else {
        return;
    };
    let cluster = Cluster::connect(&db.url).unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let worker = Worker::new(cluster.clone())
        .serve(mixed::workflow())
        .unwrap()
        .lease(Duration::from_secs(2));
    let mut stopped = stopped.clone();
    let running = tokio::spawn(async move {
        worker
            .run(async move {
                let _ = stopped.wait_for(|stopped| *stopped).await;
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A newer build's migration, and the connections cut (a restart, say).
    database::off_runtime(|| {
        let mut sql = db.sql();
        sql.execute("UPDATE aqueduct_schema SET version = 99", &[])
            .unwrap();
        sql.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap();
    });
    let ended = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the worker stops by itself")
        .unwrap();
    let error = ended.unwrap_err();
    assert!(error.to_string().contains("store schema 99"), "{error}");
}

#[task]
async fn slow(ms: &u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(*ms)).await;
    *ms
}

#[task]
async fn then(ms: &u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms / 2)).await;
    ms + 1
}

workflow! {
    #[durable]
    fn slow_then(ms: u64) -> u64 {
        let napped = slow(&ms);
        then(&napped)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_starts_nothing_more_and_its_waiter_is_told() {
    let Some(db) = Database::new("dist_cancel") else {
        return;
    };
    let cluster = Cluster::connect(&db.url).unwrap();
    let workflow = slow_then::workflow();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = workers(&cluster, workflow, 1, &stopped).await;
    // Long enough that a loaded machine still sees `slow` run before it ends.
    cluster.submit(workflow, "c", (1_500,)).await.unwrap();
    // Cancelled while `slow` runs: `then` never starts.
    loop {
        let status = cluster.status("c").await.unwrap().unwrap();
        let state = |node: &str| {
            let task = status.tasks.iter().find(|t| t.node == node);
            task.map(|t| t.state.clone())
        };
        if state("napped").as_deref() == Some("running") {
            assert_ne!(state("then").as_deref(), Some("running"), "{status:?}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(cluster.cancel("c").await.unwrap());
    assert!(!cluster.cancel("c").await.unwrap(), "once");
    assert!(!cluster.cancel("unknown").await.unwrap());
    // A run whose last attempt runs is not cancelled: it ends as that attempt does.
    cluster.submit(workflow, "late", (300,)).await.unwrap();
    loop {
        let status = cluster.status("late").await.unwrap().unwrap();
        if status
            .tasks
            .iter()
            .any(|t| t.node == "then" && t.state == "running")
        {
            break;
        }
        if status
            .tasks
            .iter()
            .any(|t| t.node == "then" && t.state == "done")
        {
            panic!("`then` ended before it was seen running: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        !cluster.cancel("late").await.unwrap(),
        "nothing left to cancel"
    );
    assert_eq!(cluster.wait(workflow, "late").await.unwrap(), 301);
    let ended = tokio::time::timeout(Duration::from_secs(30), cluster.wait(workflow, "c"))
        .await
        .expect("the waiter is told")
        .unwrap_err();
    let Error::Cancelled { unfinished, .. } = &ended else {
        panic!("{ended}");
    };
    assert_eq!(unfinished, &["then".to_owned()]);
    // The attempt running ends and commits; nothing else ran.
    let mut status = cluster.status("c").await.unwrap().unwrap();
    for _ in 0..300 {
        if status.tasks.iter().all(|t| t.state != "running") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        status = cluster.status("c").await.unwrap().unwrap();
    }
    // Then a moment more: nothing starts after it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = cluster.status("c").await.unwrap().unwrap();
    let states: Vec<(&str, &str)> = status
        .tasks
        .iter()
        .map(|t| (t.node.as_str(), t.state.as_str()))
        .collect();
    assert_eq!(states, [("napped", "done"), ("then", "cancelled")]);
    assert_eq!(status.status, "cancelled");
    stop.send(true).unwrap();
    for worker in running {
        worker.await.unwrap();
    }
}

/// Attempts of `gated` running now, and the most seen at once.
static GATED: std::sync::Mutex<(usize, usize)> = std::sync::Mutex::new((0, 0));

#[task(concurrency = 2)]
async fn gated(x: &u64) -> u64 {
    {
        let mut gated = GATED.lock().unwrap();
        gated.0 += 1;
        gated.1 = gated.1.max(gated.0);
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    GATED.lock().unwrap().0 -= 1;
    x * 10
}

workflow! {
    #[durable]
    fn gated_items(xs: Vec<u64>) -> Vec<u64> {
        for x in &xs { gated(x) }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_limit_inside_a_for_holds_across_workers() {
    let Some(db) = Database::new("dist_gated") else {
        return;
    };
    let cluster = Cluster::connect(&db.url).unwrap();
    let workflow = gated_items::workflow();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = workers(&cluster, workflow, 3, &stopped).await;
    cluster
        .submit(workflow, "g", ((1..=8).collect(),))
        .await
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(60), cluster.wait(workflow, "g"))
        .await
        .expect("the run ends")
        .unwrap();
    assert_eq!(output, (1..=8).map(|x| x * 10).collect::<Vec<u64>>());
    assert_eq!(
        GATED.lock().unwrap().1,
        2,
        "two items' tasks at once, never more"
    );
    stop.send(true).unwrap();
    for worker in running {
        worker.await.unwrap();
    }
}

/// Items of `capped_items` between their first task's start and their last task's
/// end, and the most at once.
static IN_FLIGHT: std::sync::Mutex<(usize, usize)> = std::sync::Mutex::new((0, 0));

#[task]
async fn item_starts(x: &u64) -> u64 {
    {
        let mut flight = IN_FLIGHT.lock().unwrap();
        flight.0 += 1;
        flight.1 = flight.1.max(flight.0);
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    x + 1
}

#[task]
fn item_ends(x: &u64) -> u64 {
    std::thread::sleep(Duration::from_millis(10));
    IN_FLIGHT.lock().unwrap().0 -= 1;
    x * 10
}

workflow! {
    #[durable]
    fn capped_items(xs: Vec<u64>) -> Vec<u64> {
        #[concurrency = 2] for x in &xs {
            let started = item_starts(x);
            item_ends(&started)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_for_runs_that_many_items_at_once_across_workers() {
    let Some(db) = Database::new("dist_capped") else {
        return;
    };
    let cluster = Cluster::connect(&db.url).unwrap();
    let workflow = capped_items::workflow();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // Three workers of four slots: room for every item at once but for the cap.
    let running = workers(&cluster, workflow, 3, &stopped).await;
    let xs: Vec<u64> = (1..=9).collect();
    let expected = workflow.run((xs.clone(),)).await.unwrap();
    *IN_FLIGHT.lock().unwrap() = (0, 0);
    cluster.submit(workflow, "capped", (xs,)).await.unwrap();
    let output = tokio::time::timeout(Duration::from_secs(60), cluster.wait(workflow, "capped"))
        .await
        .expect("the run ends")
        .unwrap();
    assert_eq!(output, expected);
    assert_eq!(output, (2..=10).map(|x| x * 10).collect::<Vec<u64>>());
    assert_eq!(
        IN_FLIGHT.lock().unwrap().1,
        2,
        "two items at once, never more"
    );
    let status = cluster.status("capped").await.unwrap().unwrap();
    assert_eq!(status.status, "succeeded");
    stop.send(true).unwrap();
    for worker in running {
        assert_eq!(worker.await.unwrap().lost, 0);
    }
}

/// A collection of more items than a distributed run holds rows for (its items take
/// no memory: they are `()`).
#[derive(serde::Serialize, serde::Deserialize)]
struct Huge;

const HUGE: usize = (1 << 30) + 1;

impl aqueduct::graph::Collection for Huge {
    type Item = ();
    fn items(&self) -> &[()] {
        &[(); HUGE]
    }
}

#[task]
fn huge(_x: &u64) -> Huge {
    Huge
}

#[task]
fn unit(_u: &()) -> u64 {
    1
}

workflow! {
    #[durable]
    fn too_many(x: u64) -> Vec<u64> {
        let all = huge(&x);
        for u in &all { unit(u) }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_of_more_items_than_rows_hold_fails_with_why() {
    let Some(db) = Database::new("dist_too_many") else {
        return;
    };
    let cluster = Cluster::connect(&db.url).unwrap();
    let workflow = too_many::workflow();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = workers(&cluster, workflow, 1, &stopped).await;
    cluster.submit(workflow, "huge", (1,)).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(60), cluster.wait(workflow, "huge"))
        .await
        .expect("the run ends");
    let Err(Error::Failed { failures, .. }) = &ended else {
        panic!("{ended:?}")
    };
    assert_eq!(failures.len(), 1, "{failures:?}");
    let why = failures[0].error.to_string();
    assert!(
        why.contains("1073741825 items of 1 tasks each are more than a distributed run holds"),
        "{why}"
    );
    // Nothing of it was made.
    let status = cluster.status("huge").await.unwrap().unwrap();
    assert_eq!(status.tasks.len(), 2, "{:?}", status.tasks);
    stop.send(true).unwrap();
    for worker in running {
        worker.await.unwrap();
    }
}

/// A resource of the workers: each counts the calls its tasks made.
#[derive(Clone, Default)]
struct Meter(std::sync::Arc<AtomicUsize>);

#[task]
fn metered(x: &u64, meter: &Meter) -> u64 {
    meter.0.fetch_add(1, Ordering::SeqCst);
    x + 1
}

#[task]
fn metered_sum(values: &[u64], last: &u64) -> u64 {
    values.iter().sum::<u64>() + last
}

workflow! {
    #[durable]
    fn with_meter(n: u64, #[resource] meter: Meter) -> u64 {
        let xs = numbers(&n);
        let each = for x in &xs {
            metered(x, &meter)
        };
        let a = metered(&n, &meter);
        metered_sum(&each, &a)
    }
}

/// A workflow with resources runs distributed: each worker is given its own, and the
/// run's input holds only the parameters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_give_their_resources_to_the_tasks_they_run() {
    let Some(db) = Database::new("dist_resources") else {
        return;
    };
    let cluster = Cluster::connect(&db.url).unwrap();
    let workflow = with_meter::workflow();
    let meter = Meter::default();
    let worker = Worker::new(cluster.clone())
        .serve_with(workflow, (meter.clone(),))
        .unwrap()
        .slots(4);
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(async move {
        worker
            .run(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
            .unwrap()
    });
    cluster.submit(workflow, "meter-1", (5,)).await.unwrap();
    let output = tokio::time::timeout(Duration::from_secs(60), cluster.wait(workflow, "meter-1"))
        .await
        .expect("the run ends")
        .unwrap();
    let expected = with_meter::workflow()
        .run_with((5,), (Meter::default(),))
        .await
        .unwrap();
    assert_eq!(output, expected);
    assert_eq!(
        meter.0.load(Ordering::SeqCst),
        6,
        "five items and one more call"
    );
    stop.send(true).unwrap();
    running.await.unwrap();
}

mod capture;

#[task]
fn traced_double(x: &u64) -> u64 {
    tracing::info!(x, "inside the CPU task");
    x * 2
}

#[task]
async fn traced_inc(x: &u64) -> u64 {
    tracing::info!(x, "inside the IO task");
    x + 1
}

#[task]
fn traced_list(x: &u64) -> Vec<u64> {
    vec![*x, x + 1]
}

#[task]
fn traced_fail(_x: &u64) -> Result<u64, TaskError> {
    Err(TaskError::permanent(TaskError::msg("a traced failure")))
}

#[task]
fn traced_total(d: &u64, each: &[u64], rescued: &u64) -> u64 {
    d + each.iter().sum::<u64>() + rescued
}

workflow! {
    #[durable]
    fn traced(x: u64) -> u64 {
        let d = traced_double(&x);
        let xs = traced_list(&x);
        let each = for v in &xs { traced_double(v) };
        let tried = traced_fail(&x);
        let rescued = match tried {
            Outcome::Ok(v) => v,
            _ => traced_list_len(&xs),
        };
        let total = traced_total(&d, &each, &rescued);
        traced_inc(&total)
    }
}

#[task]
fn traced_list_len(xs: &[u64]) -> u64 {
    xs.len() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_each_attempt_in_its_runs_span() {
    let Some(db) = Database::new("dist_traced") else {
        return;
    };
    // The only test here that installs the process's subscriber.
    let log = capture::Capture::install(tracing::Level::DEBUG);
    let cluster = Cluster::connect(&db.url).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = workers(&cluster, traced::workflow(), 1, &stopped).await;
    cluster
        .submit(traced::workflow(), "traced-1", (3,))
        .await
        .unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        cluster.wait(traced::workflow(), "traced-1"),
    )
    .await
    .expect("the run ends")
    .unwrap();
    // 6 + (6 + 8) + 2, and one more.
    assert_eq!(output, 23);
    stop.send(true).unwrap();
    for worker in running {
        worker.await.unwrap();
    }
    let text = log.text();
    let line = |needle: &str| {
        text.lines()
            .find(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
            .to_owned()
    };
    // The task's own events are inside its run's span and its attempt's, on rayon
    // (CPU) and on tokio (IO) alike.
    let cpu = line("inside the CPU task");
    assert!(
        cpu.contains(
            "workflow{name=traced run=traced-1}:task{task=\"traced_double\" node=d attempt=1}"
        ),
        "{cpu}"
    );
    let io = line("inside the IO task");
    assert!(
        io.contains(
            "workflow{name=traced run=traced-1}:task{task=\"traced_inc\" node=traced_inc attempt=1}"
        ),
        "{io}"
    );
    let ended =
        line("task{task=\"traced_double\" node=d attempt=1}: aqueduct::dist::worker: task ended");
    assert!(ended.contains("status=\"succeeded\""), "{ended}");
    // An item's task runs in its item's span, as in one process.
    let item = line("inside the CPU task x=4");
    assert!(
        item.contains(
            "workflow{name=traced run=traced-1}:item{index=1}:task{task=\"traced_double\" \
             node=each[1].traced_double attempt=1}"
        ),
        "{item}"
    );
    // A failure is an error event, as in one process.
    let failed = line("task failed");
    assert!(failed.contains("ERROR"), "{failed}");
    assert!(failed.contains("node=tried"), "{failed}");
    assert!(failed.contains("a traced failure"), "{failed}");
}

static DOOMED_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Fails after `ms`, and is retried after a delay.
#[task(retries = 3, retry_delay = "300ms", jitter = false)]
async fn doomed(ms: &u64) -> Result<u64, String> {
    DOOMED_CALLS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(*ms)).await;
    Err("down".to_owned())
}

workflow! {
    #[durable]
    fn doomed_then(ms: u64) -> u64 {
        let tried = doomed(&ms);
        then(&tried)
    }
}

/// Polls run `id` until `ready` holds for its `doomed` task.
async fn until_doomed(
    cluster: &Cluster,
    id: &str,
    ready: impl Fn(&aqueduct::dist::DistributedTask) -> bool,
) {
    for _ in 0..3_000 {
        let status = cluster.status(id).await.unwrap().unwrap();
        if status.tasks.iter().any(|t| t.node == "tried" && ready(t)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("run {id}: `tried` never got there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_retrying_when_its_run_is_cancelled_is_not_run_again() {
    let Some(db) = Database::new("dist_retry_cancel") else {
        return;
    };
    let cluster = Cluster::connect(&db.url).unwrap();
    let workflow = doomed_then::workflow();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = workers(&cluster, workflow, 1, &stopped).await;
    // Cancelled while its first attempt runs: the attempt fails after the cancel and
    // would be retried.
    cluster.submit(workflow, "during", (200,)).await.unwrap();
    until_doomed(&cluster, "during", |t| t.state == "running").await;
    assert!(cluster.cancel("during").await.unwrap());
    // Cancelled while it waits out its retry delay.
    cluster.submit(workflow, "between", (10,)).await.unwrap();
    until_doomed(&cluster, "between", |t| {
        t.attempts == 1 && t.state != "running"
    })
    .await;
    assert!(cluster.cancel("between").await.unwrap());
    for id in ["during", "between"] {
        let ended = tokio::time::timeout(Duration::from_secs(30), cluster.wait(workflow, id))
            .await
            .expect("the waiter is told")
            .unwrap_err();
        assert!(matches!(ended, Error::Cancelled { .. }), "{id}: {ended}");
    }
    // Longer than the retry delay and an attempt: nothing runs again.
    let calls = DOOMED_CALLS.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        DOOMED_CALLS.load(Ordering::SeqCst),
        calls,
        "no attempt after the cancels"
    );
    assert_eq!(calls, 2, "one attempt of each run");
    for id in ["during", "between"] {
        let status = cluster.status(id).await.unwrap().unwrap();
        assert_eq!(status.status, "cancelled", "{id}");
        let tried = status.tasks.iter().find(|t| t.node == "tried").unwrap();
        assert_eq!(tried.attempts, 1, "{id}: {tried:?}");
        assert!(
            tried.state != "ready" && tried.state != "running",
            "{id}: a cancelled run's task is left {tried:?}"
        );
    }
    stop.send(true).unwrap();
    for worker in running {
        worker.await.unwrap();
    }
}
