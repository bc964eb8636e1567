use aqueduct::prelude::*;

#[path = "common/tasks.rs"]
mod tasks;
#[allow(unused_imports)]
use tasks::*;

fn main() {}

#[task]
fn pair(a: &usize, b: &usize) -> usize {
    a + b
}

workflow! {
    fn flow(n: u32) -> usize {
        let processed = process(&n);
        let size = if n > 3 {
            consume(processed)
        } else {
            let a = consume(processed);
            let b = consume(processed);
            pair(&a, &b)
        };
        size
    }
}
