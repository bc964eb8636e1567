//! A workflow used as one node of another: `let out = other(&a, &b).await;`.

use aqueduct::prelude::*;
use aqueduct::{Kind, RunOutcome, TaskStatus};

#[task]
fn double(x: &u64) -> Result<u64, TaskError> {
    if *x == 0 {
        return Err(TaskError::msg("nothing to double"));
    }
    Ok(x * 2)
}

#[task]
async fn add(a: &u64, b: &u64) -> u64 {
    a + b
}

workflow! {
    /// Doubles `x` and adds `y`.
    pub fn inner(x: u64, y: u64) -> u64 {
        let d = double(&x);
        add(&d, &y)
    }
}

workflow! {
    fn outer(seed: u64) -> u64 {
        let a = add(&seed, &seed);
        let b = inner(&a, &seed).await;
        add(&b, &a)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_runs_as_one_node_of_another() {
    // a = 6; inner(6, 3) = 12 + 3 = 15; 15 + 6 = 21.
    let RunOutcome { result, report, .. } = outer::workflow().runner().run((3,)).await;
    assert_eq!(result.unwrap(), 21);
    for node in ["a", "b", "b.d", "b.add", "add"] {
        let task = report
            .task(node)
            .unwrap_or_else(|| panic!("no {node} in\n{report}"));
        assert_eq!(task.status, TaskStatus::Succeeded, "{node}");
    }
}

#[tokio::test]
async fn a_failure_inside_names_the_inner_task() {
    let message = outer(0).await.unwrap_err().to_string();
    assert!(
        message.contains("task `b.d` (`double`) failed: nothing to double"),
        "{message}"
    );
}

#[test]
fn the_inner_workflow_is_a_subgraph() {
    let graph = outer::workflow().graph();
    let b = graph.nodes().find(|n| n.name() == "b").unwrap();
    assert_eq!(b.kind(), Kind::Workflow);
    assert_eq!(b.body().unwrap().name(), "inner");
    let mermaid = graph.to_mermaid();
    assert!(
        mermaid.contains("subgraph n2_body [\"workflow inner\"]"),
        "{mermaid}"
    );
    assert!(mermaid.contains("n2_2[\"d = double\"]"), "{mermaid}");
}

/// Not `Clone`: a sub-workflow reads its inputs in place.
pub struct Catalog {
    items: Vec<u64>,
}

#[task]
fn first_address(catalog: &Catalog) -> usize {
    catalog.items.as_ptr() as usize
}

workflow! {
    /// Where the catalog it is given lives.
    pub fn locate(catalog: Catalog) -> usize {
        first_address(&catalog)
    }
}

#[task]
fn same(inner: &usize, outer: &usize) -> bool {
    inner == outer
}

workflow! {
    fn shares(catalog: Catalog) -> bool {
        let inside = locate(&catalog).await;
        let outside = first_address(&catalog);
        same(&inside, &outside)
    }
}

#[tokio::test]
async fn inputs_are_shared_by_reference_not_cloned() {
    let catalog = Catalog {
        items: vec![1, 2, 3],
    };
    assert!(shares(catalog).await.unwrap());
}

workflow! {
    fn each(values: Vec<u64>, offset: u64) -> Vec<u64> {
        let results = for value in &values {
            inner(value, &offset).await
        };
        results
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_runs_once_per_item_of_a_loop() {
    let RunOutcome { result, report, .. } =
        each::workflow().runner().run((vec![1, 2, 3], 10)).await;
    assert_eq!(result.unwrap(), [12, 14, 16]);
    assert!(
        report.task("inner[2]").is_some() && report.task("inner.d[2]").is_some(),
        "{report}"
    );
}
