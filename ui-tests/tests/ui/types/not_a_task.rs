use aqueduct::prelude::*;

#[task]
fn double(x: &u64) -> u64 {
    x * 2
}

#[task]
fn add(a: &u64, b: &u64) -> u64 {
    a + b
}

fn triple(x: &u64) -> u64 {
    x * 3
}

workflow! {
    fn flow(seed: u64) -> u64 {
        triple(&seed)
    }
}

fn main() {}
