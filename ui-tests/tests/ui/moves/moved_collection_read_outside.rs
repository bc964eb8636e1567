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

#[task]
fn double(x: u64) -> u64 {
    x * 2
}

#[task]
fn sum(values: &[u64]) -> u64 {
    values.iter().sum()
}

workflow! {
    fn flow(n: u64) -> usize {
        let values = load(&n);
        let doubled = for x in values {
            double(x)
        };
        let _total = sum(&doubled);
        count(&values)
    }
}

fn main() {}
