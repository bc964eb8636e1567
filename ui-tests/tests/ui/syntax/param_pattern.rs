use aqueduct::prelude::*;

#[task]
fn double(x: &u64) -> u64 {
    x * 2
}

workflow! {
    fn flow((a, b): (u64, u64)) -> u64 {
        double(&a)
    }
}

fn main() {}
