use aqueduct::prelude::*;

#[task]
fn grow(list: &mut Vec<u64>) -> usize {
    list.push(1);
    list.len()
}

fn main() {}
