//! One claimed task, run on this worker: its inputs decoded into slots, its node
//! called (CPU work on rayon, IO work on tokio, within the task's timeout), its output
//! encoded, and how it ended. A task is a node of the workflow or of a fan-out's item;
//! a fan-out's own row makes its items, then gathers them (`items.rs`).

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use tokio::sync::oneshot;

use super::commit::{CacheNote, Ended};
use super::current::{AttemptId, CURRENT_IO, as_current};
use super::items::{self, Parent};
use super::protocol::{Claimed, Input, Place};
use super::served::{Served, Slots};
use crate::plan::{Call, Called, CheckpointFormat, Plan};
use crate::task::{Kind, TaskError, TaskInfo, panic_message};
use crate::value::Value;
/// What a task calls: a node of the workflow, or a node of a fan-out's item.
#[derive(Clone, Copy)]
pub(super) enum Target {
    Top(usize),
    Item {
        fan: usize,
        item: usize,
        part: usize,
    },
}

impl Target {
    /// What the task at `place` calls.
    pub(super) fn of(place: Place) -> Self {
        match place.body() {
            Some((part, item)) => Target::Item {
                fan: place.node(),
                item,
                part,
            },
            None => Target::Top(place.node()),
        }
    }

    /// The plan whose node it calls, and the node.
    pub(super) fn call<'p>(&self, plan: &'p Plan) -> Option<(&'p Plan, usize)> {
        match *self {
            Target::Top(node) => Some((plan, node)),
            Target::Item { fan, part, .. } => match &plan.calls[fan] {
                Call::FanOut(def) => Some((&def.body, part)),
                _ => None,
            },
        }
    }
}

/// Runs attempt `attempt` of `task` (attempts lost with their workers not counted;
/// `id` is how the task sees it) with its run's parameters and its inputs, and says how it ended: its output
/// encoded, or its error and whether (and when) its policy retries it; for a
/// fan-out's row, its items made or gathered. A cached task's first attempt looks
/// its result up through `lookups` first (see [`cached`]).
pub(super) async fn run(
    served: Arc<Served>,
    task: &Claimed,
    (attempt, id): (u32, Arc<AttemptId>),
    params: Arc<[u8]>,
    inputs: Vec<(Place, Input)>,
    (lookups, parent): (Option<&tokio_postgres::Client>, Option<Arc<Parent>>),
) -> (Ended, Option<CacheNote>) {
    let target = Target::of(task.place);
    let Some((plan, node)) = target.call(&served.plan) else {
        let error = permanent("a task of an item of a node that is no fan-out".into());
        return (failed(error), None);
    };
    let info = *plan.graph.info(node);
    let run: items::Run = ((task.run.clone(), task.submitted_ms), parent);
    let result = match (&plan.calls[node], target) {
        (Call::FanOut(_), Target::Top(fan)) if task.expanded => {
            let served = Arc::clone(&served);
            let gathered = on_rayon(move || items::gather(&served, fan, inputs)).await;
            let ended = gathered.map_or_else(failed, |data| Ended::Done {
                codec: "json",
                data,
            });
            return (ended, None);
        }
        (Call::FanOut(_), Target::Top(fan)) => {
            let served = Arc::clone(&served);
            let expanded = on_rayon(move || items::expand(&served, fan, &params, inputs)).await;
            return (expanded.unwrap_or_else(failed), None);
        }
        (Call::Branch(_), _) => {
            let served = Arc::clone(&served);
            let branch = on_rayon(move || branch(&served, target, run, &params, inputs)).await;
            return (branch.unwrap_or_else(failed), None);
        }
        (Call::Task(_), _) if plan.caches.contains_key(&(node as u32)) && lookups.is_some() => {
            let lookups = lookups.expect("checked");
            let attempt = (attempt, &id);
            return cached(&served, target, run, attempt, (&params, inputs), lookups).await;
        }
        (Call::Task(_), _) if info.kind == Kind::Io => {
            let (served, params) = (Arc::clone(&served), Arc::clone(&params));
            let slots = {
                let served = Arc::clone(&served);
                on_rayon(move || slots_of(&served, target, run, &params, inputs).map_err(permanent))
                    .await
            };
            match slots {
                Ok(slots) => call_io(&served, target, slots, &id).await,
                Err(error) => Err(error),
            }
        }
        (Call::Task(_), _) => {
            let served = Arc::clone(&served);
            let cpu = on_rayon(move || {
                let slots = slots_of(&served, target, run, &params, inputs).map_err(permanent)?;
                call_cpu(&served, target, slots, &id)
            });
            timed(&info, cpu).await
        }
        _ => Err(permanent(format!(
            "node `{}` is not a task or fan-out, which workers do not run",
            plan.graph.name_of(node)
        ))),
    };
    (ended(&info, attempt, result), None)
}

