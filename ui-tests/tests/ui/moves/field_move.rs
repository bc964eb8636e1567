use aqueduct::prelude::*;

#[task]
fn load(n: &u64) -> Vec<u64> {
    (0..*n).collect()
}

#[task]
fn consume(values: Vec<u64>) -> usize {
    values.len()
}

#[task]
fn count(values: &Vec<u64>) -> usize {
    values.len()
}

#[task]
fn add(a: &usize, b: &usize) -> usize {
    a + b
}

pub struct Parts {
    pub first: Vec<u64>,
}

#[task]
fn split(n: &u64) -> Parts {
    Parts { first: (0..*n).collect() }
}

workflow! {
    fn flow(n: u64) -> usize {
        let parts = split(&n);
        consume(parts.first)
    }
}

fn main() {}
