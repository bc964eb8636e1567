//! A durable fan-out over many quick items for the crash tests: each item appends
//! `end <i>` to the file named by `CRASH_LOG` as it finishes (no fsync: a SIGKILL
//! keeps what was written), so a test can count the items that finished before a kill
//! but whose checkpoint was not committed.

use aqueduct::prelude::*;

#[task]
fn numbers(n: &u64) -> Vec<u64> {
    (0..*n).collect()
}

#[task]
fn square(x: &u64) -> u64 {
    aqueduct_examples::crash_log(&format!("end {x}"), false);
    x * x
}

#[task]
fn total(squares: &[u64]) -> u64 {
    squares.iter().sum()
}

workflow! {
    #[durable]
    fn crash_many(n: u64) -> u64 {
        let xs = numbers(&n);
        let each = for x in &xs {
            square(x)
        };
        total(&each)
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let n = std::env::var("CRASH_ITEMS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    aqueduct::cli::Cli::new(crash_many::workflow())
        .main(move || (n,), |out, _| println!("{out}"))
        .await
}