/// How an attempt of a task of `info` ended with `result`.
fn ended(info: &TaskInfo, attempt: u32, result: Result<Vec<u8>, TaskError>) -> Ended {
    match result {
        Ok(data) => Ended::Done {
            codec: "json",
            data,
        },
        Err(error) => {
            let retries = info.retry.retries_after(attempt, &error);
            Ended::Failed {
                error: super::protocol::text(&error.to_string()),
                retry_in: retries.then(|| info.retry.delay_before(attempt)),
            }
        }
    }
}

/// A cached task's attempt: its key made from its inputs (with its slots, on rayon);
/// on the first attempt, a result stored under it (by the server's clock, not
/// expired, readable by this build) is the attempt's output; else the task runs and
/// its result is saved with its end. The cache never fails a task: a key it cannot
/// make, a lookup that fails, a result it cannot read is a warning, and the task runs.
async fn cached(
    served: &Arc<Served>,
    target: Target,
    run: items::Run,
    (attempt, id): (u32, &Arc<AttemptId>),
    (params, inputs): (&Arc<[u8]>, Vec<(Place, Input)>),
    lookups: &tokio_postgres::Client,
) -> (Ended, Option<CacheNote>) {
    let (plan, node) = target.call(&served.plan).expect("checked by `run`");
    let info = *plan.graph.info(node);
    let warn = |what: String| {
        tracing::warn!(run = %run.0.0, task = info.name, node = plan.graph.name_of(node), "{what}");
    };
    let prepared = {
        let (served, params, run) = (Arc::clone(served), Arc::clone(params), run.clone());
        on_rayon(move || {
            let slots = slots_of(&served, target, run, &params, inputs).map_err(permanent)?;
            let (plan, node) = target.call(&served.plan).expect("checked by `run`");
            let def = &plan.caches[&(node as u32)];
            Ok((
                crate::exec::key_of(plan.graph.info(node), def, slots.view()),
                slots,
            ))
        })
        .await
    };
    let (key, slots) = match prepared {
        Ok((Ok(key), slots)) => (Some(key), slots),
        Ok((Err(error), slots)) => {
            warn(format!(
                "cannot make the cache key: {error}; running the task, whose result is not saved"
            ));
            (None, slots)
        }
        Err(error) => return (ended(&info, attempt, Err(error)), None),
    };
    if let (Some(key), 1) = (&key, attempt) {
        match super::protocol::cached(lookups, info.name, key).await {
            Ok(Some(row)) => {
                let served = Arc::clone(served);
                let readable = on_rayon(move || {
                    let (plan, node) = target.call(&served.plan).expect("checked by `run`");
                    let def = &plan.caches[&(node as u32)];
                    let codec = CheckpointFormat::from_name(&row.codec).map(|f| f.name());
                    match (crate::exec::decode_cached(def, &row), codec) {
                        (Ok(_), Some(codec)) => Ok(Ok((codec, row))),
                        (Err(error), _) => Ok(Err(error)),
                        (_, None) => Ok(Err(format!("unknown codec `{}`", row.codec))),
                    }
                })
                .await;
                match readable {
                    Ok(Ok((codec, row))) => {
                        let done = Ended::Done {
                            codec,
                            data: row.data,
                        };
                        return (done, Some(CacheNote::Loaded { from: row.run }));
                    }
                    Ok(Err(error)) => warn(format!(
                        "the cached result cannot be read ({error}); running the task, whose \
                         result replaces it"
                    )),
                    Err(error) => warn(format!("the cache lookup failed: {error}")),
                }
            }
            Ok(None) => {}
            Err(error) => warn(format!(
                "cannot read the cache: {}; running the task",
                super::explain(&error)
            )),
        }
    }
    let result = match info.kind {
        Kind::Io => call_io(served, target, slots, id).await,
        _ => {
            let (served, id) = (Arc::clone(served), Arc::clone(id));
            timed(
                &info,
                on_rayon(move || call_cpu(&served, target, slots, &id)),
            )
            .await
        }
    };
    let note = key.map(|key| CacheNote::Save {
        task: info.name,
        key,
        ttl: info.cache.and_then(|policy| policy.ttl),
    });
    (ended(&info, attempt, result), note)
}

