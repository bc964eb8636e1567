//! Branches built by hand (`Builder::decide`, `arm`, `branch`, `branch_option`): the
//! runtime's part of `if`/`match`, without the macro.

use aqueduct::graph::{Builder, Step};
use aqueduct::task::{Kind, TaskError, TaskInfo};
use aqueduct::{Error, Outcome, RunOutcome, TaskStatus, Workflow};

const DOUBLE: TaskInfo = TaskInfo::new("double", Kind::Cpu);
const NEGATE: TaskInfo = TaskInfo::new("negate", Kind::Cpu);
const FETCH: TaskInfo = TaskInfo::new("fetch", Kind::Io);

fn status(report: &aqueduct::RunReport, node: &str) -> TaskStatus {
    report
        .task(node)
        .unwrap_or_else(|| panic!("{node} is reported: {report}"))
        .status
}

/// `if n > 10 { double(n) } else { negate(n) }`, with `after = label + 1` downstream.
fn if_else() -> Workflow<(i64,), i64> {
    let (mut b, (n,)) = Builder::<(i64,)>::new("if_else", ["n"]);
    let decision = b.decide("label.if", "n > 10", &["then", "else"], (n,), 0, |input| {
        let (n,) = input.get();
        Ok(if *n > 10 { 0 } else { 1 })
    });
    let then = b.arm(decision, 0, |b| {
        b.node(DOUBLE, "label.then.double", (n,), |input| {
            let (n,) = input.get();
            Step::done(Ok(n * 2))
        })
    });
    let otherwise = b.arm(decision, 1, |b| {
        b.node(NEGATE, "label.else.negate", (n,), |input| {
            let (n,) = input.get();
            Step::done(Ok(-n))
        })
    });
    let label = b.branch("label", decision, vec![then, otherwise]);
    let after = b.node(DOUBLE, "after", (label,), |input| {
        let (label,) = input.get();
        Step::done(Ok(label + 1))
    });
    b.output(after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_if_runs_the_arm_its_condition_picks_and_not_the_other() {
    let workflow = if_else();
    let RunOutcome { result, report, .. } = workflow.runner().run((21,)).await;
    assert_eq!(result.unwrap(), 43);
    assert_eq!(status(&report, "label.then.double"), TaskStatus::Succeeded);
    assert_eq!(status(&report, "label.else.negate"), TaskStatus::NotTaken);
    assert_eq!(status(&report, "label"), TaskStatus::Succeeded);
    let RunOutcome { result, report, .. } = workflow.runner().run((4,)).await;
    assert_eq!(result.unwrap(), -3);
    assert_eq!(status(&report, "label.then.double"), TaskStatus::NotTaken);
    assert_eq!(status(&report, "label.else.negate"), TaskStatus::Succeeded);
    let table = report.to_string();
    assert!(table.contains("not taken"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_if_without_else_gives_none_when_not_taken_and_what_reads_the_arm_is_not_taken() {
    let build = || {
        let (mut b, (n,)) = Builder::<(i64,)>::new("optional", ["n"]);
        let decision = b.decide("high.if", "n > 10", &["then", "else"], (n,), 0, |input| {
            let (n,) = input.get();
            Ok(if *n > 10 { 0 } else { 1 })
        });
        let then = b.arm(decision, 0, |b| {
            let doubled = b.node(DOUBLE, "high.then.doubled", (n,), |input| {
                let (n,) = input.get();
                Step::done(Ok(n * 2))
            });
            b.node(NEGATE, "high.then.negate", (doubled,), |input| {
                let (d,) = input.get();
                Step::done(Ok(-d))
            })
        });
        let high = b.branch_option("high", decision, then);
        b.output(high)
    };
    let workflow = build();
    assert_eq!(workflow.run((11,)).await.unwrap(), Some(-22));
    let RunOutcome { result, report, .. } = workflow.runner().run((1,)).await;
    assert_eq!(result.unwrap(), None);
    assert_eq!(status(&report, "high.then.doubled"), TaskStatus::NotTaken);
    assert_eq!(status(&report, "high.then.negate"), TaskStatus::NotTaken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_arm_skips_the_branch_and_fails_the_run() {
    let (mut b, (n,)) = Builder::<(i64,)>::new("failing_arm", ["n"]);
    let decision = b.decide("v.if", "true", &["then", "else"], (n,), 0, |_| Ok(0));
    let then = b.arm(decision, 0, |b| {
        b.node(DOUBLE, "v.then.fail", (n,), |_| {
            Step::<i64>::done(Err(TaskError::msg("boom")))
        })
    });
    let otherwise = b.arm(decision, 1, |b| {
        b.node(NEGATE, "v.else.negate", (n,), |input| {
            let (n,) = input.get();
            Step::done(Ok(-n))
        })
    });
    let v = b.branch("v", decision, vec![then, otherwise]);
    let RunOutcome { result, report, .. } = b.output(v).runner().run((1,)).await;
    assert!(matches!(result, Err(Error::Failed { .. })), "{result:?}");
    assert_eq!(status(&report, "v.then.fail"), TaskStatus::Failed);
    assert_eq!(status(&report, "v.else.negate"), TaskStatus::NotTaken);
    assert_eq!(status(&report, "v"), TaskStatus::Skipped);
}

/// `match fetch(n) { Ok(v) => v, _ => fallback }`: the decision reads the fetch's
/// outcome, so a failed fetch is handled.
fn fallback() -> Workflow<(i64,), i64> {
    let (mut b, (n,)) = Builder::<(i64,)>::new("fallback", ["n"]);
    let fetched = b.node(FETCH, "fetched", (n,), |input| {
        let (n,) = input.get();
        let n = *n;
        Step::pending(async move {
            if n < 0 {
                Err(TaskError::msg("the source is down"))
            } else {
                Ok(n)
            }
        })
    });
    let decision = b.decide(
        "data.match",
        "fetched",
        &["Ok(v)", "_"],
        (fetched,),
        1,
        |input| {
            let (fetched,) = input.outcomes();
            Ok(match fetched {
                Outcome::Ok(_) => 0,
                _ => 1,
            })
        },
    );
    let cached = b.arm(decision, 1, |b| {
        b.node(NEGATE, "data._.cached", (n,), |_| Step::done(Ok(7)))
    });
    let data = b.branch("data", decision, vec![fetched, cached]);
    b.output(data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_a_match_on_its_outcome_handles_does_not_fail_the_run() {
    let workflow = fallback();
    let RunOutcome { result, report, .. } = workflow.runner().run((-1,)).await;
    assert_eq!(result.unwrap(), 7);
    assert_eq!(status(&report, "fetched"), TaskStatus::Handled);
    let fetched = report.task("fetched").unwrap();
    assert!(
        fetched.error.as_deref().unwrap_or("").contains("down"),
        "the handled failure keeps its error: {report}"
    );
    assert_eq!(status(&report, "data._.cached"), TaskStatus::Succeeded);
    // The taken arm was the value itself: shared in place.
    let RunOutcome { result, report, .. } = workflow.runner().run((5,)).await;
    assert_eq!(result.unwrap(), 5);
    assert_eq!(status(&report, "data._.cached"), TaskStatus::NotTaken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_does_not_stop_a_run_on_a_failure_a_fallback_handles() {
    let RunOutcome { result, report, .. } = fallback().runner().fail_fast(true).run((-1,)).await;
    assert_eq!(result.unwrap(), 7, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_that_panics_fails_and_its_arms_are_skipped() {
    let (mut b, (n,)) = Builder::<(i64,)>::new("panicking", ["n"]);
    let decision = b.decide("v.if", "boom", &["then", "else"], (n,), 0, |_| {
        panic!("the condition panicked")
    });
    let then = b.arm(decision, 0, |b| {
        b.node(DOUBLE, "v.then.double", (n,), |input| {
            let (n,) = input.get();
            Step::done(Ok(n * 2))
        })
    });
    let otherwise = b.arm(decision, 1, |b| {
        b.node(NEGATE, "v.else.negate", (n,), |input| {
            let (n,) = input.get();
            Step::done(Ok(-n))
        })
    });
    let v = b.branch("v", decision, vec![then, otherwise]);
    let RunOutcome { result, report, .. } = b.output(v).runner().run((1,)).await;
    assert!(result.is_err());
    assert_eq!(status(&report, "v.if"), TaskStatus::Failed);
    assert_eq!(status(&report, "v.then.double"), TaskStatus::Skipped);
    assert_eq!(status(&report, "v.else.negate"), TaskStatus::Skipped);
    assert_eq!(status(&report, "v"), TaskStatus::Skipped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_a_branch_moves_the_arm_it_took() {
    let (mut b, (n,)) = Builder::<(u64,)>::new("moved_branch", ["n"]);
    let decision = b.decide("v.if", "n odd", &["then", "else"], (n,), 0, |input| {
        let (n,) = input.get();
        Ok((*n % 2) as u32)
    });
    let make = |b: &mut Builder<(u64,)>, name: &'static str| {
        b.node(DOUBLE, name, (n,), |input| {
            let (n,) = input.get();
            Step::done(Ok(vec![0u8; *n as usize]))
        })
    };
    let then = b.arm(decision, 0, |b| make(b, "v.then.make"));
    let otherwise = b.arm(decision, 1, |b| make(b, "v.else.make"));
    let v = b.branch("v", decision, vec![then, otherwise]);
    b.moved(v);
    let len = b.node(NEGATE, "len", (v,), move |input| {
        Step::done(Ok(input.take(v).len()))
    });
    let workflow = b.output(len);
    assert_eq!(workflow.run((4,)).await.unwrap(), 4);
    assert_eq!(workflow.run((5,)).await.unwrap(), 5);
}

#[test]
fn a_decision_draws_as_a_rhombus_with_its_arms_on_its_edges() {
    let graph = if_else().graph().to_mermaid();
    assert!(graph.contains("{\"label.if: n > 10\"}"), "{graph}");
    assert!(graph.contains("-->|\"then\"|"), "{graph}");
    assert!(graph.contains("-->|\"else\"|"), "{graph}");
    assert!(graph.contains("((\"label\"))"), "{graph}");
    let dot = if_else().graph().to_dot();
    assert!(dot.contains("shape=diamond"), "{dot}");
    assert!(dot.contains("label=\"else\""), "{dot}");
    let workflow = if_else();
    let node = workflow.graph().node(3);
    assert_eq!(node.name(), "label.else.negate");
    assert_eq!(node.arm(), Some((1, 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_picking_an_arm_it_does_not_have_fails_naming_it() {
    let (mut b, (n,)) = Builder::<(i64,)>::new("bad_arm", ["n"]);
    let decision = b.decide("v.if", "n", &["then", "else"], (n,), 0, |_| Ok(5));
    let then = b.arm(decision, 0, |b| {
        b.node(DOUBLE, "v.then.double", (n,), |input| {
            let (n,) = input.get();
            Step::done(Ok(n * 2))
        })
    });
    let v = b.branch_option("v", decision, then);
    let RunOutcome { result, report, .. } = b.output(v).runner().run((1,)).await;
    let error = result.unwrap_err().to_string();
    assert!(error.contains("picked arm 5 of 2"), "{error}");
    assert_eq!(status(&report, "v.then.double"), TaskStatus::Skipped);
}

#[test]
#[should_panic(expected = "a branch takes one value per arm of its decision")]
fn a_branch_given_fewer_values_than_arms_is_refused_when_built() {
    let (mut b, (n,)) = Builder::<(i64,)>::new("short", ["n"]);
    let decision = b.decide("v.if", "n", &["then", "else"], (n,), 0, |_| Ok(0));
    let then = b.arm(decision, 0, |b| {
        b.node(DOUBLE, "v.then.double", (n,), |input| {
            let (n,) = input.get();
            Step::done(Ok(n * 2))
        })
    });
    let _ = b.branch("v", decision, vec![then]);
}

#[test]
#[should_panic(expected = "arm 2 of a decision with 2 arms")]
fn an_arm_a_decision_does_not_have_is_refused_when_built() {
    let (mut b, (n,)) = Builder::<(i64,)>::new("no_arm", ["n"]);
    let decision = b.decide("v.if", "n", &["then", "else"], (n,), 0, |_| Ok(0));
    let _ = b.arm(decision, 2, |b| {
        b.node(DOUBLE, "v.x", (n,), |input| {
            let (n,) = input.get();
            Step::done(Ok(n * 2))
        })
    });
}
