use aqueduct::prelude::*;
use std::rc::Rc;

#[task]
fn shared(x: &u64) -> Rc<u64> {
    Rc::new(*x)
}

fn main() {}
