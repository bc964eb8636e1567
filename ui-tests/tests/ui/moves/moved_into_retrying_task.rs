use aqueduct::prelude::*;

#[task(retries = 3)]
fn consume(values: Vec<u64>) -> usize {
    values.len()
}

fn main() {}
