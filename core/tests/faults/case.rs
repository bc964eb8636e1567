//! One case's shared state: the attempt log, the concurrency gauges, the triggers that
//! cancel or crash a run from inside an attempt, violations found inside tasks, and
//! the cached calls' keys (as computed, and as the store saw them).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aqueduct::CancelHandle;

use crate::cache::MKey;
use crate::spec::Spec;
use crate::value::Counters;

/// One attempt of one node instance, as the task itself saw it.
#[derive(Clone, Debug)]
pub(crate) struct Rec {
    pub(crate) epoch: u8,
    pub(crate) uid: u32,
    pub(crate) path: Vec<u32>,
    pub(crate) attempt: u32,
    /// The value hash it computed from the inputs it read.
    pub(crate) v: u64,
    pub(crate) start: Duration,
    pub(crate) end: Option<Duration>,
    /// It returned (rather than being dropped or panicking).
    pub(crate) completed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// A cancel; by the attempt (uid, path, attempt) that fired it, if one did.
    Cancel(Option<(u32, Vec<u32>, u32)>),
    /// `CancelHandle::kill`, likewise.
    Kill(Option<(u32, Vec<u32>, u32)>),
    /// The run future was dropped.
    Crash,
    /// The store failed (error or panic) on a save.
    StoreFail,
}

#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub(crate) epoch: u8,
    pub(crate) kind: EventKind,
    /// Taken after the event took effect.
    pub(crate) at: Duration,
}

#[derive(Default)]
pub(crate) struct Gauge {
    pub(crate) now: AtomicI64,
    pub(crate) max: AtomicI64,
}

pub(crate) struct Case {
    pub(crate) spec: Spec,
    /// Whether task values may panic in their `Drop` (gate D1, `Spec::bomb`).
    pub(crate) bombs: bool,
    pub(crate) counters: Arc<Counters>,
    pub(crate) t0: Instant,
    pub(crate) epoch: AtomicU32,
    pub(crate) log: Mutex<Vec<Rec>>,
    /// Attempts so far per (run, uid, item path).
    attempts: Mutex<HashMap<Instance, u32>>,
    /// Per task: attempts running now, and the most at once.
    pub(crate) gauges: Vec<Gauge>,
    pub(crate) inflight: AtomicI64,
    starts: AtomicU32,
    cancel_at: Mutex<Option<(u32, CancelHandle)>>,
    kill_at: Mutex<Option<(u32, CancelHandle)>>,
    crash_at: Mutex<Option<(u32, Arc<tokio::sync::Notify>)>>,
    pub(crate) events: Mutex<Vec<Event>>,
    /// Found inside tasks (F11: values of a finished fan-out still alive).
    pub(crate) violations: Mutex<Vec<(String, String)>>,
    /// For F11: per top-level consumer uid, the fan-outs it reads and the origins
    /// whose values must be gone by then.
    pub(crate) dead_origins: HashMap<u32, Vec<(String, Vec<u32>)>>,
    /// Cached calls' keys as their key functions computed them, by instance, with how
    /// many times each was computed.
    pub(crate) keys: Mutex<HashMap<Instance, (MKey, u32)>>,
    /// The keys (hex) the store was asked for, and the calls' keys they stand for:
    /// both ways.
    #[allow(clippy::type_complexity)]
    pub(crate) hexes: Mutex<(HashMap<String, MKey>, HashMap<MKey, String>)>,
    /// Per run, how many injected cache faults fired that the run must warn of
    /// (`RunReport::warnings`).
    pub(crate) warned: Mutex<HashMap<u8, u32>>,
}

