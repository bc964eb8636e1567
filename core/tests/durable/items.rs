//! Durable fan-outs item by item: each item's nodes are checkpointed as `each[i].name`,
//! a resumed run restores every item that finished and runs only the rest, and an item
//! resumes from its last checkpointed step.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use aqueduct::TaskStatus;
use aqueduct::prelude::*;

use super::scratch::TempDir;
use super::{open_store, resume, start};

/// How many times each step ran, per item.
static FETCHES: Mutex<Vec<u64>> = Mutex::new(Vec::new());
static PARSES: Mutex<Vec<u64>> = Mutex::new(Vec::new());
/// Items whose parse fails while set.
static PARSE_FAILS: AtomicBool = AtomicBool::new(false);

fn note(log: &Mutex<Vec<u64>>, item: u64) {
    log.lock().unwrap().push(item);
}

fn count(log: &Mutex<Vec<u64>>, item: u64) -> usize {
    log.lock().unwrap().iter().filter(|&&i| i == item).count()
}

#[task]
fn pages(n: &u64) -> Vec<u64> {
    (0..*n).collect()
}

#[task]
async fn fetch(page: &u64) -> String {
    note(&FETCHES, *page);
    format!("page {page}")
}

#[task]
fn parse(page: &u64, body: &str) -> Result<usize, TaskError> {
    note(&PARSES, *page);
    if PARSE_FAILS.load(Ordering::SeqCst) && page % 3 == 1 {
        return Err(TaskError::msg(format!("page {page} is malformed")));
    }
    Ok(body.len())
}

#[task]
fn total(sizes: &[usize]) -> usize {
    sizes.iter().sum()
}

workflow! {
    #[durable]
    fn crawl(n: u64) -> usize {
        let list = pages(&n);
        let each = for page in &list {
            let body = fetch(page);
            parse(page, &body)
        };
        total(&each)
    }
}

#[tokio::test]
async fn a_resumed_run_reruns_only_the_items_that_failed_from_their_failed_step() {
    let dir = TempDir::new("durable-items");
    let store = open_store(&dir);
    FETCHES.lock().unwrap().clear();
    PARSES.lock().unwrap().clear();
    PARSE_FAILS.store(true, Ordering::SeqCst);
    let first = start(crawl::workflow(), &store, "crawl-1", (9,)).await;
    let error = first.result.unwrap_err().to_string();
    assert!(error.contains("page 1 is malformed"), "{error}");
    let saved: Vec<String> = store
        .checkpoints("crawl-1")
        .unwrap()
        .into_iter()
        .map(|c| c.node)
        .collect();
    assert!(saved.contains(&"each[0].body".to_owned()), "{saved:?}");
    assert!(saved.contains(&"each[0].parse".to_owned()), "{saved:?}");
    assert!(saved.contains(&"each[1].body".to_owned()), "{saved:?}");
    assert!(!saved.contains(&"each[1].parse".to_owned()), "{saved:?}");

    PARSE_FAILS.store(false, Ordering::SeqCst);
    let again = resume(crawl::workflow(), &store, "crawl-1").await;
    assert_eq!(again.result.unwrap(), 9 * "page 0".len());
    for page in 0..9 {
        assert_eq!(count(&FETCHES, page), 1, "page {page} was fetched once");
        let parses = if page % 3 == 1 { 2 } else { 1 };
        assert_eq!(count(&PARSES, page), parses, "page {page}'s parses");
    }
    let report = &again.report;
    let status = |node: &str| report.task(node).map(|t| t.status);
    // Page 5 finished: restored whole. Page 4 failed at its parse: its fetch is
    // restored, its parse runs again.
    assert_eq!(status("body[5]"), Some(TaskStatus::Restored), "{report}");
    assert_eq!(status("parse[5]"), Some(TaskStatus::Restored), "{report}");
    assert_eq!(status("body[4]"), Some(TaskStatus::Restored), "{report}");
    assert_eq!(status("parse[4]"), Some(TaskStatus::Succeeded), "{report}");
}

static SLOW_CALLS: AtomicUsize = AtomicUsize::new(0);

#[task]
async fn slow_square(x: &u64) -> u64 {
    SLOW_CALLS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(10 * (x % 5))).await;
    x * x
}

