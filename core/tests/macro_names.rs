//! A workflow's names are the user's (issue 9, finding 12): a parameter or a binding may
//! be named like a task, or like anything the `workflow!` expansion names for itself,
//! and a task may be named like those too; the workflow compiles and computes the same.

use aqueduct::prelude::*;

#[task]
fn double(x: &u64) -> u64 {
    x * 2
}

#[task]
fn add(a: &u64, b: &u64) -> u64 {
    a + b
}

#[task]
fn range(n: &u64) -> Vec<u64> {
    (1..=*n).collect()
}

#[task]
fn sum(values: &[u64]) -> u64 {
    values.iter().sum()
}

workflow! {
    /// A parameter named like the task it is passed to.
    fn param_named_like_task(double: u64) -> u64 {
        double(&double)
    }
}

#[tokio::test]
async fn a_parameter_may_have_a_tasks_name() {
    assert_eq!(param_named_like_task(21).await.unwrap(), 42);
}

workflow! {
    /// Bindings named like tasks, read by later calls of those tasks, one of them the tail.
    fn binding_named_like_task(x: u64) -> u64 {
        let double = double(&x);
        let add = add(&double, &x);
        let sum = double(&add);
        add(&sum, &double)
    }
}

#[tokio::test]
async fn a_binding_may_have_a_tasks_name() {
    // double = 10, add = 15, sum = 30, 30 + 10 = 40.
    assert_eq!(binding_named_like_task(5).await.unwrap(), 40);
    let graph = binding_named_like_task::workflow().graph();
    let names: Vec<_> = graph.nodes().map(|node| node.name().to_owned()).collect();
    for name in ["x", "double", "add", "sum"] {
        assert!(names.iter().any(|n| n == name), "no {name} in {names:?}");
    }
}

workflow! {
    /// The tail is a binding named like a task.
    fn tail_binding_named_like_task(x: u64) -> u64 {
        let double = double(&x);
        double
    }
}

#[tokio::test]
async fn a_tail_binding_may_have_a_tasks_name() {
    assert_eq!(tail_binding_named_like_task(4).await.unwrap(), 8);
}

workflow! {
    /// In a `for`: the item, a binding of the body and an imported parameter are named
    /// like tasks, and so is the loop's own binding.
    fn loop_binding_named_like_task(n: u64, add: u64) -> u64 {
        let range = range(&n);
        let sum = for sum in &range {
            let double = double(sum);
            add(&double, &add)
        };
        sum(&sum)
    }
}

#[tokio::test]
async fn a_loops_names_may_be_tasks_names() {
    // (2 + 1) + (4 + 1) + (6 + 1) = 15.
    assert_eq!(loop_binding_named_like_task(3, 1).await.unwrap(), 15);
}

workflow! {
    /// Another workflow, run as a node bound to its own name.
    fn subflow_named_like_binding(double: u64) -> u64 {
        let param_named_like_task = param_named_like_task(&double).await;
        let add = add(&param_named_like_task, &double);
        param_named_like_task(&add).await
    }
}

#[tokio::test]
async fn a_binding_may_have_a_workflows_name() {
    // 3 * 2 = 6, 6 + 3 = 9, 9 * 2 = 18.
    assert_eq!(subflow_named_like_binding(3).await.unwrap(), 18);
}

