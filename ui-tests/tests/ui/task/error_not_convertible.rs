use aqueduct::prelude::*;

#[derive(Debug)]
struct Oops;

#[task]
fn fallible(x: &u64) -> Result<u64, Oops> {
    if *x == 0 {
        return Err(Oops);
    }
    Ok(*x)
}

fn main() {}
