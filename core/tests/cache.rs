//! Cached tasks (`#[task(cache)]`): a result is loaded instead of computed when the
//! task's code, version and inputs are those of an earlier run's call; anything else
//! runs the task. The cache never fails a run.
#![cfg(feature = "sqlite")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aqueduct::prelude::*;
use aqueduct::store::{SqliteStore, Store};
use aqueduct::{RunReport, TaskStatus};

mod scratch;
use scratch::TempDir;

fn open(dir: &TempDir) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(dir.db()).unwrap())
}

fn status(report: &RunReport, node: &str) -> TaskStatus {
    report
        .tasks
        .iter()
        .find(|t| t.node == node)
        .unwrap_or_else(|| panic!("no node `{node}` in {report}"))
        .status
}

static PRICES: AtomicUsize = AtomicUsize::new(0);

/// An expensive lookup: cached by its input.
#[task(cache)]
fn price(item: &str) -> u64 {
    PRICES.fetch_add(1, Ordering::SeqCst);
    item.len() as u64 * 10
}

#[task]
fn double(x: &u64) -> u64 {
    x * 2
}

workflow! {
    fn priced(item: String) -> u64 {
        let p = price(&item);
        double(&p)
    }
}

#[tokio::test]
async fn same_inputs_load_the_result_and_other_inputs_run() {
    let dir = TempDir::new("cache-same");
    let store = open(&dir);
    let run = |item: &str| {
        let runner = priced::workflow().runner().cache(Arc::clone(&store));
        runner.run((item.to_owned(),))
    };
    let first = run("apple").await;
    assert_eq!(first.result.unwrap(), 100);
    assert_eq!(status(&first.report, "p"), TaskStatus::Succeeded);
    assert_eq!(PRICES.load(Ordering::SeqCst), 1);

    let second = run("apple").await;
    assert_eq!(second.result.unwrap(), 100);
    assert_eq!(
        PRICES.load(Ordering::SeqCst),
        1,
        "the cached result was loaded"
    );
    let p = second.report.tasks.iter().find(|t| t.node == "p").unwrap();
    assert_eq!(p.status, TaskStatus::Cached);
    assert!(p.attempts.is_empty(), "no attempt ran: {p:?}");
    let producer = p
        .cached_from
        .clone()
        .expect("names the run that computed it");
    assert!(producer.starts_with("priced-"), "{producer}");
    let table = second.report.to_string();
    assert!(table.contains("cached"), "{table}");
    assert!(
        table.contains(&format!("result computed by run {producer}")),
        "{table}"
    );
    // The task downstream of a cached one runs as usual.
    assert_eq!(status(&second.report, "double"), TaskStatus::Succeeded);

    let other = run("banana").await;
    assert_eq!(other.result.unwrap(), 120);
    assert_eq!(
        PRICES.load(Ordering::SeqCst),
        2,
        "another input runs the task"
    );
    assert_eq!(status(&other.report, "p"), TaskStatus::Succeeded);

    let entries = store.cache_entries().unwrap();
    assert_eq!(entries.len(), 2);
    assert!(
        entries
            .iter()
            .all(|e| e.task == "price" && e.key.len() == 64)
    );
}

#[tokio::test]
async fn without_a_store_a_cached_task_runs_every_time() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[task(cache)]
    fn counted(x: &u64) -> u64 {
        CALLS.fetch_add(1, Ordering::SeqCst);
        x + 1
    }
    workflow! {
        fn plain(x: u64) -> u64 { counted(&x) }
    }
    assert_eq!(plain(1).await.unwrap(), 2);
    assert_eq!(plain(1).await.unwrap(), 2);
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
}

/// Two builds of one task: the same name, another body. Each finds only its own
/// results.
mod before {
    use super::*;
    pub(super) static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[task(cache)]
    pub(super) fn score(x: &u64) -> u64 {
        CALLS.fetch_add(1, Ordering::SeqCst);
        x + 1
    }
    workflow! {
        pub(super) fn scored(x: u64) -> u64 { score(&x) }
    }
}