workflow! {
    /// A parameter named like its own workflow, and a raw identifier.
    fn named_like_itself(named_like_itself: u64) -> u64 {
        let r#type = double(&named_like_itself);
        add(&r#type, &named_like_itself)
    }
}

#[tokio::test]
async fn a_name_may_be_the_workflows_own_or_raw() {
    assert_eq!(named_like_itself(5).await.unwrap(), 15);
}

workflow! {
    /// Every name the expansion used for itself before it was hygienic, as parameters,
    /// bindings, a loop item, bindings inside a loop, and the tail.
    #[allow(non_snake_case)]
    fn internal_names(__aqueduct_builder: u64, WORKFLOW: u64) -> u64 {
        let __aqueduct_task = double(&__aqueduct_builder);
        let __aqueduct_input = add(&__aqueduct_task, &WORKFLOW);
        let __aqueduct_arg0 = add(&__aqueduct_input, &__aqueduct_task);
        let __aqueduct_arg1 = range(&__aqueduct_builder);
        let __aqueduct_fan_out = for __aqueduct_tail in &__aqueduct_arg1 {
            let __aqueduct_arg2 = double(__aqueduct_tail);
            add(&__aqueduct_arg2, &__aqueduct_input)
        };
        let __aqueduct_workflow = sum(&__aqueduct_fan_out);
        let __aqueduct_tail = add(&__aqueduct_workflow, &__aqueduct_arg0);
        __aqueduct_tail
    }
}

#[tokio::test]
async fn bindings_may_have_the_expansions_internal_names() {
    // builder = 2, WORKFLOW = 1: task = 4, input = 5, arg0 = 9, arg1 = [1, 2],
    // fan_out = [2 + 5, 4 + 5] = [7, 9], workflow = 16, tail = 16 + 9 = 25.
    assert_eq!(internal_names(2, 1).await.unwrap(), 25);
    let graph = internal_names::workflow().graph();
    let names: Vec<_> = graph.nodes().map(|node| node.name().to_owned()).collect();
    for name in [
        "__aqueduct_builder",
        "WORKFLOW",
        "__aqueduct_task",
        "__aqueduct_input",
        "__aqueduct_arg0",
        "__aqueduct_fan_out",
        "__aqueduct_tail",
    ] {
        assert!(names.iter().any(|n| n == name), "no {name} in {names:?}");
    }
}

workflow! {
    /// The plain words for the same things.
    fn plain_internal_names(builder: u64, input: u64) -> u64 {
        let slots = add(&builder, &input);
        let arg0 = double(&slots);
        let task = range(&input);
        let fan_out = for item in &task {
            let marker = add(item, &arg0);
            double(&marker)
        };
        let workflow = sum(&fan_out);
        let output = add(&workflow, &slots);
        let tail = double(&output);
        tail
    }
}

#[tokio::test]
async fn bindings_may_have_plain_internal_names() {
    // slots = 3, arg0 = 6, task = [1, 2], fan_out = [14, 16], workflow = 30,
    // output = 33, tail = 66.
    assert_eq!(plain_internal_names(1, 2).await.unwrap(), 66);
}

/// Only with the `durable` feature (a default one).
#[cfg(feature = "durable")]
mod durable_names {
    use super::*;

    workflow! {
        /// A durable workflow checkpoints every name: they are the handles too.
        #[durable]
        #[allow(non_snake_case)]
        fn durable_internal_names(__aqueduct_builder: u64) -> u64 {
            let __aqueduct_tail = double(&__aqueduct_builder);
            let WORKFLOW = add(&__aqueduct_tail, &__aqueduct_builder);
            let double = double(&WORKFLOW);
            double
        }
    }

    #[tokio::test]
    async fn a_durable_workflow_may_use_internal_and_task_names() {
        // 3 * 2 = 6, 6 + 3 = 9, 9 * 2 = 18.
        assert_eq!(durable_internal_names(3).await.unwrap(), 18);
    }
}

/// Tasks named like the expansion's internals: the user's call still reaches them.
mod tasks_named_like_internals {
    use aqueduct::prelude::*;

    /// Async, so its `Send` check names its parameters too.
    #[task]
    pub(crate) async fn __aqueduct_arg0(x: &u64) -> u64 {
        x + 1
    }

    #[task]
    pub(crate) fn __aqueduct_task(x: &u64) -> u64 {
        x * 3
    }

    #[task]
    pub(crate) fn __aqueduct_input(x: &u64) -> Vec<u64> {
        vec![*x; 2]
    }

    #[task]
    pub(crate) fn __aqueduct_builder(a: &u64, b: &u64) -> u64 {
        a + b
    }

    #[task]
    pub(crate) fn __aqueduct_tail(values: &[u64]) -> u64 {
        values.iter().sum()
    }

    #[task]
    pub(crate) fn __aqueduct_fan_out(x: &u64) -> u64 {
        x + 100
    }

    #[allow(non_snake_case)]
    #[task]
    pub(crate) fn WORKFLOW(x: &u64) -> u64 {
        x * 10
    }

    workflow! {
        /// Each internal name called as a task, at the top level and in a loop.
        pub(crate) fn calls(x: u64) -> u64 {
            let a = __aqueduct_arg0(&x);
            let b = __aqueduct_task(&a);
            let c = __aqueduct_builder(&a, &b);
            let items = __aqueduct_input(&c);
            let each = for item in &items {
                let more = __aqueduct_fan_out(item);
                __aqueduct_builder(&more, &x)
            };
            let total = __aqueduct_tail(&each);
            WORKFLOW(&total)
        }
    }
}

#[tokio::test]
async fn tasks_may_have_the_expansions_internal_names() {
    // a = 3, b = 9, c = 12, items = [12, 12], each = [114, 114], total = 228.
    assert_eq!(tasks_named_like_internals::calls(2).await.unwrap(), 2280);
}
