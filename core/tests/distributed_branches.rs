//! `if` and `match` in distributed runs (feature `postgres`), against a real server:
//! workers run decisions and branch values as tasks, the arms not taken end without
//! running, a failure a `match` reads does not fail the run, and every run ends as it
//! does in one process. Needs `DATABASE_URL`; see `core/tests/postgres.rs`.
#![cfg(feature = "postgres")]

use std::sync::Mutex;
use std::time::Duration;

use aqueduct::dist::{Cluster, Worker};
use aqueduct::prelude::*;
use aqueduct::{Error, TaskFailure};

#[path = "postgres/database.rs"]
mod database;
#[path = "postgres/workers.rs"]
mod running;
use database::Database;
use running::workers;

/// The tasks that ran, by name and input (workers here share this process).
static RAN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn ran(task: &str, x: u64) {
    RAN.lock().unwrap().push(format!("{task}({x})"));
}

#[task]
fn grade(x: &u64) -> u64 {
    *x
}

#[task]
fn praise(x: &u64) -> String {
    ran("praise", *x);
    format!("great {x}")
}

#[task]
async fn warn(x: &u64) -> String {
    ran("warn", *x);
    format!("poor {x}")
}

#[task]
fn risky(x: &u64) -> Result<u64, TaskError> {
    if x.is_multiple_of(3) {
        return Err(TaskError::permanent(TaskError::msg("divisible by three")));
    }
    Ok(x * 10)
}

#[task]
fn fallback(x: &u64) -> u64 {
    ran("fallback", *x);
    0
}

#[task]
fn halve(x: &u64) -> u64 {
    x / 2
}

#[task]
fn double(x: &u64) -> u64 {
    x * 2
}

#[task]
fn bonus(x: &u64) -> u64 {
    ran("bonus", *x);
    x + 1000
}

#[task]
fn summary(label: &String, rescued: &u64, extra: &Option<u64>, each: &[u64], deep: &u64) -> String {
    format!("{label} / {rescued} / {extra:?} / {each:?} / {deep}")
}

workflow! {
    /// Every kind of branch: `if`/`else` (one arm CPU, one IO), a `match` on a
    /// failure's outcome, an `if` without `else`, an `if` per item of a `for`, and
    /// nested `if`s.
    #[durable]
    fn branchy(x: u64, xs: Vec<u64>) -> String {
        let g = grade(&x);
        let label = if g > 10 { praise(&g) } else { warn(&g) };
        let tried = risky(&x);
        let rescued = match tried {
            Outcome::Ok(v) => v,
            _ => fallback(&x),
        };
        let extra = if g > 50 { bonus(&g) };
        let each = for v in &xs {
            let y = if v % 2 == 0 { halve(v) } else { double(v) };
            y
        };
        let deep = if g > 10 {
            let d = double(&g);
            if d > 100 { halve(&d) } else { double(&d) }
        } else {
            halve(&g)
        };
        summary(&label, &rescued, &extra, &each, &deep)
    }
}

workflow! {
    /// The taken arm fails: the branch and its reader are skipped, the run fails.
    #[durable]
    fn failing_arm(x: u64) -> u64 {
        let out = if x > 0 { risky(&x) } else { fallback(&x) };
        double(&out)
    }
}

#[task]
fn describe(error: &TaskError) -> String {
    error.to_string()
}

#[task]
fn fine(_x: &u64) -> String {
    "fine".into()
}

#[task]
fn both(value: &u64, note: &String) -> String {
    format!("{value} {note}")
}

workflow! {
    /// A `match` handles the failure, but the output still requires the failed value:
    /// the run fails with the handled failure, as in one process.
    #[durable]
    fn handled_but_needed(x: u64) -> String {
        let tried = risky(&x);
        let note = match tried {
            Outcome::Failed(error) => describe(error),
            _ => fine(&x),
        };
        both(&tried, &note)
    }
}

#[task]
fn numbers(n: &u64) -> Vec<u64> {
    (0..*n).collect()
}

#[task]
fn kept(value: &Outcome<u64>) -> u64 {
    value.value().copied().unwrap_or(0)
}

#[task]
fn sum(values: &[u64]) -> u64 {
    values.iter().sum()
}

workflow! {
    /// A `for` over a task's output whose body branches: the body's decision and the
    /// workflow's `numbers` are both node 1 of their graphs.
    #[durable]
    fn branch_per_made_item(n: u64) -> u64 {
        let made = numbers(&n);
        let each = for v in &made {
            let y = if v % 2 == 0 { halve(v) } else { double(v) };
            y
        };
        sum(&each)
    }
}

workflow! {
    /// Items whose task fails but whose output succeeds (a tolerant reader): the
    /// fan-out succeeds, so a `match` on it handles nothing and the run fails, as in
    /// one process.
    #[durable]
    fn failures_inside_a_success(n: u64) -> u64 {
        let made = numbers(&n);
        let each = for v in &made {
            let tried = risky(v);
            kept(&tried)
        };
        let total = match each {
            Outcome::Ok(values) => sum(values),
            _ => fallback(&n),
        };
        total
    }
}

