//! `if`/`else` and `match` in `workflow!`: the arm a condition picks runs, the others
//! are not taken; an `if` without `else` is an `Option`; a `match` on a binding's
//! outcome is a fallback that handles its failure.

use aqueduct::prelude::*;
use aqueduct::{RunOutcome, TaskStatus};

#[derive(Debug, Clone, PartialEq)]
enum Format {
    Csv(String),
    Json(String),
}

#[derive(Debug, Clone)]
struct Processed {
    quality_score: u32,
    kind: Format,
}

#[task]
fn process(score: &u32) -> Processed {
    let kind = if score.is_multiple_of(2) {
        Format::Csv("a,b".to_owned())
    } else {
        Format::Json("{}".to_owned())
    };
    Processed {
        quality_score: *score,
        kind,
    }
}

#[task]
fn refine(p: &Processed) -> String {
    format!("refined {}", p.quality_score)
}

#[task]
fn praise(p: &Processed) -> String {
    format!("great {}", p.quality_score)
}

#[task]
fn warn(p: &Processed) -> String {
    format!("poor {}", p.quality_score)
}

#[task]
fn parse_csv(text: &str) -> usize {
    text.split(',').count()
}

#[task]
fn parse_json(text: &str) -> usize {
    text.len() * 100
}

#[task]
fn summarise(high: &Option<String>, label: &String, parsed: &usize) -> String {
    format!("{high:?} {label} {parsed}")
}

workflow! {
    fn pipeline(score: u32) -> String {
        let processed = process(&score);
        let high = if processed.quality_score > 80 { refine(&processed) };
        let label = if processed.quality_score > 80 {
            praise(&processed)
        } else {
            warn(&processed)
        };
        let parsed = match processed.kind {
            Format::Csv(text) => parse_csv(text),
            Format::Json(doc) => parse_json(doc),
        };
        summarise(&high, &label, &parsed)
    }
}

