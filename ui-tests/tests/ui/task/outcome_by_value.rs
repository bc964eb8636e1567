use aqueduct::prelude::*;

// What became of an input is read by reference: `&Outcome<T>`.
#[task]
fn report(result: Outcome<Vec<u64>>) -> usize {
    result.value().map_or(0, Vec::len)
}

fn main() {}
