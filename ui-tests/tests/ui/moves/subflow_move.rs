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
    fn inner(values: Vec<u64>) -> usize {
        count(&values)
    }
}

workflow! {
    // Refused once, at `values`: the later `&values` is not a second mistake.
    fn outer(n: u64) -> usize {
        let values = load(&n);
        let len = inner(values).await;
        let again = count(&values);
        add(&len, &again)
    }
}

fn main() {}
