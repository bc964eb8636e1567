use aqueduct::prelude::*;

#[task(concurrency = 0)]
fn double(x: &u64) -> u64 {
    x * 2
}

fn main() {}
