use aqueduct::prelude::*;

#[task(retries = 2, backoff = "expo")]
fn double(x: &u64) -> u64 {
    x * 2
}

fn main() {}
