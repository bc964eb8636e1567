//! Resources: `#[resource]` parameters a run is given (a client, a pool, a counter),
//! read by tasks with `&` like any input, never saved, checkpointed or part of a
//! durable run's input, so they need no serde.

#![cfg(feature = "sqlite")]
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use aqueduct::prelude::*;
use aqueduct::store::{SqliteStore, Store};

/// A stand-in for an HTTP client: counts its requests. Not `Serialize`.
#[derive(Default)]
struct Client {
    requests: AtomicU32,
}

impl Client {
    fn get(&self, path: &str) -> String {
        self.requests.fetch_add(1, Ordering::SeqCst);
        format!("GET {path}")
    }
}

#[task]
fn pages(n: &u32) -> Vec<u32> {
    (0..*n).collect()
}

#[task]
async fn fetch(page: &u32, client: &Arc<Client>) -> String {
    client.get(&format!("/page/{page}"))
}

#[task]
fn count(bodies: &[String], client: &Arc<Client>) -> (usize, u32) {
    (bodies.len(), client.requests.load(Ordering::SeqCst))
}

workflow! {
    #[durable]
    fn crawl(n: u32, #[resource] client: Arc<Client>) -> (usize, u32) {
        let ps = pages(&n);
        let bodies = for page in &ps {
            fetch(page, &client)
        };
        count(&bodies, &client)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_read_a_resource_the_run_is_given() {
    let client = Arc::new(Client::default());
    assert_eq!(crawl(4, Arc::clone(&client)).await.unwrap(), (4, 4));
    assert_eq!(client.requests.load(Ordering::SeqCst), 4);
    // The same through the workflow value: parameters, then resources.
    let again = crawl::workflow()
        .run_with((2,), (Arc::clone(&client),))
        .await
        .unwrap();
    assert_eq!(again, (2, 6));
    let outcome = crawl::workflow()
        .runner_with((Arc::new(Client::default()),))
        .run((3,))
        .await;
    assert_eq!(outcome.result.unwrap(), (3, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_run_saves_its_parameters_not_its_resources_and_resumes_with_new_ones() {
    let dir = std::env::temp_dir().join(format!("aqueduct-resources-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("runs.db");
    let _ = std::fs::remove_file(&path);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let first = Arc::new(Client::default());
    let outcome = crawl::workflow()
        .runner_with((Arc::clone(&first),))
        .store(Arc::clone(&store))
        .run_id("crawl-1")
        .run((3,))
        .await;
    assert_eq!(outcome.result.unwrap(), (3, 3));
    let record = store.run("crawl-1").unwrap().unwrap();
    assert_eq!(
        String::from_utf8(record.input).unwrap(),
        "[3]",
        "the input holds no resource"
    );
    // Resumed with another client: every task was checkpointed, none runs again.
    let second = Arc::new(Client::default());
    let resumed = crawl::workflow()
        .runner_with((Arc::clone(&second),))
        .store(store)
        .run_id("crawl-1")
        .resume()
        .await;
    assert_eq!(resumed.result.unwrap(), (3, 3));
    assert_eq!(second.requests.load(Ordering::SeqCst), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[task]
fn tag(x: &u32, prefix: &String) -> String {
    format!("{prefix}{x}")
}

workflow! {
    fn tagged(x: u32, #[resource] prefix: String) -> String {
        tag(&x, &prefix)
    }
}

#[task]
fn join(a: &String, b: &String) -> String {
    format!("{a},{b}")
}

workflow! {
    fn outer(x: u32, #[resource] prefix: String) -> String {
        let a = tagged(&x, &prefix).await;
        let y = double(&x);
        let b = tagged(&y, &prefix).await;
        join(&a, &b)
    }
}

#[task]
fn double(x: &u32) -> u32 {
    x * 2
}

/// A sub-workflow with resources is passed them by the workflow that runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_workflow_is_given_its_resources_as_inputs() {
    assert_eq!(outer(3, "#".into()).await.unwrap(), "#3,#6");
}

#[test]
fn a_workflow_with_resources_runs_from_synchronous_code() {
    let out = outer::workflow().run_blocking_with((1,), ("x".into(),));
    assert_eq!(out.unwrap(), "x1,x2");
}
