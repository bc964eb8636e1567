use std::sync::Arc;

use aqueduct::prelude::*;

#[task]
fn shared(n: &u64) -> Arc<[u64]> {
    (0..*n).collect()
}

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

#[task]
fn total(values: &[u64]) -> u64 {
    values.iter().sum()
}

workflow! {
    fn flow(n: u64) -> u64 {
        let xs = shared(&n);
        let each = for x in xs {
            double(x)
        };
        total(&each)
    }
}

fn main() {}
