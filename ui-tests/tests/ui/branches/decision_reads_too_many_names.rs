use aqueduct::prelude::*;

#[path = "common/tasks.rs"]
mod tasks;
#[allow(unused_imports)]
use tasks::*;

fn main() {}

workflow! {
    fn flow(a: u32, b: u32, c: u32, d: u32, e: u32, f: u32, g: u32, h: u32, i: u32, j: u32, k: u32, l: u32) -> usize {
        let processed = process(&a);
        let size = if a + b + c + d + e + f + g + h + i + j + k + l + processed.score > 10 {
            count(&processed)
        } else {
            count(&processed)
        };
        size
    }
}
