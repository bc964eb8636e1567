use aqueduct::prelude::*;

#[task]
fn digits(x: &u64) -> impl Iterator<Item = char> {
    x.to_string().into_bytes().into_iter().map(char::from)
}

fn main() {}
