use aqueduct::prelude::*;

#[task(retries = 2, retry_clones = true)]
fn count(values: &Vec<u64>) -> usize {
    values.len()
}

fn main() {}
