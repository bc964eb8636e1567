// A `for` over a value that is not a collection, whose body reads the item as `&u64`: our
// message, at the collection, and nothing else.
use aqueduct::prelude::*;

#[task]
fn parts(n: &u64) -> Vec<Vec<u64>> {
    vec![vec![*n]; 3]
}

#[task]
fn total(part: &u64) -> u64 {
    *part
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
