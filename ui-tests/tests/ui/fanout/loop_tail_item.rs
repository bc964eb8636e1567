use aqueduct::prelude::*;

#[task]
fn numbers(n: &u64) -> Vec<u64> {
    (0..*n).collect()
}

#[task]
fn total(values: &[u64]) -> u64 {
    values.iter().sum()
}

workflow! {
    fn flow(n: u64) -> u64 {
        let xs = numbers(&n);
        let each = for x in &xs {
            x
        };
        total(&each)
    }
}

fn main() {}
