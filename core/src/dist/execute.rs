//! One claimed task, run on this worker: its inputs decoded into a run's slots, its
//! node called (CPU work on rayon, IO work on tokio, within the task's timeout), its
//! output encoded, and how it ended.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::commit::Ended;
use super::protocol::Input;
use crate::plan::{Call, Called, CheckpointFormat, Params, Plan};
use crate::task::{Kind, TaskError, panic_message};
use crate::value::{Slot, Value, fill};

/// A workflow a worker serves: its plan, its fingerprint, and how its parameters are
/// decoded into a run's slots.
pub(crate) struct Served {
    pub(super) plan: Arc<Plan>,
    pub(super) fingerprint: String,
    params: Box<ParamsFn>,
    /// Slot arrays of attempts that ended, emptied: an attempt's array has a slot per
    /// node up to the last it reads, too many to make for each task of a big workflow.
    spare: Mutex<Vec<Box<[Slot]>>>,
}

/// Decodes a run's parameters into its slots.
type ParamsFn = dyn Fn(&[u8], &[Slot]) -> Result<(), String> + Send + Sync;

/// How many slots a served workflow keeps in emptied arrays (about 72 bytes each).
const SPARE_SLOTS: usize = 1 << 20;

impl Served {
    pub(super) fn new<P>(plan: Arc<Plan>, fingerprint: String) -> Self
    where
        P: Params + serde::de::DeserializeOwned,
    {
        Self {
            plan,
            fingerprint,
            params: Box::new(|bytes, slots| {
                let params: P = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
                params.store(slots);
                Ok(())
            }),
            spare: Mutex::new(Vec::new()),
        }
    }

    /// A run's slots holding the parameters (`params`, encoded) and the `inputs` of
    /// `node`, ready for its call: as many as the call reads (its inputs come before
    /// it), the parameters' at least.
    fn slots(
        self: &Arc<Self>,
        node: usize,
        params: &[u8],
        inputs: Vec<(usize, Input)>,
    ) -> Result<Slots, String> {
        let plan = &self.plan;
        let graph = &plan.graph;
        let params_len = (0..graph.len())
            .take_while(|&n| graph.kind(n) == Kind::Param)
            .count();
        let needed = graph
            .node(node)
            .inputs()
            .map(|n| n + 1)
            .max()
            .unwrap_or(0)
            .max(params_len);
        let spare = {
            let mut spare = lock(&self.spare);
            let found = spare.iter().position(|slots| slots.len() >= needed);
            found.map(|i| spare.swap_remove(i))
        };
        let mut slots = Slots {
            slots: spare.unwrap_or_else(|| (0..needed).map(|_| Slot::new()).collect()),
            filled: inputs.iter().map(|&(node, _)| node).collect(),
            served: Arc::clone(self),
        };
        (self.params)(params, &slots.slots)
            .map_err(|e| format!("cannot read the run's parameters: {e}"))?;
        plan.settle_params(&mut slots.slots);
        for (node, input) in inputs {
            let value: Value = match input {
                Input::Done(codec, data) => {
                    let format = crate::plan::readable(&codec, crate::plan::SCHEMA)
                        .map_err(|e| format!("input `{}`: {e}", plan.graph.name_of(node)))?;
                    let codec = plan.codecs[node].ok_or("an input is not checkpointed")?;
                    let value = (codec.decode)(&data, format).map_err(|e| {
                        format!("cannot read input `{}`: {e}", plan.graph.name_of(node))
                    })?;
                    plan.settle(node, value)
                }
                Input::Failed(error) => (plan.unresolved[node])(Some(TaskError::msg(error))),
                Input::Skipped => (plan.unresolved[node])(None),
            };
            fill(&slots.slots[node], value);
        }
        Ok(slots)
    }
}

/// An attempt's slots: emptied and kept for another attempt when dropped.
struct Slots {
    slots: Box<[Slot]>,
    /// The nodes whose slots it fills besides the parameters.
    filled: Vec<usize>,
    served: Arc<Served>,
}

impl std::ops::Deref for Slots {
    type Target = [Slot];

