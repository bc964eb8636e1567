//! # The parallel product catalog
//!
//! The "complex workflow" of the Cloacina tutorial this project started from, typed:
//! load a catalog of 10,000 products, split it in three, compute per-category
//! statistics of the three partitions in parallel, combine them, then write a report
//! and send notifications at the same time, and clean up.
//!
//! ```text
//! cargo run --release --example parallel_catalog
//! cargo run --release --example parallel_catalog -- run --products 50000 --scoring-rounds 500
//! ```
//!
//! The catalog's size and work are parameters on the command line (`run --help` lists
//! them); the notification service is a resource (`#[resource]`): the run is given it,
//! its tasks share it, and it is never saved with the run.
//!
//! It prints the per-category table, how long the three partitions took one by one
//! against the wall time they actually took side by side, the run report and the
//! graph as Mermaid. The simulated notification service refuses the first request
//! (a 503), so the report shows `send_notifications` succeeding on its second attempt.
//! `cleanup` takes the report's and the notifications' outcomes, so it runs even if
//! they fail. Ctrl-C cancels the run cleanly.
//!
//! `generate_data`, `generate_report` and `send_notifications` are `async fn`: IO work,
//! run on tokio (the IO is simulated with sleeps). `partition_data`,
//! `process_partition`, `combine_results` and `cleanup` are plain `fn`: CPU work, run
//! on rayon. The partitions' processing is real computation, not a sleep, so its
//! speed-up is bounded by the machine's cores.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aqueduct::prelude::*;
use serde::{Deserialize, Serialize};

/// What to load and how slow the simulated IO is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogConfig {
    /// How many products the catalog holds.
    pub products: u32,
    /// The simulated latency of loading the catalog.
    pub load_latency: Duration,
    /// The simulated latency of writing the report and of sending notifications.
    pub publish_latency: Duration,
    /// Rounds of per-product scoring in each partition: the CPU work being parallelised.
    pub scoring_rounds: u32,
}

/// The notification service's client (simulated): the run's resource, shared by its
/// tasks, never saved. The service refuses its first `refused` requests.
#[derive(Debug, Default)]
pub struct Notifier {
    refused: u32,
    requests: AtomicU32,
}

impl Notifier {
    /// A client of a service that refuses its first `refused` requests (a 503).
    pub fn new(refused: u32) -> Self {
        Self {
            refused,
            requests: AtomicU32::new(0),
        }
    }

    /// The requests made so far.
    pub fn requests(&self) -> u32 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Sends one request: refused while the service still refuses.
    async fn send(&self, latency: Duration) -> Result<(), NotifyError> {
        tokio::time::sleep(latency).await;
        if self.requests.fetch_add(1, Ordering::SeqCst) < self.refused {
            return Err(NotifyError("503 Service Unavailable".into()));
        }
        Ok(())
    }
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            products: 10_000,
            load_latency: Duration::from_millis(500),
            publish_latency: Duration::from_millis(200),
            scoring_rounds: 2_000,
        }
    }
}

/// One product of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// Its id, from 1.
    pub id: u32,
    /// `Product {id}`.
    pub name: String,
    /// `Category {id % 10 + 1}`.
    pub category: String,
    /// `(id × 1.5) mod 100`.
    pub price: f64,
    /// `(id × 10) mod 1000`.
    pub stock: u32,
}

/// The catalog in three parts.
#[derive(Debug, Serialize, Deserialize)]
pub struct Partitions {
    /// The first third.
    pub first: Vec<Product>,
    /// The second third.
    pub second: Vec<Product>,
    /// The rest.
    pub third: Vec<Product>,
}

/// The statistics of one category.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CategoryStats {
    /// Σ price × stock.
    pub total_value: f64,
    /// Σ stock.
    pub total_stock: u64,
    /// How many products.
    pub product_count: u32,
}

impl CategoryStats {
    fn add(&mut self, other: &CategoryStats) {
        self.total_value += other.total_value;
        self.total_stock += other.total_stock;
        self.product_count += other.product_count;
    }
}

/// Statistics per category, in category order.
pub type Stats = BTreeMap<String, CategoryStats>;

