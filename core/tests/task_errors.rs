//! The errors users already have: a task may return `anyhow::Result<T>`,
//! `Result<T, Box<dyn Error + Send + Sync>>`, `Result<T, String>`, a
//! `std::error::Error` type or `TaskError`, and use `?` on them.

use std::error::Error as StdError;

use aqueduct::prelude::*;
use aqueduct::{RunOutcome, TaskStatus};

#[task]
fn parse_anyhow(text: &str) -> anyhow::Result<u64> {
    use anyhow::Context as _;
    let n: u64 = text.parse().context("not a number")?;
    anyhow::ensure!(n < 100, "{n} is too large");
    Ok(n)
}

#[task]
fn parse_boxed(text: &str) -> Result<u64, Box<dyn StdError + Send + Sync>> {
    let n: u64 = text.parse()?;
    if n >= 100 {
        return Err(format!("{n} is too large").into());
    }
    Ok(n)
}

#[task]
fn parse_string(text: &str) -> Result<u64, String> {
    text.parse::<u64>()
        .map_err(|error| format!("{text:?}: {error}"))
}

#[task]
fn parse_std(text: &str) -> Result<u64, std::num::ParseIntError> {
    text.parse()
}

#[task]
async fn parse_async(text: &str) -> anyhow::Result<u64> {
    Ok(text.parse()?)
}

#[task]
fn sum4(a: &u64, b: &u64, c: &u64, d: &u64) -> u64 {
    a + b + c + d
}

#[task]
fn all(a: &u64, b: &u64) -> u64 {
    a + b
}

workflow! {
    fn parsed(text: String) -> u64 {
        let a = parse_anyhow(&text);
        let b = parse_boxed(&text);
        let c = parse_string(&text);
        let d = parse_std(&text);
        let e = parse_async(&text);
        let four = sum4(&a, &b, &c, &d);
        all(&four, &e)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_error_fails_its_task_with_its_message() {
    assert_eq!(parsed("7".to_owned()).await.unwrap(), 35);

    let RunOutcome { result, report, .. } =
        parsed::workflow().runner().run(("x".to_owned(),)).await;
    assert!(result.is_err());
    let error = |node: &str| {
        let task = report.task(node).unwrap();
        assert_eq!(task.status, TaskStatus::Failed, "{node}");
        task.error.clone().unwrap()
    };
    // anyhow's context and its cause are both in the message.
    assert_eq!(error("a"), "not a number: invalid digit found in string");
    assert_eq!(error("b"), "invalid digit found in string");
    assert_eq!(error("c"), r#""x": invalid digit found in string"#);
    assert_eq!(error("d"), "invalid digit found in string");
    assert_eq!(error("e"), "invalid digit found in string");

    let RunOutcome { report, .. } = parsed::workflow().runner().run(("500".to_owned(),)).await;
    assert_eq!(
        report.task("a").unwrap().error.as_deref(),
        Some("500 is too large")
    );
    assert_eq!(
        report.task("b").unwrap().error.as_deref(),
        Some("500 is too large")
    );
}
