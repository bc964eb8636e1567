//! A run that has ended: its output, its errors, its report.

use super::*;
use crate::contain::drop_all;

/// The slots of a run that has ended.
pub(crate) struct Finished {
    pub(super) started: Instant,
    pub(super) wall: Duration,
    pub(super) slots: Box<[Slot]>,
    pub(super) timed_out: Option<Duration>,
    pub(super) cancelled: bool,
    /// Why the executor stopped the run itself: a panic outside a task.
    pub(super) fault: Option<String>,
    /// The run's span.
    pub(super) span: tracing::Span,
}

/// How the tasks of a nested run are named in reports and errors: a fan-out's items
/// `task[index]`, a sub-workflow's tasks `node.task`.
#[derive(Clone, Copy)]
pub(super) struct Naming<'a> {
    pub(super) prefix: &'a str,
    pub(super) suffix: &'a str,
}

impl Naming<'_> {
    pub(super) fn name(&self, node: &str) -> String {
        format!("{}{node}{}", self.prefix, self.suffix)
    }

    /// Calls `each` with the naming of every nested run of `node` (a fan-out's items,
    /// a sub-workflow's single run) and its slots.
    pub(super) fn nested(
        &self,
        def: &FanOutDef,
        node: &str,
        record: &Record,
        mut each: impl FnMut(Naming<'_>, &[Slot]),
    ) {
        // A fused fan-out keeps no slots for the items it does not report.
        let items = record.items().iter().enumerate();
        for (index, item) in items.filter(|(_, slots)| !slots.is_empty()) {
            let (prefix, suffix) = def.item_naming((self.prefix, self.suffix), node, index);
            each(
                Naming {
                    prefix: &prefix,
                    suffix: &suffix,
                },
                item,
            );
        }
    }
}

/// Whether node `node` of `slots` (a run of `plan`) failed and a `match` on its
/// outcome handled the failure (its decision ran): the run does not fail because of it.
pub(super) fn handled(plan: &Plan, slots: &[Slot], node: usize) -> bool {
    let failed = slots[node]
        .get()
        .is_some_and(|record| matches!(record.status, TaskStatus::Failed | TaskStatus::TimedOut));
    failed
        && plan
            .handled_by
            .get(&(node as u32))
            .is_some_and(|decisions| {
                decisions.iter().any(|&decision| {
                    slots[decision as usize]
                        .get()
                        .is_some_and(|record| record.status.succeeded())
                })
            })
}

/// The failures of `slots` (a run of `plan`) that a `match` handled.
fn handled_failures(plan: &Plan, slots: &[Slot]) -> Vec<TaskFailure> {
    let graph = &plan.graph;
    (0..slots.len())
        .filter(|&node| handled(plan, slots, node))
        .filter_map(|node| {
            let record = slots[node].get()?;
            Some(TaskFailure {
                node: graph.name_of(node).to_owned(),
                task: graph.info(node).name,
                attempts: record.retried().len() as u32 + 1,
                error: record.error()?.clone(),
            })
        })
        .collect()
}

/// Every task of `slots` (a run of `plan`) that failed; a fan-out or sub-workflow whose
/// own tasks failed is represented by those tasks.
pub(super) fn collect_failures(
    plan: &Plan,
    slots: &[Slot],
    naming: Naming<'_>,
    out: &mut Vec<TaskFailure>,
) {
    let graph = &plan.graph;
    for (node, slot) in slots.iter().enumerate() {
        // Only a record with a history holds a failure (a task's, or its items').
        let Some(record) = slot.get().filter(|record| record.history.is_some()) else {
            continue;
        };
        // A handled failure is not the run's, nor are the failures inside it (the items
        // of a `for`, the tasks of a sub-workflow, whose outcome a `match` read).
        if handled(plan, slots, node) {
            continue;
        }
        let before = out.len();
        if let Call::FanOut(def) = &plan.calls[node] {
            naming.nested(def, graph.name_of(node), record, |inner, item| {
                collect_failures(&def.body, item, inner, out);
            });
        }
        if let Some(error) = record.error().filter(|_| out.len() == before) {
            out.push(TaskFailure {
                node: naming.name(graph.name_of(node)),
                task: graph.info(node).name,
                attempts: record.retried().len() as u32 + 1,
                error: error.clone(),
            });
        }
    }
}

