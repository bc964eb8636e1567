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

workflow! {
    fn flow(n: u64) -> Vec<u64> {
        let values = load(&n);
        let _size = consume(values);
        values
    }
}

fn main() {}
