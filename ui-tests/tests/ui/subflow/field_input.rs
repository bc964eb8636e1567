use aqueduct::prelude::*;

#[task]
fn double(x: &u64) -> u64 {
    x * 2
}

workflow! {
    pub fn inner(x: u64, _label: String) -> u64 {
        double(&x)
    }
}

pub struct Pair {
    pub x: u64,
    pub label: String,
}

workflow! {
    fn outer(p: Pair) -> u64 {
        let r = inner(&p.x, &p.label).await;
        r
    }
}

fn main() {}
