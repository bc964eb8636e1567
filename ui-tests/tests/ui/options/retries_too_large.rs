use aqueduct::prelude::*;

#[task(retries = 99999999999)]
fn double(x: &u64) -> u64 {
    x * 2
}

fn main() {}