/// A CPU attempt within its task's timeout: past it, abandoned (it cannot be
/// preempted), its result dropped.
async fn timed(
    info: &TaskInfo,
    cpu: impl std::future::Future<Output = Result<Vec<u8>, TaskError>>,
) -> Result<Vec<u8>, TaskError> {
    match info.timeout {
        None => cpu.await,
        Some(limit) => tokio::time::timeout(limit, cpu)
            .await
            .unwrap_or_else(|_| Err(TaskError::timed_out(limit))),
    }
}

/// A failure no retry mends.
fn failed(error: TaskError) -> Ended {
    Ended::Failed {
        error: super::protocol::text(&error.to_string()),
        retry_in: None,
    }
}

/// The slots of a task's call: the parameters of its plan (the run's, or its item's)
/// and its inputs.
fn slots_of(
    served: &Arc<Served>,
    target: Target,
    run: items::Run,
    params: &Arc<[u8]>,
    inputs: Vec<(Place, Input)>,
) -> Result<Slots, String> {
    match target {
        Target::Top(_) => {
            let inputs = inputs.into_iter().map(|(p, i)| (p.node(), i)).collect();
            served.workflow_slots(params, inputs)
        }
        Target::Item { fan, item, part } => {
            items::item_slots(served, run, (fan, item, part), params, inputs)
        }
    }
}

/// The value of an `if` or `match` (its decision and every arm's value ended): the
/// taken arm's value, encoded as the branch's own; unreached if that arm's task did
/// not succeed (as in one process, the branch then ends as it did).
fn branch(
    served: &Arc<Served>,
    target: Target,
    run: items::Run,
    params: &Arc<[u8]>,
    inputs: Vec<(Place, Input)>,
) -> Result<Ended, TaskError> {
    let (plan, node) = target.call(&served.plan).expect("checked by `run`");
    let Call::Branch(def) = &plan.calls[node] else {
        return Err(permanent("not a branch".into()));
    };
    // The node a read input is of this branch's plan: an item's task also reads its
    // fan-out's inputs (nodes of the workflow), which are not.
    let node_of = |place: &Place| match (place.body(), target) {
        (Some((part, _)), Target::Item { .. }) => Some(part),
        (None, Target::Top(_)) => Some(place.node()),
        _ => None,
    };
    let end_of = |wanted: usize| {
        inputs
            .iter()
            .find(|(place, _)| node_of(place) == Some(wanted))
    };
    let tail_of = |arm: u32| def.tails.get(arm as usize).copied().flatten();
    let arm = match end_of(def.decision as usize) {
        Some((_, decided @ Input::Done(..))) => {
            let decided = super::served::decode(plan, def.decision as usize, decided.clone())
                .map_err(permanent)?;
            crate::value::arm_in(&decided)
        }
        _ => None,
    };
    let Some(arm) = arm else {
        return Err(permanent("its decision did not pick an arm".into()));
    };
    match tail_of(arm).and_then(|tail| end_of(tail as usize)) {
        Some((_, Input::Done(..))) | None => {}
        Some((_, Input::NotTaken)) => return Ok(Ended::Unreached { not_taken: true }),
        Some(_) => return Ok(Ended::Unreached { not_taken: false }),
    }
    let slots = slots_of(served, target, run, params, inputs).map_err(permanent)?;
    let value = def.value(slots.view(), arm).map_err(|input| {
        permanent(format!(
            "its arm's value `{}` was not read",
            plan.graph.name_of(input)
        ))
    })?;
    let value = crate::value::shared(slots.view(), &value)
        .ok_or_else(|| permanent("its arm's value is missing".into()))?;
    Ok(Ended::Done {
        codec: "json",
        data: encode(plan, node, value)?,
    })
}

