//! Runnable examples of Aqueduct: see the `[[example]]` targets in this package.

/// Appends `event` as a line to the file named by `CRASH_LOG`, if set: what the crash
/// tests' workflows (`bin/crash_*.rs`) log, so a test can see what ran before a kill.
/// One `write` per line: with `O_APPEND` two tasks' lines never interleave. `sync`
/// makes it survive more than the process (a SIGKILL keeps unsynced lines too).
pub fn crash_log(event: &str, sync: bool) {
    use std::io::Write;
    let Some(path) = std::env::var_os("CRASH_LOG") else {
        return;
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("the crash log opens");
    file.write_all(format!("{event}\n").as_bytes())
        .expect("the crash log takes a line");
    if sync {
        file.sync_data().expect("the crash log syncs");
    }
}
