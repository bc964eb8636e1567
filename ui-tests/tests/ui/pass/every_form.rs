//! Every supported form of `#[task]` and `workflow!`, kept compiling.
use aqueduct::prelude::*;

#[derive(Debug)]
struct Fail;
impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fail")
    }
}
impl std::error::Error for Fail {}

pub struct Parts {
    pub left: Vec<u64>,
    pub right: (Vec<u64>, u64),
}

/// A CPU task with no inputs.
#[task]
fn start() -> u64 {
    1
}

/// A CPU task with a by-reference input, returning a plain value.
#[task]
pub fn split(n: &u64) -> Parts {
    Parts {
        left: vec![*n; 2],
        right: (vec![*n; 3], 7),
    }
}

/// A task whose parameter is a slice, fed a `Vec` field by deref coercion.
#[task]
fn sum(values: &[u64]) -> u64 {
    values.iter().sum()
}

/// A fallible CPU task with a user error type.
#[task]
fn checked(a: &u64, b: &u64) -> Result<u64, Fail> {
    a.checked_add(*b).ok_or(Fail)
}

/// A fallible async task with `TaskError` and a `&str` input fed a `String`.
#[task]
async fn label(value: &u64, prefix: &str) -> Result<String, TaskError> {
    Ok(format!("{prefix}{value}"))
}

/// An async task returning `()`.
#[task]
async fn log(_line: &String) {}

/// Every task option at once.
#[task(retries = 3, retry_delay = "250ms", backoff = "linear", max_delay = "2m", jitter = false, retry_panics = true, timeout = "1h", concurrency = 8)]
async fn configured(x: &u64) -> Result<u64, TaskError> {
    Ok(*x)
}

/// A flag option without a value, and a CPU task with a timeout.
#[task(jitter, timeout = "10s")]
fn flagged(x: &u64) -> u64 {
    *x
}

/// A cleanup task: runs whatever happened to its inputs.
#[task]
fn cleanup(text: &Outcome<String>, value: &u64) -> usize {
    text.value().map_or(0, String::len) + *value as usize
}

mod nested {
    use aqueduct::prelude::*;

    #[task]
    pub fn identity(x: &u64) -> u64 {
        *x
    }
}

workflow! {
    /// Every form: parameters, bindings, a type annotation, fields of outputs (named and
    /// tuple), a task by path, repeated inputs, a task call as the tail.
    pub fn every_form(prefix: String) -> String {
        let one = start();
        let parts = split(&one);
        let left = sum(&parts.left);
        let right: u64 = sum(&parts.right.0);
        let same = nested::identity(&parts.right.1);
        let both = checked(&left, &right);
        let twice = checked(&both, &both);
        let text = label(&twice, &prefix);
        let _logged = log(&text);
        let tuned = configured(&same);
        let flag = flagged(&tuned);
        let _cleaned = cleanup(&text, &flag);
        label(&same, &prefix)
    }
}

#[task]
fn chunks(n: &u64) -> Vec<Vec<u64>> {
    (0..*n).map(|i| vec![i; 2]).collect()
}

#[task]
fn sum_all(values: &[u64]) -> u64 {
    values.iter().sum()
}

workflow! {
    /// A fan-out: a chain per item, outer values imported, a nested loop over an item,
    /// an annotated loop binding.
    fn fan(n: u64, offset: u64) -> u64 {
        let parts = chunks(&n);
        let per_part: Vec<u64> = #[concurrency = 2] for part in &parts {
            let first = sum(part);
            let inner = for cell in part {
                checked(cell, &offset)
            };
            let inner_sum = sum_all(&inner);
            checked(&first, &inner_sum)
        };
        sum_all(&per_part)
    }
}

workflow! {
    /// Another workflow as a node, alone, as a tail, and once per item of a loop.
    fn nesting(n: u64, offset: u64) -> u64 {
        let once = fan(&n, &offset).await;
        let numbers = chunks(&n);
        let per_item = for _part in &numbers {
            fan(&n, &offset).await
        };
        let all = sum_all(&per_item);
        checked(&once, &all)
    }
}

workflow! {
    /// A durable workflow: serialisable parameters and outputs.
    #[durable(version = 3)]
    fn durable_form(n: u64) -> u64 {
        let one = start();
        let both = checked(&one, &n);
        checked(&both, &one)
    }
}

workflow! {
    fn no_params() -> u64 {
        start()
    }
}

workflow! {
    fn tail_is_param(x: u64) -> u64 {
        let _unused = start();
        x
    }
}

workflow! {
    fn unit_output(value_prefix_is_not_needed_here_so_use_a_param_instead: String) {
        let value = start();
        let text = label(&value, &value_prefix_is_not_needed_here_so_use_a_param_instead);
        log(&text)
    }
}

/// A task taking its input by value: the value is moved into it.
#[task]
fn owned_len(values: Vec<u64>) -> u64 {
    values.len() as u64
}

/// A task taking one input by value and one by reference, retried with clones.
#[task(retries = 2, retry_delay = "1ms", retry_clones = true)]
fn retried_len(values: Vec<u64>, extra: &u64) -> Result<u64, Fail> {
    Ok(values.len() as u64 + extra)
}

workflow! {
    /// Moves: a parameter moved into a task, a `for` that takes its collection and
    /// moves each item into a task retried with clones, an outer value shared inside.
    fn moves(owned: Vec<u64>, n: u64) -> u64 {
        let count = owned_len(owned);
        let chunks = chunks(&n);
        let lens = for chunk in chunks {
            let len = retried_len(chunk, &count);
            checked(&len, &count)
        };
        sum_all(&lens)
    }
}

#[task]
fn numbers(n: &u64) -> Vec<u64> {
    (0..*n).collect()
}

workflow! {
    /// A by-value loop inside a borrowing one, its item named like the outer item: the
    /// inner `x` is the inner loop's own value, moved into its task.
    fn shadowing_items(n: u64) -> u64 {
        let xs = numbers(&n);
        let per_x = for x in &xs {
            let ys = numbers(x);
            let inner = for x in ys {
                owned_len_one(x)
            };
            sum_all(&inner)
        };
        sum_all(&per_x)
    }
}

#[task]
fn owned_len_one(x: u64) -> u64 {
    x
}

fn main() {
    let _ = moves(vec![1, 2], 3);
    let _ = shadowing_items(3);
    let _ = every_form(String::new());
    let _ = no_params();
    let _ = tail_is_param(1);
    let _ = fan(3, 1);
    let _ = nesting(3, 1);
    let _ = durable_form(2);
    let _ = every_form::workflow().graph().to_dot();
}