#[task]
fn numbers(n: &u64) -> Vec<u64> {
    (0..*n).collect()
}

#[task]
fn sum(xs: &[u64]) -> u64 {
    xs.iter().sum()
}

workflow! {
    #[durable]
    fn squares(n: u64) -> u64 {
        let xs = numbers(&n);
        let each = for x in &xs {
            slow_square(x)
        };
        sum(&each)
    }
}

#[tokio::test]
async fn a_run_stopped_midway_keeps_the_items_that_finished() {
    let dir = TempDir::new("durable-items-stop");
    let store = open_store(&dir);
    SLOW_CALLS.store(0, Ordering::SeqCst);
    let runner = squares::workflow()
        .runner()
        .store(std::sync::Arc::clone(&store))
        .run_id("sq")
        .timeout(std::time::Duration::from_millis(25));
    let first = runner.run((40,)).await;
    assert!(first.result.is_err(), "the run timed out");
    let finished = store
        .checkpoints("sq")
        .unwrap()
        .iter()
        .filter(|c| c.node.starts_with("each["))
        .count();
    let first_calls = SLOW_CALLS.load(Ordering::SeqCst);
    assert!(finished > 0 && finished < 40, "{finished} items finished");

    let again = resume(squares::workflow(), &store, "sq").await;
    let expected: u64 = (0..40u64).map(|x| x * x).sum();
    assert_eq!(again.result.unwrap(), expected);
    let reruns = SLOW_CALLS.load(Ordering::SeqCst) - first_calls;
    assert_eq!(
        reruns,
        40 - finished,
        "only the items without a checkpoint ran again"
    );
}

/// Fails for every third page, always.
#[task]
fn strict_parse(page: &u64, body: &str) -> Result<usize, TaskError> {
    if page % 3 == 1 {
        return Err(TaskError::msg(format!("page {page} is malformed")));
    }
    Ok(body.len())
}

#[task]
fn strict_fetch(page: &u64) -> String {
    format!("page {page}")
}

workflow! {
    fn strict_crawl(n: u64) -> usize {
        let list = pages(&n);
        let each = for page in &list {
            let body = strict_fetch(page);
            let parse = strict_parse(page, &body);
            parse
        };
        total(&each)
    }
}

#[tokio::test]
async fn the_report_of_many_items_is_a_line_of_counts_and_the_items_that_failed() {
    let outcome = strict_crawl::workflow()
        .runner()
        .item_rows(true)
        .run((30,))
        .await;
    assert!(outcome.result.is_err());
    let table = outcome.report.to_string();
    assert!(
        table.contains("parse[*]") && table.contains("30 items: 10 failed, 20 succeeded"),
        "{table}"
    );
    assert!(
        table.contains("body[*]") && table.contains("30 items: 30 succeeded"),
        "{table}"
    );
    // The failed items are listed, each with its error; the others are not.
    assert!(
        table.contains("parse[1] ") && table.contains("page 1 is malformed"),
        "{table}"
    );
    assert!(!table.contains("parse[2] "), "{table}");
}

/// Like `slow_square`, without the count (its test runs beside the others).
#[task]
async fn slow_double(x: &u64) -> u64 {
    tokio::time::sleep(std::time::Duration::from_millis(10 * (x % 5))).await;
    x * 2
}

workflow! {
    #[durable]
    fn doubles(n: u64) -> u64 {
        let xs = numbers(&n);
        let each = for x in &xs {
            slow_double(x)
        };
        sum(&each)
    }
}

#[cfg(feature = "postcard")]
#[tokio::test]
async fn postcard_checkpoints_resume_and_a_run_may_switch_formats_between_resumes() {
    use aqueduct::CheckpointFormat;
    let dir = TempDir::new("durable-postcard");
    let store = open_store(&dir);
    let runner = |format| {
        doubles::workflow()
            .runner()
            .store(std::sync::Arc::clone(&store))
            .run_id("pc")
            .checkpoint_format(format)
    };
    let first = runner(CheckpointFormat::Postcard)
        .timeout(std::time::Duration::from_millis(25))
        .run((30,))
        .await;
    assert!(first.result.is_err());
    let saved = store.checkpoints("pc").unwrap();
    assert!(saved.iter().all(|c| c.codec == "postcard"), "{saved:?}");
    let finished = saved.iter().filter(|c| c.node.starts_with("each[")).count();
    assert!(finished > 0);
    // Resumed writing JSON: the postcard checkpoints are read as written.
    let again = runner(CheckpointFormat::Json).resume().await;
    let expected: u64 = (0..30u64).map(|x| x * 2).sum();
    assert_eq!(again.result.unwrap(), expected);
    let codecs: std::collections::HashSet<String> = store
        .checkpoints("pc")
        .unwrap()
        .into_iter()
        .map(|c| c.codec)
        .collect();
    assert!(
        codecs.contains("json") && codecs.contains("postcard"),
        "{codecs:?}"
    );
}

