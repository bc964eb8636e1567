//! Where a job goes: rayon for CPU work, a tokio task for IO work (and for CPU work
//! with a timeout, which a tokio task supervises), and the loops that run a job's
//! attempts there and continue with a ready successor of the same pool.

use super::attempt::CancelScoped;
use super::*;

/// What a rayon thread keeps across the jobs it runs one after another: the cancel
/// scope its tasks read (see [`Shared::call_cpu_here`]), and when the task it ran last
/// ended, if it has done nothing since.
#[derive(Default)]
pub(super) struct Streak {
    scope: Option<CancelScoped>,
    ended: Option<Instant>,
}

impl Shared {
    /// Hands a job to its pool. After a stop it still goes there, and [`admit`]
    /// records it cancelled (or lets a cleanup task run).
    ///
    /// [`admit`]: Shared::admit
    pub(super) fn dispatch(self: &Arc<Self>, job: Job) {
        let run = Arc::clone(self);
        match self.mode(job.node) {
            Mode::Rayon => rayon::spawn(move || run.rayon_job(job)),
            Mode::Tokio => self.spawn(run.run_on_tokio(job)),
        }
    }

    /// Spawns a future of the scheduler on tokio, its panics caught.
    pub(super) fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        self.run.tokio.spawn(Guarded {
            run: Arc::clone(&self.run),
            future: CatchUnwind(Box::pin(future)),
        });
    }

    /// A job on a rayon thread, its panics caught.
    pub(super) fn rayon_job(self: Arc<Self>, job: Job) {
        let context = Arc::clone(&self.run);
        guard(&context, "the scheduler", move || self.run_on_rayon(job));
    }

    pub(super) fn attempt_span(&self, job: &Job) -> tracing::Span {
        let graph = &self.plan.graph;
        tracing::info_span!(
            parent: &self.span,
            "task",
            task = graph.info(job.node).name,
            node = %graph.name_of(job.node),
            attempt = job.attempt,
        )
    }

    /// Runs a CPU node's attempts on this rayon thread, then any ready CPU successor it
    /// unlocks. A retry after a delay waits on tokio's timer, not on this thread.
    pub(super) fn run_on_rayon(self: &Arc<Self>, job: Job) {
        self.run_on_rayon_in(job, &mut Streak::default());
    }

    /// [`run_on_rayon`](Self::run_on_rayon) as part of a `streak`: the jobs this
    /// thread runs one after another, a parallel iteration's split of them.
    pub(super) fn run_on_rayon_in(self: &Arc<Self>, mut job: Job, streak: &mut Streak) {
        let mut spill = Vec::new();
        loop {
            // When the task this thread ran last ended, if that was the last thing it
            // did: the next attempt starts then, with no clock read of its own.
            let mut ended = streak.ended.take();
            job = match self.admit(job) {
                Some(job) => job,
                None => return,
            };
            match &self.plan.calls[job.node] {
                Call::FanOut(def) => return self.expand(job, def),
                Call::Branch(def) => {
                    let next = self.take_branch(job, def, &mut spill);
                    self.spawn_on_rayon(&mut spill);
                    match next {
                        Some(next) => {
                            job = next;
                            continue;
                        }
                        None => return,
                    }
                }
                _ => {}
            }
            if self.looks_up(&job) {
                ended = None;
                let at = Instant::now();
                if let Some(value) = self.look_up(&mut job) {
                    let caller = Caller::Rayon(&mut spill);
                    let next = self.resolve(job, Some(at), Ok(value), caller, ItemRuns::default());
                    self.spawn_on_rayon(&mut spill);
                    match next {
                        Some(next) => {
                            job = next;
                            continue;
                        }
                        None => return,
                    }
                }
                // The lookup may have waited for the store: the run may have stopped.
                if !self.may_start(job.node) {
                    return self.cancel(job, None, ItemRuns::default());
                }
            }
            let ended = ended.filter(|&at| at >= job.ready);
            let started = self.begin(&mut job, ended);
            let result = self
                .attempt_span(&job)
                .in_scope(|| self.call_cpu_here(job.node, &mut streak.scope));
            let caller = Caller::RayonTask(&mut spill, &mut streak.ended);
            let next = self.after_attempt(job, started, result, caller);
            self.spawn_on_rayon(&mut spill);
            job = match next {
                Next::Continue(next) => next,
                Next::Retry(next, delay) if delay.is_zero() => next,
                Next::Retry(next, delay) => {
                    let run = Arc::clone(self);
                    self.spawn(async move {
                        if run.sleep(next.node, delay).await {
                            rayon::spawn(move || run.rayon_job(next));
                        } else {
                            run.cancel(next, None, ItemRuns::default());
                        }
                    });
                    return;
                }
                Next::Stop => return,
            }
        }
    }

    /// Hands ready CPU jobs to rayon: one job as a spawn, several as one parallel
    /// iteration, which rayon splits among idle threads by work stealing (cheaper than
    /// a spawn, an allocation and an `Arc` clone per job).
    pub(super) fn spawn_on_rayon(self: &Arc<Self>, jobs: &mut Vec<Job>) {
        match jobs.pop() {
            None => {}
            Some(job) if jobs.is_empty() => self.dispatch(job),
            Some(job) => {
                jobs.push(job);
                let jobs = std::mem::take(jobs);
                self.spawn_guarded(move |run| {
                    jobs.into_par_iter()
                        .for_each_init(Streak::default, |streak, job| {
                            run.run_on_rayon_in(job, streak);
                        });
                });
            }
        }
    }

    /// Runs `work` on rayon, its panics a fault of the run (see [`guard`]).
    fn spawn_guarded(self: &Arc<Self>, work: impl FnOnce(&Arc<Self>) + Send + 'static) {
        let run = Arc::clone(self);
        rayon::spawn(move || {
            let context = Arc::clone(&run.run);
            guard(&context, "the scheduler", move || work(&run));
        });
    }

    /// Hands a run's CPU roots to rayon, ready at `started`: the first `cpu` of the
    /// plan's roots, or of a resumed run's `restored` ones (see
    /// [`cpu_first`](crate::plan::cpu_first)). One root is one job; several are one
    /// parallel iteration over their indices, each job made only when a thread takes it
    /// (a run of 10,000 roots holds no vector of 10,000 jobs).
    pub(super) fn spawn_roots(
        self: &Arc<Self>,
        restored: Option<Vec<u32>>,
        cpu: usize,
        started: Instant,
    ) {
        let roots = restored.as_deref().unwrap_or(&self.plan.roots);
        match cpu {
            0 => {}
            1 => self.dispatch(Job::new(roots[0] as usize, started)),
            _ => self.spawn_guarded(move |run| {
                let roots = restored.as_deref().unwrap_or(&run.plan.roots);
                roots[..cpu]
                    .par_iter()
                    .for_each_init(Streak::default, |streak, &root| {
                        run.run_on_rayon_in(Job::new(root as usize, started), streak);
                    });
            }),
        }
    }

    /// Runs an IO node's attempts (or a CPU node's with a timeout) in this tokio task,
    /// then any ready successor of the same mode it unlocks.
    pub(super) async fn run_on_tokio(self: Arc<Self>, mut job: Job) {
        let mut spill = Vec::new();
        loop {
            job = match self.admit(job) {
                Some(job) => job,
                None => return,
            };
            if self.looks_up(&job) {
                let at = Instant::now();
                // Store work: on rayon, never on this worker.
                if let Some(value) = self.look_up_off_runtime(&mut job).await {
                    let caller = Caller::Tokio(&mut spill);
                    let next = self.resolve(job, Some(at), Ok(value), caller, ItemRuns::default());
                    self.start_all(&mut spill).await;
                    match next {
                        Some(next) => {
                            job = next;
                            continue;
                        }
                        None => return,
                    }
                }
                if !self.may_start(job.node) {
                    return self.cancel(job, None, ItemRuns::default());
                }
            }
            let mut started = self.begin(&mut job, None);
            let span = self.attempt_span(&job);
            let result = match self.plan.graph.kind(job.node) {
                Kind::Io => self.call_io(job.node).instrument(span).await,
                _ => match Box::pin(self.call_cpu_supervised(&mut job, span)).await {
                    (Some(at), result) => {
                        started = at;
                        result
                    }
                    // The run stopped before rayon started the attempt: it never ran.
                    (None, _) => {
                        job.attempt -= 1;
                        if let (0, Some(progress)) = (job.attempt, &self.run.progress) {
                            progress.unstarted();
                        }
                        return self.cancel(job, None, ItemRuns::default());
                    }
                },
            };
            let Some(result) = result else {
                return self.cancel(job, Some(started), ItemRuns::default());
            };
            let next = self.after_attempt(job, started, result, Caller::Tokio(&mut spill));
            self.start_all(&mut spill).await;
            job = match next {
                Next::Continue(next) => next,
                Next::Retry(next, delay) => {
                    if !Box::pin(self.sleep(next.node, delay)).await {
                        return self.cancel(next, None, ItemRuns::default());
                    }
                    next
                }
                Next::Stop => return,
            }
        }
    }

    /// Starts a job of tokio mode: polls it once right here (with the caller's
    /// context), and spawns it only if it has to wait. A task that finishes at once
    /// then costs no spawn and holds no memory while others are started.
    pub(super) fn start(self: &Arc<Self>, job: Job, cx: &mut Context<'_>) {
        let mut task = Guarded {
            run: Arc::clone(&self.run),
            future: CatchUnwind(Box::pin(Arc::clone(self).run_on_tokio(job))),
        };
        let depth = INLINE_DEPTH.get();
        if depth < MAX_INLINE {
            INLINE_DEPTH.set(depth + 1);
            let poll = Pin::new(&mut task).poll(cx);
            INLINE_DEPTH.set(depth);
            if poll.is_ready() {
                return;
            }
        }
        // The spawned task polls it again, so its own waker is the one registered.
        self.run.tokio.spawn(task);
    }

    /// Starts every job in `jobs` (see [`Shared::start`]).
    pub(super) async fn start_all(self: &Arc<Self>, jobs: &mut Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        std::future::poll_fn(|cx| {
            for job in jobs.drain(..) {
                self.start(job, cx);
            }
            Poll::Ready(())
        })
        .await;
    }

    #[inline]
    pub(super) fn limiter(&self, node: usize) -> Option<&Limiter> {
        if self.plan.flags[node] & crate::plan::LIMITED == 0 {
            return None;
        }
        self.run.limits.get(self.plan.graph.info(node))
    }

    /// The job, allowed to run; `None` if the run stopped (the job is then recorded
    /// cancelled) or if the job must wait for a permit of its task's concurrency limit
    /// (a finishing node of the same task will dispatch it).
    #[inline]
    pub(super) fn admit(self: &Arc<Self>, job: Job) -> Option<Job> {
        // In an arm its decision did not pick (a root of a resumed run, say).
        if self.not_taken(job.node) {
            self.unrun(job, None, ItemRuns::default(), TaskStatus::NotTaken);
            return None;
        }
        if !self.may_start(job.node) {
            self.cancel(job, None, ItemRuns::default());
            return None;
        }
        match self.limiter(job.node) {
            Some(limiter) if !job.permit => limiter.acquire(self, job),
            _ => Some(job),
        }
    }

    /// Gives back a finished job's permit, dispatching the job that waited for it (in
    /// whichever run, or fan-out item, it belongs to).
    #[inline]
    pub(super) fn give_back(&self, node: usize, permit: bool) {
        if !permit {
            return;
        }
        if let Some((run, next)) = self.limiter(node).and_then(Limiter::release) {
            run.dispatch(next);
        }
    }

    pub(super) fn mode(&self, node: usize) -> Mode {
        if self.plan.flags[node] & crate::plan::ON_TOKIO == 0 {
            Mode::Rayon
        } else {
            Mode::Tokio
        }
    }
}
