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
fn parts(n: &u64) -> Vec<u64> {
    (0..*n).collect()
}

#[task]
fn sum(values: &[usize]) -> usize {
    values.iter().sum()
}

workflow! {
    fn flow(n: u64) -> usize {
        let values = load(&n);
        let items = parts(&n);
        let each = for _item in &items {
            consume(values)
        };
        sum(&each)
    }
}

fn main() {}