/// Drops the values of a run that ended, but for its output's (and, for an `if` or
/// `match`, the arm's node whose value the output points at) and its parameters': on
/// the thread that ends the run, where the last values were made and their memory is
/// hot, before the run hands its slots (their records) back, so every value is still
/// dropped before the run returns. A value whose `Drop` panics is contained, with a
/// warning; the others are dropped all the same. Containment is per value: a value
/// holding two elements whose `Drop`s both panic aborts, as anywhere in Rust. Nothing
/// is dropped here while the thread unwinds (a second panic would abort): the run's
/// end drops them then, as it drops the rest ([`drop_slots`]).
pub(super) fn drop_values(plan: &Plan, slots: &mut [Slot]) {
    if std::thread::panicking() {
        return;
    }
    let output = plan.graph.output();
    let target = crate::value::aliased(&*slots, output);
    // Taken out of each record (`None`: one that stays, or goes its own way), then
    // dropped: a `map`, not a `filter_map`, so that this runs inlined per node.
    let take = |(node, slot): (usize, &mut Slot)| {
        let value = slot
            .get_mut()
            .filter(|_| node != output && node != target)
            .map(|record| &mut record.value)
            .filter(|value| !apart(plan, node) || !value.is::<crate::value::Import>())
            .map(|value| std::mem::replace(value, Box::new(())));
        match value {
            // A `for`'s `Vec` goes item by item, behind its own boundary.
            Some(value) if apart(plan, node) => {
                plan.drop_value(node, value);
                (node, None)
            }
            value => (node, value),
        }
    };
    let values = slots.iter_mut().enumerate().skip(plan.params()).map(take);
    drop_all(values, |node| plan.graph.name_of(node));
}

/// Whether `node`'s value is not dropped as one plain value: a branch's (an alias of
/// its arm's node, an `Import`, through which the output may reach its value: it
/// stays) or a gathered one (see [`Plan::drop_value`]).
#[inline]
fn apart(plan: &Plan, node: usize) -> bool {
    plan.flags[node] & crate::plan::DROPPED_APART != 0
}

/// Drops what is left of a run that ended (its parameters, its output when the run
/// failed), slot by slot, a panicking `Drop` contained: it never reaches the caller of
/// the run, nor keeps the other slots from being dropped.
fn drop_slots(slots: &mut [Slot]) {
    let records = slots.iter_mut().map(OnceLock::take).enumerate();
    drop_all(records, |_| "a parameter or the output");
}

/// What the `run ended` event needs, kept past [`Finished::into_output`].
pub(crate) struct RunEnd {
    span: tracing::Span,
    wall: Duration,
}

impl RunEnd {
    /// The `run ended` event, under the run's span: its status and duration.
    pub(crate) fn log<O>(&self, result: &Result<O, Error>) {
        tracing::info!(
            parent: &self.span,
            status = crate::error::run_status(result),
            duration_ms = self.wall.as_secs_f64() * 1e3,
            "run ended"
        );
    }
}

impl Finished {
    /// For the `run ended` event.
    pub(crate) fn end(&self) -> RunEnd {
        RunEnd {
            span: self.span.clone(),
            wall: self.wall,
        }
    }

