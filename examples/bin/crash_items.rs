//! A durable fan-out for the crash tests: 40 items, at most 4 at a time, each taking
//! 50 ms and appending `start <i>` / `end <i>` to the file named by `CRASH_LOG`, so a
//! test can kill the process halfway and check which items a resume runs again.

use std::time::Duration;

use aqueduct::prelude::*;

fn log(event: &str) {
    aqueduct_examples::crash_log(event, true);
}

#[task]
fn numbers(n: &u64) -> Vec<u64> {
    (0..*n).collect()
}

#[task]
async fn square(x: &u64) -> u64 {
    log(&format!("start {x}"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    log(&format!("end {x}"));
    x * x
}

#[task]
fn total(squares: &[u64]) -> u64 {
    squares.iter().sum()
}

workflow! {
    #[durable]
    fn crash_items(n: u64) -> u64 {
        let xs = numbers(&n);
        let each = #[concurrency = 4] for x in &xs {
            square(x)
        };
        total(&each)
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    aqueduct::cli::Cli::new(crash_items::workflow())
        .main(|| (40,), |out, _| println!("{out}"))
        .await
}
