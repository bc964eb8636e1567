//! Moves in a graph built by hand (`Builder::moved`, `In::take`): what each misuse
//! does. `workflow!` refuses all of them at compile time; by hand, the reading task
//! fails with a message that says what went wrong, and the run ends.

use aqueduct::graph::{Builder, Step};
use aqueduct::task::{Kind, TaskInfo};
use aqueduct::{RunOutcome, TaskStatus, Workflow};

const MAKE: TaskInfo = TaskInfo::new("make", Kind::Cpu);
const TAKE: TaskInfo = TaskInfo::new("take", Kind::Cpu);

fn error_of(report: &aqueduct::RunReport, node: &str) -> String {
    let task = report
        .task(node)
        .unwrap_or_else(|| panic!("{node} is reported"));
    assert_eq!(task.status, TaskStatus::Failed, "{node}: {report}");
    task.error.clone().unwrap_or_default()
}

/// `value` moved into `first`; `second` reads it too, by `take` or by reference.
fn two_readers(second_takes: bool) -> Workflow<(u64,), usize> {
    let (mut b, (n,)) = Builder::<(u64,)>::new("two_readers", ["n"]);
    let value = b.node(MAKE, "value", (n,), |input| {
        let (n,) = input.get();
        Step::done(Ok(vec![0u8; *n as usize]))
    });
    b.moved(value);
    let first = b.node(TAKE, "first", (value,), move |input| {
        Step::done(Ok(input.take(value).len()))
    });
    let second = b.node(TAKE, "second", (value, first), move |input| {
        if second_takes {
            Step::done(Ok(input.take(value).len()))
        } else {
            let (value, _) = input.get();
            Step::done(Ok(value.len()))
        }
    });
    b.output(second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_take_of_a_moved_value_fails_its_task() {
    let RunOutcome { result, report, .. } = two_readers(true).runner().run((3,)).await;
    assert!(result.is_err());
    let error = error_of(&report, "second");
    assert!(error.contains("read again"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_borrow_of_a_moved_value_fails_its_task_naming_the_move() {
    let RunOutcome { result, report, .. } = two_readers(false).runner().run((3,)).await;
    assert!(result.is_err());
    let error = error_of(&report, "second");
    assert!(error.contains("moved into another task"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_an_input_not_marked_moved_fails_its_task() {
    let (mut b, (n,)) = Builder::<(u64,)>::new("unmarked", ["n"]);
    let value = b.node(MAKE, "value", (n,), |input| {
        let (n,) = input.get();
        Step::done(Ok(*n))
    });
    let taken = b.node(TAKE, "taken", (value,), move |input| {
        Step::done(Ok(input.take(value)))
    });
    let RunOutcome { result, report, .. } = b.output(taken).runner().run((3,)).await;
    assert!(result.is_err());
    let error = error_of(&report, "taken");
    assert!(error.contains("was not marked moved"), "{error}");
}

#[test]
fn a_sub_workflow_that_moves_its_parameter_is_refused_when_the_graph_is_built() {
    let (mut inner, (p,)) = Builder::<(Vec<u8>,)>::new("inner", ["p"]);
    inner.moved(p);
    let len = inner.node(TAKE, "len", (p,), move |input| {
        Step::done(Ok(input.take(p).len()))
    });
    let inner = inner.output(len);
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let (mut outer, (v,)) = Builder::<(Vec<u8>,)>::new("outer", ["v"]);
        let out = outer.subflow("inner", &inner, (v,));
        outer.output(out)
    }));
    let panic = built.expect_err("refused");
    let message = panic.downcast_ref::<String>().expect("a formatted message");
    assert!(
        message.contains("moves its parameter `p`") && message.contains("`outer`"),
        "{message}"
    );
}
