use aqueduct::prelude::*;

#[task(cache = "0s")]
fn score(x: &u64) -> u64 {
    x + 1
}

fn main() {}
