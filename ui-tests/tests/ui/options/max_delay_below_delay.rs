use aqueduct::prelude::*;

#[task(retries = 3, retry_delay = "10s", max_delay = "1s")]
fn double(x: &u64) -> u64 {
    x * 2
}

fn main() {}
