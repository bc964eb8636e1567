use aqueduct::prelude::*;

#[path = "common/tasks.rs"]
mod tasks;
#[allow(unused_imports)]
use tasks::*;

fn main() {}

workflow! {
    fn flow(n: u32) -> usize {
        let high = if n > 3 {
            let p = process_one(&n);
            let refined = refine(&p);
            let size = show(&refined);
            refined
        };
        count_all(&high)
    }
}

#[task]
fn process_one(n: &u32) -> Processed {
    Processed { score: *n, kind: Kind::Json(String::new()) }
}

#[task]
fn count_all(high: &Option<String>) -> usize {
    high.as_ref().map_or(0, String::len)
}