use aqueduct::prelude::*;

#[path = "common/tasks.rs"]
mod tasks;
#[allow(unused_imports)]
use tasks::*;

fn main() {}

workflow! {
    fn flow(n: u32) -> usize {
        let processed = process(&n);
        let value = match processed.kind.clone() {
            Kind::Csv(text) => parse(text),
            _ => count(&processed),
        };
        value
    }
}