/// The statistics of one partition and a checksum of its scoring work.
#[derive(Debug, Serialize, Deserialize)]
pub struct PartitionStats {
    /// Per category.
    pub stats: Stats,
    /// The result of the scoring rounds, so the work cannot be optimised away.
    pub score: u64,
}

/// The report `generate_report` writes.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    /// One line per category.
    pub lines: Vec<String>,
}

/// What `send_notifications` sent.
#[derive(Debug, Serialize, Deserialize)]
pub struct Notified {
    /// Categories whose stock is low, each notified once.
    pub low_stock: Vec<String>,
}

/// The workflow's output.
#[derive(Debug, Serialize, Deserialize)]
pub struct Summary {
    /// Per-category statistics of the whole catalog.
    pub stats: Stats,
    /// The report's lines; `None` if writing it failed.
    pub report_lines: Option<usize>,
    /// How many notifications went out; `None` if sending them failed.
    pub notifications: Option<usize>,
}

/// A notification channel that refused a message.
#[derive(Debug)]
pub struct NotifyError(String);

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "notification refused: {}", self.0)
    }
}

impl std::error::Error for NotifyError {}

/// Loads the catalog (simulated IO).
#[task(retries = 2)]
pub async fn generate_data(cfg: &CatalogConfig) -> Vec<Product> {
    tokio::time::sleep(cfg.load_latency).await;
    (1..=cfg.products)
        .map(|id| Product {
            id,
            name: format!("Product {id}"),
            category: format!("Category {}", id % 10 + 1),
            price: (f64::from(id) * 1.5) % 100.0,
            stock: (id * 10) % 1000,
        })
        .collect()
}

/// Splits the catalog into three nearly equal parts. Takes the catalog by value: the
/// products are moved into the parts, never copied.
#[task]
pub fn partition_data(mut products: Vec<Product>) -> Partitions {
    let third = products.len() / 3;
    let last = products.split_off(2 * third);
    let second = products.split_off(third);
    Partitions {
        first: products,
        second,
        third: last,
    }
}

/// Per-category statistics of one partition, after `rounds` of scoring each product.
#[task(retries = 3, retry_delay = "1s", backoff = "exponential")]
pub fn process_partition(products: &[Product], cfg: &CatalogConfig) -> PartitionStats {
    let mut stats = Stats::new();
    let mut score = 0u64;
    for product in products {
        let entry = stats.entry(product.category.clone()).or_default();
        entry.total_value += product.price * f64::from(product.stock);
        entry.total_stock += u64::from(product.stock);
        entry.product_count += 1;
        score = score.wrapping_add(scoring(product, cfg.scoring_rounds));
    }
    PartitionStats { stats, score }
}