mod after {
    use super::*;
    pub(super) static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[task(cache)]
    pub(super) fn score(x: &u64) -> u64 {
        CALLS.fetch_add(1, Ordering::SeqCst);
        x + 2
    }
    workflow! {
        pub(super) fn scored(x: u64) -> u64 { score(&x) }
    }
}

/// The same code as `before`'s, under `version = 2`: what the code hash cannot see
/// (a function it calls) changed.
mod bumped {
    use super::*;
    pub(super) static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[task(cache, version = 2)]
    pub(super) fn score(x: &u64) -> u64 {
        CALLS.fetch_add(1, Ordering::SeqCst);
        x + 1
    }
    workflow! {
        pub(super) fn scored(x: u64) -> u64 { score(&x) }
    }
}

/// Word for word `before`'s task, in another module, where the functions it calls
/// may be others: it never finds `before`'s results.
mod same {
    use super::*;
    pub(super) static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[task(cache)]
    pub(super) fn score(x: &u64) -> u64 {
        CALLS.fetch_add(1, Ordering::SeqCst);
        x + 1
    }
    workflow! {
        pub(super) fn scored(x: u64) -> u64 { score(&x) }
    }
}

#[tokio::test]
async fn a_changed_body_or_version_runs_and_the_same_code_loads() {
    let dir = TempDir::new("cache-code");
    let store = open(&dir);
    let cached = |wf: &'static Workflow<(u64,), u64>| wf.runner().cache(Arc::clone(&store));
    assert_eq!(
        cached(before::scored::workflow())
            .run((5,))
            .await
            .result
            .unwrap(),
        6
    );
    assert_eq!(before::CALLS.load(Ordering::SeqCst), 1);

    // Another body: runs, and finds its own result the second time.
    let changed = cached(after::scored::workflow()).run((5,)).await;
    assert_eq!(changed.result.unwrap(), 7);
    assert_eq!(after::CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(status(&changed.report, "score"), TaskStatus::Succeeded);
    let again = cached(after::scored::workflow()).run((5,)).await;
    assert_eq!(again.result.unwrap(), 7);
    assert_eq!(status(&again.report, "score"), TaskStatus::Cached);

    // Same body, another version: runs.
    let bumped = cached(bumped::scored::workflow()).run((5,)).await;
    assert_eq!(bumped.result.unwrap(), 6);
    assert_eq!(bumped::CALLS.load(Ordering::SeqCst), 1);

    // Same body, same version, another module: runs.
    let same = cached(same::scored::workflow()).run((5,)).await;
    assert_eq!(same.result.unwrap(), 6);
    assert_eq!(status(&same.report, "score"), TaskStatus::Succeeded);
    assert_eq!(same::CALLS.load(Ordering::SeqCst), 1);

    // And `before` itself finds its own.
    let again = cached(before::scored::workflow()).run((5,)).await;
    assert_eq!(status(&again.report, "score"), TaskStatus::Cached);
    assert_eq!(before::CALLS.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn inputs_are_keyed_by_value_not_by_how_they_print() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[task(cache)]
    fn classify(x: &f64, weights: &std::collections::HashMap<(u8, u8), f64>) -> String {
        CALLS.fetch_add(1, Ordering::SeqCst);
        let total: f64 = weights.values().sum();
        format!("{x} {total}")
    }
    workflow! {
        fn classified(x: f64, weights: std::collections::HashMap<(u8, u8), f64>) -> String {
            classify(&x, &weights)
        }
    }
    let dir = TempDir::new("cache-keys");
    let store = open(&dir);
    let weights = |reversed: bool| {
        let mut pairs: Vec<((u8, u8), f64)> = (0..40).map(|i| ((i, 40 - i), 0.5)).collect();
        if reversed {
            pairs.reverse();
        }
        pairs
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>()
    };
    let run = |x: f64, reversed: bool| {
        let runner = classified::workflow().runner().cache(Arc::clone(&store));
        runner.run((x, weights(reversed)))
    };
    // NaN, inf and -inf are three inputs (JSON would write each as `null`).
    for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let outcome = run(x, false).await;
        assert_eq!(outcome.result.unwrap(), format!("{x} 20"));
        assert!(
            outcome.report.warnings.is_empty(),
            "{:?}",
            outcome.report.warnings
        );
    }
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
    // A map with tuple keys, built in another order: the same input.
    let again = run(f64::INFINITY, true).await;
    assert_eq!(status(&again.report, "classify"), TaskStatus::Cached);
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_expired_result_runs_the_task_again() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[task(cache = "50ms")]
    fn fresh(x: &u64) -> u64 {
        CALLS.fetch_add(1, Ordering::SeqCst);
        x * 3
    }
    workflow! {
        fn tripled(x: u64) -> u64 { fresh(&x) }
    }
    let dir = TempDir::new("cache-expiry");
    let store = open(&dir);
    let run = || {
        tripled::workflow()
            .runner()
            .cache(Arc::clone(&store))
            .run((2,))
    };
    assert_eq!(run().await.result.unwrap(), 6);
    let soon = run().await;
    assert_eq!(status(&soon.report, "fresh"), TaskStatus::Cached);
    let entry = &store.cache_entries().unwrap()[0];
    let ttl = entry.expires_ms.unwrap() - entry.created_ms;
    assert_eq!(ttl, 50);
    tokio::time::sleep(Duration::from_millis(80)).await;
    let late = run().await;
    assert_eq!(late.result.unwrap(), 6);
    assert_eq!(status(&late.report, "fresh"), TaskStatus::Succeeded);
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
    // Its new result replaced the expired one.
    assert_eq!(store.cache_entries().unwrap().len(), 1);
}

#[tokio::test]
async fn a_corrupt_row_runs_the_task_and_is_replaced() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[task(cache)]
    fn parsed(x: &u64) -> Vec<u64> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        vec![*x; 3]
    }
    workflow! {
        fn rows(x: u64) -> Vec<u64> { parsed(&x) }
    }
    let dir = TempDir::new("cache-corrupt");
    let store = open(&dir);
    let run = || {
        rows::workflow()
            .runner()
            .cache(Arc::clone(&store))
            .run((4,))
    };
    assert_eq!(run().await.result.unwrap(), vec![4, 4, 4]);
    // Another process wrote garbage over it (or a type changed its layout).
    rusqlite::Connection::open(dir.db())
        .unwrap()
        .execute("UPDATE cache SET data = X'7b6e6f'", [])
        .unwrap();
    let after = run().await;
    assert_eq!(after.result.unwrap(), vec![4, 4, 4], "never a failed run");
    assert_eq!(status(&after.report, "parsed"), TaskStatus::Succeeded);
    // The report says so.
    let warnings = &after.report.warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("`parsed` (task `parsed`): the cached result cannot be read"),
        "{warnings:?}"
    );
    assert!(after.report.to_string().contains("warning: `parsed`"));
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
    // Replaced: the next run loads it.
    let third = run().await;
    assert_eq!(status(&third.report, "parsed"), TaskStatus::Cached);
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
}