/// Built by hand: the output is a task in an arm, which is not taken for `n <= 10`.
fn output_in_an_arm() -> Workflow<(u64,), u64> {
    use aqueduct::graph::{Builder, Step};
    use aqueduct::task::{Kind, TaskInfo};
    const CPU: TaskInfo = TaskInfo::new("cpu", Kind::Cpu);
    let (mut b, (n,)) = Builder::<(u64,)>::new("output_in_an_arm", ["n"]);
    b.durable(1);
    let decision = b.decide("d", "n > 10", &["then", "else"], (n,), 0, |input| {
        let (n,) = input.get();
        Ok(u32::from(*n <= 10))
    });
    b.checkpoint(decision.handle());
    let doubled = b.arm(decision, 0, |b| {
        b.node(CPU, "doubled", (n,), |input| {
            let (n,) = input.get();
            Step::done(Ok(n * 2))
        })
    });
    b.checkpoint(doubled);
    let halved = b.arm(decision, 1, |b| {
        b.node(CPU, "halved", (n,), |input| {
            let (n,) = input.get();
            Step::done(Ok(n / 2))
        })
    });
    b.checkpoint(halved);
    b.output(doubled)
}

async fn ended<P, O>(cluster: &Cluster, workflow: &Workflow<P, O>, id: &str) -> Result<O, Error>
where
    P: aqueduct::graph::Params + serde::de::DeserializeOwned,
    O: Send + Sync + 'static,
{
    tokio::time::timeout(Duration::from_secs(60), cluster.wait(workflow, id))
        .await
        .expect("the run ends")
}

/// How `workflow` ends on `params` in one process, then on the workers as run `id`.
async fn both_ways<P, O>(
    cluster: &Cluster,
    workflow: &Workflow<P, O>,
    id: &str,
    params: P,
) -> (Result<O, Error>, Result<O, Error>)
where
    P: aqueduct::graph::Params + serde::Serialize + serde::de::DeserializeOwned + Clone,
    O: Send + Sync + 'static,
{
    let alone = workflow.run(params.clone()).await;
    cluster.submit(workflow, id, params).await.unwrap();
    (alone, ended(cluster, workflow, id).await)
}

/// The failures' names and the skipped tasks of a run that failed.
fn failed<O: std::fmt::Debug>(ended: &Result<O, Error>) -> (Vec<&str>, &[String]) {
    match ended {
        Err(Error::Failed {
            failures, skipped, ..
        }) => (names(failures), skipped),
        other => panic!("not a failed run: {other:?}"),
    }
}

/// The node names and states of run `id`'s tasks.
async fn states(cluster: &Cluster, id: &str) -> Vec<(String, String)> {
    let status = cluster.status(id).await.unwrap().unwrap();
    status
        .tasks
        .into_iter()
        .map(|task| (task.node, task.state))
        .collect()
}

fn state<'a>(states: &'a [(String, String)], node: &str) -> &'a str {
    let found = states.iter().find(|(name, _)| name == node);
    found.map_or("(no such task)", |(_, state)| state.as_str())
}

