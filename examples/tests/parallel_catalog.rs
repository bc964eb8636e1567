//! The flagship example computes the right totals, in parallel.

#[allow(dead_code)]
#[path = "../parallel_catalog.rs"]
pub mod catalog;

use std::sync::Arc;
use std::time::Duration;

use aqueduct::TaskStatus;
use catalog::{CatalogConfig, CategoryStats, Notifier, parallel_catalog};

/// The statistics computed the plain way, one product at a time.
fn expected(products: u32) -> catalog::Stats {
    let mut stats = catalog::Stats::new();
    for id in 1..=products {
        let s: &mut CategoryStats = stats
            .entry(format!("Category {}", id % 10 + 1))
            .or_default();
        let price = (f64::from(id) * 1.5) % 100.0;
        let stock = (id * 10) % 1000;
        s.total_value += price * f64::from(stock);
        s.total_stock += u64::from(stock);
        s.product_count += 1;
    }
    stats
}

fn quick() -> CatalogConfig {
    CatalogConfig {
        load_latency: Duration::from_millis(20),
        publish_latency: Duration::from_millis(100),
        scoring_rounds: 10,
        ..CatalogConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_totals_match_a_sequential_computation() {
    let notifier = Arc::new(Notifier::new(1));
    let summary = parallel_catalog(quick(), Arc::clone(&notifier))
        .await
        .unwrap();
    assert_eq!(
        notifier.requests(),
        2,
        "refused once, then sent: the run's own client"
    );
    let want = expected(10_000);
    assert_eq!(summary.stats.len(), 10);
    for (category, want) in &want {
        let got = summary.stats[category];
        assert_eq!(got.product_count, want.product_count, "{category}");
        assert_eq!(got.total_stock, want.total_stock, "{category}");
        let error = (got.total_value - want.total_value).abs() / want.total_value;
        assert!(
            error < 1e-12,
            "{category}: {} vs {}",
            got.total_value,
            want.total_value
        );
    }
    assert_eq!(
        summary.stats.values().map(|s| s.product_count).sum::<u32>(),
        10_000
    );
    assert_eq!(summary.report_lines, Some(10));
    assert_eq!(summary.notifications, Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_and_notifications_overlap() {
    let aqueduct::RunOutcome {
        result: summary,
        report,
        ..
    } = parallel_catalog::workflow()
        .runner_with((Arc::new(Notifier::new(0)),))
        .run((quick(),))
        .await;
    summary.unwrap();
    assert!(
        report
            .tasks
            .iter()
            .all(|t| t.status == TaskStatus::Succeeded)
    );
    let window = |node: &str| {
        let t = report.task(node).unwrap();
        (t.started_at.unwrap(), t.started_at.unwrap() + t.duration)
    };
    let (written, sent) = (window("report"), window("sent"));
    assert!(written.0 < sent.1 && sent.0 < written.1, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_runs_and_the_run_fails_when_notifications_keep_failing() {
    let refusing = Arc::new(Notifier::new(u32::MAX));
    let aqueduct::RunOutcome { result, report, .. } = parallel_catalog::workflow()
        .runner_with((refusing,))
        .run((quick(),))
        .await;
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("task `sent` (`send_notifications`) failed after 4 attempts"),
        "{message}"
    );
    assert_eq!(
        report.task("cleanup").unwrap().status,
        TaskStatus::Succeeded
    );
    assert_eq!(report.task("report").unwrap().status, TaskStatus::Succeeded);
}

#[test]
fn tasks_are_plain_functions_testable_without_the_runtime() {
    let products: Vec<_> = (1..=9)
        .map(|id| catalog::Product {
            id,
            name: format!("Product {id}"),
            category: format!("Category {}", id % 10 + 1),
            price: 1.0,
            stock: 2,
        })
        .collect();
    let parts = catalog::partition_data(products);
    assert_eq!(
        (parts.first.len(), parts.second.len(), parts.third.len()),
        (3, 3, 3)
    );
    let cfg = CatalogConfig::default();
    let stats = catalog::process_partition(&parts.first, &cfg);
    assert_eq!(stats.stats.values().map(|s| s.total_stock).sum::<u64>(), 6);
}
