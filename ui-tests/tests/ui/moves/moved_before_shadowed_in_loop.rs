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
fn make(i: &u64) -> Vec<u64> {
    vec![*i]
}

#[task]
fn sum(values: &[usize]) -> usize {
    values.iter().sum()
}

workflow! {
    fn flow(n: u64) -> usize {
        let x = load(&n);
        let ids = load(&n);
        let r = for i in &ids {
            // `x` is still the outer binding here: moving it once per item is refused,
            // although the body defines an `x` of its own below.
            let a = consume(x);
            let x = make(i);
            consume(x)
        };
        sum(&r)
    }
}

fn main() {}
