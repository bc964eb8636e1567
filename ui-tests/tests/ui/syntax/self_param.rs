use aqueduct::prelude::*;

#[task]
fn double(x: &u64) -> u64 {
    x * 2
}

workflow! {
    fn flow(&self, seed: u64) -> u64 {
        double(&seed)
    }
}

fn main() {}
