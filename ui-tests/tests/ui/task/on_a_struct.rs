use aqueduct::prelude::*;

#[task]
struct Config {
    size: usize,
}

fn main() {}
