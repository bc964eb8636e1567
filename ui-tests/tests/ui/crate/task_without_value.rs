use aqueduct::prelude::*;

#[task(crate)]
fn double(x: &u64) -> u64 {
    x * 2
}

fn main() {}
