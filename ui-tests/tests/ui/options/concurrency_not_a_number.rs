use aqueduct::prelude::*;

#[task(concurrency = "many")]
fn double(x: &u64) -> u64 {
    x * 2
}

fn main() {}
