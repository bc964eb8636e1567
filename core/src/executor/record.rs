//! What a run keeps of each node: its outcome, its times, its failed attempts.

use super::*;

/// What one node did in one run; written once, when it is resolved.
///
/// Kept small (64 bytes): a run holds one per node.
pub struct Record {
    /// An `Outcome<T>`, boxed.
    pub(crate) value: Value,
    /// Nanoseconds from the run's start: ready, first start, last start, end; a start
    /// that did not happen is [`NEVER`].
    pub(super) times: [u64; 4],
    /// Only for a task that failed or was retried.
    pub(super) history: Option<Box<History>>,
    pub(super) status: TaskStatus,
}

pub(super) const NEVER: u64 = u64::MAX;

pub(super) struct History {
    /// The last attempt's error.
    pub(super) error: Option<TaskError>,
    /// The attempts before the last one, each of which failed.
    pub(super) retried: Vec<FailedAttempt>,
    /// For a fan-out, every item's slots, in input order.
    pub(super) items: Vec<Box<[Slot]>>,
}

impl Record {
    pub(super) fn new(
        value: Value,
        status: TaskStatus,
        times: [u64; 4],
        error: Option<TaskError>,
        retried: Vec<FailedAttempt>,
    ) -> Self {
        Self::with_items(value, status, times, error, retried, Vec::new())
    }

    pub(super) fn with_items(
        value: Value,
        status: TaskStatus,
        times: [u64; 4],
        error: Option<TaskError>,
        retried: Vec<FailedAttempt>,
        items: Vec<Box<[Slot]>>,
    ) -> Self {
        let history = (error.is_some() || !retried.is_empty() || !items.is_empty()).then(|| {
            Box::new(History {
                error,
                retried,
                items,
            })
        });
        Self {
            value,
            times,
            history,
            status,
        }
    }

    pub(super) fn error(&self) -> Option<&TaskError> {
        self.history.as_ref()?.error.as_ref()
    }

    pub(super) fn retried(&self) -> &[FailedAttempt] {
        self.history.as_ref().map_or(&[], |h| &h.retried)
    }

    pub(super) fn items(&self) -> &[Box<[Slot]>] {
        self.history.as_ref().map_or(&[], |h| &h.items)
    }

    pub(super) fn time(&self, which: usize) -> Option<Duration> {
        (self.times[which] != NEVER).then(|| Duration::from_nanos(self.times[which]))
    }

    /// From the first attempt's start to the end; `None` if it never started.
    pub(super) fn duration(&self) -> Option<Duration> {
        Some(self.time(END)?.saturating_sub(self.time(FIRST_START)?))
    }
}

pub(super) const READY: usize = 0;
pub(super) const FIRST_START: usize = 1;
pub(super) const LAST_START: usize = 2;
pub(super) const END: usize = 3;

pub(super) struct FailedAttempt {
    pub(super) started: Instant,
    pub(super) finished: Instant,
    pub(super) error: TaskError,
}

/// A node's place in a run: empty until the node is resolved.
pub type Slot = OnceLock<Record>;

pub(crate) fn fill(slot: &Slot, value: Value) {
    let _ = slot.set(Record::new(
        value,
        TaskStatus::Succeeded,
        [0, NEVER, NEVER, 0],
        None,
        Vec::new(),
    ));
}
