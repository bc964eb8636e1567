//! `crate = …` on both macros, in a crate where only `flow` (and the re-export
//! `aqueduct_rename_test::engine`) name Aqueduct: tasks of every kind, a fan-out, a
//! sub-workflow, a durable workflow, each form of the path, and macros through `$crate`.

use aqueduct_rename_test::{constant_task, one_call_workflow};
use flow::{Outcome, TaskError, task, workflow};

#[task(crate = flow)]
fn range(n: &u64) -> Vec<u64> {
    (1..=*n).collect()
}

/// The string form, as serde and tokio take it, among other options.
#[task(retries = 2, crate = "flow", retry_delay = "1ms", timeout = "5s")]
fn square(x: &u64) -> u64 {
    x * x
}

#[task(crate = ::flow)]
fn sum(values: &[u64]) -> u64 {
    values.iter().sum()
}

/// An IO task (its `Send` check names the crate too) with a concurrency limit.
#[task(concurrency = 2, crate = flow)]
async fn label(total: &u64, prefix: &str) -> Result<String, TaskError> {
    Ok(format!("{prefix}{total}"))
}

/// A cleanup task: reads what became of its input.
#[task(crate = flow)]
fn settled(total: &Outcome<u64>) -> bool {
    total.value().is_some()
}

workflow! {
    /// The sum of the squares of 1..=n, through a fan-out.
    #[aqueduct(crate = flow)]
    pub fn sum_of_squares(n: u64) -> u64 {
        let items = range(&n);
        let squares = #[concurrency = 2] for item in &items {
            square(item)
        };
        sum(&squares)
    }
}

workflow! {
    /// Runs `sum_of_squares` as one node, then an IO task and a cleanup task.
    #[aqueduct(crate = "flow")]
    pub fn described(n: u64, prefix: String) -> String {
        let total = sum_of_squares(&n).await;
        let _settled = settled(&total);
        label(&total, &prefix)
    }
}

#[tokio::test]
async fn a_fan_out_runs_through_the_renamed_crate() {
    assert_eq!(sum_of_squares(3).await.unwrap(), 14);
    let graph = sum_of_squares::workflow().graph();
    assert!(graph.nodes().any(|node| node.name() == "squares"));
}

#[tokio::test]
async fn a_sub_workflow_runs_through_the_renamed_crate() {
    assert_eq!(described(4, "total: ".into()).await.unwrap(), "total: 30");
    let outcome = described::workflow().runner().run((2, "sum ".into())).await;
    assert_eq!(outcome.result.unwrap(), "sum 5");
}

workflow! {
    #[durable(version = 2)]
    /// Attributes in any order: the crate's, `#[durable]` and the docs.
    #[aqueduct(crate = flow)]
    fn durable_squares(n: u64) -> u64 {
        let items = range(&n);
        let squares = for item in &items {
            square(item)
        };
        sum(&squares)
    }
}

#[tokio::test]
async fn a_durable_workflow_builds_through_the_renamed_crate() {
    assert!(durable_squares::workflow().is_durable());
    assert_eq!(durable_squares(2).await.unwrap(), 5);
}

/// Through the re-export, by a path of two segments.
#[aqueduct_rename_test::engine::task(crate = aqueduct_rename_test::engine)]
fn halve(x: &u64) -> u64 {
    x / 2
}

aqueduct_rename_test::engine::workflow! {
    #[aqueduct(crate = aqueduct_rename_test::engine)]
    fn halved_sum(n: u64) -> u64 {
        let total = sum_of_squares(&n).await;
        halve(&total)
    }
}

#[tokio::test]
async fn a_re_export_names_the_crate() {
    assert_eq!(halved_sum(3).await.unwrap(), 7);
}

constant_task!(
    fn seven() -> u64 {
        7
    }
);
one_call_workflow!(fn doubled = double);

#[task(crate = flow)]
fn double(x: &u64) -> u64 {
    x * 2
}

workflow! {
    #[aqueduct(crate = flow)]
    fn from_macros() -> u64 {
        let seven = seven();
        doubled(&seven).await
    }
}

#[tokio::test]
async fn macros_of_the_re_exporting_crate_name_it_through_dollar_crate() {
    assert_eq!(doubled(21).await.unwrap(), 42);
    assert_eq!(from_macros().await.unwrap(), 14);
}

#[tokio::test]
async fn a_workflow_of_the_library_runs() {
    assert_eq!(aqueduct_rename_test::tripled(5).await.unwrap(), 15);
}

/// A `macro_rules!` that takes the path as a `$p:path` fragment, which reaches the
/// macros wrapped in an invisible group.
macro_rules! with_path {
    ($p:path) => {
        #[task(crate = $p)]
        fn quadruple(x: &u64) -> u64 {
            x * 4
        }

        workflow! {
            #[aqueduct(crate = $p)]
            fn quadrupled(x: u64) -> u64 {
                quadruple(&x)
            }
        }
    };
}

with_path!(flow);

#[tokio::test]
async fn a_path_fragment_names_the_crate() {
    assert_eq!(quadrupled(5).await.unwrap(), 20);
}
