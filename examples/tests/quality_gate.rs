//! The quality gate takes the high-quality path for a fresh feed, and falls back to
//! the cache when the supplier is offline, the run still succeeding.

#[allow(dead_code)]
#[path = "../quality_gate.rs"]
pub mod gate;

use aqueduct::TaskStatus;

fn status(report: &aqueduct::RunReport, node: &str) -> TaskStatus {
    report
        .task(node)
        .unwrap_or_else(|| panic!("{node}: {report}"))
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_feed_takes_the_high_quality_path() {
    let aqueduct::RunOutcome { result, report, .. } =
        gate::quality_gate::workflow().runner().run((false,)).await;
    assert_eq!(
        result.unwrap(),
        "3 prices, total 24.75, enriched (score 85)"
    );
    assert_eq!(status(&report, "feed._.cached_feed"), TaskStatus::NotTaken);
    assert_eq!(
        status(&report, "enriched.then.enrich"),
        TaskStatus::Succeeded
    );
    assert_eq!(
        status(&report, "prices.Json.parse_json"),
        TaskStatus::NotTaken
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_supplier_falls_back_to_the_cache_and_the_run_succeeds() {
    let aqueduct::RunOutcome { result, report, .. } =
        gate::quality_gate::workflow().runner().run((true,)).await;
    assert_eq!(result.unwrap(), "2 prices, total 20.50, standard path");
    let fetched = report.task("fetched").unwrap();
    assert_eq!(fetched.status, TaskStatus::Handled);
    assert_eq!(
        fetched.attempts.len(),
        2,
        "its retry stays visible: {report}"
    );
    assert_eq!(status(&report, "feed._.cached_feed"), TaskStatus::Succeeded);
    assert_eq!(
        status(&report, "enriched.then.enrich"),
        TaskStatus::NotTaken
    );
    assert_eq!(
        status(&report, "prices.Csv.parse_csv"),
        TaskStatus::NotTaken
    );
    let table = report.to_string();
    assert!(
        table.contains("handled") && table.contains("not taken"),
        "{table}"
    );
}
