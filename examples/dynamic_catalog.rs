//! # The dynamic product catalog
//!
//! The catalog of `parallel_catalog`, partitioned into as many parts as you ask for at
//! run time, each part going through its own chain of tasks:
//!
//! ```text
//! cargo run --release --example dynamic_catalog -- 16
//! ```
//!
//! (default: 8 partitions). For each partition, `process_partition` (CPU work, on
//! rayon) computes per-category statistics, then `price_check` (simulated IO to a
//! pricing service, on tokio) looks them up. Each partition moves to its second step
//! as soon as its first is done, without waiting for the others, and at most three
//! partitions are in flight at once (`#[concurrency = 3]`), as a rate-limited
//! service would require. It prints the per-category totals and the run report, in
//! which every partition's tasks appear as `stats[i]` and `price_check[i]`.

use std::collections::BTreeMap;
use std::time::Duration;

use aqueduct::prelude::*;

/// Per category: products and total value.
type Totals = BTreeMap<u32, (u32, f64)>;

/// The catalog: (category, price, stock) per product.
#[task]
fn generate(count: &u32) -> Vec<(u32, f64, u32)> {
    (1..=*count)
        .map(|id| (id % 10 + 1, (f64::from(id) * 1.5) % 100.0, (id * 10) % 1000))
        .collect()
}

/// Splits the catalog into `parts` nearly equal partitions.
#[task]
fn partition(products: &[(u32, f64, u32)], parts: &usize) -> Vec<Vec<(u32, f64, u32)>> {
    let size = products.len().div_ceil((*parts).max(1)).max(1);
    products.chunks(size).map(<[_]>::to_vec).collect()
}

/// Per-category totals of one partition.
#[task]
fn process_partition(part: &[(u32, f64, u32)]) -> Totals {
    let mut totals = Totals::new();
    for (category, price, stock) in part {
        let entry = totals.entry(*category).or_default();
        entry.0 += 1;
        entry.1 += price * f64::from(*stock);
    }
    totals
}

/// Checks a partition's totals with the pricing service (simulated latency).
#[task(retries = 2, retry_delay = "50ms", timeout = "2s")]
async fn price_check(totals: &Totals, latency: &Duration) -> Totals {
    tokio::time::sleep(*latency).await;
    totals.clone()
}

/// Adds up every partition's totals.
#[task]
fn combine(all: &[Totals]) -> Totals {
    let mut combined = Totals::new();
    for totals in all {
        for (category, (count, value)) in totals {
            let entry = combined.entry(*category).or_default();
            entry.0 += count;
            entry.1 += value;
        }
    }
    combined
}

workflow! {
    /// The catalog in `parts` partitions, each checked on its own, three at a time.
    pub fn dynamic_catalog(count: u32, parts: usize, latency: Duration) -> Totals {
        let products = generate(&count);
        let partitions = partition(&products, &parts);
        let checked = #[concurrency = 3] for part in &partitions {
            let stats = process_partition(part);
            price_check(&stats, &latency)
        };
        combine(&checked)
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let parts = match std::env::args().nth(1).map(|arg| arg.parse::<usize>()) {
        None => 8,
        Some(Ok(parts)) if parts > 0 => parts,
        Some(_) => {
            eprintln!("usage: dynamic_catalog [PARTITIONS] (a whole number from 1; default 8)");
            return std::process::ExitCode::from(2);
        }
    };
    let params = (10_000, parts, Duration::from_millis(100));
    let aqueduct::RunOutcome { result, report, .. } =
        dynamic_catalog::workflow().runner().run(params).await;
    let totals = match result {
        Ok(totals) => totals,
        Err(error) => {
            eprintln!("{report}\nerror: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("{parts} partitions, checked three at a time");
    println!("  {:<12} {:>8} {:>16}", "category", "products", "value");
    for (category, (count, value)) in &totals {
        println!(
            "  {:<12} {:>8} {:>16.2}",
            format!("Category {category}"),
            count,
            value
        );
    }
    println!();
    println!("{report}");
    std::process::ExitCode::SUCCESS
}
