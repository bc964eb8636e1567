use aqueduct::prelude::*;

#[task]
fn double(x: &u64) -> u64 {
    x * 2
}

workflow! {
    fn flow(seed: u64) -> u64 {
        let a;
        double(&seed)
    }
}

fn main() {}