fn status(report: &aqueduct::RunReport, node: &str) -> TaskStatus {
    report
        .task(node)
        .unwrap_or_else(|| panic!("{node} is reported: {report}"))
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_taken_arms_run_and_the_others_are_not_taken() {
    let RunOutcome { result, report, .. } = pipeline::workflow().runner().run((90,)).await;
    assert_eq!(result.unwrap(), "Some(\"refined 90\") great 90 2");
    assert_eq!(status(&report, "high.then.refine"), TaskStatus::Succeeded);
    assert_eq!(status(&report, "label.then.praise"), TaskStatus::Succeeded);
    assert_eq!(status(&report, "label.else.warn"), TaskStatus::NotTaken);
    assert_eq!(
        status(&report, "parsed.Csv.parse_csv"),
        TaskStatus::Succeeded
    );
    assert_eq!(
        status(&report, "parsed.Json.parse_json"),
        TaskStatus::NotTaken
    );

    let RunOutcome { result, report, .. } = pipeline::workflow().runner().run((7,)).await;
    assert_eq!(result.unwrap(), "None poor 7 200");
    assert_eq!(status(&report, "high.then.refine"), TaskStatus::NotTaken);
    assert_eq!(status(&report, "high"), TaskStatus::Succeeded);
    assert_eq!(status(&report, "label.then.praise"), TaskStatus::NotTaken);
    assert_eq!(
        status(&report, "parsed.Json.parse_json"),
        TaskStatus::Succeeded
    );
}

#[task]
async fn fetch(source: &i64) -> Result<Vec<u8>, std::io::Error> {
    if *source < 0 {
        Err(std::io::Error::other("the source is down"))
    } else {
        Ok(vec![1; *source as usize])
    }
}

#[task]
fn cached(_source: &i64) -> Vec<u8> {
    vec![9, 9]
}

#[task]
fn clean(data: &[u8]) -> Vec<u8> {
    data.iter().map(|b| b * 2).collect()
}

#[task]
fn size(data: &[u8]) -> usize {
    data.len()
}

#[task]
fn describe_error(error: &TaskError) -> String {
    error.to_string()
}

workflow! {
    fn with_fallback(source: i64) -> usize {
        let fetched = fetch(&source);
        let data = match fetched {
            Outcome::Ok(data) => clean(data),
            _ => cached(&source),
        };
        size(&data)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_rescues_a_failed_fetch_and_the_run_succeeds() {
    let RunOutcome { result, report, .. } = with_fallback::workflow().runner().run((-1,)).await;
    assert_eq!(result.unwrap(), 2, "{report}");
    assert_eq!(status(&report, "fetched"), TaskStatus::Handled);
    assert_eq!(status(&report, "data.Ok.clean"), TaskStatus::NotTaken);
    assert_eq!(status(&report, "data._.cached"), TaskStatus::Succeeded);
    let fetched = report.task("fetched").unwrap();
    assert!(
        fetched.error.as_deref().unwrap_or("").contains("down"),
        "{report}"
    );

    let RunOutcome { result, report, .. } = with_fallback::workflow().runner().run((3,)).await;
    assert_eq!(result.unwrap(), 3);
    assert_eq!(status(&report, "fetched"), TaskStatus::Succeeded);
    assert_eq!(status(&report, "data._.cached"), TaskStatus::NotTaken);
}

workflow! {
    fn value_or_fallback(source: i64) -> Vec<u8> {
        let fetched = fetch(&source);
        let error = match fetched {
            Outcome::Failed(error) => describe_error(error),
            _ => describe_error_none(&source),
        };
        let data = match fetched {
            Outcome::Ok(data) => data,
            _ => cached(&source),
        };
        keep(&data, &error)
    }
}

#[task]
fn describe_error_none(_source: &i64) -> String {
    "no error".to_owned()
}

#[task]
fn keep(data: &[u8], error: &str) -> Vec<u8> {
    let mut data = data.to_vec();
    data.push(error.len() as u8);
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arm_may_give_the_matched_value_itself_and_read_the_failure() {
    let RunOutcome { result, report, .. } = value_or_fallback::workflow().runner().run((2,)).await;
    assert_eq!(result.unwrap(), vec![1, 1, 8], "{report}");
    let RunOutcome { result, report, .. } = value_or_fallback::workflow().runner().run((-5,)).await;
    let expected_error = "the source is down".len() as u8;
    assert_eq!(result.unwrap(), vec![9, 9, expected_error], "{report}");
    assert_eq!(status(&report, "fetched"), TaskStatus::Handled);
}

#[task]
fn double(x: &u64) -> u64 {
    x * 2
}

#[task]
fn halve(x: &u64) -> u64 {
    x / 2
}

#[task]
fn total(xs: &[u64]) -> u64 {
    xs.iter().sum()
}

workflow! {
    fn branch_in_loop(xs: Vec<u64>) -> u64 {
        let each = for x in &xs {
            let y = if x % 2 == 0 { halve(x) } else { double(x) };
            y
        };
        total(&each)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_inside_a_for_decides_per_item() {
    let RunOutcome { result, report, .. } = branch_in_loop::workflow()
        .runner()
        .run((vec![1, 2, 3, 4],))
        .await;
    assert_eq!(result.unwrap(), 2 + 1 + 6 + 2, "{report}");
    assert_eq!(status(&report, "y.then.halve[0]"), TaskStatus::NotTaken);
    assert_eq!(status(&report, "y.then.halve[1]"), TaskStatus::Succeeded);
}

workflow! {
    fn nested(n: u64) -> u64 {
        let big = if n > 10 {
            let doubled = double(&n);
            if doubled > 100 { halve(&doubled) } else { double(&doubled) }
        } else {
            halve(&n)
        };
        double(&big)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_branches_take_one_path() {
    assert_eq!(nested(4).await.unwrap(), 4);
    assert_eq!(nested(20).await.unwrap(), 160);
    let RunOutcome { result, report, .. } = nested::workflow().runner().run((60,)).await;
    assert_eq!(result.unwrap(), 120);
    assert_eq!(
        status(&report, "big.then.if.then.halve"),
        TaskStatus::Succeeded
    );
    assert_eq!(
        status(&report, "big.then.if.else.double"),
        TaskStatus::NotTaken
    );
    assert_eq!(status(&report, "big.else.halve"), TaskStatus::NotTaken);
    let RunOutcome { report, .. } = nested::workflow().runner().run((1,)).await;
    assert_eq!(status(&report, "big.then.doubled"), TaskStatus::NotTaken);
    assert_eq!(status(&report, "big.then.if"), TaskStatus::NotTaken);
    assert_eq!(
        status(&report, "big.then.if.then.halve"),
        TaskStatus::NotTaken
    );
}

#[test]
fn a_decision_is_drawn_with_its_condition() {
    let mermaid = pipeline::workflow().graph().to_mermaid();
    assert!(
        mermaid.contains("label.if: processed.quality_score > 80"),
        "{mermaid}"
    );
    assert!(mermaid.contains("|\"Format::Csv(text)\"|"), "{mermaid}");
    assert!(mermaid.contains("((\"label\"))"), "{mermaid}");
}

#[task]
fn make(n: &u64) -> Vec<u64> {
    (0..*n).collect()
}

#[task]
fn sum_owned(xs: Vec<u64>) -> u64 {
    xs.into_iter().sum()
}

#[task]
fn len_owned(xs: Vec<u64>) -> u64 {
    xs.len() as u64
}

workflow! {
    fn moved_in_either_arm(n: u64) -> u64 {
        let xs = make(&n);
        // Each arm moves `xs`: only one of them runs.
        let out = if n > 3 { sum_owned(xs) } else { len_owned(xs) };
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_moved_in_two_arms_goes_to_the_one_taken() {
    assert_eq!(moved_in_either_arm(5).await.unwrap(), 10);
    assert_eq!(moved_in_either_arm(2).await.unwrap(), 2);
}

workflow! {
    fn shadowed(source: i64) -> usize {
        let data = fetch(&source);
        // The arm's `data` is the fetched value, shadowing the binding (as in Rust).
        let size = match data {
            Outcome::Ok(data) => size(data),
            _ => size_of_cache(&source),
        };
        size
    }
}

#[task]
fn size_of_cache(_source: &i64) -> usize {
    0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_may_shadow_a_binding() {
    assert_eq!(shadowed(4).await.unwrap(), 4);
    assert_eq!(shadowed(-4).await.unwrap(), 0);
}

static FLAKY: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Fails its first attempt in every run that starts from zero.
#[task(retries = 2, retry_delay = "1ms")]
fn flaky(x: &u64) -> Result<u64, TaskError> {
    if FLAKY.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
        return Err(TaskError::msg("first attempt fails"));
    }
    Ok(x + 1)
}

#[task(timeout = "5s")]
async fn slow_double(x: &u64) -> u64 {
    x * 2
}

workflow! {
    fn inner_total(xs: Vec<u64>) -> u64 {
        total(&xs)
    }
}

workflow! {
    fn everything_in_an_arm(xs: Vec<u64>) -> u64 {
        let n = total(&xs);
        let out = if n > 0 {
            let each = #[concurrency = 2] for x in &xs {
                let y = flaky(x);
                slow_double(&y)
            };
            let sub = inner_total(&each).await;
            sub
        } else {
            total(&xs)
        };
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_outs_caps_retries_timeouts_and_sub_workflows_work_inside_an_arm() {
    FLAKY.store(0, std::sync::atomic::Ordering::SeqCst);
    let RunOutcome { result, report, .. } = everything_in_an_arm::workflow()
        .runner()
        .run((vec![1, 2, 3],))
        .await;
    // (2 + 3 + 4) * 2
    assert_eq!(result.unwrap(), 18, "{report}");
    let retried = report
        .tasks
        .iter()
        .filter(|t| t.node.starts_with("y[") && t.attempts.len() == 2)
        .count();
    assert_eq!(retried, 1, "one item retried once: {report}");
    assert_eq!(status(&report, "out.then.sub.total"), TaskStatus::Succeeded);
    assert_eq!(status(&report, "out.else.total"), TaskStatus::NotTaken);
    // Not taken: the whole arm, its fan-out and sub-workflow included.
    let RunOutcome { result, report, .. } = everything_in_an_arm::workflow()
        .runner()
        .run((vec![],))
        .await;
    assert_eq!(result.unwrap(), 0);
    assert_eq!(status(&report, "out.then.each"), TaskStatus::NotTaken);
    assert_eq!(status(&report, "out.then.sub"), TaskStatus::NotTaken);
}

#[task]
fn risky(x: &u64) -> Result<u64, TaskError> {
    if *x == 2 {
        Err(TaskError::msg("item 2 is bad"))
    } else {
        Ok(*x)
    }
}

#[task]
fn fallback_total(xs: &[u64]) -> u64 {
    xs.len() as u64 * 100
}

workflow! {
    fn handled_fan_out(xs: Vec<u64>) -> u64 {
        let each = for x in &xs {
            risky(x)
        };
        let out = match each {
            Outcome::Ok(each) => total(each),
            _ => fallback_total(&xs),
        };
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_match_on_a_fan_outs_outcome_handles_its_items_failures() {
    for fail_fast in [false, true] {
        let RunOutcome { result, report, .. } = handled_fan_out::workflow()
            .runner()
            .fail_fast(fail_fast)
            .run((vec![1, 2, 3],))
            .await;
        assert_eq!(result.unwrap(), 300, "fail_fast {fail_fast}: {report}");
        assert_eq!(status(&report, "each"), TaskStatus::Handled);
    }
}

workflow! {
    fn nested_reader_of_a_handled_failure(source: i64) -> usize {
        let fetched = fetch(&source);
        let n = match fetched {
            Outcome::Ok(data) => if data.len() > 3 { size(data) } else { size_of_cache(&source) },
            _ => size_of_cache(&source),
        };
        n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_decision_reading_a_part_does_not_take_the_handling_from_the_match() {
    let RunOutcome { result, report, .. } = nested_reader_of_a_handled_failure::workflow()
        .runner()
        .run((-1,))
        .await;
    assert_eq!(result.unwrap(), 0, "{report}");
    assert_eq!(status(&report, "fetched"), TaskStatus::Handled);
}

workflow! {
    fn other_reader_of_a_handled_failure(source: i64) -> usize {
        let fetched = fetch(&source);
        let _data = match fetched {
            Outcome::Ok(data) => data,
            _ => cached(&source),
        };
        let checked = size(&fetched);
        checked
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handled_failure_that_another_reader_needed_fails_the_run_naming_it() {
    let error = other_reader_of_a_handled_failure(-1).await.unwrap_err();
    assert!(error.to_string().contains("the source is down"), "{error}");
}

workflow! {
    fn choose(a: u64, b: u64) -> u64 {
        if a > b { a } else { b }
    }
}

workflow! {
    fn calls_choose(a: u64, b: u64) -> u64 {
        let c = choose(&a, &b).await;
        double(&c)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_workflow_giving_back_a_parameter_fails_with_a_clear_error() {
    assert_eq!(choose(3, 5).await.unwrap(), 5);
    let error = calls_choose(3, 5).await.unwrap_err().to_string();
    assert!(error.contains("one of its parameters"), "{error}");
}

#[task]
async fn sleepy(n: &u64) -> u64 {
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    *n
}

#[task]
fn quick(n: &u64) -> u64 {
    n + 1
}

#[task]
fn use_slow(slow: &u64) -> u64 {
    *slow
}

workflow! {
    fn does_not_wait_for_the_arm_not_taken(n: u64) -> u64 {
        let slow = sleepy(&n);
        let v = if n > 0 { quick(&n) } else { use_slow(&slow) };
        let after = double(&v);
        let both = total_of(&after, &slow);
        both
    }
}

#[task]
fn total_of(a: &u64, b: &u64) -> u64 {
    a + b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_does_not_wait_for_the_inputs_of_the_arms_not_taken() {
    let RunOutcome { result, report, .. } = does_not_wait_for_the_arm_not_taken::workflow()
        .runner()
        .run((4,))
        .await;
    assert_eq!(result.unwrap(), 14);
    let after = report.task("after").unwrap();
    let slow = report.task("slow").unwrap();
    let after_end = after.started_at.unwrap() + after.duration;
    let slow_end = slow.started_at.unwrap() + slow.duration;
    assert!(
        after_end < slow_end,
        "`after` ran while `slow` did: {report}"
    );
    assert_eq!(status(&report, "v.else.use_slow"), TaskStatus::NotTaken);
}

workflow! {
    fn closure_in_a_condition(xs: Vec<u64>, x: u64) -> u64 {
        // `x` in the closure is its own parameter, not the workflow's `x`.
        let v = if xs.iter().any(|x: &u64| *x > 10) { double(&x) } else { quick(&x) };
        v
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closure_parameter_in_a_condition_is_the_closures() {
    assert_eq!(closure_in_a_condition(vec![1, 20], 0).await.unwrap(), 0);
    assert_eq!(closure_in_a_condition(vec![1, 2], 50).await.unwrap(), 51);
}

workflow! {
    fn raw_names(r#type: u64) -> u64 {
        let v = if r#type > 1 { double(&r#type) } else { quick(&r#type) };
        v
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_identifiers_work_in_conditions() {
    assert_eq!(raw_names(3).await.unwrap(), 6);
}

#[task]
fn times(x: &u64, k: &u64) -> u64 {
    x * k
}

workflow! {
    /// The output is a branch whose arm is another branch's value.
    fn branch_of_a_branch(x: u64, k: u64) -> u64 {
        let inner = if x < 10 { times(&x, &k) } else { times(&k, &k) };
        if x < 100 { inner } else { times(&x, &x) }
    }
}

/// A run's output reached through two branches (aliases of the arm's node) survives
/// the drop of the run's other values at its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_reached_through_two_branches_is_returned() {
    assert_eq!(branch_of_a_branch(3, 5).await.unwrap(), 15);
    assert_eq!(branch_of_a_branch(30, 5).await.unwrap(), 25);
    assert_eq!(branch_of_a_branch(300, 5).await.unwrap(), 90_000);
}
