use aqueduct::prelude::*;

#[path = "common/tasks.rs"]
mod tasks;
#[allow(unused_imports)]
use tasks::*;

fn main() {}

workflow! {
    fn flow(n: u32) -> String {
        let processed = process(&n);
        let value = match processed.kind {
            Kind::Csv(text) => text,
            _ => refine(&processed),
        };
        value
    }
}