/// A stand-in for real per-product CPU work: FNV-1a over the name, `rounds` times.
fn scoring(product: &Product, rounds: u32) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64 ^ u64::from(product.id);
    for _ in 0..rounds {
        for byte in product.name.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// Merges the three partitions' statistics.
#[task]
pub fn combine_results(a: &PartitionStats, b: &PartitionStats, c: &PartitionStats) -> Stats {
    let mut combined = Stats::new();
    for part in [a, b, c] {
        for (category, stats) in &part.stats {
            combined.entry(category.clone()).or_default().add(stats);
        }
    }
    combined
}

/// Writes the report (simulated IO).
#[task]
pub async fn generate_report(stats: &Stats, cfg: &CatalogConfig) -> Report {
    tokio::time::sleep(cfg.publish_latency).await;
    let lines = stats
        .iter()
        .map(|(category, s)| {
            format!(
                "{category}: {} products, value {:.2}",
                s.product_count, s.total_value
            )
        })
        .collect();
    Report { lines }
}

/// Notifies the buyers of categories whose average stock is low, through the run's
/// notification service (simulated IO; it may refuse a request, then a retry sends it).
#[task(retries = 3, retry_delay = "100ms", timeout = "5s")]
pub async fn send_notifications(
    stats: &Stats,
    cfg: &CatalogConfig,
    notifier: &Arc<Notifier>,
) -> Result<Notified, NotifyError> {
    notifier.send(cfg.publish_latency).await?;
    let low_stock = stats
        .iter()
        .filter(|(_, s)| s.product_count > 0 && s.total_stock / u64::from(s.product_count) < 500)
        .map(|(category, _)| category.clone())
        .collect();
    Ok(Notified { low_stock })
}

/// Runs last, whatever became of the report and the notifications: assembles the
/// summary from what succeeded.
#[task]
pub fn cleanup(stats: &Stats, report: &Outcome<Report>, sent: &Outcome<Notified>) -> Summary {
    Summary {
        stats: stats.clone(),
        report_lines: report.value().map(|r| r.lines.len()),
        notifications: sent.value().map(|n| n.low_stock.len()),
    }
}

workflow! {
    /// The product catalog, processed in three parallel partitions.
    #[durable]
    pub fn parallel_catalog(cfg: CatalogConfig, #[resource] notifier: Arc<Notifier>) -> Summary {
        let products = generate_data(&cfg);
        let parts = partition_data(products);
        let s1 = process_partition(&parts.first, &cfg);
        let s2 = process_partition(&parts.second, &cfg);
        let s3 = process_partition(&parts.third, &cfg);
        let combined = combine_results(&s1, &s2, &s3);
        let report = generate_report(&combined, &cfg);
        let sent = send_notifications(&combined, &cfg, &notifier);
        cleanup(&combined, &report, &sent)
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Each run gets a client of a service that refuses the first request.
    let notifier = || (Arc::new(Notifier::new(1)),);
    aqueduct::cli::Cli::with_resources(parallel_catalog::workflow(), notifier)
        .main_args(CatalogArgs::config, print_summary)
        .await
}

/// The run's parameters on the command line (`run --help`).
#[derive(clap::Args)]
struct CatalogArgs {
    /// How many products the catalog holds.
    #[arg(long, default_value_t = 10_000)]
    products: u32,
    /// Rounds of per-product scoring in each partition (the CPU work).
    #[arg(long, default_value_t = 2_000)]
    scoring_rounds: u32,
}

impl CatalogArgs {
    fn config(self) -> (CatalogConfig,) {
        (CatalogConfig {
            products: self.products,
            scoring_rounds: self.scoring_rounds,
            ..CatalogConfig::default()
        },)
    }
}

/// Prints a finished run's statistics, how parallel the partitions ran, the report and
/// the graph.
fn print_summary(summary: Summary, report: &aqueduct::RunReport) {
    println!("Per-category statistics");
    println!(
        "  {:<12} {:>8} {:>12} {:>16}",
        "category", "products", "stock", "value"
    );
    for (category, s) in &summary.stats {
        println!(
            "  {:<12} {:>8} {:>12} {:>16.2}",
            category, s.product_count, s.total_stock, s.total_value
        );
    }
    let count = |n: Option<usize>| n.map_or_else(|| "failed".to_owned(), |n| n.to_string());
    println!(
        "  report: {} lines; notifications sent: {}",
        count(summary.report_lines),
        count(summary.notifications)
    );

    let partitions: Vec<_> = ["s1", "s2", "s3"]
        .iter()
        .filter_map(|node| report.task(node))
        .collect();
    let one_by_one: Duration = partitions.iter().map(|t| t.duration).sum();
    let first_start = partitions
        .iter()
        .filter_map(|t| t.started_at)
        .min()
        .unwrap_or_default();
    let last_end = partitions
        .iter()
        .filter_map(|t| t.started_at.map(|s| s + t.duration))
        .max()
        .unwrap_or_default();
    let side_by_side = last_end.saturating_sub(first_start);
    println!();
    println!("Partition processing");
    for t in &partitions {
        println!("  {}: {:.1} ms", t.node, t.duration.as_secs_f64() * 1e3);
    }
    println!(
        "  one after another {:.1} ms, side by side {:.1} ms: {:.2}x on {} rayon threads",
        one_by_one.as_secs_f64() * 1e3,
        side_by_side.as_secs_f64() * 1e3,
        one_by_one.as_secs_f64() / side_by_side.as_secs_f64().max(f64::EPSILON),
        rayon::current_num_threads()
    );

    println!();
    println!("{report}");
    println!();
    println!("Graph (Mermaid)");
    print!("{}", parallel_catalog::workflow().graph().to_mermaid());
}
