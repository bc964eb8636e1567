use aqueduct::prelude::*;

struct Service;

impl Service {
    #[task]
    fn call(&self, x: &u64) -> u64 {
        *x
    }
}

fn main() {}
