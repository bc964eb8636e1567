use aqueduct::prelude::*;

struct Pool;

#[task]
fn read(x: &u64, _pool: &Pool) -> u64 {
    *x
}

workflow! {
    fn flow(#[resource] pool: Pool, x: u64) -> u64 {
        read(&x, &pool)
    }
}

fn main() {}
