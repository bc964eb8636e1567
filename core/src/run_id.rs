//! Run ids: made for a run that was given none, and checked when given.

#![cfg_attr(not(feature = "durable"), allow(dead_code))]

/// The longest run id, in bytes.
pub(crate) const MAX_RUN_ID: usize = 256;

/// Why `id` cannot be a run's id, if it cannot: every run id is listed, shown and
/// typed back on a command line, so it is not empty, at most [`MAX_RUN_ID`] bytes,
/// holds no control character and has no whitespace around it.
pub(crate) fn run_id_problem(id: &str) -> Option<&'static str> {
    if id.trim().is_empty() {
        Some("a run id cannot be empty")
    } else if id.len() > MAX_RUN_ID {
        Some("a run id is at most 256 bytes")
    } else if id.chars().any(char::is_control) {
        Some("a run id cannot hold control characters (newlines, tabs, escapes)")
    } else if id.trim() != id {
        Some("a run id cannot begin or end with whitespace")
    } else {
        None
    }
}

/// [`run_id_problem`] as an [`Error::InvalidRunId`](crate::Error::InvalidRunId).
pub(crate) fn check_run_id(id: &str) -> Result<(), crate::Error> {
    match run_id_problem(id) {
        Some(reason) => Err(crate::Error::InvalidRunId {
            run: id.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A run id unlikely to repeat: the workflow, the time, and a few random bits.
pub(crate) fn new_run_id(workflow: &str) -> String {
    use std::hash::{BuildHasher, RandomState};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let salt = RandomState::new().hash_one(now) & 0xffff;
    // Within `MAX_RUN_ID` whatever the workflow's name: a long one is cut (at a
    // character's boundary).
    let mut end = workflow.len().min(MAX_RUN_ID - 40);
    while !workflow.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{}-{salt:04x}", &workflow[..end], now.as_millis())
}
