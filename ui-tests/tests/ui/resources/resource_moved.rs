use aqueduct::prelude::*;

struct Pool;

#[task]
fn consume(pool: Pool) -> u64 {
    drop(pool);
    1
}

workflow! {
    fn flow(#[resource] pool: Pool) -> u64 {
        consume(pool)
    }
}

fn main() {}
