//! The graph is known without running it, and exports to Mermaid and DOT.

use aqueduct::Kind;
use aqueduct::graph::{Builder, Step};
use aqueduct::prelude::*;
use aqueduct::task::TaskInfo;

/// Two halves of a range.
pub struct Parts {
    /// The lower half.
    pub left: Vec<u32>,
    /// The upper half.
    pub right: Vec<u32>,
}

#[task]
fn split(n: &u32) -> Parts {
    Parts {
        left: (0..*n).collect(),
        right: (*n..2 * n).collect(),
    }
}

#[task]
fn sum(values: &[u32]) -> u32 {
    values.iter().sum()
}

#[task]
async fn publish(a: &u32, b: &u32) -> String {
    format!("{a}/{b}")
}

workflow! {
    /// Splits, sums both halves, publishes.
    pub fn halves(n: u32) -> String {
        let parts = split(&n);
        let left = sum(&parts.left);
        let right = sum(&parts.right);
        publish(&left, &right)
    }
}

#[test]
fn the_static_description_names_nodes_tasks_edges_and_kinds() {
    let graph = halves::workflow().graph();
    assert_eq!(graph.name(), "halves");
    let described: Vec<_> = graph
        .nodes()
        .map(|n| (n.name(), n.task(), n.kind(), n.inputs().collect::<Vec<_>>()))
        .collect();
    assert_eq!(
        described,
        [
            ("n", None, Kind::Param, vec![]),
            ("parts", Some("split"), Kind::Cpu, vec![0]),
            ("left", Some("sum"), Kind::Cpu, vec![1]),
            ("right", Some("sum"), Kind::Cpu, vec![1]),
            ("publish", Some("publish"), Kind::Io, vec![2, 3]),
        ]
    );
    assert_eq!(graph.output(), 4);
}

#[test]
fn mermaid_and_dot_show_every_node_and_edge() {
    let graph = halves::workflow().graph();
    let mermaid = graph.to_mermaid();
    for line in [
        "flowchart TD",
        "n0[/\"n\"/]",
        "n1[\"parts = split\"]",
        "n4[[\"publish\"]]",
        "n1 --> n2",
        "n1 --> n3",
        "n2 --> n4",
        "n3 --> n4",
    ] {
        assert!(mermaid.contains(line), "missing {line:?} in\n{mermaid}");
    }
    let dot = graph.to_dot();
    for line in [
        "digraph \"halves\" {",
        "n2 [label=\"left = sum\", shape=box];",
        "n4 [label=\"publish\", shape=box, style=rounded, peripheries=2];",
        "n0 -> n1;",
        "n3 -> n4;",
    ] {
        assert!(dot.contains(line), "missing {line:?} in\n{dot}");
    }
    assert!(dot.trim_end().ends_with('}'));
}

#[tokio::test]
async fn the_workflow_runs_with_fields_of_outputs_as_inputs() {
    assert_eq!(halves(4).await.unwrap(), "6/22");
}

#[test]
fn a_graph_serialises_for_tools() {
    let json = serde_json::to_value(halves::workflow().graph()).unwrap();
    assert_eq!(json["nodes"][4]["kind"], "io");
    assert_eq!(json["nodes"][4]["inputs"], serde_json::json!([2, 3]));
}

/// The typed builder the macro expands to, used by hand: 1,000 independent tasks and a
/// sink that reads them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_can_be_built_by_hand() {
    let (mut b, (base,)) = Builder::<(u64,)>::new("by_hand", ["base"]);
    let add = TaskInfo::new("add", Kind::Cpu);
    let items: Vec<_> = (0..1000u64)
        .map(|i| {
            b.node(add, format!("item{i}"), (base,), move |input| {
                let (base,) = input.get();
                Step::done(Ok(base + i))
            })
        })
        .collect();
    let gather = TaskInfo::new("gather", Kind::Io);
    let mut total = b.node(gather, "zero", (), |_| Step::pending(async { Ok(0u64) }));
    for item in items {
        total = b.node(gather, "sum", (total, item), |input| {
            let (total, item) = input.get();
            Step::pending(async move { Ok(total + item) })
        });
    }
    let workflow = b.output(total);
    assert_eq!(workflow.graph().len(), 1 + 1000 + 1 + 1000);
    assert_eq!(workflow.run((1,)).await.unwrap(), (1..=1000).sum::<u64>());
    assert_eq!(workflow.run((0,)).await.unwrap(), (0..1000).sum::<u64>());
}

#[task]
fn count_to(n: &u64) -> Vec<u64> {
    (0..*n).collect()
}

#[task(retries = 2, retry_delay = "250ms", timeout = "2s")]
fn careful(x: &u64) -> u64 {
    *x
}

#[task]
fn summed(xs: &[u64]) -> u64 {
    xs.iter().sum()
}

workflow! {
    fn looped(n: u64) -> u64 {
        let xs = count_to(&n);
        let each = for x in &xs {
            careful(x)
        };
        summed(&each)
    }
}

/// A fan-out's body is in the JSON, and durations are milliseconds.
#[test]
fn a_graph_serialises_its_bodies_and_durations_in_milliseconds() {
    let json = serde_json::to_value(looped::workflow().graph()).unwrap();
    let each = json["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|node| node["name"] == "each")
        .unwrap();
    let body = each["body"]["nodes"].as_array().unwrap();
    let careful = body.iter().find(|node| node["task"] == "careful").unwrap();
    assert_eq!(careful["timeout_ms"], 2000.0);
    assert_eq!(careful["retry"]["delay_ms"], 250.0);
    assert_eq!(careful["retry"]["retries"], 2);
    assert!(json["nodes"][0]["body"].is_null());
}
