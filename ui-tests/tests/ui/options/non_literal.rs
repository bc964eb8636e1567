use aqueduct::prelude::*;

const RETRIES: u32 = 3;

#[task(retries = RETRIES)]
fn double(x: &u64) -> u64 {
    x * 2
}

fn main() {}
