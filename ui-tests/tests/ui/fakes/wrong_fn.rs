use aqueduct::prelude::*;

#[task]
fn add(a: &u64, b: &u64) -> u64 {
    a + b
}

workflow! {
    fn flow(seed: u64) -> u64 {
        add(&seed, &seed)
    }
}

/// A function with one input too few.
fn add_one(a: &u64) -> u64 {
    a + 1
}

fn main() {
    let _ = flow::with_fakes([add::fake(add_one)]);
}
