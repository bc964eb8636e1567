use aqueduct::prelude::*;

#[path = "common/tasks.rs"]
mod tasks;
#[allow(unused_imports)]
use tasks::*;

fn main() {}

workflow! {
    fn inner(text: String) -> usize {
        parse_owned(&text)
    }
}

#[task]
fn parse_owned(text: &String) -> usize {
    text.len()
}

workflow! {
    fn flow(n: u32) -> usize {
        let processed = process(&n);
        let size = match processed.kind {
            Kind::Csv(text) => inner(&text).await,
            _ => count(&processed),
        };
        size
    }
}
