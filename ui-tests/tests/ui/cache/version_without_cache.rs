use aqueduct::prelude::*;

#[task(version = 2)]
fn score(x: &u64) -> u64 {
    x + 1
}

fn main() {}