/// A CPU task's call with its slots, on this (rayon) thread, its output encoded.
fn call_cpu(
    served: &Served,
    target: Target,
    slots: Slots,
    id: &Arc<AttemptId>,
) -> Result<Vec<u8>, TaskError> {
    let (plan, node) = target.call(&served.plan).expect("checked by `run`");
    let Call::Task(call) = &plan.calls[node] else {
        return Err(permanent("only task nodes are run by workers".into()));
    };
    let value = match catch_unwind(AssertUnwindSafe(|| as_current(id, || call(slots.view())))) {
        Ok(Called::Done(result)) => result?,
        Ok(Called::Pending(_)) => {
            return Err(permanent("a CPU task returned a future".into()));
        }
        Err(panic) => return Err(panicked(&*panic)),
    };
    drop(slots);
    encode(plan, node, &value)
}

/// An IO task's call with its slots, on this tokio task, within its timeout; its
/// output encoded on rayon.
async fn call_io(
    served: &Arc<Served>,
    target: Target,
    slots: Slots,
    id: &Arc<AttemptId>,
) -> Result<Vec<u8>, TaskError> {
    let (plan, node) = target.call(&served.plan).expect("checked by `run`");
    let Call::Task(call) = &plan.calls[node] else {
        return Err(permanent("only task nodes are run by workers".into()));
    };
    let value = match catch_unwind(AssertUnwindSafe(|| as_current(id, || call(slots.view())))) {
        Ok(Called::Done(result)) => result?,
        Ok(Called::Pending(future)) => {
            let future = CURRENT_IO.scope(Arc::clone(id), crate::exec::caught(future));
            match plan.graph.info(node).timeout {
                None => future.await?,
                Some(limit) => tokio::time::timeout(limit, future)
                    .await
                    .map_err(|_| TaskError::timed_out(limit))??,
            }
        }
        Err(panic) => return Err(panicked(&*panic)),
    };
    let served = Arc::clone(served);
    on_rayon(move || {
        let (plan, node) = target.call(&served.plan).expect("checked by `run`");
        encode(plan, node, &value)
    })
    .await
}

/// `value` (node `node`'s, of `plan`), encoded for its task's row.
pub(super) fn encode(plan: &Plan, node: usize, value: &Value) -> Result<Vec<u8>, TaskError> {
    let codec =
        plan.codecs[node].ok_or_else(|| permanent("the node is not checkpointed".into()))?;
    catch_unwind(AssertUnwindSafe(|| {
        (codec.encode)(value, CheckpointFormat::Json)
    }))
    .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_message(&*panic))))
    .map_err(|error| permanent(format!("cannot save its output: {error}")))
}

/// Runs `f` on rayon and waits for it here; a panic is the task's failure.
async fn on_rayon<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TaskError> + Send + 'static,
) -> Result<T, TaskError> {
    let (sent, result) = oneshot::channel();
    // The attempt's span goes along, so the task's own events are the run's.
    let span = tracing::Span::current();
    rayon::spawn(move || {
        let _entered = span.enter();
        let _ = sent.send(catch_unwind(AssertUnwindSafe(f)));
    });
    match result.await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(panicked(&*panic)),
        Err(_) => Err(TaskError::msg("the attempt's thread went away")),
    }
}

pub(super) fn permanent(message: String) -> TaskError {
    TaskError::permanent(TaskError::msg(message))
}

fn panicked(panic: &(dyn Any + Send)) -> TaskError {
    TaskError::panicked(panic)
}
