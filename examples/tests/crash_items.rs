//! Kill a durable fan-out with SIGKILL halfway, resume it: the items whose checkpoint
//! was committed do not run again, the others do, and the result is an uninterrupted
//! run's.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aqueduct::store::{SqliteStore, Store};

const BIN: &str = env!("CARGO_BIN_EXE_crash_items");
const RUN: &str = "items-run";

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "aqueduct-crash-items-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn command(&self, args: &[&str]) -> Command {
        self.command_of(BIN, args)
    }

    /// `bin args --store …` with its log here.
    fn command_of(&self, bin: &str, args: &[&str]) -> Command {
        let mut command = Command::new(bin);
        command
            .args(args)
            .arg("--store")
            .arg(self.0.join("runs.db"))
            .env("CRASH_LOG", self.0.join("items.log"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.0.join("items.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The items whose checkpoint is committed.
    fn saved_items(&self) -> Vec<u64> {
        let Ok(store) = SqliteStore::open(self.0.join("runs.db")) else {
            return Vec::new();
        };
        let mut items: Vec<u64> = store
            .checkpoints(RUN)
            .unwrap_or_default()
            .iter()
            .filter_map(|c| {
                c.node
                    .strip_prefix("each[")?
                    .split(']')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        items.sort_unstable();
        items
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn killed_halfway_through_a_fan_out_the_resume_runs_only_the_unfinished_items() {
    let scratch = Scratch::new("half");
    let mut child = scratch.command(&["run", "--run-id", RUN]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while scratch.saved_items().len() < 20 {
        assert!(Instant::now() < deadline, "20 items never finished");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no flush
    assert!(
        !child.wait().unwrap().success(),
        "the run ended before it was killed"
    );
    let saved = scratch.saved_items();
    assert!(saved.len() >= 20 && saved.len() < 40, "{saved:?}");
    let before = scratch.lines().len();

    let output = scratch.command(&["resume", RUN]).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected: u64 = (0..40u64).map(|x| x * x).sum();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        expected.to_string()
    );
    let after = &scratch.lines()[before..];
    for item in &saved {
        assert!(
            !after.contains(&format!("start {item}")),
            "item {item} had a checkpoint but ran again: {after:?}"
        );
    }
    for item in (0..40).filter(|i| !saved.contains(i)) {
        assert!(
            after.contains(&format!("start {item}")),
            "item {item} had no checkpoint yet did not run on resume"
        );
    }
}

const MANY: &str = env!("CARGO_BIN_EXE_crash_many");

#[test]
fn a_crash_halfway_through_100_000_quick_items_loses_about_one_batch_of_them() {
    let scratch = Scratch::new("many");
    let command = |args: &[&str]| {
        let mut command = scratch.command_of(MANY, args);
        command.env("CRASH_ITEMS", "100000");
        command
    };
    let mut child = command(&["run", "--run-id", RUN]).spawn().unwrap();
    // Killed once about half the items have finished (by the log's size: a line is
    // at most 10 bytes).
    let deadline = Instant::now() + Duration::from_secs(60);
    let log_size = || std::fs::metadata(scratch.0.join("items.log")).map_or(0, |m| m.len());
    while log_size() < 50_000 * 9 {
        assert!(Instant::now() < deadline, "50,000 items never finished");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    assert!(
        !child.wait().unwrap().success(),
        "the run ended before it was killed"
    );
    let saved = scratch.saved_items();
    let finished: std::collections::BTreeSet<u64> = scratch
        .lines()
        .iter()
        .filter_map(|line| line.strip_prefix("end ")?.parse().ok())
        .collect();
    let before = scratch.lines().len();

    let output = command(&["resume", RUN]).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected: u64 = (0..100_000u64).map(|x| x * x).sum();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        expected.to_string()
    );
    // Items that finished before the kill but ran again: their checkpoints were
    // queued or being committed. The fan-out stops starting items while the writer is
    // more than a batch (4,096 entries) behind, so that is about a batch, not
    // everything that finished faster than the disk.
    let again: Vec<u64> = scratch.lines()[before..]
        .iter()
        .filter_map(|line| line.strip_prefix("end ")?.parse().ok())
        .filter(|item| finished.contains(item))
        .collect();
    eprintln!(
        "{} items finished before the kill, {} committed, {} ran again",
        finished.len(),
        saved.len(),
        again.len()
    );
    assert!(
        again.len() <= 2 * 4096 + 64,
        "{} finished items ran again ({} were committed)",
        again.len(),
        saved.len()
    );
}
