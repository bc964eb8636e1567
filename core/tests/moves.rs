//! Inputs taken by value: a binding written without `&` is moved into its one reader,
//! never cloned by Aqueduct (the types here are not `Clone`); `retry_clones` clones for
//! every attempt but the last; a `for` over a binding by value moves each item.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aqueduct::prelude::*;
use aqueduct::{RunOutcome, TaskStatus};

/// Not `Clone`: a task that receives it by value got the original.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Product {
    id: u64,
    price: u64,
}

#[task]
fn load(n: &u64) -> Vec<Product> {
    (0..*n).map(|id| Product { id, price: id * 10 }).collect()
}

/// Takes the products: splits them without a copy.
#[task]
fn partition(products: Vec<Product>) -> (Vec<Product>, Vec<Product>) {
    products.into_iter().partition(|p| p.id % 2 == 0)
}

#[task]
fn total(parts: &(Vec<Product>, Vec<Product>)) -> u64 {
    parts.0.iter().chain(&parts.1).map(|p| p.price).sum()
}

workflow! {
    fn moved_once(n: u64) -> u64 {
        let products = load(&n);
        let parts = partition(products);
        total(&parts)
    }
}

#[tokio::test]
async fn a_binding_passed_without_ampersand_is_moved_into_its_task() {
    // 0 + 10 + … + 90
    assert_eq!(moved_once(10).await.unwrap(), 450);
}

#[task]
fn consume(products: Vec<Product>) -> usize {
    products.len()
}

workflow! {
    fn parameter_moved(products: Vec<Product>) -> usize {
        consume(products)
    }
}

#[tokio::test]
async fn a_workflow_parameter_can_be_moved() {
    let products = (0..3).map(|id| Product { id, price: 1 }).collect();
    assert_eq!(parameter_moved(products).await.unwrap(), 3);
}

/// Not `Clone` either: each item is moved into its own run.
#[derive(Debug)]
struct Page(String);

#[task]
fn pages(n: &u64) -> Vec<Page> {
    (0..*n).map(|i| Page(format!("page {i}"))).collect()
}

#[task]
fn into_text(page: Page) -> String {
    page.0
}

#[task]
fn joined(texts: &[String]) -> String {
    texts.join(", ")
}

workflow! {
    fn items_moved(n: u64) -> String {
        let all = pages(&n);
        let texts = for page in all {
            let text = into_text(page);
            tag(text)
        };
        joined(&texts)
    }
}

#[task]
fn tag(text: String) -> String {
    let words = text.split_whitespace().count();
    format!("{text} ({words})")
}

#[tokio::test]
async fn a_for_over_a_binding_by_value_moves_each_item_into_its_run() {
    assert_eq!(
        items_moved(3).await.unwrap(),
        "page 0 (2), page 1 (2), page 2 (2)"
    );
}

/// Counts its clones.
#[derive(Debug)]
struct Counted(Arc<AtomicUsize>);

impl Clone for Counted {
    fn clone(&self) -> Self {
        self.0.fetch_add(1, Ordering::SeqCst);
        Counted(Arc::clone(&self.0))
    }
}

#[task]
fn counted(clones: &Arc<AtomicUsize>) -> Counted {
    Counted(Arc::clone(clones))
}

static ATTEMPTS: AtomicUsize = AtomicUsize::new(0);

/// Fails twice, then succeeds: three attempts.
#[task(retries = 2, retry_delay = "1ms", retry_clones = true)]
fn flaky(value: Counted) -> Result<usize, TaskError> {
    let attempt = ATTEMPTS.fetch_add(1, Ordering::SeqCst) + 1;
    drop(value);
    if attempt < 3 {
        return Err(TaskError::transient(std::io::Error::other("not yet")));
    }
    Ok(attempt)
}

workflow! {
    fn cloned_for_retries(clones: Arc<AtomicUsize>) -> usize {
        let value = counted(&clones);
        flaky(value)
    }
}

