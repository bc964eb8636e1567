//! Concurrency limits: at most N attempts of a task at once across a run, its fan-outs'
//! items and sub-workflows included.

use super::*;

/// Every task with a concurrency limit in `plan` and in its fan-outs' bodies.
pub(super) fn limits(plan: &Plan, into: &mut HashMap<TaskInfo, Limiter>) {
    for info in plan.graph.infos() {
        if let Some(max) = info.concurrency {
            into.entry(*info).or_insert_with(|| Limiter {
                max,
                state: Default::default(),
            });
        }
    }
    for call in &plan.calls {
        if let Call::FanOut(def) = call {
            limits(&def.body, into);
        }
    }
}

/// The nodes of one task that may run at once. Only tasks with a limit pay for its
/// lock; a node over the limit waits in the queue, holding no thread. A waiting job
/// keeps its own run (the top-level run, or a fan-out's item) alive, so an item whose
/// only task waits for a permit does not end early.
pub(super) struct Limiter {
    pub(super) max: u32,
    pub(super) state: std::sync::Mutex<Permits>,
}

#[derive(Default)]
pub(super) struct Permits {
    /// Set by a fault: nobody may give permits back any more, so nothing waits.
    pub(super) closed: bool,
    pub(super) running: u32,
    pub(super) waiting: std::collections::VecDeque<(Arc<Shared>, Job)>,
}

impl Limiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, Permits> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The job back with a permit, or `None` if it now waits for one.
    pub(super) fn acquire(&self, run: &Arc<Shared>, mut job: Job) -> Option<Job> {
        let mut permits = self.lock();
        if permits.closed {
            // The run is faulted: the job is dropped (after the lock is released).
            drop(permits);
            drop(job);
            return None;
        }
        if permits.running < self.max {
            permits.running += 1;
            job.permit = true;
            Some(job)
        } else {
            permits.waiting.push_back((Arc::clone(run), job));
            None
        }
    }

    /// Gives a permit back: to the first waiting job, which is returned to be run.
    pub(super) fn release(&self) -> Option<(Arc<Shared>, Job)> {
        let mut permits = self.lock();
        match permits.waiting.pop_front() {
            Some((run, mut job)) => {
                job.permit = true;
                Some((run, job))
            }
            None => {
                permits.running = permits.running.saturating_sub(1);
                None
            }
        }
    }

    /// Forgets every waiting job and refuses new ones (after a fault, when nobody may
    /// give permits back). The jobs are dropped after the lock is released: dropping a
    /// run may end it.
    pub(super) fn drain(&self) {
        let waiting = {
            let mut permits = self.lock();
            permits.closed = true;
            std::mem::take(&mut permits.waiting)
        };
        drop(waiting);
    }
}
