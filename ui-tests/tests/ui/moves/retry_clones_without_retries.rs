use aqueduct::prelude::*;

#[task(retry_clones = true)]
fn consume(values: Vec<u64>) -> usize {
    values.len()
}

fn main() {}
