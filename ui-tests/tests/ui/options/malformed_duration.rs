use aqueduct::prelude::*;

#[task(retries = 2, retry_delay = "1 sec")]
fn double(x: &u64) -> u64 {
    x * 2
}

fn main() {}
