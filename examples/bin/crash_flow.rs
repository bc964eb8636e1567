//! A durable workflow for the crash tests: each task appends `start <node>` and
//! `end <node>` to the file named by `CRASH_LOG` and takes 300 ms, so a test can kill
//! the process at a chosen point and check what a resume runs again. One step is an
//! `if`, whose condition logs too: a resume must not decide again.

use std::time::Duration;

use aqueduct::prelude::*;

const STEP: Duration = Duration::from_millis(300);

fn log(event: &str) {
    aqueduct_examples::crash_log(event, true);
}

#[task]
async fn load(n: &u64) -> Vec<u64> {
    log("start xs");
    tokio::time::sleep(STEP).await;
    log("end xs");
    (1..=*n).collect()
}

#[task]
fn square_all(xs: &[u64]) -> Vec<u64> {
    log("start squares");
    std::thread::sleep(STEP);
    log("end squares");
    xs.iter().map(|x| x * x).collect()
}

#[task]
async fn total(xs: &[u64]) -> u64 {
    log("start sum");
    tokio::time::sleep(STEP).await;
    log("end sum");
    xs.iter().sum()
}

/// The condition of the `if` that picks how to shrink the squares: logged like a
/// task, so a test sees whether a resume decides again.
fn wide(xs: &[u64]) -> bool {
    log("start halves.if");
    log("end halves.if");
    xs.len() > 3
}

#[task]
fn halve(squares: &[u64]) -> Vec<u64> {
    log("start halves.then.halve");
    std::thread::sleep(STEP);
    log("end halves.then.halve");
    squares.iter().map(|x| x / 2).collect()
}

/// The arm not taken (six items are wide): never runs.
#[task]
fn keep(squares: &[u64]) -> Vec<u64> {
    log("start halves.else.keep");
    squares.to_vec()
}

#[task]
async fn summary(halves: &[u64], sum: &u64) -> String {
    log("start summary");
    tokio::time::sleep(STEP).await;
    log("end summary");
    format!("sum {sum}, halves {halves:?}")
}

workflow! {
    #[durable]
    fn crash_flow(n: u64) -> String {
        let xs = load(&n);
        let squares = square_all(&xs);
        let sum = total(&xs);
        let halves = if wide(&xs) { halve(&squares) } else { keep(&squares) };
        summary(&halves, &sum)
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    aqueduct::cli::Cli::new(crash_flow::workflow())
        .main(|| (6,), |out, _| println!("{out}"))
        .await
}
