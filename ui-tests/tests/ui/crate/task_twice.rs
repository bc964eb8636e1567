use aqueduct::prelude::*;

#[task(crate = aqueduct, retries = 1, crate = ::aqueduct)]
fn double(x: &u64) -> u64 {
    x * 2
}

fn main() {}
