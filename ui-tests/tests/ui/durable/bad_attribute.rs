use aqueduct::prelude::*;

#[task]
fn double(x: &u64) -> u64 {
    x * 2
}

workflow! {
    #[durable(revision = 2)]
    fn flow(x: u64) -> u64 {
        double(&x)
    }
}

fn main() {}
