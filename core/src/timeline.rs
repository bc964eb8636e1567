//! A run's timeline, for people: each task a bar on a time axis, in the terminal
//! ([`text`]) or as one self-contained HTML page with the graph beside it ([`html`]).
//! A fan-out's item rows (`task[3]`) are summed up in one bar per body task
//! (`task[*]`) once there are more of them than the report's table lists
//! ([`crate::report`] groups them the same way).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::describe::Graph;
use crate::report::{ITEMS_SHOWN, RunReport, TaskReport, TaskStatus, item_key};
use crate::task::Kind;

/// One bar of the timeline: a task, or a fan-out body task's items summed up.
#[derive(Debug, Clone, PartialEq)]
struct Bar {
    /// The node (`total`, `each[3]`), or the items' (`each[…]` with their count).
    label: String,
    /// The task function, or what the node is.
    task: String,
    /// When it started and ended, from the run's start; `None` if it never ran.
    span: Option<(Duration, Duration)>,
    /// How it ended (of items: the worst, as the report counts them).
    status: TaskStatus,
    /// Of items summed up: how many, and how many did not succeed.
    items: Option<(usize, usize)>,
}

/// The bars of `report`: its tasks in the report's order (parameters left out), a
/// fan-out body task's items summed up beyond `ITEMS_SHOWN`, as the report's table
/// does.
fn bars(report: &RunReport) -> Vec<Bar> {
    // Item rows grouped by what they are without their index: `each[…]`, `each[…].b`.
    let mut groups: BTreeMap<String, Vec<&TaskReport>> = BTreeMap::new();
    for task in &report.tasks {
        if let Some(key) = item_key(&task.node) {
            groups.entry(key).or_default().push(task);
        }
    }
    let mut bars = Vec::new();
    let mut summed: Vec<String> = Vec::new();
    for task in &report.tasks {
        if task.kind == Kind::Param {
            continue;
        }
        if let Some(key) = item_key(&task.node) {
            let rows = &groups[&key];
            if rows.len() > ITEMS_SHOWN {
                if !summed.contains(&key) {
                    bars.push(summary(&key, rows));
                    summed.push(key);
                }
                continue;
            }
        }
        bars.push(Bar {
            label: task.node.clone(),
            task: task.task_shown().into_owned(),
            span: task.started_at.map(|start| (start, start + task.duration)),
            status: task.status,
            items: None,
        });
    }
    bars
}

/// One bar for many item rows: from the first start to the last end.
fn summary(key: &str, rows: &[&TaskReport]) -> Bar {
    let spans = rows
        .iter()
        .filter_map(|t| t.started_at.map(|start| (start, start + t.duration)));
    let span = spans.fold(None, |acc: Option<(Duration, Duration)>, (start, end)| {
        Some(acc.map_or((start, end), |(a, b)| (a.min(start), b.max(end))))
    });
    let failed = rows.iter().filter(|t| !t.status.succeeded()).count();
    let status = rows
        .iter()
        .map(|t| t.status)
        .find(|s| !s.succeeded())
        .unwrap_or(TaskStatus::Succeeded);
    Bar {
        label: key.to_owned(),
        task: rows.first().map(|t| t.task.clone()).unwrap_or_default(),
        span,
        status,
        items: Some((rows.len(), failed)),
    }
}

/// The end of the time axis: the run's wall time, or the last bar's end if later.
fn axis_end(report: &RunReport, bars: &[Bar]) -> Duration {
    bars.iter()
        .filter_map(|bar| bar.span.map(|(_, end)| end))
        .fold(report.wall, Duration::max)
        .max(Duration::from_micros(1))
}