    fn deref(&self) -> &[Slot] {
        &self.slots
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        let plan = &self.served.plan;
        let params = (0..self.slots.len()).take_while(|&node| plan.graph.kind(node) == Kind::Param);
        for node in params.chain(self.filled.drain(..)) {
            self.slots[node].take();
        }
        let mut spare = lock(&self.served.spare);
        let kept: usize = spare.iter().map(|slots| slots.len()).sum();
        if kept + self.slots.len() <= SPARE_SLOTS {
            spare.push(std::mem::take(&mut self.slots));
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs attempt `attempt` of `node` (a task of `served`'s plan; attempts lost with
/// their workers not counted) with its inputs, and says how it ended: its output
/// encoded, or its error and whether (and when) its policy retries it.
pub(super) async fn run(
    served: Arc<Served>,
    node: usize,
    attempt: u32,
    params: Arc<[u8]>,
    inputs: Vec<(usize, Input)>,
) -> Ended {
    let info = *served.plan.graph.info(node);
    let result = match info.kind {
        Kind::Io => run_io(&served, node, &params, inputs).await,
        _ => {
            let served = Arc::clone(&served);
            let cpu = on_rayon(move || run_cpu(&served, node, &params, inputs));
            match info.timeout {
                None => cpu.await,
                Some(limit) => match tokio::time::timeout(limit, cpu).await {
                    Ok(result) => result,
                    // The attempt cannot be preempted: it is abandoned, its result dropped.
                    Err(_) => Err(TaskError::timed_out(limit)),
                },
            }
        }
    };
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

/// A CPU task's attempt, on this (rayon) thread, its output encoded.
fn run_cpu(
    served: &Arc<Served>,
    node: usize,
    params: &[u8],
    inputs: Vec<(usize, Input)>,
) -> Result<Vec<u8>, TaskError> {
    let slots = served.slots(node, params, inputs).map_err(permanent)?;
    let Call::Task(call) = &served.plan.calls[node] else {
        return Err(permanent("only task nodes are run by workers".into()));
    };
    let value = match catch_unwind(AssertUnwindSafe(|| call(&slots))) {
        Ok(Called::Done(result)) => result?,
        Ok(Called::Pending(_)) => {
            return Err(permanent("a CPU task returned a future".into()));
        }
        Err(panic) => return Err(panicked(&*panic)),
    };
    encode(&served.plan, node, &value)
}

/// An IO task's attempt: inputs decoded and the output encoded on rayon, the call on
/// this tokio task, within its timeout.
async fn run_io(
    served: &Arc<Served>,
    node: usize,
    params: &Arc<[u8]>,
    inputs: Vec<(usize, Input)>,
) -> Result<Vec<u8>, TaskError> {
    let slots = {
        let (served, params) = (Arc::clone(served), Arc::clone(params));
        on_rayon(move || served.slots(node, &params, inputs).map_err(permanent)).await?
    };
    let Call::Task(call) = &served.plan.calls[node] else {
        return Err(permanent("only task nodes are run by workers".into()));
    };
    let value = match catch_unwind(AssertUnwindSafe(|| call(&slots))) {
        Ok(Called::Done(result)) => result?,
        Ok(Called::Pending(future)) => {
            let future = crate::exec::caught(future);
            let limit = served.plan.graph.info(node).timeout;
            match limit {
                None => future.await?,
                Some(limit) => tokio::time::timeout(limit, future)
                    .await
                    .map_err(|_| TaskError::timed_out(limit))??,
            }
        }
        Err(panic) => return Err(panicked(&*panic)),
    };
    let served = Arc::clone(served);
    on_rayon(move || encode(&served.plan, node, &value)).await
}

/// `value` (node `node`'s), encoded for the outputs table.
fn encode(plan: &Plan, node: usize, value: &Value) -> Result<Vec<u8>, TaskError> {
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
    rayon::spawn(move || {
        let _ = sent.send(catch_unwind(AssertUnwindSafe(f)));
    });
    match result.await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(panicked(&*panic)),
        Err(_) => Err(TaskError::msg("the attempt's thread went away")),
    }
}

fn permanent(message: String) -> TaskError {
    TaskError::permanent(TaskError::msg(message))
}

fn panicked(panic: &(dyn Any + Send)) -> TaskError {
    TaskError::panicked(panic)
}
