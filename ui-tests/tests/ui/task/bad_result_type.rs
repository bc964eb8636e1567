use aqueduct::prelude::*;

#[allow(dead_code)]
enum Result<T> {
    Fine(T),
}

#[task]
fn odd(x: &u64) -> Result<u64> {
    Result::Fine(*x)
}

fn main() {}
