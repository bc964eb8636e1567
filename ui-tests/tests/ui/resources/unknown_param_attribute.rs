use aqueduct::prelude::*;

#[task]
fn double(x: &u64) -> u64 {
    x * 2
}

workflow! {
    fn flow(#[shared] x: u64) -> u64 {
        double(&x)
    }
}

fn main() {}
