// A `for` over a value that is not a collection, whose body passes the item to a task
// taking `&[u64]`: our message at the collection, then rustc's own about `[u64]`, the
// item type it infers from that task (see `not_iterable_sized.rs` for the usual case).
use aqueduct::prelude::*;

#[task]
fn parts(n: &u64) -> Vec<Vec<u64>> {
    vec![vec![*n]; 3]
}

#[task]
fn total(part: &[u64]) -> u64 {
    part.iter().sum()
}

#[task]
fn sum(values: &[u64]) -> u64 {
    values.iter().sum()
}

workflow! {
    fn flow(n: u64) -> u64 {
        let each = for x in &n {
            total(x)
        };
        sum(&each)
    }
}

fn main() {}
