use aqueduct::prelude::*;

#[task(jitter = "yes")]
fn double(x: &u64) -> u64 {
    x * 2
}

fn main() {}
