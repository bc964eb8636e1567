//! `runs`, `show` and `graph` with `--format json`: what a program reads from a workflow
//! binary, durations as numbers of milliseconds in `…_ms` fields.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

mod crash_flow;
use crash_flow::{BIN, Scratch};

/// Runs the binary with `args`, which must succeed: its stdout parsed as JSON.
fn json(scratch: &Scratch, args: &[&str]) -> Value {
    let out = scratch.stdout(args);
    serde_json::from_str(&out).unwrap_or_else(|error| panic!("{args:?}: {error}: {out}"))
}

#[test]
fn runs_show_and_graph_print_json() {
    let scratch = Scratch::new("json", "ended");
    let out = scratch
        .command(&["run", "--run-id", "j1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let runs = json(&scratch, &["runs", "--format", "json"]);
    let run = &runs.as_array().unwrap()[0];
    assert_eq!(run["id"], "j1");
    assert_eq!(run["status"], "succeeded");
    assert!(run["started_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert!(run["duration_ms"].as_u64().unwrap() >= 900, "{run}");

    let report = json(&scratch, &["show", "j1", "--format", "json"]);
    assert_eq!(report["workflow"], "crash_flow");
    assert_eq!(
        (&report["run"], &report["ended"]),
        (&Value::from("j1"), &Value::from(true))
    );
    // Four steps of 300 ms, two of them side by side.
    assert!(report["wall_ms"].as_f64().unwrap() >= 900.0, "{report}");
    let tasks = report["tasks"].as_array().unwrap();
    let sum = tasks.iter().find(|task| task["node"] == "sum").unwrap();
    assert_eq!(sum["status"], "succeeded");
    assert!(sum["duration_ms"].as_f64().unwrap() >= 300.0, "{sum}");
    assert!(sum["started_at_ms"].is_number(), "{sum}");
    assert!(sum["attempts"][0]["duration_ms"].is_number(), "{sum}");
    assert!(sum.get("duration").is_none(), "no `{{secs, nanos}}`: {sum}");

    let out = Command::new(BIN)
        .args(["graph", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let graph: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = graph.to_string();
    for node in ["xs", "squares", "sum", "summary"] {
        assert!(text.contains(&format!("\"{node}\"")), "{text}");
    }

    // A program reading it can tell a missing run from a bad flag.
    let missing = scratch
        .command(&["show", "nope", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no run `nope`"));
    let bad = scratch
        .command(&["runs", "--format", "yaml"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// A run whose process was killed has no report: `show` gives what it saved.
#[test]
fn show_gives_a_killed_run_as_json() {
    let scratch = Scratch::new("json", "killed");
    let mut child = scratch.command(&["run", "--run-id", "j2"]).spawn().unwrap();
    let log = scratch.0.join("tasks.log");
    let start = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("end squares")
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the run never got going"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Past its first checkpoints' batch.
    std::thread::sleep(Duration::from_millis(150));
    child.kill().unwrap();
    child.wait().unwrap();
    let shown = json(&scratch, &["show", "j2", "--format", "json"]);
    // Its timeline is drawn from the report it writes as it ends: none yet.
    let timeline = scratch
        .command(&["show", "j2", "--timeline"])
        .output()
        .unwrap();
    assert_eq!(timeline.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&timeline.stderr).contains("run `j2` has not ended"),
        "{}",
        String::from_utf8_lossy(&timeline.stderr)
    );
    assert_eq!(shown["run"], "j2");
    assert_eq!(shown["ended"], false);
    assert!(shown["checkpoints"].as_u64().unwrap() >= 1, "{shown}");
    let tasks = shown["tasks"].as_array().unwrap();
    assert!(
        tasks
            .iter()
            .any(|task| task["node"] == "xs" && task["duration_ms"].is_number()),
        "{shown}"
    );
}

/// `--format json` reads the local store: with `--distributed` it is refused, with the
/// reason, before any connection is made.
#[test]
fn json_of_distributed_runs_is_refused() {
    for args in [&["runs"][..], &["show", "r1"]] {
        let out = Command::new(BIN)
            .args(args)
            .args(["--format", "json", "--distributed"])
            .args(["--database-url", "postgres://nowhere.invalid:1/x"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("`--format json` reads the local store"),
            "{stderr}"
        );
    }
}
