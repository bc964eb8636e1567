//! Kill a durable run with SIGKILL at several points, resume it, and check that the
//! result equals an uninterrupted run's and that no checkpointed task ran again.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aqueduct::store::{SqliteStore, Store};

const BIN: &str = env!("CARGO_BIN_EXE_crash_flow");
const RUN: &str = "crash-run";
/// The nodes that log their start and end, and are checkpointed: the tasks, and the
/// decision of the `if` (the branch node `halves` is checkpointed too, logs nothing).
const NODES: [&str; 6] = [
    "xs",
    "squares",
    "sum",
    "halves.if",
    "halves.then.halve",
    "summary",
];
/// Every checkpoint of a finished run.
const CHECKPOINTS: usize = NODES.len() + 1;

struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("aqueduct-crash-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    fn store(&self) -> PathBuf {
        self.dir.join("runs.db")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("tasks.log")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .arg("--store")
            .arg(self.store())
            .env("CRASH_LOG", self.log())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn checkpointed(&self) -> Vec<String> {
        let store = SqliteStore::open(self.store()).unwrap();
        let mut nodes: Vec<_> = store
            .checkpoints(RUN)
            .unwrap()
            .into_iter()
            .map(|c| c.node)
            .collect();
        nodes.sort();
        nodes
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn succeeded(output: Output) -> String {
    assert!(
        output.status.success(),
        "the run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Waits until `ready` holds, polling; panics after 20 s.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn kill(mut child: Child) {
    child.kill().unwrap(); // SIGKILL on Unix: no destructor, no flush runs
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run ended before it was killed");
}

/// The output of a run nobody kills (computed once, shared by the tests).
fn uninterrupted() -> &'static str {
    static OUTPUT: OnceLock<String> = OnceLock::new();
    OUTPUT.get_or_init(|| {
        let scratch = Scratch::new("whole");
        let out = succeeded(scratch.command(&["run", "--run-id", RUN]).output().unwrap());
        assert_eq!(scratch.checkpointed().len(), CHECKPOINTS);
        assert_eq!(out, "sum 21, halves [0, 2, 4, 8, 12, 18]\n");
        out
    })
}

/// Kills the run once `at` holds, resumes it, and checks the resumed run.
fn crash_and_resume(name: &str, at: impl Fn(&Scratch) -> bool) -> Vec<String> {
    let scratch = Scratch::new(name);
    let child = scratch.command(&["run", "--run-id", RUN]).spawn().unwrap();
    wait_for(name, || at(&scratch));
    kill(child);
    let saved = if scratch.store().exists() {
        scratch.checkpointed()
    } else {
        Vec::new()
    };
    let before = scratch.lines().len();
    let shown = scratch.command(&["show", RUN]).output().unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(
        shown.starts_with(&format!(
            "run `{RUN}` has not ended; {} checkpoint(s)",
            saved.len()
        )),
        "{name}: {shown}"
    );
    for node in saved.iter().filter(|node| NODES.contains(&node.as_str())) {
        assert!(
            shown.contains(&format!("\n  {node:<24} succeeded  1 attempt(s)")),
            "{name}: a checkpointed task shows as ended: {shown}"
        );
    }

    let out = succeeded(scratch.command(&["resume", RUN]).output().unwrap());
    assert_eq!(out, uninterrupted(), "{name}: the resumed result differs");

    let after = &scratch.lines()[before..];
    for node in &saved {
        assert!(
            !after.contains(&format!("start {node}")),
            "{name}: `{node}` had a checkpoint but ran again: {after:?}"
        );
    }
    for node in NODES {
        let ends = scratch
            .lines()
            .iter()
            .filter(|l| **l == format!("end {node}"))
            .count();
        assert!(ends >= 1, "{name}: `{node}` never finished");
        if !saved.iter().any(|s| s == node) {
            assert!(
                after.contains(&format!("start {node}")),
                "{name}: `{node}` had no checkpoint yet was not run on resume"
            );
        }
    }
    // Every node checkpointed exactly once; the arm not taken never ran.
    let all = scratch.checkpointed();
    assert_eq!(all.len(), CHECKPOINTS, "{name}: {all:?}");
    assert!(!logged(&scratch, "start halves.else.keep"), "{name}");
    saved
}

fn logged(scratch: &Scratch, line: &str) -> bool {
    scratch.lines().iter().any(|l| l == line)
}

fn has_checkpoint(scratch: &Scratch, node: &str) -> bool {
    scratch.store().exists()
        && SqliteStore::open(scratch.store())
            .and_then(|s| s.checkpoints(RUN))
            .is_ok_and(|c| c.iter().any(|c| c.node == node))
}

#[test]
fn killed_before_any_checkpoint_the_resume_runs_everything() {
    let saved = crash_and_resume("before", |s| logged(s, "start xs"));
    assert!(saved.is_empty(), "{saved:?}");
}

#[test]
fn killed_between_checkpoints_the_resume_keeps_what_was_saved() {
    let saved = crash_and_resume("between", |s| has_checkpoint(s, "xs"));
    assert!(saved.contains(&"xs".to_owned()), "{saved:?}");
    assert!(!saved.contains(&"summary".to_owned()), "{saved:?}");
}

#[test]
fn killed_mid_task_the_resume_runs_that_task_again() {
    let saved = crash_and_resume("mid-task", |s| logged(s, "start squares"));
    assert!(!saved.contains(&"squares".to_owned()), "{saved:?}");
}

#[test]
fn killed_inside_an_arm_the_resume_keeps_the_decision_and_runs_the_arm_again() {
    let saved = crash_and_resume("in-arm", |s| {
        logged(s, "start halves.then.halve") && has_checkpoint(s, "halves.if")
    });
    assert!(saved.contains(&"halves.if".to_owned()), "{saved:?}");
    assert!(
        !saved.contains(&"halves.then.halve".to_owned()),
        "{saved:?}"
    );
}

#[test]
fn resuming_a_run_the_store_does_not_know_is_a_clear_error() {
    let scratch = Scratch::new("unknown");
    let output = scratch
        .command(&["resume", "no-such-run"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the store has no run `no-such-run`"),
        "{stderr}"
    );
}

#[test]
fn the_command_line_lists_shows_and_deletes_runs() {
    let scratch = Scratch::new("history");
    let text = |args: &[&str]| {
        let output = scratch.command(args).output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    succeeded(
        scratch
            .command(&["run", "--run-id", "first"])
            .output()
            .unwrap(),
    );

    let (code, runs, _) = text(&["runs"]);
    assert_eq!(code, Some(0));
    let line = runs.lines().find(|l| l.starts_with("first ")).expect(&runs);
    assert!(
        line.contains("crash_flow") && line.contains("succeeded"),
        "{line}"
    );
    assert!(
        line.trim_end().ends_with(&format!(" {CHECKPOINTS}")),
        "every node's checkpoint: {line}"
    );

    let (code, report, _) = text(&["show", "first"]);
    assert_eq!(code, Some(0));
    for node in NODES {
        assert!(report.contains(node), "{report}");
    }

    let (code, _, stderr) = text(&["show", "second"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("the store has no run `second`"), "{stderr}");

    let (code, _, stderr) = text(&["run", "--run-id", "x", "--no-store"]);
    assert_eq!(
        code,
        Some(2),
        "--run-id with --no-store is refused: {stderr}"
    );
    assert!(stderr.contains("cannot be used with"), "{stderr}");

    let (code, deleted, _) = text(&["delete", "--older-than-days", "0"]);
    assert_eq!((code, deleted.trim()), (Some(0), "deleted 1 run(s)"));
    let (_, runs, _) = text(&["runs"]);
    assert_eq!(runs.lines().count(), 1, "only the header is left: {runs}");
}

#[test]
fn ctrl_c_cancels_the_run_cleanly_and_resume_finishes_it() {
    let scratch = Scratch::new("ctrl-c");
    let child = scratch.command(&["run", "--run-id", RUN]).spawn().unwrap();
    wait_for("squares to start", || logged(&scratch, "start squares"));
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Ctrl-C: cancelling the run"), "{stderr}");
    assert!(
        stderr.contains(&format!("`resume {RUN}` runs what did not finish")),
        "{stderr}"
    );
    assert!(scratch.checkpointed().contains(&"xs".to_owned()));

    let out = succeeded(scratch.command(&["resume", RUN]).output().unwrap());
    assert_eq!(out, uninterrupted());
    let starts = scratch.lines().iter().filter(|l| *l == "start xs").count();
    assert_eq!(starts, 1, "the checkpointed load did not run again");
}

#[test]
fn a_second_process_resuming_a_live_run_is_refused_and_names_its_owner() {
    let scratch = Scratch::new("in-use");
    let child = scratch.command(&["run", "--run-id", RUN]).spawn().unwrap();
    wait_for("xs to start", || logged(&scratch, "start xs"));
    let second = scratch.command(&["resume", RUN]).output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("run `{RUN}` is in use: `"))
            && stderr.contains(&format!(":{}:", child.id())),
        "it names the running process: {stderr}"
    );
    let out = succeeded(child.wait_with_output().unwrap());
    assert_eq!(out, uninterrupted(), "the first run was not disturbed");
    let starts = scratch.lines().iter().filter(|l| *l == "start xs").count();
    assert_eq!(starts, 1, "only one process ran the run");
}

#[test]
fn delete_skips_a_run_that_is_still_running() {
    let scratch = Scratch::new("delete-live");
    let child = scratch.command(&["run", "--run-id", RUN]).spawn().unwrap();
    wait_for("xs to start", || logged(&scratch, "start xs"));
    let output = scratch
        .command(&["delete", "--older-than-days", "0"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert_eq!(
        stdout,
        format!("deleted 0 run(s)\nskipped 1 run(s) still running: {RUN}\n")
    );
    let out = succeeded(child.wait_with_output().unwrap());
    assert_eq!(out, uninterrupted(), "the run went on and saved everything");
    assert_eq!(scratch.checkpointed().len(), CHECKPOINTS);
}

#[test]
fn a_run_killed_with_sigkill_is_resumed_at_once_not_after_its_lease_expires() {
    let scratch = Scratch::new("killed-lease");
    let child = scratch.command(&["run", "--run-id", RUN]).spawn().unwrap();
    wait_for("xs's checkpoint", || has_checkpoint(&scratch, "xs"));
    kill(child);
    let began = Instant::now();
    let out = succeeded(scratch.command(&["resume", RUN]).output().unwrap());
    assert_eq!(out, uninterrupted());
    assert!(
        began.elapsed() < aqueduct::store::LEASE_TTL / 2,
        "the dead process's lease was taken over at once: {:?}",
        began.elapsed()
    );
}
