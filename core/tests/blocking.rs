//! Blocking entry points: a run from synchronous code, on a tokio runtime of its own.

use std::time::Duration;

use aqueduct::prelude::*;
use aqueduct::{RunOutcome, TaskStatus};

#[task]
fn double(x: &u64) -> u64 {
    x * 2
}

#[task]
async fn later(x: &u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(5)).await;
    x + 1
}

workflow! {
    fn mixed(x: u64) -> u64 {
        let twice = double(&x);
        later(&twice)
    }
}

#[test]
fn a_workflow_runs_from_synchronous_code() {
    assert_eq!(mixed::workflow().run_blocking((20,)).unwrap(), 41);
    let RunOutcome { result, report, .. } = mixed::workflow().runner().run_blocking((1,));
    assert_eq!(result.unwrap(), 3);
    assert_eq!(
        report.task("later").map(|task| task.status),
        Some(TaskStatus::Succeeded)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_a_runtime_it_is_refused_not_a_panic() {
    let error = mixed::workflow().run_blocking((1,)).unwrap_err();
    assert!(
        matches!(&error, aqueduct::Error::BlockingInRuntime { workflow } if workflow == "mixed"),
        "{error:?}"
    );
    assert!(error.to_string().contains(".await"), "{error}");
    let outcome = mixed::workflow().runner().run_blocking((1,));
    assert!(matches!(
        outcome.result,
        Err(aqueduct::Error::BlockingInRuntime { .. })
    ));
    // The async entry point still works here.
    assert_eq!(mixed(1).await.unwrap(), 3);
}

#[cfg(feature = "sqlite")]
mod durable {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aqueduct::prelude::*;
    use aqueduct::store::SqliteStore;

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    #[task]
    fn counted(x: &u64) -> u64 {
        CALLS.fetch_add(1, Ordering::SeqCst);
        x * 3
    }

    workflow! {
        #[durable]
        fn kept(x: u64) -> u64 {
            counted(&x)
        }
    }

    #[test]
    fn a_durable_run_and_its_resume_block_too() {
        let dir = std::env::temp_dir().join(format!("aqueduct-blocking-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("runs.db");
        let _ = std::fs::remove_file(&path);
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        let outcome = kept::workflow()
            .runner()
            .store(store.clone())
            .run_id("blocking-1")
            .run_blocking((5,));
        assert_eq!(outcome.result.unwrap(), 15);
        let resumed = kept::workflow()
            .runner()
            .store(store)
            .run_id("blocking-1")
            .resume_blocking();
        assert_eq!(resumed.result.unwrap(), 15);
        assert_eq!(
            CALLS.load(Ordering::SeqCst),
            1,
            "the resume loaded the result"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
