use aqueduct::prelude::*;

#[task]
fn show<T: std::fmt::Debug>(x: &T) -> String {
    format!("{x:?}")
}

fn main() {}