static FETCHES: AtomicUsize = AtomicUsize::new(0);

/// IO work: its lookup runs on tokio's blocking pool.
#[task(cache)]
async fn fetch(page: &u64) -> String {
    FETCHES.fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
    format!("page {page}")
}

#[task]
fn length(text: &str) -> usize {
    text.len()
}

workflow! {
    fn crawl(pages: Vec<u64>) -> Vec<usize> {
        for page in &pages {
            let text = fetch(page);
            length(&text)
        }
    }
}

#[tokio::test]
async fn fan_out_items_are_cached_one_by_one() {
    let dir = TempDir::new("cache-items");
    let store = open(&dir);
    let run = |pages: Vec<u64>| {
        crawl::workflow()
            .runner()
            .cache(Arc::clone(&store))
            .run((pages,))
    };
    let first = run(vec![1, 2, 3]).await;
    assert_eq!(first.result.unwrap(), vec![6, 6, 6]);
    assert_eq!(FETCHES.load(Ordering::SeqCst), 3);
    // One new page: only it is fetched.
    let second = run(vec![1, 2, 3, 40]).await;
    assert_eq!(second.result.unwrap(), vec![6, 6, 6, 7]);
    assert_eq!(FETCHES.load(Ordering::SeqCst), 4);
    let statuses: Vec<TaskStatus> = second
        .report
        .tasks
        .iter()
        .filter(|t| t.task == "fetch")
        .map(|t| t.status)
        .collect();
    assert_eq!(
        statuses,
        [
            TaskStatus::Cached,
            TaskStatus::Cached,
            TaskStatus::Cached,
            TaskStatus::Succeeded
        ]
    );
}