    /// Splits the run into its output (or why there is none) and its report.
    pub(crate) fn into_output<O: 'static>(mut self, plan: &Plan) -> Result<O, Error> {
        let graph = &plan.graph;
        let mut failures = Vec::new();
        let top = Naming {
            prefix: "",
            suffix: "",
        };
        collect_failures(plan, &self.slots, top, &mut failures);
        let names = |status| {
            (0..graph.len())
                .filter(|&node| graph.kind(node) != Kind::Param && self.status(node) == status)
                .map(|node| graph.name_of(node).to_owned())
                .collect()
        };
        let workflow = graph.name().to_owned();
        let error = if let Some(message) = &self.fault {
            Some(Error::Fault {
                workflow,
                message: message.clone(),
            })
        } else if !failures.is_empty() {
            Some(Error::Failed {
                workflow,
                failures,
                skipped: names(TaskStatus::Skipped),
            })
        } else if let Some(after) = self.timed_out {
            Some(Error::TimedOut {
                workflow,
                after,
                unfinished: names(TaskStatus::Cancelled),
            })
        } else if self.cancelled {
            // A cancel that came after every node had finished changes nothing; one
            // that kept a node from finishing fails the run, even if the output (a
            // cleanup task, say) was produced.
            let unfinished: Vec<String> = names(TaskStatus::Cancelled);
            let output_missing = !self.status(graph.output()).succeeded();
            (output_missing || !unfinished.is_empty()).then_some(Error::Cancelled {
                workflow,
                unfinished,
            })
        } else {
            None
        };
        if let Some(error) = error {
            drop_slots(&mut self.slots);
            return Err(error);
        }
        // The value of an `if` or `match` is the value of the arm it took.
        let not_taken = self.status(graph.output()) == TaskStatus::NotTaken;
        let mut slots = self.slots;
        let output = match crate::value::take_outcome::<O>(&mut slots, graph.output()) {
            Some(task::Outcome::Ok(value)) => Some(value),
            _ => None,
        };
        let result = output.ok_or_else(|| {
            // A failure a `match` handled, whose other readers were skipped up to the
            // output: that failure is why.
            let failures = handled_failures(plan, &slots);
            if failures.is_empty() {
                let output = graph.name_of(graph.output());
                Error::output_missing(graph.name(), output, not_taken)
            } else {
                Error::Failed {
                    workflow: graph.name().to_owned(),
                    failures,
                    skipped: Vec::new(),
                }
            }
        });
        drop_slots(&mut slots);
        result
    }

    pub(super) fn status(&self, node: usize) -> TaskStatus {
        self.slots[node]
            .get()
            .map_or(TaskStatus::Cancelled, |r| r.status)
    }

    /// What every task did.
    pub(crate) fn report(&self, plan: &Plan) -> RunReport {
        let mut tasks = Vec::new();
        let top = Naming {
            prefix: "",
            suffix: "",
        };
        self.task_reports(plan, &self.slots, top, &mut tasks);
        RunReport {
            workflow: plan.graph.name().to_owned(),
            wall: self.wall,
            tasks,
            critical_path: self.critical_path(plan),
            cores: crate::report::cores(),
            warnings: Vec::new(),
        }
    }

    /// The reports of the tasks of `slots` (a run of `plan`), each named with `suffix`,
    /// followed for a fan-out by its items' tasks, named `node[index]`.
    pub(super) fn task_reports(
        &self,
        plan: &Plan,
        slots: &[Slot],
        naming: Naming<'_>,
        out: &mut Vec<TaskReport>,
    ) {
        let since = |at: Instant| at.saturating_duration_since(self.started);
        for node in plan.graph.nodes().filter(|node| node.kind() != Kind::Param) {
            let record = slots[node.index()].get();
            let mut attempts: Vec<AttemptReport> = record
                .into_iter()
                .flat_map(Record::retried)
                .map(|a| AttemptReport {
                    started_at: since(a.started),
                    duration: a.finished - a.started,
                    error: Some(a.error.to_string()),
                })
                .collect();
            // A cached result was loaded: no attempt ran (its duration is the lookup's).
            let ran = record.and_then(|r| (r.status != TaskStatus::Cached).then_some(r));
            if let Some((record, started)) = ran.and_then(|r| Some((r, r.time(LAST_START)?))) {
                attempts.push(AttemptReport {
                    started_at: started,
                    duration: record.time(END).unwrap_or_default().saturating_sub(started),
                    error: record.error().map(ToString::to_string),
                });
            }
            let started = record.and_then(|r| r.time(FIRST_START));
            let ready = record.and_then(|r| r.time(READY));
            out.push(TaskReport {
                node: naming.name(node.name()),
                task: node.task().unwrap_or_default().to_owned(),
                fake: node.is_fake(),
                kind: node.kind(),
                status: match record {
                    _ if handled(plan, slots, node.index()) => TaskStatus::Handled,
                    Some(record) => record.status,
                    None => TaskStatus::Cancelled,
                },
                started_at: started,
                queue_wait: started
                    .zip(ready)
                    .map_or(Duration::ZERO, |(s, r)| s.saturating_sub(r)),
                duration: record.and_then(Record::duration).unwrap_or_default(),
                error: record.and_then(Record::error).map(ToString::to_string),
                attempts,
                items: match (&plan.calls[node.index()], record) {
                    (Call::FanOut(_), Some(record)) if node.kind() == Kind::FanOut => {
                        record.item_runs().map(|runs| ItemsReport {
                            count: runs.count,
                            fused: runs.fused,
                            rows: runs.rows.iter().filter(|slots| !slots.is_empty()).count(),
                        })
                    }
                    _ => None,
                },
                cached_from: record.and_then(Record::cached_from).map(str::to_owned),
            });
            if let (Call::FanOut(def), Some(record)) = (&plan.calls[node.index()], record) {
                naming.nested(def, node.name(), record, |inner, item| {
                    self.task_reports(&def.body, item, inner, out);
                });
            }
        }
    }

    /// The chain of tasks, each an input of the next, whose durations add up to the
    /// most: no schedule can finish the run sooner.
    pub(super) fn critical_path(&self, plan: &Plan) -> Vec<String> {
        let graph = &plan.graph;
        let ran = |i: usize| self.slots[i].get().and_then(Record::duration);
        // Nodes are in topological order, so one forward pass finds every longest path.
        let mut longest: Vec<Option<(Duration, Option<usize>)>> = vec![None; graph.len()];
        for node in graph.nodes() {
            let i = node.index();
            // The value of an `if` or `match` takes no time, but the path goes through it.
            let branch = node.kind() == Kind::Branch
                && self.slots[i]
                    .get()
                    .is_some_and(|record| record.status.succeeded());
            let Some(duration) = ran(i).or(branch.then_some(Duration::ZERO)) else {
                continue;
            };
            let before = node
                .inputs()
                .filter_map(|j| Some((longest[j]?.0, Some(j))))
                .max_by_key(|(d, _)| *d);
            let (base, previous) = before.unwrap_or((Duration::ZERO, None));
            longest[i] = Some((base + duration, previous));
        }
        let mut at = (0..graph.len())
            .filter_map(|i| Some((longest[i]?.0, i)))
            .max_by_key(|(d, _)| *d)
            .map(|(_, i)| i);
        let mut path = Vec::new();
        while let Some(i) = at {
            path.push(graph.name_of(i).to_owned());
            at = longest[i].and_then(|(_, previous)| previous);
        }
        path.reverse();
        path
    }
}
