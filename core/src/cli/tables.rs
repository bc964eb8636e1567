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

/// The distributed runs as a table; a running run that no worker serves says why it
/// waits (`this_build`: the fingerprint of the build showing it).
#[cfg(feature = "postgres")]
pub(super) fn distributed_runs_table(
    runs: &[crate::dist::DistributedRunSummary],
    this_build: Option<&str>,
) -> String {
    let mut out = format!(
        "{:<40} {:<10} {:<20} {:>10} {:>13} {:>7}\n",
        "run", "status", "submitted", "duration", "tasks ended", "workers"
    );
    for run in runs {
        let duration = run.ended_ms.map_or_else(
            || "-".to_owned(),
            |ended| {
                format!(
                    "{:.1} s",
                    ended.saturating_sub(run.submitted_ms) as f64 / 1e3
                )
            },
        );
        let ended = format!(
            "{}/{}",
            run.tasks - run.unfinished.min(run.tasks),
            run.tasks
        );
        let _ = writeln!(
            out,
            "{:<40} {:<10} {:<20} {:>10} {:>13} {:>7}",
            run.id,
            run.status,
            ago(run.submitted_ms),
            duration,
            ended,
            run.workers
        );
        if run.status == "running" && run.workers == 0 {
            let build = if this_build == Some(run.fingerprint.as_str()) {
                "this build"
            } else {
                "the build that submitted it (not this one)"
            };
            let _ = writeln!(out, "  waiting: no worker of {build} is at work");
        }
    }
    out
}

/// A distributed run's tasks as a table: state, attempts, the worker of each attempt
/// (the first first), and the last error.
#[cfg(feature = "postgres")]
pub(super) fn distributed_run_table(run: &crate::dist::DistributedRun) -> String {
    let mut out = format!(
        "run `{}` of `{}`: {}\n{:<24} {:<8} {:>8}  {}\n",
        run.id, run.workflow, run.status, "task", "state", "attempts", "workers"
    );
    for task in &run.tasks {
        let _ = writeln!(
            out,
            "{:<24} {:<8} {:>8}  {}",
            task.node,
            task.state,
            task.attempts,
            task.workers.join(", ")
        );
        if let Some(error) = &task.error {
            let what = match (task.state.as_str(), task.handled) {
                ("done", _) => "an earlier attempt failed",
                (_, true) => "error (handled by a `match`)",
                _ => "error",
            };
            let _ = writeln!(out, "  {what}: {error}");
        }
        if let Some(from) = &task.cached_from {
            let _ = writeln!(out, "  cached: the result of run `{from}`");
        }
    }
    out
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use super::*;
    use crate::dist::{DistributedRun, DistributedRunSummary, DistributedTask};

    fn summary(id: &str, status: &str, workers: u32, fingerprint: &str) -> DistributedRunSummary {
        DistributedRunSummary {
            id: id.into(),
            workflow: "triple".into(),
            status: status.into(),
            submitted_ms: now_ms() - 5_000,
            ended_ms: (status != "running").then(|| now_ms() - 1_500),
            tasks: 4,
            unfinished: if status == "running" { 3 } else { 0 },
            failed: 0,
            workers,
            fingerprint: fingerprint.into(),
        }
    }

    #[test]
    fn a_running_run_without_a_worker_of_its_build_says_it_waits() {
        let table = distributed_runs_table(
            &[
                summary("mine", "running", 0, "this"),
                summary("theirs", "running", 0, "old"),
                summary("served", "running", 2, "this"),
                summary("done", "succeeded", 0, "this"),
            ],
            Some("this"),
        );
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[1].starts_with("mine ") && lines[1].contains(" 1/4 "),
            "{table}"
        );
        assert_eq!(lines[2], "  waiting: no worker of this build is at work");
        assert!(lines[3].starts_with("theirs "), "{table}");
        assert_eq!(
            lines[4],
            "  waiting: no worker of the build that submitted it (not this one) is at work"
        );
        assert!(
            lines[5].starts_with("served ") && lines[5].ends_with(" 2"),
            "{table}"
        );
        assert!(
            lines[6].starts_with("done ") && lines[6].contains(" 3.5 s "),
            "{table}"
        );
        assert_eq!(lines.len(), 7, "{table}");
    }

    #[test]
    fn a_distributed_run_shows_the_worker_of_each_attempt() {
        let run = DistributedRun {
            id: "r".into(),
            workflow: "triple".into(),
            status: "succeeded".into(),
            tasks: vec![DistributedTask {
                node: "tripled".into(),
                state: "done".into(),
                attempts: 2,
                workers: vec!["a:1:x".into(), "b:2:y".into()],
                error: Some("lost".into()),
                cached_from: Some("first".into()),
                handled: false,
            }],
        };
        let table = distributed_run_table(&run);
        assert!(
            table.contains("tripled") && table.contains("a:1:x, b:2:y"),
            "{table}"
        );
        assert!(
            table.contains("  an earlier attempt failed: lost"),
            "{table}"
        );
        assert!(
            table.contains("  cached: the result of run `first`"),
            "{table}"
        );
    }
}
