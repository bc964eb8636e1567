//! A workflow's parameters and bindings may be named like tasks, or like the names
//! the expansion uses for itself, and tasks may be named like those too.
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

/// A task named like one of the expansion's locals.
#[task]
fn __aqueduct_arg0(x: &u64) -> u64 {
    x + 1
}

workflow! {
    /// A parameter named like the task it is passed to.
    fn param_named_like_task(double: u64) -> u64 {
        double(&double)
    }
}

workflow! {
    /// Bindings, a loop item and an imported parameter named like tasks.
    fn bindings_named_like_tasks(n: u64, add: u64) -> u64 {
        let range = range(&n);
        let sum = for double in &range {
            let double_it = double(double);
            add(&double_it, &add)
        };
        let double = sum(&sum);
        let range_sum = add(&double, &add);
        range_sum
    }
}

workflow! {
    /// Names the expansion uses for itself.
    #[durable]
    #[allow(non_snake_case)]
    fn internal_names(__aqueduct_builder: u64, WORKFLOW: u64) -> u64 {
        let __aqueduct_task = double(&__aqueduct_builder);
        let __aqueduct_input = add(&__aqueduct_task, &WORKFLOW);
        let __aqueduct_tail = __aqueduct_arg0(&__aqueduct_input);
        __aqueduct_tail
    }
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        assert_eq!(param_named_like_task(21).await.unwrap(), 42);
        // (2 + 1) + (4 + 1) + (6 + 1) = 15, + 1 = 16.
        assert_eq!(bindings_named_like_tasks(3, 1).await.unwrap(), 16);
        // 2 * 2 = 4, 4 + 1 = 5, 5 + 1 = 6.
        assert_eq!(internal_names(2, 1).await.unwrap(), 6);
    });
}
