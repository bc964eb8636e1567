use aqueduct::prelude::*;

pub struct Parts {
    pub values: Vec<u64>,
}

#[task]
fn parts(n: &u64) -> Parts {
    Parts { values: (0..*n).collect() }
}

#[task]
fn numbers(n: &u64) -> Vec<u64> {
    (0..*n).collect()
}

#[task]
fn double(x: &u64) -> u64 {
    x * 2
}

#[task]
fn owned_double(x: u64) -> u64 {
    x * 2
}

#[task]
fn total(values: &[u64]) -> u64 {
    values.iter().sum()
}

workflow! {
    fn flow(n: u64) -> u64 {
        let xs = numbers(&n);
        let each = for x in &xs {
            let d = double(x);
        };
        total(&each)
    }
}

fn main() {}