fn ms(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1e3;
    if ms >= 1_000.0 {
        format!("{:.2} s", ms / 1e3)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// The timeline as text, `width` columns for the bars: a row per task (`█` while it
/// ran, `·` for a task that never ran), its duration and status after it.
pub fn text(report: &RunReport, width: usize) -> String {
    let width = width.clamp(10, 400);
    let bars = bars(report);
    let end = axis_end(report, &bars);
    let label_width = bars
        .iter()
        .map(|bar| bar.label.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(4, 40);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:label_width$}  0{:>width$}",
        report.workflow,
        ms(end),
        width = width - 1
    );
    // A bar covers the columns from its start's to its end's (at least one).
    let column = |at: Duration| {
        let at = (at.as_secs_f64() / end.as_secs_f64() * width as f64).round() as usize;
        at.min(width)
    };
    for bar in &bars {
        let mut row = vec![' '; width];
        match bar.span {
            Some((start, stop)) => {
                let from = column(start).min(width - 1);
                let to = column(stop).max(from + 1);
                for cell in &mut row[from..to] {
                    *cell = '█';
                }
            }
            None => row[0] = '·',
        }
        let label: String = bar.label.chars().take(label_width).collect();
        let took = bar.span.map_or_else(String::new, |(a, b)| ms(b - a));
        let items = bar.items.map_or_else(String::new, |(count, failed)| {
            if failed == 0 {
                format!(" ({count} items)")
            } else {
                format!(" ({count} items, {failed} not succeeded)")
            }
        });
        let _ = writeln!(
            out,
            "{label:label_width$}  {}  {took} {}{items}",
            row.into_iter().collect::<String>(),
            bar.status
        );
    }
    out
}

/// Escapes `text` for HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The CSS class of a status.
fn class(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Succeeded | TaskStatus::Restored | TaskStatus::Cached => "ok",
        TaskStatus::Failed | TaskStatus::TimedOut => "failed",
        TaskStatus::Handled => "handled",
        TaskStatus::Skipped | TaskStatus::Cancelled | TaskStatus::NotTaken => "skipped",
    }
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:24px;color:#222}\
h1{font-size:20px}h2{font-size:16px;margin-top:28px}\
.ok{fill:#3a8f5c}.failed{fill:#c9483c}.handled{fill:#d99a2b}.skipped{fill:#b9b9b9}\
text{font-size:12px;fill:#222}.axis{stroke:#ccc}.edge{stroke:#888;fill:none}\
.node rect{stroke:#555;stroke-width:1}.node text{fill:#fff}\
table{border-collapse:collapse}td,th{padding:2px 10px;text-align:left}";

/// One self-contained HTML page (no script or style from the network): the run's
/// timeline as SVG bars, and `graph` (the run's workflow) as an SVG drawing, each node
/// coloured by how it ended. The page's `<body>` counts what the browser drew in
/// `data-bars` and `data-nodes`.
pub fn html(report: &RunReport, graph: &Graph, run_id: &str) -> String {
    let bars = bars(report);
    let end = axis_end(report, &bars);
    let (label_width, chart, row) = (260.0, 640.0, 22.0);
    let height = row * bars.len() as f64 + 30.0;
    let x = |at: Duration| label_width + at.as_secs_f64() / end.as_secs_f64() * chart;
    let mut timeline = String::new();
    let _ = write!(
        timeline,
        r#"<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}">"#,
        w = label_width + chart + 90.0
    );
    for tick in 0..=4 {
        let at = end.mul_f64(f64::from(tick) / 4.0);
        let tx = x(at);
        let _ = write!(
            timeline,
            r#"<line class="axis" x1="{tx:.1}" y1="0" x2="{tx:.1}" y2="{}"/><text x="{tx:.1}" y="{}">{}</text>"#,
            height - 16.0,
            height - 2.0,
            escape(&ms(at))
        );
    }
    for (i, bar) in bars.iter().enumerate() {
        let y = row * i as f64;
        let items = bar
            .items
            .map_or_else(String::new, |(count, _)| format!(" ({count} items)"));
        let _ = write!(
            timeline,
            r#"<g class="row" data-node="{node}" data-status="{status}"><text x="0" y="{ty}">{label}</text>"#,
            node = escape(&bar.label),
            status = escape(&bar.status.to_string()),
            ty = y + 15.0,
            label = escape(&format!("{} · {}{items}", bar.label, bar.task)),
        );
        if let Some((start, stop)) = bar.span {
            let (from, to) = (x(start), x(stop));
            let _ = write!(
                timeline,
                r#"<rect class="bar {class}" x="{from:.1}" y="{by}" width="{w:.1}" height="16"><title>{title}</title></rect>"#,
                class = class(bar.status),
                by = y + 3.0,
                w = (to - from).max(2.0),
                title = escape(&format!(
                    "{}: {} from {} ({})",
                    bar.label,
                    ms(stop - start),
                    ms(start),
                    bar.status
                )),
            );
        }
        timeline.push_str("</g>");
    }
    timeline.push_str("</svg>");
    let statuses: BTreeMap<&str, TaskStatus> = report
        .tasks
        .iter()
        .map(|t| (t.node.as_str(), t.status))
        .collect();
    let drawing = graph_svg(graph, &statuses);
    let failed = report
        .tasks
        .iter()
        .filter(|t| matches!(t.status, TaskStatus::Failed | TaskStatus::TimedOut))
        .count();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{name} — {run}</title><style>{STYLE}</style></head>
<body>
<h1>{name} <small>run {run}</small></h1>
<table><tr><th>wall</th><td>{wall}</td></tr><tr><th>tasks</th><td>{tasks}</td></tr><tr><th>failed</th><td>{failed}</td></tr><tr><th>critical path</th><td>{critical}</td></tr></table>
<h2>Timeline</h2>
{timeline}
<h2>Graph</h2>
{drawing}
<script>
document.body.dataset.bars = document.querySelectorAll("svg.timeline rect.bar").length;
document.body.dataset.nodes = document.querySelectorAll("svg.graph g.node").length;
</script>
</body></html>
"#,
        name = escape(&report.workflow),
        run = escape(run_id),
        wall = escape(&ms(report.wall)),
        tasks = bars.len(),
        critical = escape(&report.critical_path.join(" → ")),
    )
}

/// `graph` as SVG: a column per depth (the longest path from a parameter), nodes in
/// their graph order within it, an edge per input.
fn graph_svg(graph: &Graph, statuses: &BTreeMap<&str, TaskStatus>) -> String {
    let n = graph.len();
    let mut depth = vec![0usize; n];
    for node in graph.nodes() {
        let i = node.index();
        depth[i] = node
            .inputs()
            .map(|input| depth[input] + 1)
            .max()
            .unwrap_or(0);
    }
    let mut row_of = vec![0usize; n];
    let mut filled: BTreeMap<usize, usize> = BTreeMap::new();
    for i in 0..n {
        let rows = filled.entry(depth[i]).or_default();
        row_of[i] = *rows;
        *rows += 1;
    }
    let (w, h, gap_x, gap_y) = (150.0, 34.0, 60.0, 16.0);
    let at = |i: usize| {
        (
            10.0 + depth[i] as f64 * (w + gap_x),
            10.0 + row_of[i] as f64 * (h + gap_y),
        )
    };
    let columns = depth.iter().max().map_or(1, |d| d + 1);
    let rows = filled.values().max().copied().unwrap_or(1);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}">"#,
        20.0 + columns as f64 * (w + gap_x),
        20.0 + rows as f64 * (h + gap_y)
    );
    for node in graph.nodes() {
        let (x2, y2) = at(node.index());
        for input in node.inputs() {
            let (x1, y1) = at(input);
            let _ = write!(
                svg,
                r#"<path class="edge" d="M{} {} C{} {} {} {} {} {}"/>"#,
                x1 + w,
                y1 + h / 2.0,
                x1 + w + gap_x / 2.0,
                y1 + h / 2.0,
                x2 - gap_x / 2.0,
                y2 + h / 2.0,
                x2,
                y2 + h / 2.0
            );
        }
    }
    for node in graph.nodes() {
        let (x, y) = at(node.index());
        let status = statuses.get(node.name()).copied();
        let class = match (node.kind(), status) {
            (Kind::Param, _) => "skipped",
            (_, Some(status)) => class(status),
            (_, None) => "skipped",
        };
        let label = node.label_with(" · ");
        let _ = write!(
            svg,
            r#"<g class="node" data-node="{name}"><rect class="{class}" x="{x}" y="{y}" width="{w}" height="{h}" rx="5"/><text x="{tx}" y="{ty}">{label}</text></g>"#,
            name = escape(node.name()),
            tx = x + 8.0,
            ty = y + h / 2.0 + 4.0,
            label = escape(&label.chars().take(22).collect::<String>()),
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::AttemptReport;

    fn task(node: &str, start: Option<u64>, ms: u64, status: TaskStatus) -> TaskReport {
        TaskReport {
            node: node.into(),
            task: "t".into(),
            fake: false,
            kind: Kind::Cpu,
            status,
            started_at: start.map(Duration::from_millis),
            queue_wait: Duration::ZERO,
            duration: Duration::from_millis(ms),
            error: None,
            attempts: start
                .map(|s| AttemptReport {
                    started_at: Duration::from_millis(s),
                    duration: Duration::from_millis(ms),
                    error: None,
                })
                .into_iter()
                .collect(),
            items: None,
            cached_from: None,
        }
    }

    fn report(tasks: Vec<TaskReport>) -> RunReport {
        RunReport {
            tasks,
            wall: Duration::from_millis(100),
            ..RunReport::not_started("flow")
        }
    }

    #[test]
    fn each_task_is_a_bar_where_it_ran() {
        let report = report(vec![
            task("a", Some(0), 50, TaskStatus::Succeeded),
            task("b", Some(50), 50, TaskStatus::Failed),
            task("c", None, 0, TaskStatus::Skipped),
        ]);
        let text = text(&report, 20);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[1].starts_with("a     ██████████           "),
            "{text}"
        );
        assert!(lines[1].ends_with("50 ms succeeded"), "{text}");
        assert!(
            lines[2].starts_with(&format!("b{}██████████", " ".repeat(15))),
            "{text}"
        );
        assert!(lines[2].ends_with("failed"), "{text}");
        assert!(lines[3].starts_with("c     ·  "), "{text}");
    }

    #[test]
    fn many_items_are_one_bar_and_few_are_each_a_bar() {
        let mut tasks: Vec<TaskReport> = (0..30)
            .map(|i| task(&format!("each[{i}]"), Some(i), 10, TaskStatus::Succeeded))
            .collect();
        tasks.push(task("each[30]", None, 0, TaskStatus::Skipped));
        tasks.extend(
            (0..3).map(|i| task(&format!("few[{i}].x"), Some(0), 1, TaskStatus::Succeeded)),
        );
        let report = report(tasks);
        let text = text(&report, 40);
        assert!(text.contains("each[*]"), "{text}");
        assert!(text.contains("(31 items, 1 not succeeded)"), "{text}");
        assert!(text.contains("few[2].x"), "{text}");
        assert_eq!(text.lines().count(), 1 + 1 + 3, "{text}");
        let html = html(&report, &Graph::new("flow".into()), "r<1>");
        assert_eq!(html.matches(r#"<rect class="bar"#).count(), 1 + 3, "{html}");
        assert!(html.contains("r&lt;1&gt;"), "names are escaped");
    }
}
