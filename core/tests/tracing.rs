//! Every run is a span and every task execution a span inside it, named after its task.

use aqueduct::prelude::*;

mod capture;
use capture::Capture;

#[task]
fn double(x: &u64) -> u64 {
    tracing::info!("doubling");
    x * 2
}

#[task]
async fn shout(x: &u64) -> String {
    tracing::info!("shouting");
    format!("{x}!")
}

workflow! {
    fn traced(x: u64) -> String {
        let twice = double(&x);
        shout(&twice)
    }
}

#[task]
fn fails(x: &u64) -> Result<u64, TaskError> {
    Err(TaskError::msg(format!("{x} is no good")))
}

workflow! {
    fn failing(x: u64) -> u64 {
        fails(&x)
    }
}

#[task]
fn items(n: &u64) -> Vec<u64> {
    (0..*n).collect()
}

workflow! {
    fn one_bad_item(n: u64) -> u64 {
        let xs = items(&n);
        let each = for x in &xs {
            fails_on_two(x)
        };
        fold(&each)
    }
}

#[task]
fn fails_on_two(x: &u64) -> Result<u64, TaskError> {
    if *x == 2 {
        return Err(TaskError::msg("two is bad"));
    }
    Ok(*x)
}

#[task]
fn fold(xs: &[u64]) -> u64 {
    xs.iter().sum()
}

/// The run's id in `line`'s workflow span: `workflow{name=traced run=<id>}`.
fn run_of(line: &str) -> Option<&str> {
    let start = line.find("workflow{name=traced run=")? + "workflow{name=traced run=".len();
    let end = start + line[start..].find('}')?;
    Some(&line[start..end])
}

/// One test, since the subscriber is global (tasks run on rayon's and tokio's threads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_and_tasks_are_spans_with_the_run_id_and_events() {
    let capture = Capture::install(tracing::Level::DEBUG);
    // Two runs of one workflow at once.
    let (a, b) = tokio::join!(traced(4), traced(5));
    assert_eq!((a.unwrap().as_str(), b.unwrap().as_str()), ("8!", "10!"));
    let _ = failing(1).await;
    let _ = one_bad_item(4).await;
    let log = capture.text();
    let lines: Vec<&str> = log.lines().collect();

    // Every line of a run carries its id, and the two runs have two ids.
    let doubling: Vec<&str> = lines
        .iter()
        .filter(|line| {
            line.contains(r#":task{task="double" node=twice attempt=1}: tracing: doubling"#)
        })
        .filter_map(|line| run_of(line))
        .collect();
    assert_eq!(doubling.len(), 2, "{log}");
    assert_ne!(doubling[0], doubling[1], "{log}");
    for run in &doubling {
        let of_run: Vec<&&str> = lines
            .iter()
            .filter(|line| run_of(line) == Some(run))
            .collect();
        let has = |text: &str| of_run.iter().any(|line| line.contains(text));
        assert!(has("INFO") && has("run started"), "{run}: {log}");
        assert!(
            has(r#"run ended status="succeeded" duration_ms="#),
            "{run}: {log}"
        );
        assert!(has(r#"task started node=twice attempt=1"#), "{run}: {log}");
        assert!(
            has(r#"task ended node=twice status=succeeded attempts=1 duration_ms="#),
            "{run}: {log}"
        );
        assert!(
            has(r#"task{task="shout" node=shout attempt=1}: tracing: shouting"#),
            "{run}: {log}"
        );
    }
    // A failure: the task's error at `error`, the run's end with its status.
    assert!(
        lines.iter().any(
            |line| line.contains("ERROR workflow{name=failing run=failing-")
                && line.contains("task failed node=\"fails\" attempts=1 error=1 is no good")
        ),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.contains("workflow{name=failing run=failing-")
                && line.contains(r#"run ended status="failed""#)),
        "{log}"
    );
    // A failed item is one error: the fan-out's own end, for its items, is not another.
    let errors: Vec<&&str> = lines
        .iter()
        .filter(|line| line.contains("ERROR workflow{name=one_bad_item run="))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("two is bad"), "{errors:#?}");
}
