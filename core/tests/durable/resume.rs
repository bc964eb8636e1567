//! What a resumed run restores: a checkpoint only if every input its task read is
//! restored too, so that the result is what an uninterrupted run would return; and
//! parameters compared by meaning, not by bytes.

use std::sync::atomic::{AtomicBool, Ordering};

use aqueduct::TaskStatus;
use aqueduct::prelude::*;

use super::scratch::TempDir;
use super::{open_store, resume, start};

static PAGE_FAILS: AtomicBool = AtomicBool::new(true);

#[task]
fn fetch_page(id: &u64) -> Result<String, TaskError> {
    if PAGE_FAILS.load(Ordering::SeqCst) {
        return Err(TaskError::msg("HTTP 503"));
    }
    Ok(format!("page {id}"))
}

/// Runs whatever happened to the page: a cleanup.
#[task]
fn tidy(page: &Outcome<String>) -> String {
    match page {
        Outcome::Ok(page) => format!("done with {page}"),
        Outcome::Failed(_) | Outcome::Skipped => "cleaned up after a failure".into(),
    }
}

workflow! {
    #[durable]
    fn fetch_and_tidy(id: u64) -> String {
        let page = fetch_page(&id);
        tidy(&page)
    }
}

#[tokio::test]
async fn a_cleanup_that_ran_on_a_failed_input_runs_again_when_the_input_runs_again() {
    let dir = TempDir::new("durable-tolerant");
    let store = open_store(&dir);
    PAGE_FAILS.store(true, Ordering::SeqCst);
    let first = start(fetch_and_tidy::workflow(), &store, "r", (7,)).await;
    assert!(first.result.is_err());
    let saved = store.checkpoints("r").unwrap();
    assert_eq!(saved.len(), 1, "the cleanup's value is checkpointed");
    assert_eq!(saved[0].data, b"\"cleaned up after a failure\"");

    PAGE_FAILS.store(false, Ordering::SeqCst);
    let again = resume(fetch_and_tidy::workflow(), &store, "r").await;
    assert_eq!(
        again.result.unwrap(),
        "done with page 7",
        "what an uninterrupted run with the page fetched returns"
    );
    assert_eq!(
        again.report.task("tidy").unwrap().status,
        TaskStatus::Succeeded,
        "the cleanup read an input that ran again: it ran again too"
    );
    let mut saved = store.checkpoints("r").unwrap();
    saved.sort_by(|a, b| a.node.cmp(&b.node));
    assert_eq!(
        saved[1].data, b"\"done with page 7\"",
        "the new value replaced the old"
    );
    assert_eq!(store.runs().unwrap()[0].status, "succeeded");

    let third = resume(fetch_and_tidy::workflow(), &store, "r").await;
    assert_eq!(third.result.unwrap(), "done with page 7");
    assert!(
        third
            .report
            .tasks
            .iter()
            .all(|t| t.status == TaskStatus::Restored),
        "{}",
        third.report
    );
}

static TIDY_FAILS: AtomicBool = AtomicBool::new(false);

#[task]
fn fetch_page2(id: &u64) -> Result<String, TaskError> {
    if PAGE2_FAILS.load(Ordering::SeqCst) {
        return Err(TaskError::msg("HTTP 503"));
    }
    Ok(format!("page {id}"))
}

static PAGE2_FAILS: AtomicBool = AtomicBool::new(true);

#[task]
fn fragile_tidy(page: &Outcome<String>) -> Result<String, TaskError> {
    if TIDY_FAILS.load(Ordering::SeqCst) {
        return Err(TaskError::msg("tidy broke"));
    }
    Ok(match page {
        Outcome::Ok(page) => format!("done with {page}"),
        _ => "cleaned up after a failure".into(),
    })
}

workflow! {
    #[durable]
    fn fetch_and_fragile_tidy(id: u64) -> String {
        let page = fetch_page2(&id);
        fragile_tidy(&page)
    }
}

/// A checkpoint that a resume did not restore (its input ran again) is discarded:
/// even if the task then fails, a later resume cannot restore the stale value.
#[tokio::test]
async fn a_checkpoint_not_restored_is_discarded_so_no_later_resume_restores_it() {
    let dir = TempDir::new("durable-discarded");
    let store = open_store(&dir);
    let first = start(fetch_and_fragile_tidy::workflow(), &store, "r", (7,)).await;
    assert!(first.result.is_err());
    assert_eq!(
        store.checkpoints("r").unwrap().len(),
        1,
        "the cleanup's value"
    );

    // The page now loads, but the cleanup fails: it has no new checkpoint.
    PAGE2_FAILS.store(false, Ordering::SeqCst);
    TIDY_FAILS.store(true, Ordering::SeqCst);
    let second = resume(fetch_and_fragile_tidy::workflow(), &store, "r").await;
    assert!(second.result.is_err());
    let saved = store.checkpoints("r").unwrap();
    assert_eq!(saved.len(), 1, "only the page's: {saved:?}");
    assert_eq!(saved[0].node, "page");

    TIDY_FAILS.store(false, Ordering::SeqCst);
    let third = resume(fetch_and_fragile_tidy::workflow(), &store, "r").await;
    assert_eq!(
        third.result.unwrap(),
        "done with page 7",
        "never the stale value"
    );
    assert_eq!(
        third.report.task("fragile_tidy").unwrap().status,
        TaskStatus::Succeeded
    );
}

#[task]
fn weigh(weights: &std::collections::HashMap<String, u64>) -> u64 {
    weights.values().sum()
}

workflow! {
    #[durable]
    fn weighed(weights: std::collections::HashMap<String, u64>) -> u64 {
        weigh(&weights)
    }
}

#[tokio::test]
async fn a_map_parameter_given_again_resumes_its_run_whatever_its_order() {
    let dir = TempDir::new("durable-map");
    let store = open_store(&dir);
    // Each map has its own random hasher, so the two list their keys in other orders.
    let weights = || -> std::collections::HashMap<String, u64> {
        (0..64).map(|i| (format!("key-{i}"), i)).collect()
    };
    let first = start(weighed::workflow(), &store, "r", (weights(),)).await;
    assert_eq!(first.result.unwrap(), (0..64).sum::<u64>());
    for _ in 0..3 {
        let again = start(weighed::workflow(), &store, "r", (weights(),)).await;
        assert_eq!(again.result.unwrap(), (0..64).sum::<u64>());
    }
    let mut other = weights();
    other.insert("key-0".into(), 1);
    let refused = start(weighed::workflow(), &store, "r", (other,)).await;
    assert!(
        matches!(refused.result, Err(Error::InputChanged { .. })),
        "{:?}",
        refused.result
    );
}
