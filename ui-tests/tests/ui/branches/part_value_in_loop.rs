use aqueduct::prelude::*;

#[path = "common/tasks.rs"]
mod tasks;
#[allow(unused_imports)]
use tasks::*;

fn main() {}

#[task]
async fn fetch(n: &u32) -> Result<Processed, TaskError> {
    Ok(Processed { score: *n, kind: Kind::Json(String::new()) })
}

workflow! {
    fn flow(n: u32, ns: Vec<u32>) -> Vec<Processed> {
        let fetched = fetch(&n);
        let each = for m in &ns {
            let kept = match fetched {
                Outcome::Ok(p) => p,
                _ => process(m),
            };
            kept
        };
        each
    }
}