fn names(failures: &[TaskFailure]) -> Vec<&str> {
    failures.iter().map(|f| f.node.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ifs_and_matches_run_on_workers_as_in_one_process() {
    let Some(db) = Database::new("dist_branches") else {
        return;
    };
    let cluster = Cluster::connect(&db.url).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let serve = |worker: Worker| {
        worker
            .slots(4)
            .lease(Duration::from_secs(2))
            .serve(branchy::workflow())
            .unwrap()
            .serve(failing_arm::workflow())
            .unwrap()
            .serve(handled_but_needed::workflow())
            .unwrap()
            .serve(branch_per_made_item::workflow())
            .unwrap()
            .serve(failures_inside_a_success::workflow())
            .unwrap()
    };
    let running = workers(&cluster, serve, 2, &stopped);
    let xs = vec![1, 2, 3, 4, 7];
    for x in [3, 4, 20, 60] {
        let expected = branchy::workflow().run((x, xs.clone())).await.unwrap();
        RAN.lock().unwrap().clear();
        let id = format!("branchy-{x}");
        cluster
            .submit(branchy::workflow(), &id, (x, xs.clone()))
            .await
            .unwrap();
        let output = ended(&cluster, branchy::workflow(), &id).await;
        assert_eq!(output.unwrap(), expected, "x = {x}");
        // Only the arms taken ran.
        let ran = std::mem::take(&mut *RAN.lock().unwrap());
        let label = if x > 10 { "praise" } else { "warn" };
        assert!(ran.contains(&format!("{label}({x})")), "{ran:?}");
        let other = if x > 10 { "warn" } else { "praise" };
        assert!(!ran.iter().any(|r| r.starts_with(other)), "{ran:?}");
        assert_eq!(
            ran.contains(&format!("fallback({x})")),
            x % 3 == 0,
            "{ran:?}"
        );
        assert_eq!(ran.contains(&format!("bonus({x})")), x > 50, "{ran:?}");
        let states = states(&cluster, &id).await;
        assert_eq!(
            state(&states, "label.then.praise"),
            if x > 10 { "done" } else { "not_taken" }
        );
        assert_eq!(
            state(&states, "label.else.warn"),
            if x > 10 { "not_taken" } else { "done" }
        );
        // The failure the `match` read is recorded, and the run succeeded anyway.
        assert_eq!(
            state(&states, "tried"),
            if x % 3 == 0 { "failed" } else { "done" }
        );
        let status = cluster.status(&id).await.unwrap().unwrap();
        assert_eq!(status.status, "succeeded", "{states:?}");
        let tried = status.tasks.iter().find(|t| t.node == "tried").unwrap();
        assert_eq!(tried.handled, x % 3 == 0, "{tried:?}");
        // Each item took its own arm.
        assert_eq!(state(&states, "each[1].y.then.halve"), "done", "{states:?}");
        assert_eq!(state(&states, "each[1].y.else.double"), "not_taken");
        assert_eq!(state(&states, "each[0].y.then.halve"), "not_taken");
    }

    // The taken arm fails: the run fails with that failure, the rest skipped.
    let (alone, distributed) = both_ways(&cluster, failing_arm::workflow(), "arm-3", (3,)).await;
    assert_eq!(failed(&alone), failed(&distributed));
    assert_eq!(failed(&distributed).0, ["out.then.risky"]);
    let states = states(&cluster, "arm-3").await;
    assert_eq!(state(&states, "out"), "skipped");
    assert_eq!(state(&states, "out.else.fallback"), "not_taken");

    // A handled failure whose value the output still needs: the run fails with it.
    let needed = handled_but_needed::workflow();
    let (alone, distributed) = both_ways(&cluster, needed, "needed-3", (3,)).await;
    assert_eq!(failed(&alone).0, failed(&distributed).0);
    assert_eq!(failed(&distributed).0, ["tried"]);
    let status = cluster.status("needed-3").await.unwrap().unwrap();
    assert_eq!(status.status, "failed");
    // And with a value, it succeeds.
    cluster
        .submit(handled_but_needed::workflow(), "needed-4", (4,))
        .await
        .unwrap();
    let output = ended(&cluster, handled_but_needed::workflow(), "needed-4").await;
    assert_eq!(output.unwrap(), "40 fine");

    // An item's branch reads its own decision, not the workflow's node of that index.
    let made = branch_per_made_item::workflow();
    let (expected, output) = both_ways(&cluster, made, "made-7", (7,)).await;
    let expected = expected.unwrap();
    assert_eq!(output.unwrap(), expected);
    // Halved evens (0, 1, 2, 3) and doubled odds (2, 6, 10).
    assert_eq!(expected, 24);

    // Failures inside a fan-out that succeeded are not handled by a `match` on it.
    let inside = failures_inside_a_success::workflow();
    let (alone, distributed) = both_ways(&cluster, inside, "inside-4", (4,)).await;
    assert_eq!(failed(&alone).0, failed(&distributed).0);
    assert_eq!(failed(&distributed).0, ["tried[0]", "tried[3]"]);
    // The skipped tasks are listed as one process lists them: none of the workflow's.
    assert_eq!(failed(&alone).1, failed(&distributed).1);

    stop.send(true).unwrap();
    for worker in running {
        assert_eq!(worker.await.unwrap().lost, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_in_an_arm_not_taken_is_a_fault_as_in_one_process() {
    let Some(db) = Database::new("dist_output_in_arm") else {
        return;
    };
    let cluster = Cluster::connect(&db.url).unwrap();
    static WORKFLOW: std::sync::OnceLock<Workflow<(u64,), u64>> = std::sync::OnceLock::new();
    let workflow = WORKFLOW.get_or_init(output_in_an_arm);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = workers(
        &cluster,
        |worker| worker.serve(workflow).unwrap(),
        1,
        &stopped,
    );
    let (alone, distributed) = both_ways(&cluster, workflow, "arm-4", (4,)).await;
    let (alone, distributed) = (alone.unwrap_err(), distributed.unwrap_err());
    for error in [&alone, &distributed] {
        let Error::Fault { message, .. } = error else {
            panic!("{alone:?} / {distributed:?}")
        };
        assert!(message.contains("`doubled`"), "{message}");
        assert!(message.contains("not taken"), "{message}");
    }
    assert_eq!(alone.to_string(), distributed.to_string());
    let status = cluster.status("arm-4").await.unwrap().unwrap();
    assert_eq!(status.status, "failed");
    // Taken, it is the output.
    cluster.submit(workflow, "arm-12", (12,)).await.unwrap();
    assert_eq!(ended(&cluster, workflow, "arm-12").await.unwrap(), 24);
    stop.send(true).unwrap();
    for worker in running {
        assert_eq!(worker.await.unwrap().lost, 0);
    }
}
