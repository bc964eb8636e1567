//! # Branches and fallbacks: the catalog's quality gate
//!
//! The branching tutorial of the orchestrator Aqueduct started from, typed: fetch the
//! catalog from a supplier (or, if the fetch fails, use the cached copy, and the run
//! still succeeds), score its quality, run the high-quality path only if the score is
//! above 80, and parse the feed by its format.
//!
//! ```text
//! cargo run --release --example quality_gate              # the supplier answers
//! cargo run --release --example quality_gate -- offline   # it does not: the cache
//! ```
//!
//! The report shows the branch's arms that were not taken as `not taken`, and a fetch
//! the fallback rescued as `handled` (with its attempts and error).

use std::time::Duration;

use aqueduct::prelude::*;

/// A supplier's feed, in one of its formats.
#[derive(Debug, Clone, PartialEq)]
pub enum Feed {
    /// `id,name,price` lines.
    Csv(String),
    /// A JSON array of `{"id", "price"}` objects.
    Json(String),
}

/// The catalog as scored.
#[derive(Debug, Clone)]
pub struct Scored {
    /// 0–100: above 80 takes the high-quality path.
    pub quality_score: u32,
    /// The feed it scored.
    pub feed: Feed,
}

/// Fetches the supplier's feed (simulated IO); fails if the supplier is offline.
#[task(retries = 1, retry_delay = "20ms")]
pub async fn fetch_feed(offline: &bool) -> Result<Feed, TaskError> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    if *offline {
        return Err(TaskError::msg("the supplier did not answer"));
    }
    Ok(Feed::Csv(
        "1,widget,9.5\n2,gadget,12.0\n3,doohickey,3.25".into(),
    ))
}

/// The copy of the feed kept from the last good fetch.
#[task]
pub fn cached_feed(_offline: &bool) -> Feed {
    Feed::Json(r#"[{"id":1,"price":9.0},{"id":2,"price":11.5}]"#.into())
}

/// Scores the feed: a fresh CSV feed scores high, the cached copy lower.
#[task]
pub fn score(feed: &Feed) -> Scored {
    let quality_score = match feed {
        Feed::Csv(text) => 70 + 5 * text.lines().count() as u32,
        Feed::Json(_) => 60,
    };
    Scored {
        quality_score,
        feed: feed.clone(),
    }
}

/// The high-quality path: only for a score above 80.
#[task]
pub fn enrich(scored: &Scored) -> String {
    format!("enriched (score {})", scored.quality_score)
}

/// The prices of a CSV feed.
#[task]
pub fn parse_csv(text: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|line| line.rsplit(',').next()?.parse().ok())
        .collect()
}

/// The prices of a JSON feed.
#[task]
pub fn parse_json(text: &str) -> Vec<f64> {
    text.split("\"price\":")
        .skip(1)
        .filter_map(|part| part.split(['}', ',']).next()?.parse().ok())
        .collect()
}

/// What the gate publishes: the prices and the path taken.
#[task]
pub fn publish(enriched: &Option<String>, prices: &[f64]) -> String {
    let total: f64 = prices.iter().sum();
    let path = enriched.as_deref().unwrap_or("standard path");
    format!("{} prices, total {total:.2}, {path}", prices.len())
}

workflow! {
    /// The quality gate: a fallback for the fetch, a branch on the score, a `match` on
    /// the feed's format.
    pub fn quality_gate(offline: bool) -> String {
        let fetched = fetch_feed(&offline);
        // The fetch's value, or if it failed, the cached copy: the failure is handled.
        let feed = match fetched {
            Outcome::Ok(feed) => feed,
            _ => cached_feed(&offline),
        };
        let scored = score(&feed);
        // Only above 80: `None` when not taken.
        let enriched = if scored.quality_score > 80 { enrich(&scored) };
        let prices = match scored.feed {
            Feed::Csv(text) => parse_csv(text),
            Feed::Json(text) => parse_json(text),
        };
        publish(&enriched, &prices)
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let offline = std::env::args().nth(1).as_deref() == Some("offline");
    let aqueduct::RunOutcome { result, report, .. } =
        quality_gate::workflow().runner().run((offline,)).await;
    println!("{report}");
    match result {
        Ok(summary) => {
            println!("{summary}");
            println!("\n{}", quality_gate::workflow().graph().to_mermaid());
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
