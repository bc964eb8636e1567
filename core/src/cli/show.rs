//! The commands that read the run history: `runs` and `show`, as tables or JSON.

use std::path::PathBuf;

use serde::Serialize;

use super::tables::runs_table;
use super::{Failure, Output};
use crate::describe::Graph;
use crate::report::{ItemSummary, RunReport};
use crate::store::{Store, TaskEnd};

/// How `show` shows a run.
pub(super) struct View {
    pub(super) format: Output,
    /// Bars on a time axis instead of the table.
    pub(super) timeline: bool,
    /// Also writes the timeline and the graph as an HTML page there.
    pub(super) html: Option<PathBuf>,
}

/// Columns of the timeline's bars: the terminal's width (`COLUMNS`) less the labels
/// and durations, 60 unless known.
fn timeline_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|columns| columns.parse::<usize>().ok())
        .map_or(60, |columns| columns.saturating_sub(60).clamp(20, 200))
}

/// `value` as JSON on one line.
pub(super) fn json(value: &impl Serialize) -> Result<String, Failure> {
    serde_json::to_string(value).map_err(|error| format!("cannot write JSON: {error}"))
}

/// `runs`: the store's history, most recent first.
pub(super) fn runs(store: &dyn Store, format: Output) -> Result<(), Failure> {
    let runs = store.runs().map_err(|e| e.to_string())?;
    match format {
        Output::Table => out_raw!("{}", runs_table(&runs)),
        Output::Json => out!("{}", json(&runs)?),
    }
    Ok(())
}

/// A run that has not ended, as JSON: what it saved so far.
#[derive(Serialize)]
struct Unended<'a> {
    run: &'a str,
    ended: bool,
    checkpoints: usize,
    tasks: Vec<EndJson<'a>>,
}

/// One task's end, as JSON.
#[derive(Serialize)]
struct EndJson<'a> {
    node: &'a str,
    status: &'a str,
    attempts: u32,
    errors: &'a [String],
    started_ms: u64,
    duration_ms: u64,
}

impl<'a> From<&'a TaskEnd> for EndJson<'a> {
    fn from(end: &'a TaskEnd) -> Self {
        Self {
            node: &end.node,
            status: &end.status,
            attempts: end.attempts,
            errors: &end.errors,
            started_ms: end.started_ms,
            duration_ms: end.duration_ms,
        }
    }
}

/// `show RUN_ID`: the run's report; for a run that has not ended (still running, or
/// its process died), what it saved so far.
pub(super) fn run(
    store: &dyn Store,
    run_id: &str,
    view: View,
    graph: &Graph,
) -> Result<(), Failure> {
    let format = view.format;
    if let Some(saved) = store.report(run_id).map_err(|e| e.to_string())? {
        let report: RunReport = serde_json::from_str(&saved)
            .map_err(|e| format!("run `{run_id}`: its stored report is unreadable: {e}"))?;
        if let Some(path) = &view.html {
            let page = crate::timeline::html(&report, graph, run_id);
            std::fs::write(path, page)
                .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        match (view.timeline, format) {
            (true, _) => out_raw!("{}", crate::timeline::text(&report, timeline_width())),
            (false, Output::Table) if view.html.is_none() => out!("{report}"),
            (false, Output::Table) => {}
            (false, Output::Json) => out!("{}", json(&ended(&report, run_id)?)?),
        }
        return Ok(());
    }
    if store.run(run_id).map_err(|e| e.to_string())?.is_none() {
        return Err(format!("the store has no run `{run_id}`"));
    }
    if view.timeline || view.html.is_some() {
        return Err(format!(
            "run `{run_id}` has not ended: its timeline is drawn from its report, which it \
             writes as it ends (`show {run_id}` lists what it saved so far)"
        ));
    }
    let saved = store.checkpoints(run_id).map_err(|e| e.to_string())?;
    let ends = store.task_ends(run_id).map_err(|e| e.to_string())?;
    if format == Output::Json {
        let unended = Unended {
            run: run_id,
            ended: false,
            checkpoints: saved.len(),
            tasks: ends.iter().map(EndJson::from).collect(),
        };
        out!("{}", json(&unended)?);
        return Ok(());
    }
    out!(
        "run `{run_id}` has not ended; {} checkpoint(s):",
        saved.len()
    );
    let mut summary = ItemSummary::new(
        ends.iter()
            .map(|end| (end.node.as_str(), end.status.clone())),
    );
    for end in &ends {
        let (line, shown) = summary.row(&end.node, &end.status);
        if let Some((key, counts)) = line {
            out!("  {key:<24} {counts}");
        }
        if !shown {
            continue;
        }
        out!(
            "  {:<24} {:<10} {} attempt(s) {:>8.1} s",
            end.node,
            end.status,
            end.attempts,
            end.duration_ms as f64 / 1e3
        );
        for (n, error) in end.errors.iter().enumerate() {
            out!("      attempt {}: {error}", n + 1);
        }
    }
    out!("if its process is gone, `resume {run_id}` finishes it");
    Ok(())
}

/// An ended run's report as JSON, with its id and `"ended": true` in front, as an
/// unended run's JSON has them.
fn ended(report: &RunReport, run_id: &str) -> Result<serde_json::Value, Failure> {
    let mut value = serde_json::json!({ "run": run_id, "ended": true });
    let report =
        serde_json::to_value(report).map_err(|error| format!("cannot write JSON: {error}"))?;
    if let (Some(out), serde_json::Value::Object(fields)) = (value.as_object_mut(), report) {
        out.extend(fields);
    }
    Ok(value)
}