static LAST_FAILS: AtomicBool = AtomicBool::new(true);

#[task]
async fn echo(x: &u64) -> Result<u64, TaskError> {
    if *x == 2999 && LAST_FAILS.load(Ordering::SeqCst) {
        return Err(TaskError::msg("the last item fails once"));
    }
    Ok(*x)
}

workflow! {
    #[durable]
    fn capped(n: u64) -> u64 {
        let xs = numbers(&n);
        let each = #[concurrency = 2] for x in &xs {
            echo(x)
        };
        sum(&each)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_fan_out_resumes_thousands_of_restored_items_without_deep_recursion() {
    let dir = TempDir::new("durable-capped");
    let store = open_store(&dir);
    LAST_FAILS.store(true, Ordering::SeqCst);
    let first = start(capped::workflow(), &store, "c", (3000,)).await;
    assert!(first.result.is_err());
    LAST_FAILS.store(false, Ordering::SeqCst);
    // Each restored item ends as it starts and starts the next: 2,999 of them in a row.
    let again = resume(capped::workflow(), &store, "c").await;
    assert_eq!(again.result.unwrap(), (0..3000u64).sum::<u64>());
}

static FEED_DOWN: AtomicBool = AtomicBool::new(true);

#[task]
async fn feed(day: &u64) -> Result<Vec<u64>, TaskError> {
    if FEED_DOWN.load(Ordering::SeqCst) {
        return Err(TaskError::msg("the feed is down"));
    }
    Ok(vec![day + 1, day + 2])
}

#[task]
fn fallback_rows(_day: &u64) -> Vec<u64> {
    vec![0, 0]
}

#[task]
fn score(row: &u64) -> u64 {
    row * 10
}

#[task]
fn flaky_total(day: &u64, scores: &[u64]) -> Result<u64, TaskError> {
    if *day == 1 && FEED_DOWN.load(Ordering::SeqCst) {
        return Err(TaskError::msg("day 1 cannot be totalled yet"));
    }
    Ok(scores.iter().sum())
}

workflow! {
    #[durable]
    fn nightly(days: Vec<u64>) -> Vec<u64> {
        let all = for day in &days {
            let fetched = feed(day);
            let rows = match fetched {
                Outcome::Ok(rows) => rows,
                _ => fallback_rows(day),
            };
            let scores = for row in &rows {
                score(row)
            };
            flaky_total(day, &scores)
        };
        all
    }
}

#[tokio::test]
async fn an_inner_fan_out_whose_input_runs_again_is_not_restored_from_old_items() {
    let dir = TempDir::new("durable-inner-stale");
    let store = open_store(&dir);
    FEED_DOWN.store(true, Ordering::SeqCst);
    // The feed is down: every day falls back to zero rows, day 1 fails to total.
    let first = start(nightly::workflow(), &store, "n", (vec![0, 1],)).await;
    assert!(first.result.is_err());
    let saved: Vec<String> = store
        .checkpoints("n")
        .unwrap()
        .into_iter()
        .map(|c| c.node)
        .collect();
    assert!(
        saved.contains(&"all[0].scores[0].score".to_owned()),
        "{saved:?}"
    );

    // Resumed with the feed up: the feed runs again (it failed), so the rows, the
    // inner fan-out and its items run again on the new rows.
    FEED_DOWN.store(false, Ordering::SeqCst);
    let again = resume(nightly::workflow(), &store, "n").await;
    assert_eq!(again.result.unwrap(), vec![30, 50], "{}", again.report);
}
