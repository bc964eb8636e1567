use aqueduct::prelude::*;

#[path = "common/tasks.rs"]
mod tasks;
#[allow(unused_imports)]
use tasks::*;

fn main() {}

workflow! {
    fn flow(n: u32) -> Option<String> {
        let processed = process(&n);
        let label = if n > 10 { refine(&processed) } else if n > 3 { refine(&processed) };
        label
    }
}