static SORTS: AtomicUsize = AtomicUsize::new(0);

/// Takes its input by value: the key is made before the call takes it.
#[task(cache)]
fn sorted(mut items: Vec<u64>) -> Vec<u64> {
    SORTS.fetch_add(1, Ordering::SeqCst);
    items.sort_unstable();
    items
}

#[task]
fn numbers(n: &u64) -> Vec<u64> {
    (0..*n).rev().collect()
}

workflow! {
    #[durable]
    fn ordered(n: u64) -> Vec<u64> {
        let items = numbers(&n);
        sorted(items)
    }
}

#[tokio::test]
async fn a_durable_run_caches_in_its_own_store_and_moved_inputs_are_keyed() {
    let dir = TempDir::new("cache-durable");
    let store = open(&dir);
    let run = |id: &str| {
        let runner = ordered::workflow().runner().store(Arc::clone(&store));
        runner.run_id(id).run((4,))
    };
    let first = run("one").await;
    assert_eq!(first.result.unwrap(), vec![0, 1, 2, 3]);
    let second = run("two").await;
    assert_eq!(second.result.unwrap(), vec![0, 1, 2, 3]);
    assert_eq!(SORTS.load(Ordering::SeqCst), 1);
    let items = second
        .report
        .tasks
        .iter()
        .find(|t| t.node == "sorted")
        .unwrap();
    assert_eq!(items.status, TaskStatus::Cached);
    assert_eq!(items.cached_from.as_deref(), Some("one"));
    // The cached result is the durable run's checkpoint too: `show` lists it.
    let ends = store.task_ends("two").unwrap();
    let end = ends.iter().find(|e| e.node == "sorted").unwrap();
    assert_eq!(end.status, "cached");
    assert_eq!(store.checkpoints("two").unwrap().len(), 2);

    // Given a cache of its own, a durable run keeps its results there instead.
    let elsewhere = TempDir::new("cache-durable-elsewhere");
    let cache = open(&elsewhere);
    let runner = ordered::workflow().runner().cache(Arc::clone(&cache));
    let third = runner
        .store(Arc::clone(&store))
        .run_id("three")
        .run((5,))
        .await;
    assert_eq!(third.result.unwrap(), vec![0, 1, 2, 3, 4]);
    assert_eq!(cache.cache_entries().unwrap().len(), 1);
    assert_eq!(cache.cache_entries().unwrap()[0].run, "three");
    assert_eq!(
        store.cache_entries().unwrap().len(),
        1,
        "only the first input's"
    );
}

