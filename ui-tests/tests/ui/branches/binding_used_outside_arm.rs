use aqueduct::prelude::*;

#[path = "common/tasks.rs"]
mod tasks;
#[allow(unused_imports)]
use tasks::*;

fn main() {}

workflow! {
    fn flow(n: u32) -> usize {
        let processed = process(&n);
        let label = if processed.score > 80 {
            let refined = refine(&processed);
            refined
        } else {
            refine(&processed)
        };
        show(&refined)
    }
}