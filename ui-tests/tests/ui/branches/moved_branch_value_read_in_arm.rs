use aqueduct::prelude::*;

#[path = "common/tasks.rs"]
mod tasks;
#[allow(unused_imports)]
use tasks::*;

fn main() {}

workflow! {
    fn flow(n: u32) -> usize {
        let value = if n > 3 {
            let processed = process(&n);
            let size = count(&processed);
            processed
        } else {
            process(&n)
        };
        consume(value)
    }
}