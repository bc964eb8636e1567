use aqueduct::prelude::*;

#[task]
fn parts(n: &u64) -> Vec<Vec<u64>> {
    vec![vec![*n]; 3]
}

#[task]
fn total(part: &[u64]) -> u64 {
    part.iter().sum()
}

#[task]
fn sum(values: &[u64]) -> u64 {
    values.iter().sum()
}

workflow! {
    fn flow(n: u64) -> u64 {
        let ps = parts(&n);
        let each = #[concurrency = 0] for part in &ps {
            total(part)
        };
        sum(&each)
    }
}

fn main() {}
