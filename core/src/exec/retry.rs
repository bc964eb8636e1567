//! After an attempt: retry it if its policy allows (keeping the failed attempt in the
//! job's history), or resolve the node with its result.

use super::*;

impl Shared {
    /// Retries a failed attempt if its policy allows, else resolves the node.
    pub(super) fn after_attempt(
        self: &Arc<Self>,
        mut job: Job,
        started: Instant,
        result: Result<Value, TaskError>,
        caller: Caller<'_>,
    ) -> Next {
        let Err(error) = &result else {
            return self.resolved(job, started, result, caller);
        };
        if error.is_stopped_early() {
            // The run's stop told it to return early: it did not finish.
            self.cancel(job, Some(started), ItemRuns::default());
            return Next::Stop;
        }
        let retry = &self.plan.graph.info(job.node).retry;
        if !retry.retries_after(job.attempt, error) {
            return self.resolved(job, started, result, caller);
        }
        job.failed_attempt(started, error.clone());
        if !self.may_start(job.node) {
            // Only the stop keeps it from retrying: it did not fail for good.
            self.cancel(job, None, ItemRuns::default());
            return Next::Stop;
        }
        let delay = retry.delay_before(job.attempt);
        tracing::warn!(
            parent: &self.span, node = self.plan.graph.name_of(job.node), attempt = job.attempt, %error,
            "attempt failed; retrying in {delay:?}"
        );
        Next::Retry(job, delay)
    }

    /// Resolves the node with its last attempt's result.
    pub(super) fn resolved(
        self: &Arc<Self>,
        job: Job,
        started: Instant,
        result: Result<Value, TaskError>,
        caller: Caller<'_>,
    ) -> Next {
        match self.resolve(job, Some(started), result, caller, ItemRuns::default()) {
            Some(next) => Next::Continue(next),
            None => Next::Stop,
        }
    }
}
