//! The typed builder's fan-out: one run of a body per item of a collection.

use aqueduct::graph::{Builder, Step};
use aqueduct::task::TaskInfo;
use aqueduct::{Kind, RunOutcome, TaskError, TaskStatus, Workflow};

const DOUBLE: TaskInfo = TaskInfo::new("double", Kind::Cpu);
const SHIFT: TaskInfo = TaskInfo::new("shift", Kind::Io);
const SUM: TaskInfo = TaskInfo::new("sum", Kind::Cpu);

/// `for x in &items { let d = double(x); shift(&d, &offset) }`, then the sum.
fn workflow() -> Workflow<(Vec<u64>, u64), (Vec<u64>, u64)> {
    let (mut b, (items, offset)) = Builder::<(Vec<u64>, u64)>::new("fan", ["items", "offset"]);
    let shifted = b.fan_out("shifted", items, "x", (offset,), |body, x, (offset,)| {
        let doubled = body.node(DOUBLE, "d", (x,), |i| {
            let (x,) = i.get();
            if *x == 13 {
                return Step::done(Err(TaskError::msg("unlucky")));
            }
            Step::done(Ok(x * 2))
        });
        body.node(SHIFT, "s", (doubled, offset), |i| {
            let (d, offset) = i.get();
            let value = d + offset;
            Step::pending(async move { Ok(value) })
        })
    });
    let sum = b.node(SUM, "sum", (shifted,), |i| {
        let (all,) = i.get();
        Step::done(Ok((all.clone(), all.iter().sum())))
    });
    b.output(sum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_item_runs_the_body_and_results_keep_input_order() {
    let wf = workflow();
    let (values, sum) = wf.run(((1..=5).collect(), 100)).await.unwrap();
    assert_eq!(values, [102, 104, 106, 108, 110]);
    assert_eq!(sum, 530);
}

#[tokio::test]
async fn an_empty_collection_gives_an_empty_vec() {
    let (values, sum) = workflow().run((Vec::new(), 1)).await.unwrap();
    assert!(values.is_empty());
    assert_eq!(sum, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_item_fails_its_own_chain_and_the_consumer_is_skipped() {
    let RunOutcome { result, report, .. } = workflow().runner().run((vec![1, 13, 3], 0)).await;
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("task `d[1]` (`double`) failed: unlucky"),
        "{message}"
    );
    let status = |node: &str| {
        report
            .task(node)
            .unwrap_or_else(|| panic!("{node} in\n{report}"))
            .status
    };
    assert_eq!(status("d[0]"), TaskStatus::Succeeded);
    assert_eq!(status("s[0]"), TaskStatus::Succeeded);
    assert_eq!(status("d[1]"), TaskStatus::Failed);
    assert_eq!(status("s[1]"), TaskStatus::Skipped);
    assert_eq!(status("s[2]"), TaskStatus::Succeeded);
    assert_eq!(status("shifted"), TaskStatus::Failed);
    assert_eq!(status("sum"), TaskStatus::Skipped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_fan_out_runs() {
    let items: Vec<u64> = (100..20_100).collect();
    let (values, sum) = workflow().run((items, 1)).await.unwrap();
    assert_eq!(values.len(), 20_000);
    assert_eq!(sum, (100..20_100u64).map(|x| 2 * x + 1).sum::<u64>());
}

/// Issue 9, finding 10: a handle of the outer builder captured by a `fan_out` body is
/// refused when the graph is built, instead of silently reading a node of the body.
#[test]
fn an_outer_handle_captured_in_a_body_is_refused_at_build_time() {
    let built = std::panic::catch_unwind(|| {
        let (mut b, (items, offset)) =
            Builder::<(Vec<u64>, u64)>::new("captured", ["items", "offset"]);
        let doubled = b.fan_out("doubled", items, "x", (), |body, x, ()| {
            // `offset` belongs to the outer builder: it must come through `outer`.
            body.node(SHIFT, "s", (x, offset), |i| {
                let (x, offset) = i.get();
                let value = x + offset;
                Step::pending(async move { Ok(value) })
            })
        });
        b.output(doubled)
    });
    let panic = built.expect_err("refused");
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("a `Handle` of another builder was used here"),
        "{message}"
    );
    assert!(message.contains("its `outer` argument"), "{message}");
}

#[test]
fn a_handle_of_another_workflow_is_refused_at_build_time() {
    let (_, (foreign,)) = Builder::<(u64,)>::new("other", ["x"]);
    let built = std::panic::catch_unwind(move || {
        let (mut b, (_mine,)) = Builder::<(u64,)>::new("mine", ["x"]);
        let node = b.node(DOUBLE, "d", (foreign,), |i| {
            let (x,) = i.get();
            Step::done(Ok(x * 2))
        });
        b.output(node)
    });
    assert!(built.is_err());
}

/// A value whose `Drop` panics for item 2.
struct Bomb(u64);

impl Drop for Bomb {
    fn drop(&mut self) {
        if self.0 == 2 && !std::thread::panicking() {
            panic!("bomb {} went off", self.0);
        }
    }
}

const ARM: TaskInfo = TaskInfo::new("arm", Kind::Cpu);
const DEFUSE: TaskInfo = TaskInfo::new("defuse", Kind::Cpu);

/// `for x in &items { let b = arm(x); defuse(&b) }` by hand: a CPU-only body, run
/// fused without a typed chain.
fn bombs() -> Workflow<(Vec<u64>,), Vec<u64>> {
    let (mut b, (items,)) = Builder::<(Vec<u64>,)>::new("bombs", ["items"]);
    let each = b.fan_out("each", items, "x", (), |body, x, ()| {
        let bomb = body.node(ARM, "b", (x,), |i| {
            let (x,) = i.get();
            Step::done(Ok(Bomb(*x)))
        });
        body.node(DEFUSE, "d", (bomb,), |i| {
            let (bomb,) = i.get();
            Step::done(Ok(bomb.0 * 10))
        })
    });
    b.output(each)
}

/// A value whose `Drop` panics in a fused item (one the builder made, run without a
/// typed chain) is contained as at the end of a run: the item keeps its output, the
/// thread's buffer serves the next items, in summary mode and with every row kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_drop_in_a_fused_item_is_contained() {
    for every_row in [false, true] {
        let RunOutcome { result, report, .. } = bombs()
            .runner()
            .item_rows(every_row)
            .run(((0..40).collect(),))
            .await;
        let values = result.unwrap_or_else(|error| panic!("{error}\n{report}"));
        assert_eq!(values, (0..40).map(|x| x * 10).collect::<Vec<u64>>());
    }
}