#[tokio::test]
async fn clearing_the_cache_by_task_or_whole() {
    #[task(cache)]
    fn label(x: &u64) -> String {
        format!("#{x}")
    }
    #[task(cache)]
    fn shout(text: &str) -> String {
        text.to_uppercase()
    }
    workflow! {
        fn labelled(x: u64) -> String {
            let l = label(&x);
            shout(&l)
        }
    }
    let dir = TempDir::new("cache-clear");
    let store = open(&dir);
    let runner = || labelled::workflow().runner().cache(Arc::clone(&store));
    runner().run((1,)).await.result.unwrap();
    runner().run((2,)).await.result.unwrap();
    assert_eq!(store.cache_entries().unwrap().len(), 4);
    assert_eq!(store.clear_cache(Some("label"), None).unwrap(), 2);
    let left = store.cache_entries().unwrap();
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|e| e.task == "shout"));
    assert_eq!(store.clear_cache(None, None).unwrap(), 2);
    assert!(store.cache_entries().unwrap().is_empty());
}

#[tokio::test]
async fn loaded_results_give_back_permits_and_count_as_done() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    /// At most one at a time: a loaded result must give its permit back.
    #[task(cache, concurrency = 1)]
    fn limited(x: &u64) -> u64 {
        CALLS.fetch_add(1, Ordering::SeqCst);
        x * 5
    }
    workflow! {
        fn fives(xs: Vec<u64>) -> Vec<u64> {
            for x in &xs {
                limited(x)
            }
        }
    }
    let dir = TempDir::new("cache-permits");
    let store = open(&dir);
    let xs: Vec<u64> = (0..8).collect();
    let run = || {
        let runner = fives::workflow().runner().cache(Arc::clone(&store));
        let progress = runner.progress();
        (runner.run((xs.clone(),)), progress)
    };
    let (first, _) = run();
    assert_eq!(first.await.result.unwrap().len(), 8);
    let (second, progress) = run();
    let second = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("every loaded item gave its permit back");
    assert_eq!(
        second.result.unwrap(),
        (0..8).map(|x| x * 5).collect::<Vec<_>>()
    );
    assert_eq!(CALLS.load(Ordering::SeqCst), 8);
    assert_eq!(
        progress.running(),
        0,
        "a loaded result never counted as running"
    );
    assert_eq!(progress.done(), progress.total());
}

/// An input whose encoding takes 150 ms: a cache lookup keyed by it is slow (as a slow
/// store would make it).
struct SlowKey(String);

impl serde::Serialize for SlowKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        std::thread::sleep(Duration::from_millis(150));
        self.0.serialize(serializer)
    }
}

/// A cached task that a thread runs right after the task that made it ready starts
/// after its lookup, not when that task ended: the lookup's time is not the task's.
#[tokio::test]
async fn a_cached_task_run_after_its_input_starts_after_its_lookup() {
    workflow! {
        fn doubled_price(item: String) -> u64 {
            let named = named(&item);
            measured(&named)
        }
    }
    #[task]
    fn named(item: &str) -> SlowKey {
        SlowKey(format!("item {item}"))
    }
    /// Not `price`: other tests count its calls.
    #[task(cache)]
    fn measured(item: &SlowKey) -> u64 {
        item.0.len() as u64 * 10
    }
    let dir = TempDir::new("cache-slow-lookup");
    let outcome = doubled_price::workflow()
        .runner()
        .cache(open(&dir))
        .run(("pear".to_owned(),))
        .await;
    assert_eq!(outcome.result.unwrap(), 90);
    let task = |node: &str| {
        outcome
            .report
            .tasks
            .iter()
            .find(|t| t.node == node)
            .unwrap()
    };
    let (named, price) = (task("named"), task("measured"));
    let named_end = named.started_at.unwrap() + named.duration;
    let price_start = price.started_at.unwrap();
    assert!(
        price_start >= named_end + Duration::from_millis(140),
        "price started {price_start:?}, {named_end:?} was named's end: its 150 ms key \
         came first"
    );
    assert!(
        price.duration < Duration::from_millis(100),
        "price ran {:?}: its lookup is not its run",
        price.duration
    );
}
