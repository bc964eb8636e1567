use aqueduct::prelude::*;

#[path = "common/tasks.rs"]
mod tasks;
#[allow(unused_imports)]
use tasks::*;

fn main() {}

#[task]
fn lower(n: &u32) -> u32 {
    n - 1
}

workflow! {
    fn flow(ns: Vec<u32>) -> Vec<u32> {
        let each = for n in &ns {
            let kept = match n {
                Outcome::Ok(v) => lower(v),
                _ => lower(n),
            };
            kept
        };
        each
    }
}
