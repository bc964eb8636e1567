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