/// A node instance in one run: (run, uid, item path).
type Instance = (u8, u32, Vec<u32>);

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Case {
    pub(crate) fn new(
        spec: Spec,
        case_id: u64,
        dead_origins: HashMap<u32, Vec<(String, Vec<u32>)>>,
        bombs: bool,
    ) -> Arc<Self> {
        // Nodes, the parameters, and one per cached task (`Spec::origin_of`).
        let origins = spec.param_origin() as usize + 1 + spec.tasks.len();
        Arc::new(Self {
            bombs,
            counters: Counters::new(case_id, origins),
            t0: Instant::now(),
            epoch: AtomicU32::new(0),
            log: Mutex::new(Vec::new()),
            attempts: Mutex::new(HashMap::new()),
            // One per task, and one the decisions share.
            gauges: (0..=spec.tasks.len()).map(|_| Gauge::default()).collect(),
            inflight: AtomicI64::new(0),
            starts: AtomicU32::new(0),
            cancel_at: Mutex::new(None),
            kill_at: Mutex::new(None),
            crash_at: Mutex::new(None),
            events: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
            dead_origins,
            keys: Mutex::new(HashMap::new()),
            hexes: Mutex::new((HashMap::new(), HashMap::new())),
            warned: Mutex::new(HashMap::new()),
            spec,
        })
    }

    pub(crate) fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    pub(crate) fn event(&self, epoch: u8, kind: EventKind) {
        let at = self.now();
        lock(&self.events).push(Event { epoch, kind, at });
    }

    pub(crate) fn begin_epoch(
        &self,
        epoch: u8,
        cancel: Option<(u32, CancelHandle)>,
        kill: Option<(u32, CancelHandle)>,
        crash: Option<(u32, Arc<tokio::sync::Notify>)>,
    ) {
        self.epoch.store(u32::from(epoch), Ordering::SeqCst);
        self.starts.store(0, Ordering::SeqCst);
        *lock(&self.cancel_at) = cancel;
        *lock(&self.kill_at) = kill;
        *lock(&self.crash_at) = crash;
    }

    pub(crate) fn end_epoch(&self) {
        *lock(&self.cancel_at) = None;
        *lock(&self.kill_at) = None;
        *lock(&self.crash_at) = None;
    }

    /// Logs the start of an attempt: returns its guard, its number and the epoch.
    pub(crate) fn start(
        self: &Arc<Self>,
        uid: u32,
        task: usize,
        path: Vec<u32>,
        v: u64,
    ) -> (Guard, u32, u8) {
        let epoch = self.epoch.load(Ordering::SeqCst) as u8;
        let attempt = {
            let mut attempts = lock(&self.attempts);
            let n = attempts.entry((epoch, uid, path.clone())).or_insert(0);
            *n += 1;
            *n
        };
        if let Some(checks) = self.dead_origins.get(&uid) {
            for (fan, origins) in checks {
                let alive: Vec<String> = origins
                    .iter()
                    .filter_map(|&o| {
                        let n = self.counters.alive_from(o);
                        (n != 0).then(|| format!("{n} of t{o}"))
                    })
                    .collect();
                if !alive.is_empty() {
                    lock(&self.violations).push((
                        "alive-F11".into(),
                        format!(
                            "when t{uid} started (run {epoch}), values made inside `{fan}`'s items (not its \
                             items' outputs) were still alive ({}): a finished fan-out keeps them (F11)",
                            alive.join(", ")
                        ),
                    ));
                }
            }
        }
        let rec = {
            let mut log = lock(&self.log);
            log.push(Rec {
                epoch,
                uid,
                path: path.clone(),
                attempt,
                v,
                start: self.now(),
                end: None,
                completed: false,
            });
            log.len() - 1
        };
        let gauge = &self.gauges[task];
        let now = gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
        gauge.max.fetch_max(now, Ordering::SeqCst);
        self.inflight.fetch_add(1, Ordering::SeqCst);
        let n = self.starts.fetch_add(1, Ordering::SeqCst) + 1;
        let cancel = lock(&self.cancel_at)
            .as_ref()
            .filter(|(k, _)| *k == n)
            .map(|(_, handle)| handle.clone());
        if let Some(handle) = cancel {
            self.event(epoch, EventKind::Cancel(Some((uid, path.clone(), attempt))));
            handle.cancel();
        }
        let kill = lock(&self.kill_at)
            .as_ref()
            .filter(|(k, _)| *k == n)
            .map(|(_, handle)| handle.clone());
        if let Some(handle) = kill {
            self.event(epoch, EventKind::Kill(Some((uid, path.clone(), attempt))));
            handle.kill();
        }
        let crash = lock(&self.crash_at)
            .as_ref()
            .filter(|(k, _)| *k == n)
            .map(|(_, notify)| Arc::clone(notify));
        if let Some(notify) = crash {
            notify.notify_one();
        }
        let guard = Guard {
            case: Arc::clone(self),
            rec,
            task,
            completed: false,
        };
        (guard, attempt, epoch)
    }

    /// The log of one epoch, by instance, each instance's attempts in order.
    pub(crate) fn log_of(&self, epoch: u8) -> HashMap<(u32, Vec<u32>), Vec<Rec>> {
        let mut by: HashMap<(u32, Vec<u32>), Vec<Rec>> = HashMap::new();
        for rec in lock(&self.log).iter().filter(|r| r.epoch == epoch) {
            by.entry((rec.uid, rec.path.clone()))
                .or_default()
                .push(rec.clone());
        }
        for recs in by.values_mut() {
            recs.sort_by_key(|r| r.attempt);
        }
        by
    }
}

/// Held for the length of an attempt: its end goes to the log and the gauges.
pub(crate) struct Guard {
    case: Arc<Case>,
    rec: usize,
    task: usize,
    pub(crate) completed: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let end = self.case.now();
        {
            let mut log = lock(&self.case.log);
            let rec = &mut log[self.rec];
            rec.end = Some(end);
            rec.completed = self.completed;
        }
        self.case.gauges[self.task]
            .now
            .fetch_sub(1, Ordering::SeqCst);
        self.case.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}
