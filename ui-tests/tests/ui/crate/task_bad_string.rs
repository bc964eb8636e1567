use aqueduct::prelude::*;

#[task(crate = "aqueduct 2")]
fn double(x: &u64) -> u64 {
    x * 2
}

fn main() {}
