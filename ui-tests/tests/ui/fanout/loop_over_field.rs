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
    fn shared_field(n: u64) -> u64 {
        let p = parts(&n);
        let each = for x in &p.values {
            double(x)
        };
        total(&each)
    }
}

workflow! {
    fn moved_field(n: u64) -> u64 {
        let p = parts(&n);
        let each = for x in p.values {
            owned_double(x)
        };
        total(&each)
    }
}

fn main() {}
