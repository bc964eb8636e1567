//! The dynamic catalog's totals do not depend on the number of partitions.

#[allow(dead_code)]
#[path = "../dynamic_catalog.rs"]
pub mod catalog;

use std::time::Duration;

use aqueduct::TaskStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_are_the_same_for_any_number_of_partitions() {
    let one = catalog::dynamic_catalog(10_000, 1, Duration::ZERO)
        .await
        .unwrap();
    for parts in [2, 7, 16] {
        let many = catalog::dynamic_catalog(10_000, parts, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(many.len(), 10);
        for (category, (count, value)) in &one {
            let (other_count, other_value) = many[category];
            assert_eq!(
                *count, other_count,
                "{parts} partitions, category {category}"
            );
            assert!((value - other_value).abs() / value < 1e-12);
        }
    }
    assert_eq!(one.values().map(|(count, _)| count).sum::<u32>(), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_partition_is_reported_and_at_most_three_are_in_flight() {
    let params = (1_000, 7, Duration::from_millis(30));
    let aqueduct::RunOutcome { result, report, .. } = catalog::dynamic_catalog::workflow()
        .runner()
        .run(params)
        .await;
    result.unwrap();
    let checks: Vec<_> = (0..7)
        .map(|i| report.task(&format!("price_check[{i}]")).unwrap())
        .collect();
    assert!(checks.iter().all(|t| t.status == TaskStatus::Succeeded));
    // Three at a time: when any check starts, at most three (it included) are running.
    // A check that starts as another ends may be stamped a hair before that one's end
    // on another core: ignore overlaps under a millisecond. (Counting every check an
    // interval overlaps would be wrong: a long check may overlap three others that
    // never ran together.)
    let slack = Duration::from_millis(1);
    for check in &checks {
        let at = check.started_at.unwrap();
        let running = checks
            .iter()
            .filter(|other| {
                let start = other.started_at.unwrap();
                start <= at && at + slack < start + other.duration
            })
            .count();
        assert!(running <= 3, "{running} checks at once\n{report}");
    }
}
