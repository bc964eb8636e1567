//! A fresh directory for one test, removed when it ends, shared by the store tests.

use std::path::PathBuf;

pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    /// `aqueduct-<name>-<pid>` under the system's temporary directory, emptied.
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("aqueduct-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// The store file the tests use: `runs.db` in the directory.
    pub(crate) fn db(&self) -> PathBuf {
        self.0.join("runs.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
