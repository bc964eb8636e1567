use aqueduct::prelude::*;

#[task]
fn load(n: &u64) -> Vec<u64> {
    (0..*n).collect()
}

#[task]
fn consume(values: Vec<u64>) -> usize {
    values.len()
}

workflow! {
    fn inner(values: Vec<u64>) -> usize {
        consume(values)
    }
}

workflow! {
    fn outer(n: u64) -> usize {
        let values = load(&n);
        inner(&values).await
    }
}

fn main() {}
