//! What the commands print: the run history, the cache.

use std::fmt::Write;

pub(super) use crate::store::now_ms;
use crate::store::{CacheEntry, RunSummary};

/// The run history as a table.
pub(super) fn runs_table(runs: &[RunSummary]) -> String {
    let mut out = format!(
        "{:<40} {:<20} {:<10} {:<20} {:>10} {:>11}\n",
        "run", "workflow", "status", "started", "duration", "checkpoints"
    );
    for run in runs {
        let duration = run
            .duration_ms
            .map_or_else(|| "-".to_owned(), |ms| format!("{:.1} s", ms as f64 / 1e3));
        let _ = writeln!(
            out,
            "{:<40} {:<20} {:<10} {:<20} {:>10} {:>11}",
            run.id,
            run.workflow,
            run.status,
            ago(run.started_ms),
            duration,
            run.checkpoints
        );
    }
    out
}

/// How long ago `millis` (since the Unix epoch) was, to the coarsest useful unit.
fn ago(millis: u64) -> String {
    format!("{} ago", span(now_ms().saturating_sub(millis) / 1_000))
}

/// `secs` seconds, to the coarsest useful unit.
fn span(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3_600 => format!("{}m {}s", secs / 60, secs % 60),
        3_600..86_400 => format!("{}h {}m", secs / 3_600, secs % 3_600 / 60),
        _ => format!("{}d {}h", secs / 86_400, secs % 86_400 / 3_600),
    }
}

/// The cached results as a table (keys shortened to 16 digits), and their total.
pub(super) fn cache_table(entries: &[CacheEntry]) -> String {
    if entries.is_empty() {
        return "the cache is empty\n".to_owned();
    }
    let now = now_ms();
    let mut out = format!(
        "{:<24} {:<16} {:<52} {:<16} {:<16} {:>10}\n",
        "task", "key", "computed by run", "computed", "expires", "bytes"
    );
    for entry in entries {
        let expires = match entry.expires_ms {
            None => "never".to_owned(),
            Some(at) if at <= now => "expired".to_owned(),
            Some(at) => format!("in {}", span((at - now) / 1_000)),
        };
        let _ = writeln!(
            out,
            "{:<24} {:<16} {:<52} {:<16} {:<16} {:>10}",
            entry.task,
            entry.key.get(..16).unwrap_or(&entry.key),
            entry.run,
            ago(entry.created_ms),
            expires,
            entry.bytes
        );
    }
    let bytes: u64 = entries.iter().map(|e| e.bytes).sum();
    let _ = writeln!(out, "{} result(s), {bytes} bytes", entries.len());
    out
}
