//! Resolving a node: its record (outcome, status, times, failed attempts), and the
//! release of its successors: those now ready are dispatched, those that will not run
//! (an input they require did not succeed, or the run stopped) are recorded skipped or
//! cancelled, and release theirs in turn.

use super::*;
use state::Arrival;

impl Shared {
    pub(super) fn since(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.run.started).as_nanos() as u64
    }

    pub(super) fn times(
        &self,
        job: &Job,
        last_started: Option<Instant>,
        finished: Instant,
    ) -> [u64; 4] {
        let since = |at: Option<Instant>| at.map_or(NEVER, |at| self.since(at));
        [
            self.since(job.ready),
            since(
                job.retries
                    .as_ref()
                    .map(|r| r.first_started)
                    .or(last_started),
            ),
            since(last_started),
            self.since(finished),
        ]
    }

    /// Counts a task node's end for the progress display.
    pub(super) fn ended(&self, node: usize, was_running: bool) {
        if let Some(progress) = &self.run.progress
            && self.plan.graph.kind(node).is_task()
        {
            progress.ended(was_running);
        }
    }

    /// Records a node the run's stop kept from finishing (`started` is its interrupted
    /// attempt's start, if one ran), gives its permit back, and releases its
    /// successors: those it dooms are recorded in turn, cleanup tasks still run.
    pub(super) fn cancel(self: &Arc<Self>, job: Job, started: Option<Instant>, items: ItemRuns) {
        self.unrun(job, started, items, TaskStatus::Cancelled);
    }

    /// Records a node that did not finish with `status` (cancelled by the stop, not
    /// taken, or skipped), as [`cancel`](Self::cancel) does.
    pub(super) fn unrun(
        self: &Arc<Self>,
        job: Job,
        started: Option<Instant>,
        items: ItemRuns,
        status: TaskStatus,
    ) {
        let now = Instant::now();
        let times = self.times(&job, started, now);
        let value = (self.plan.unresolved[job.node])(None);
        let (node, permit, attempts) = (job.node, job.permit, job.attempt);
        // A fan-out or sub-workflow that ends without expanding: what a resumed run
        // restored for its nested runs goes now, not with the run.
        if matches!(self.plan.calls[node], Call::FanOut(_)) {
            self.drop_nested(node);
        }
        self.ended(node, attempts > 0);
        let record = Record::with_items(value, status, times, None, job.into_failed(), items);
        if let (Some(sink), true) = (self.records(), attempts > 0) {
            self.record_end(sink, node, attempts, &record, None);
        }
        self.board.resolve(node, record);
        self.give_back(node, permit);
        let mut spill = Vec::new();
        if let Some(next) = self.release(node, false, Caller::Rayon(&mut spill), now) {
            spill.push(next);
        }
        self.spawn_on_rayon(&mut spill);
    }

    /// Records a node's final outcome (its last attempt `started`; `None` for the value
    /// of an `if` or `match`, which runs nothing) and releases its successors. Returns
    /// one ready successor of `mode` for the caller to run next.
    pub(super) fn resolve(
        self: &Arc<Self>,
        job: Job,
        started: Option<Instant>,
        result: Result<Value, TaskError>,
        caller: Caller<'_>,
        items: ItemRuns,
    ) -> Option<Job> {
        let node = job.node;
        // Only the run itself records, in a durable run: not its fan-outs' items.
        let sink = self.records();
        // Most tasks: a success at the first attempt, with nothing to record or cache.
        let plain = sink.is_none() && job.cache.is_none() && job.retries.is_none();
        let result = match result {
            Ok(value) if plain && items.count == 0 => {
                return self.resolve_success(job, started, value, caller);
            }
            result => result,
        };
        let mut checkpoint = None;
        let result = match (result, sink) {
            (Ok(value), Some(_)) => match self.checkpoint_of(node, job.attempt, &value) {
                Ok(c) => {
                    checkpoint = c;
                    Ok(value)
                }
                // The task fails: its value goes, a panic in its `Drop` contained.
                Err(error) => {
                    self.plan.drop_value(node, value);
                    Err(error)
                }
            },
            (result, _) => result,
        };
        let mut job = job;
        let cache = job.cache.take();
        let cached_from = cache.as_ref().and_then(|c| c.hit()).map(Box::from);
        let (value, status, error) = match result {
            // Checkpointed and saved to the cache above and here, before its one reader
            // by value may take it.
            Ok(value) => {
                let status = match &cached_from {
                    Some(_) => TaskStatus::Cached,
                    None => TaskStatus::Succeeded,
                };
                if let Some(cache) = &cache {
                    self.save_result(node, cache, &value, checkpoint.as_ref());
                }
                (self.plan.settle(node, value), status, None)
            }
            Err(error) => {
                let name = self.plan.graph.name_of(node);
                if error.is_items() {
                    // Each item that did not succeed logged its own failure.
                    tracing::debug!(parent: &self.span, node = name, %error, "fan-out ended");
                } else {
                    tracing::error!(parent: &self.span, node = name, attempts = job.attempt, %error, "task failed");
                }
                let (value, status) = failure(&self.plan, node, &error);
                (value, status, Some(error))
            }
        };
        let succeeded = error.is_none();
        // A cached result loaded made no attempt: it was never counted as running.
        self.ended(node, job.attempt > 0);
        let finished = Instant::now();
        let times = self.times(&job, started, finished);
        let (permit, attempts) = (job.permit, job.attempt);
        self.log_end(node, status, attempts, &times);
        let mut record = Record::with_items(value, status, times, error, job.into_failed(), items);
        if let Some(run) = cached_from {
            record.set_cached_from(run);
        }
        if let Some(sink) = sink {
            self.record_end(sink, node, attempts, &record, checkpoint);
        }
        self.board.resolve(node, record);
        // A failure a `match` on its outcome will handle does not stop the run.
        if !succeeded && self.run.options.fail_fast && !self.handled_later(node) {
            self.run.stop.stop();
        }
        self.give_back(node, permit);
        self.release(node, succeeded, caller, finished)
    }

    /// [`resolve`](Self::resolve) for a success at the first attempt of a task with
    /// nothing to record, cache or keep but its value and times: most tasks.
    fn resolve_success(
        self: &Arc<Self>,
        job: Job,
        started: Option<Instant>,
        value: Value,
        caller: Caller<'_>,
    ) -> Option<Job> {
        let node = job.node;
        self.ended(node, job.attempt > 0);
        let finished = Instant::now();
        let times = self.times(&job, started, finished);
        self.log_end(node, TaskStatus::Succeeded, job.attempt, &times);
        let value = self.plan.settle(node, value);
        let record = Record::succeeded(value, times);
        self.board.resolve(node, record);
        self.give_back(node, job.permit);
        self.release(node, true, caller, finished)
    }

    /// The `task ended` event, at `debug`.
    #[inline]
    fn log_end(&self, node: usize, status: TaskStatus, attempts: u32, times: &[u64; 4]) {
        if tracing::enabled!(tracing::Level::DEBUG) {
            self.log_end_enabled(node, status, attempts, times);
        }
    }

    #[cold]
    fn log_end_enabled(&self, node: usize, status: TaskStatus, attempts: u32, times: &[u64; 4]) {
        let ran = times[3].saturating_sub(times[1]);
        tracing::debug!(
            parent: &self.span,
            node = %self.plan.graph.name_of(node),
            status = %status,
            attempts,
            duration_ms = if times[1] == NEVER { 0.0 } else { ran as f64 / 1e6 },
            "task ended"
        );
    }

    /// Decrements the counters of `node`'s successors; dispatches those now ready,
    /// records those that will not run (skipped by an unsuccessful required input, or
    /// cancelled by the run's stop) and releases theirs in turn, and returns one ready
    /// successor of `mode` for the caller.
    pub(super) fn release(
        self: &Arc<Self>,
        node: usize,
        succeeded: bool,
        mut caller: Caller<'_>,
        now: Instant,
    ) -> Option<Job> {
        if let Caller::RayonTask(_, ended) = &mut caller {
            **ended = Some(now);
        }
        let mut next = None;
        let mut unreached = Vec::new();
        let mut resolved = (node, succeeded);
        loop {
            let (node, succeeded) = resolved;
            // A decision's arms not taken end now, not when their other inputs arrive:
            // the branch's value then waits only for the arm taken.
            let decision = self.plan.flags[node] & crate::plan::DECISION != 0;
            if let Some(arms) = decision
                .then(|| self.plan.arms_of.get(&(node as u32)))
                .flatten()
            {
                let taken = self.board.record(node).and_then(|record| {
                    record
                        .status
                        .succeeded()
                        .then(|| crate::value::arm_of(record))
                        .flatten()
                });
                let ended = arms
                    .iter()
                    .filter(|&&(_, arm)| taken != Some(arm))
                    .map(|&(member, _)| member as usize)
                    .filter(|&member| self.board.claim(member));
                unreached.extend(ended);
            }
            for &(successor, required) in self.plan.successors(node) {
                let successor = successor as usize;
                let arrival = self.board.arrive(successor, !succeeded && required);
                if arrival == Arrival::Waiting {
                    continue;
                }
                let job = Job::new(successor, now);
                let mode = self.mode(successor);
                if arrival == Arrival::Doomed || !self.may_start(successor) {
                    unreached.push(successor);
                } else if next.is_none() && mode == caller.mode() {
                    next = Some(job);
                } else if let (Caller::Tokio(spill), Mode::Tokio)
                | (Caller::Rayon(spill) | Caller::RayonTask(spill, _), Mode::Rayon) =
                    (&mut caller, mode)
                {
                    spill.push(job);
                } else {
                    self.dispatch(job);
                }
            }
            let Some(unrun) = unreached.pop() else { break };
            let at = self.since(now);
            let value = (self.plan.unresolved[unrun])(None);
            let status = self.unreached_status(unrun);
            let record = Record::new(value, status, [at, NEVER, NEVER, at], None, Vec::new());
            self.board.resolve(unrun, record);
            if matches!(self.plan.calls[unrun], Call::FanOut(_)) {
                self.drop_nested(unrun);
            }
            self.ended(unrun, false);
            resolved = (unrun, false);
        }
        next
    }

    /// Why a ready node will not run: not taken if it is in an arm its decision did
    /// not pick, else as [`unreached_status`] says.
    pub(super) fn unreached_status(&self, node: usize) -> TaskStatus {
        if self.not_taken(node) {
            return TaskStatus::NotTaken;
        }
        let required = self
            .plan
            .graph
            .node(node)
            .edges()
            .filter(|&(_, tolerant)| !tolerant);
        unreached_status(required.map(|(input, _)| self.board.record(input)))
    }

    /// Whether a failure of `node` may be handled: a decision reads its outcome (a
    /// `match` on it), here or, for a node of a fan-out's item or a sub-workflow, on the
    /// node they are in the parent run. Fail-fast does not stop on such a failure.
    pub(super) fn handled_later(&self, node: usize) -> bool {
        if self.plan.is_handled(node) {
            return true;
        }
        match &self.completion {
            Some(Completion::Item { fan, .. }) => fan.parent.handled_later(fan.node),
            _ => false,
        }
    }

    /// Whether `node` is in an arm of an `if` or `match` that was not taken: its
    /// decision picked another arm, or was itself not taken.
    #[inline]
    pub(super) fn not_taken(&self, node: usize) -> bool {
        self.plan.flags[node] & crate::plan::IN_ARM != 0 && self.arm_not_taken(node)
    }

    /// [`not_taken`](Self::not_taken) for a node in an arm.
    fn arm_not_taken(&self, node: usize) -> bool {
        let Some(arm) = self.plan.graph.arm(node) else {
            return false;
        };
        match self.board.record(arm.decision as usize) {
            Some(record) if record.status.succeeded() => {
                crate::value::arm_of(record) != Some(arm.arm)
            }
            Some(record) => record.status == TaskStatus::NotTaken,
            None => false,
        }
    }
}

/// Why a node that will not run does not: `Skipped` if an input it requires (their
/// records, `None` if unresolved) failed, timed out or was skipped; `NotTaken` if one
/// was not taken (in an arm its `if` or `match` did not pick); else `Cancelled` (the
/// run's stop kept it from starting).
pub(super) fn unreached_status<'r>(
    required: impl Iterator<Item = Option<&'r Record>>,
) -> TaskStatus {
    let mut status = TaskStatus::Cancelled;
    for record in required.flatten() {
        match record.status {
            TaskStatus::Failed | TaskStatus::TimedOut | TaskStatus::Skipped => {
                return TaskStatus::Skipped;
            }
            TaskStatus::NotTaken => status = TaskStatus::NotTaken,
            _ => {}
        }
    }
    status
}

/// The value and status of `node` of `plan` when its last attempt failed with `error`.
pub(super) fn failure(plan: &Plan, node: usize, error: &TaskError) -> (Value, TaskStatus) {
    let status = if error.is_timeout() {
        TaskStatus::TimedOut
    } else {
        TaskStatus::Failed
    };
    ((plan.unresolved[node])(Some(error.clone())), status)
}