#[tokio::test]
async fn retry_clones_gives_every_attempt_but_the_last_a_clone() {
    let clones = Arc::new(AtomicUsize::new(0));
    assert_eq!(cloned_for_retries(Arc::clone(&clones)).await.unwrap(), 3);
    // Attempts 1 and 2 got clones; attempt 3 took the value itself.
    assert_eq!(clones.load(Ordering::SeqCst), 2);
}

#[task]
fn broken(n: &u64) -> Result<Vec<Product>, TaskError> {
    Err(TaskError::msg(format!("no products for {n}")))
}

workflow! {
    fn skipped_mover(n: u64) -> usize {
        let products = broken(&n);
        consume(products)
    }
}

#[tokio::test]
async fn the_reader_of_a_failed_moved_value_is_skipped() {
    let RunOutcome { result, report, .. } = skipped_mover::workflow().runner().run((4,)).await;
    assert!(
        result
            .unwrap_err()
            .to_string()
            .contains("no products for 4")
    );
    assert_eq!(report.task("consume").unwrap().status, TaskStatus::Skipped);
}

/// Counts its drops.
struct Tracked(Arc<AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[task]
fn tracked(drops: &Arc<AtomicUsize>) -> Tracked {
    Tracked(Arc::clone(drops))
}

#[task]
async fn slow() -> u64 {
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    1
}

#[task]
fn consume_tracked(value: Tracked, _slow: &u64) -> usize {
    drop(value);
    1
}

workflow! {
    fn stopped_mover(drops: Arc<AtomicUsize>) -> usize {
        let value = tracked(&drops);
        let wait = slow();
        consume_tracked(value, &wait)
    }
}

/// Real time: the CPU task runs on rayon, which tokio's paused clock does not wait for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_value_whose_reader_is_cancelled_is_dropped_with_the_run() {
    let drops = Arc::new(AtomicUsize::new(0));
    let RunOutcome { result, report, .. } = stopped_mover::workflow()
        .runner()
        .timeout(std::time::Duration::from_millis(100))
        .run((Arc::clone(&drops),))
        .await;
    assert!(result.is_err());
    assert_eq!(report.task("value").unwrap().status, TaskStatus::Succeeded);
    assert_eq!(
        report.task("consume_tracked").unwrap().status,
        TaskStatus::Cancelled
    );
    // Not taken by its reader, it was dropped when the run ended: never leaked.
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

/// A moved value in a durable run: checkpointed before its reader takes it, restored
/// for that reader when the run resumes.
#[cfg(feature = "sqlite")]
mod durable {
    use super::*;

    #[path = "../scratch/mod.rs"]
    mod scratch;

    static LOADS: AtomicUsize = AtomicUsize::new(0);
    static CONSUMES: AtomicUsize = AtomicUsize::new(0);

    #[task]
    fn load_counted(n: &u64) -> Vec<Product> {
        LOADS.fetch_add(1, Ordering::SeqCst);
        (0..*n).map(|id| Product { id, price: id }).collect()
    }

    /// Fails on its first call, whatever it is given.
    #[task]
    fn consume_once_failing(products: Vec<Product>) -> Result<usize, TaskError> {
        if CONSUMES.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(TaskError::permanent(TaskError::msg("the first call fails")));
        }
        Ok(products.len())
    }

    workflow! {
        #[durable]
        fn kept(n: u64) -> usize {
            let products = load_counted(&n);
            consume_once_failing(products)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_moved_value_is_checkpointed_and_restored_for_its_reader() {
        let dir = scratch::TempDir::new("moves-durable");
        let store = Arc::new(aqueduct::store::SqliteStore::open(dir.db()).unwrap());
        let first = kept::workflow()
            .runner()
            .store(store.clone())
            .run_id("moved")
            .run((5,))
            .await;
        assert!(first.result.is_err());
        let again = kept::workflow()
            .runner()
            .store(store)
            .run_id("moved")
            .resume()
            .await;
        assert_eq!(again.result.unwrap(), 5);
        // Loaded once: the resumed run restored the checkpoint and moved it on.
        assert_eq!(LOADS.load(Ordering::SeqCst), 1);
        assert_eq!(
            again.report.task("products").unwrap().status,
            TaskStatus::Restored
        );
    }
}
