use aqueduct::prelude::*;

#[path = "common/tasks.rs"]
mod tasks;
#[allow(unused_imports)]
use tasks::*;

fn main() {}

workflow! {
    fn flow(ns: Vec<u32>) -> Vec<u32> {
        let each = for n in &ns {
            let kept = if n > 3 { n } else { lower(n) };
            kept
        };
        each
    }
}

#[task]
fn lower(n: &u32) -> u32 {
    n - 1
}