//! Concurrency limits: at most N nodes of a task at once across a run.

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
/// lock; a node over the limit waits in the queue, holding no thread.
pub(super) struct Limiter {
    pub(super) max: u32,
    pub(super) state: std::sync::Mutex<Permits>,
}

#[derive(Default)]
pub(super) struct Permits {
    pub(super) running: u32,
    pub(super) waiting: std::collections::VecDeque<Job>,
}

impl Limiter {
    /// The job back with a permit, or `None` if it now waits for one.
    pub(super) fn acquire(&self, mut job: Job) -> Option<Job> {
        let mut permits = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if permits.running < self.max {
            permits.running += 1;
            job.permit = true;
            Some(job)
        } else {
            permits.waiting.push_back(job);
            None
        }
    }

    /// Gives a permit back: to the first waiting job, which is returned to be run.
    pub(super) fn release(&self) -> Option<Job> {
        let mut permits = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match permits.waiting.pop_front() {
            Some(mut job) => {
                job.permit = true;
                Some(job)
            }
            None => {
                permits.running -= 1;
                None
            }
        }
    }
}
