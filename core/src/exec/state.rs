//! The run's state, behind one seam: which nodes are resolved (their slots), and how
//! many inputs each node still waits for (so which are ready). The scheduler reads
//! and writes it only through [`Board`]; who holds a permit of a concurrency limit is
//! the other half of the state, in [`permits`](super::permits).
//!
//! A second backend, one run shared by many processes through a database, replaces
//! this in-memory board (resolving a node becomes a row update, an arrival a
//! decrement in the same transaction) without touching dispatch, attempts or retries.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::plan::Plan;
use crate::report::TaskStatus;
use crate::task::Kind;
use crate::value::{NEVER, Record, Slot, Value};

/// The low 32 bits count the inputs a node still waits for; the high 32 bits count
/// those that did not succeed although the node requires them.
const DOOMED: u64 = 1 << 32;
const COUNT: u64 = DOOMED - 1;

/// One run's nodes: a write-once slot each, and a counter of inputs to come.
pub(super) struct Board {
    slots: Box<[Slot]>,
    waiting: Box<[AtomicU64]>,
}

/// What an input's resolution means for the node that reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arrival {
    /// It waits for more inputs.
    Waiting,
    /// Its last input arrived: it can run.
    Ready,
    /// Its last input arrived, and one it requires did not succeed: it will not run.
    Doomed,
}

impl Board {
    /// A fresh run of `plan`: nothing resolved, every node waiting for its task inputs.
    pub(super) fn new(plan: &Plan) -> Self {
        let slots = (0..plan.calls.len()).map(|_| Slot::new()).collect();
        let waiting = plan
            .waits_for
            .iter()
            .map(|&n| AtomicU64::new(u64::from(n)))
            .collect();
        Self { slots, waiting }
    }

    /// Resumes a run: the `restored` nodes are resolved with their checkpoints, every
    /// other node waits only for the inputs still to come. Returns the tasks that can
    /// start at once.
    pub(super) fn restore(&mut self, plan: &Plan, restored: Vec<(usize, Value)>) -> Vec<u32> {
        let graph = &plan.graph;
        let mut done = vec![false; graph.len()];
        for (node, value) in restored {
            done[node] = true;
            let record = Record::new(
                plan.settle(node, value),
                TaskStatus::Restored,
                [0, NEVER, NEVER, 0],
                None,
                Vec::new(),
            );
            self.resolve(node, record);
        }
        let mut roots = Vec::new();
        // A restored branch may still hear from the arms it did not take: it never
        // becomes ready again.
        for (waiting, _) in self
            .waiting
            .iter_mut()
            .zip(&done)
            .filter(|(_, done)| **done)
        {
            *waiting.get_mut() = COUNT;
        }
        for node in graph
            .nodes()
            .filter(|n| n.kind() != Kind::Param && !done[n.index()])
        {
            let pending = node
                .inputs()
                .filter(|&i| graph.kind(i) != Kind::Param && !done[i])
                .count();
            *self.waiting[node.index()].get_mut() = pending as u64;
            if pending == 0 {
                roots.push(node.index() as u32);
            }
        }
        roots
    }

    /// Makes the values of parameters that their one reader takes by value takeable
    /// (before the run is shared: parameters are filled first).
    pub(super) fn settle_params(&mut self, plan: &Plan) {
        plan.settle_params(&mut self.slots);
    }

    /// Every node's slot, for reading inputs in place.
    pub(super) fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Node `node`'s record, once it is resolved.
    pub(super) fn record(&self, node: usize) -> Option<&Record> {
        self.slots[node].get()
    }

    /// Resolves `node`: its record is written once; a second resolution is ignored.
    pub(super) fn resolve(&self, node: usize, record: Record) {
        let _ = self.slots[node].set(record);
    }

    /// One input of `node` is resolved; `dooms` if it did not succeed and `node`
    /// requires it. Exactly one caller sees `Ready` or `Doomed` per node.
    pub(super) fn arrive(&self, node: usize, dooms: bool) -> Arrival {
        let step = if dooms { DOOMED - 1 } else { u64::MAX };
        let before = self.waiting[node].fetch_add(step, Ordering::AcqRel);
        if before & COUNT != 1 {
            Arrival::Waiting
        } else if before >= DOOMED || dooms {
            Arrival::Doomed
        } else {
            Arrival::Ready
        }
    }

    /// Takes `node` out of the counting before its last input arrives (a node of an arm
    /// its decision did not take): later arrivals never make it ready. `false` if its
    /// last input already arrived, so that whoever saw that resolves it.
    pub(super) fn claim(&self, node: usize) -> bool {
        let waiting = &self.waiting[node];
        let mut now = waiting.load(Ordering::Acquire);
        loop {
            if now & COUNT == 0 {
                return false;
            }
            match waiting.compare_exchange_weak(now, COUNT, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(actual) => now = actual,
            }
        }
    }

    /// The slots, for whoever takes the run's results.
    pub(super) fn take_slots(&mut self) -> Box<[Slot]> {
        std::mem::take(&mut self.slots)
    }
}
