use aqueduct::prelude::*;

#[path = "common/tasks.rs"]
mod tasks;
#[allow(unused_imports)]
use tasks::*;

fn main() {}

workflow! {
    fn flow(n: u32) -> usize {
        let processed = process(&n);
        let refined = if processed.score > 80 { refine(&processed) };
        show(&refined)
    }
}