use aqueduct::prelude::*;

#[task]
fn double(x: &u64) -> u64 {
    x * 2
}

workflow! {
    #[durable]
    fn doubled(x: u64) -> u64 {
        let twice = double(&x);
        double(&twice)
    }
}

fn main() {}
