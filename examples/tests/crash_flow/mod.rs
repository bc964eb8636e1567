//! The `crash_flow` binary run as a child process, its store and task log in a
//! directory of the test's own (removed at the end).

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_crash_flow");

/// A test's directory: `runs.db` and `tasks.log`.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    /// A fresh directory, named after the test file and `name`.
    pub(crate) fn new(file: &str, name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("aqueduct-{file}-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// The binary with `args`, then `--store` this directory's store, its output piped.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
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

    /// Runs the binary with `args`, which must succeed: its stdout.
    pub(crate) fn stdout(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
