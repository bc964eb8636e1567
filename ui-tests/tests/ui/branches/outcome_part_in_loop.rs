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

#[task]
fn describe(n: &u32, error: &TaskError) -> usize {
    *n as usize + error.to_string().len()
}

#[task]
fn total(all: &[usize]) -> usize {
    all.iter().sum()
}

workflow! {
    fn flow(first: u32, ns: Vec<u32>) -> usize {
        let fetched = fetch(&first);
        let size = match fetched {
            Outcome::Ok(p) => count(p),
            Outcome::Failed(error) => {
                let each = for n in &ns {
                    describe(n, error)
                };
                total(&each)
            }
            Outcome::Skipped => count_all(&ns),
        };
        size
    }
}

#[task]
fn count_all(ns: &[u32]) -> usize {
    ns.len()
}
