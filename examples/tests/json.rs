//! `runs`, `show` and `graph` with `--format json`: what a program reads from a workflow
//! binary, durations as numbers of milliseconds in `…_ms` fields.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_crash_flow");

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("aqueduct-json-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .arg("--store")
            .arg(self.0.join("runs.db"))
            .env("CRASH_LOG", self.0.join("tasks.log"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs the binary; its stdout parsed as JSON.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|error| {
            panic!(
                "{args:?}: {error}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn runs_show_and_graph_print_json() {
    let scratch = Scratch::new("ended");
    let out = scratch
        .command(&["run", "--run-id", "j1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let runs = scratch.json(&["runs", "--format", "json"]);
    let run = &runs.as_array().unwrap()[0];
    assert_eq!(run["id"], "j1");
    assert_eq!(run["status"], "succeeded");
    assert!(run["started_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert!(run["duration_ms"].as_u64().unwrap() >= 900, "{run}");

    let report = scratch.json(&["show", "j1", "--format", "json"]);
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
    let scratch = Scratch::new("killed");
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
    let shown = scratch.json(&["show", "j2", "--format", "json"]);
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
