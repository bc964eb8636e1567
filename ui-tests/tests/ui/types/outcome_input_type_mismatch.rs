use aqueduct::prelude::*;

#[task]
fn count(x: &u64) -> u64 {
    *x
}

#[task]
fn cleanup(report: &Outcome<String>) -> usize {
    report.value().map_or(0, String::len)
}

workflow! {
    fn flow(seed: u64) -> usize {
        let n = count(&seed);
        cleanup(&n)
    }
}

fn main() {}
