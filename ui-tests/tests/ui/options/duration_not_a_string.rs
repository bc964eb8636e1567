use aqueduct::prelude::*;

#[task(timeout = 5)]
fn double(x: &u64) -> u64 {
    x * 2
}

fn main() {}
