use aqueduct::prelude::*;

struct Wrapped<'a>(&'a u64);

workflow! {
    fn flow(seed: u64) -> u64 {
        let w = Wrapped(&seed);
        w
    }
}

fn main() {}
