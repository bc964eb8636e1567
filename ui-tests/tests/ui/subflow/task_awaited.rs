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

workflow! {
    fn outer(a: u64) -> u64 {
        let r = double(&a).await;
        r
    }
}

fn main() {}
