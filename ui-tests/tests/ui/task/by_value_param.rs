use aqueduct::prelude::*;

#[task]
fn consume(list: Vec<u64>) -> usize {
    list.len()
}

fn main() {}
