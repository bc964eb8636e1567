//! Durable runs: checkpoints go to a store from a writer thread, in batches.
//!
//! Tasks never wait for the store. Each finished task's value is encoded on the
//! task's thread and sent to the writer, which saves whatever has queued up since its
//! last commit in one transaction: the faster tasks finish, the bigger the batches. A
//! checkpoint is durable once its batch commits; a crash loses at most the batch being
//! written, whose tasks run again on resume (at least once).

use std::sync::mpsc;

use super::*;
use crate::store::{Checkpoint, Store, StoreError, TaskEnd};

/// What the writer saves for one node: its checkpoint and how it ended.
pub(crate) struct Entry {
    pub(crate) checkpoint: Option<Checkpoint>,
    pub(crate) end: Option<TaskEnd>,
}

/// The sending end: held by the run, closed when the run's last task is done.
pub(crate) struct Sink {
    sender: mpsc::Sender<Entry>,
}

/// Resolves when every checkpoint sent is saved (or the first error).
pub(crate) type Flushed = oneshot::Receiver<Result<(), StoreError>>;

impl Sink {
    /// Starts the writer for run `id`.
    pub(crate) fn start(store: Arc<dyn Store>, id: String) -> (Self, Flushed) {
        let (sender, receiver) = mpsc::channel::<Entry>();
        let (flushed, done) = oneshot::channel();
        std::thread::Builder::new()
            .name("aqueduct-checkpoints".into())
            .spawn(move || {
                let mut failure = None;
                let (mut checkpoints, mut ends) = (Vec::new(), Vec::new());
                while let Ok(first) = receiver.recv() {
                    for entry in std::iter::once(first).chain(receiver.try_iter().take(4095)) {
                        checkpoints.extend(entry.checkpoint);
                        ends.extend(entry.end);
                    }
                    if failure.is_none() {
                        failure = store.save(&id, &checkpoints, &ends).err();
                    }
                    checkpoints.clear();
                    ends.clear();
                }
                let _ = flushed.send(failure.map_or(Ok(()), Err));
            })
            .expect("aqueduct: cannot start the checkpoint writer thread");
        (Self { sender }, done)
    }

    pub(crate) fn send(&self, entry: Entry) {
        // The writer only stops after the sender is dropped.
        let _ = self.sender.send(entry);
    }
}

/// What a runner may bring to the executor besides options: values restored from
/// checkpoints and where new checkpoints go (a durable run), and live progress counts.
#[derive(Default)]
pub(crate) struct Extras {
    /// (node, value) of every node restored.
    pub(crate) restored: Vec<(usize, Value)>,
    pub(crate) sink: Option<Sink>,
    pub(crate) progress: Option<Arc<crate::progress::Progress>>,
}
