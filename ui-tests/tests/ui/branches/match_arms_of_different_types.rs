use aqueduct::prelude::*;

#[path = "common/tasks.rs"]
mod tasks;
#[allow(unused_imports)]
use tasks::*;

fn main() {}

workflow! {
    fn flow(n: u32) -> usize {
        let processed = process(&n);
        let value = match processed.kind {
            Kind::Csv(text) => parse(text),
            Kind::Json(_) => refine(&processed),
            Kind::Xml(_) => count(&processed),
        };
        value
    }
}