use aqueduct::prelude::*;

#[path = "common/tasks.rs"]
mod tasks;
#[allow(unused_imports)]
use tasks::*;

fn main() {}

#[derive(Debug, Clone)]
pub enum Payload {
    Batch(Vec<u32>),
    One(u32),
}

#[task]
fn load(n: &u32) -> Payload {
    Payload::One(*n)
}

#[task]
fn double(n: &u32) -> u32 {
    n * 2
}

#[task]
fn sum(all: &[u32]) -> u32 {
    all.iter().sum()
}

workflow! {
    fn flow(n: u32) -> u32 {
        let payload = load(&n);
        let total = match payload {
            Payload::Batch(items) => {
                let each = for item in &items {
                    double(item)
                };
                sum(&each)
            }
            Payload::One(one) => double(one),
        };
        total
    }
}
