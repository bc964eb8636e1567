//! A durable run: claiming it in its store, loading what it can resume from, running
//! the rest with a checkpoint writer, and recording how it ended.
//!
//! Every call into the store is made on tokio's blocking pool (a SQLite store may wait
//! seconds for another process's write lock) and is panic-safe: a store that panics
//! fails the run with [`Error::Store`], it never unwinds through the runner.

use std::collections::HashMap;
use std::sync::Arc;

use super::cache::Cache;
use super::{RunOutcome, Stored};
use crate::error::Error;
use crate::exec::{CacheWarnings, Extras, Sink};
use crate::plan::{self, Call, Params, Plan};
use crate::report::RunReport;
use crate::store::{Checkpoint, Claim, Lease, RunRecord, Store, StoreError, guarded, new_owner};
use crate::value::Value;

/// What a durable run starts from: its parameters, the restored nodes' values, and its
/// lease on the run's record.
struct Prepared<P> {
    params: P,
    restored: Vec<(usize, Value)>,
    nested: crate::exec::Nested,
    lease: Lease,
    location: String,
}

/// Runs (`params` given) or resumes a durable run; see [`Runner::run`](super::Runner).
pub(super) async fn run<P, O>(
    runner: super::Runner<P, O, Stored>,
    params: Option<P>,
) -> RunOutcome<O>
where
    P: Params + serde::Serialize + serde::de::DeserializeOwned,
    O: Send + Sync + 'static,
{
    let super::Runner {
        plan,
        options,
        stop,
        state: stored,
        progress,
        cache,
        resources,
        ..
    } = runner;
    let progress = progress.into_inner();
    if plan.resources > 0 && resources.is_none() {
        let workflow = plan.graph.name().to_owned();
        return RunOutcome {
            result: Err(Error::MissingResources { workflow }),
            report: RunReport::not_started(plan.graph.name()),
            run_id: None,
        };
    }
    let name = plan.graph.name().to_owned();
    if params.is_none() && stored.id.is_none() {
        return RunOutcome {
            result: Err(Error::NoRunId {
                workflow: name.clone(),
            }),
            report: RunReport::not_started(&name),
            run_id: None,
        };
    }
    let id = stored
        .id
        .unwrap_or_else(|| crate::run_id::new_run_id(&name));
    let refused = |error| RunOutcome {
        result: Err(error),
        report: RunReport::not_started(&name),
        run_id: Some(id.clone()),
    };
    if let Err(error) = crate::run_id::check_run_id(&id) {
        return refused(error);
    }
    let Ok(tokio) = tokio::runtime::Handle::try_current() else {
        return refused(Error::NoRuntime {
            workflow: name.clone(),
        });
    };
    let (store, format) = (stored.store, stored.format);
    let preparing = {
        let (plan, store, id) = (Arc::clone(&plan), Arc::clone(&store), id.clone());
        tokio.spawn_blocking(move || prepare(&plan, store, &id, params))
    };
    let prepared = match preparing.await {
        Ok(Ok(prepared)) => prepared,
        Ok(Err(error)) => return refused(error),
        Err(error) => return refused(blocking_failed(&*store, "preparing the run", error)),
    };
    let Prepared {
        params,
        restored,
        nested,
        lease,
        location,
    } = prepared;
    let warnings = Arc::new(CacheWarnings::default());
    let (sink, flushed) = match Sink::start(lease, stop.clone(), Arc::clone(&warnings)) {
        Ok(started) => started,
        Err(error) => return refused(Error::Store(error)),
    };
    // Cached tasks look up and save their results in the run's store, through its
    // writer, or in the cache it was given.
    let (cache, finishing) = match cache {
        Some(cache) => Cache::own(&plan, Some(cache), id.clone()),
        None => Cache::shared(&plan, &store, &id, &sink, warnings),
    };
    let extras = Extras {
        run_id: Some(id.clone()),
        resources,
        restored,
        nested,
        format,
        sink: Some(sink),
        cache,
        progress,
    };
    let (result, report, end) =
        super::workflow::run_plan(Arc::clone(&plan), options, stop, params, true, extras).await;
    // Until the run's end is recorded, a dropped run future drops the output behind
    // the boundary.
    let mut ending = super::Ending(Some(result));
    let mut report = report.unwrap_or_else(|| RunReport::not_started(&name));
    let lease = match flushed.await {
        Ok((saved, Some(lease))) => {
            if let Err(error) = saved {
                fail(ending.result(), Error::Store(error));
            }
            Some(lease)
        }
        Ok((_, None)) | Err(_) => {
            fail(
                ending.result(),
                Error::Store(StoreError {
                    location,
                    message: "the checkpoint writer died before confirming that every \
                              checkpoint was saved; what it saved is intact: resume the run"
                        .into(),
                }),
            );
            None
        }
    };
    if let Some(finishing) = finishing {
        finishing.finish(&mut report).await;
    }
    if let Some(lease) = lease {
        let status = crate::error::run_status(ending.result());
        let json = serde_json::to_string(&report).unwrap_or_default();
        let wall = report.wall;
        let finishing = tokio.spawn_blocking(move || {
            let store = Arc::clone(lease.store());
            let (run, owner) = (lease.run(), lease.owner());
            let ended = guarded(&*store, "finish", || {
                store.finish(run, owner, status, wall, &json)
            });
            if ended.is_ok() {
                lease.given_up();
            } // else the lease is dropped here, which releases it
            ended
        });
        let ended = match finishing.await {
            Ok(ended) => ended.map_err(Error::Store),
            Err(error) => Err(blocking_failed(&*store, "recording the run's end", error)),
        };
        if let (Err(error), true) = (ended, ending.result().is_ok()) {
            fail(ending.result(), error);
        }
    }
    // Once the result is final: a store that failed at the end fails the run.
    let result = ending.into_result();
    if let Some(end) = end {
        end.log(&result);
    }
    RunOutcome {
        result,
        report,
        run_id: Some(id),
    }
}

/// Work on the blocking pool that panicked or was cancelled, as a store error.
fn blocking_failed(store: &dyn Store, what: &str, error: tokio::task::JoinError) -> Error {
    let location = guarded(store, "location", || Ok(store.location()))
        .unwrap_or_else(|_| "(unknown)".to_owned());
    let why = match error.try_into_panic() {
        Ok(payload) => format!("panicked: {}", crate::task::panic_message(&*payload)),
        Err(error) => error.to_string(),
    };
    Error::Store(StoreError {
        location,
        message: format!("{what} failed: {why}"),
    })
}

/// Claims the run and loads what it can resume from: the parameters (given, or saved
/// when resuming) and the value of every node it restores. Any mismatch refuses the
/// run before anything runs or is written (the claim is then released).
fn prepare<P>(
    plan: &Plan,
    store: Arc<dyn Store>,
    id: &str,
    params: Option<P>,
) -> Result<Prepared<P>, Error>
where
    P: serde::Serialize + serde::de::DeserializeOwned,
{
    let graph = &plan.graph;
    let Some(durable) = &plan.durable else {
        return Err(Error::NotDurable {
            workflow: graph.name().to_owned(),
        });
    };
    let parameters = |message: String| Error::Checkpoint {
        run: id.to_owned(),
        node: "(parameters)".into(),
        message,
    };
    let input = match &params {
        Some(params) => Some(serde_json::to_vec(params).map_err(|e| parameters(e.to_string()))?),
        None => None,
    };
    let record = input.as_ref().map(|input| RunRecord {
        id: id.to_owned(),
        workflow: graph.name().to_owned(),
        fingerprint: durable.fingerprint.clone(),
        input: input.clone(),
        graph: durable.shape.clone(),
    });
    let location = guarded(&*store, "location", || Ok(store.location())).map_err(Error::Store)?;
    let owner = new_owner();
    let claim = guarded(&*store, "claim", || {
        store.claim(id, &owner, record.as_ref())
    })
    .map_err(Error::Store)?;
    let existing = match claim {
        Claim::Unknown => return Err(Error::UnknownRun { run: id.to_owned() }),
        Claim::InUse { owner } => {
            return Err(Error::RunInUse {
                run: id.to_owned(),
                owner,
            });
        }
        Claim::Started => None,
        Claim::Taken(existing) => Some(existing),
    };
    // From here on, an early return drops the lease, which releases the run.
    let lease = Lease::new(Arc::clone(&store), id.to_owned(), owner);
    let (params, restored, nested) = match (existing, params) {
        (None, Some(params)) => (params, Vec::new(), crate::exec::Nested::new()),
        (None, None) => return Err(Error::UnknownRun { run: id.to_owned() }),
        (Some(existing), params) => {
            if existing.fingerprint != durable.fingerprint {
                return Err(Error::FingerprintMismatch {
                    run: id.to_owned(),
                    changes: plan::shape_diff(&existing.graph, &durable.shape),
                });
            }
            let params = match (params, &input) {
                (Some(params), Some(input)) => {
                    if !same_input(&existing.input, input) {
                        return Err(Error::InputChanged { run: id.to_owned() });
                    }
                    params
                }
                _ => serde_json::from_slice(&existing.input)
                    .map_err(|e| parameters(e.to_string()))?,
            };
            let saved =
                guarded(&*store, "checkpoints", || store.checkpoints(id)).map_err(Error::Store)?;
            let Restorable {
                restored,
                nested,
                stale,
            } = restorable(plan, id, saved)?;
            // Checkpoints computed from inputs that now run again would be restored by
            // a later resume if this run did not replace them: they go now.
            if !stale.is_empty() {
                guarded(&*store, "discard", || {
                    store.discard(id, lease.owner(), &stale)
                })
                .map_err(Error::Store)?;
            }
            (params, restored, nested)
        }
    };
    Ok(Prepared {
        params,
        restored,
        nested,
        lease,
        location,
    })
}

/// Whether two encodings of parameters mean the same: compared as JSON values, whose
/// maps are compared by key, so a `HashMap` saved in one order matches itself in
/// another.
pub(crate) fn same_input(stored: &[u8], given: &[u8]) -> bool {
    let value = |bytes| serde_json::from_slice::<serde_json::Value>(bytes).ok();
    match (value(stored), value(given)) {
        (Some(stored), Some(given)) => stored == given,
        _ => stored == given,
    }
}

/// What a resumed run starts from.
struct Restorable {
    /// The restored nodes' values.
    restored: Vec<(usize, Value)>,
    /// Per nested run (fan-out items, durable sub-workflows) by path, the nodes it
    /// restores as it starts, decoded.
    nested: crate::exec::Nested,
    /// The names of the checkpoints not restored (stale: to be discarded).
    stale: Vec<String>,
}

/// The nodes a resumed run restores from `saved`, decoded. A checkpoint is restored
/// only if every input its node read is restored too (parameters always are): a node
/// that read an input which runs again runs again, and its new checkpoint replaces
/// the old one. Nodes are in topological order, so one pass decides. Also returns the
/// names of the checkpoints not restored (stale: to be discarded).
fn restorable(plan: &Plan, id: &str, saved: Vec<Checkpoint>) -> Result<Restorable, Error> {
    let graph = &plan.graph;
    let codec_of = |node: usize| plan.codecs.get(node).copied().flatten();
    // Checkpointed nodes first, so that they win a name another node shares.
    let mut by_name: HashMap<&str, usize> = HashMap::with_capacity(graph.len());
    for node in (0..graph.len()).filter(|&n| codec_of(n).is_some()) {
        by_name.insert(graph.name_of(node), node);
    }
    for node in 0..graph.len() {
        by_name.entry(graph.name_of(node)).or_insert(node);
    }
    let mut by_node: Vec<Option<Checkpoint>> = (0..graph.len()).map(|_| None).collect();
    // Nested runs' checkpoints (their fan-out or sub-workflow node checked).
    let mut nested: Vec<Checkpoint> = Vec::new();
    for checkpoint in saved {
        let bad = |message: &str| Error::Checkpoint {
            run: id.to_owned(),
            node: checkpoint.node.clone(),
            message: message.to_owned(),
        };
        let Some(&node) = by_name.get(checkpoint.node.as_str()) else {
            nested_in(plan, &checkpoint.node).ok_or_else(|| bad("no node of that name"))?;
            nested.push(checkpoint);
            continue;
        };
        if codec_of(node).is_none() {
            return Err(bad("the node is not checkpointed"));
        }
        by_node[node] = Some(checkpoint);
    }
    let mut stale = Vec::new();
    let checkpoints = std::cell::RefCell::new(by_node);
    let (values, restored) = plan::restore(
        plan,
        |node| checkpoints.borrow()[node].is_some() && codec_of(node).is_some(),
        |node| {
            let checkpoint = checkpoints.borrow_mut()[node].take().expect("checked");
            let codec = codec_of(node).expect("checked");
            super::nested::decode(id, &checkpoint, |format| {
                (codec.decode)(&checkpoint.data, format)
            })
        },
        |node| stale.push(graph.name_of(node).to_owned()),
    )?;
    // Nested runs' checkpoints, decided at every depth by the same rule.
    let mut rows = super::nested::NestedRows::new(id, nested);
    rows.walk(plan, "", &restored)?;
    stale.append(&mut rows.stale);
    Ok(Restorable {
        restored: values,
        nested: rows.restored,
        stale,
    })
}

/// The fan-out or sub-workflow node of `plan` whose nested runs a checkpoint named
/// `name` belongs to: `each` for `each[17].sum`, `stats` for `stats.total`.
fn nested_in(plan: &Plan, name: &str) -> Option<usize> {
    let graph = &plan.graph;
    name.match_indices(['[', '.']).find_map(|(at, _)| {
        let owner = &name[..at];
        (0..graph.len()).find(|&node| {
            graph.name_of(node) == owner && matches!(plan.calls[node], Call::FanOut(_))
        })
    })
}

/// Fails a run whose end went wrong with `error`: its output, if it had one, is
/// dropped behind the boundary (see `contain::drop_contained`), not in the caller's
/// future.
fn fail<O>(result: &mut Result<O, Error>, error: Error) {
    if let Ok(output) = std::mem::replace(result, Err(error)) {
        crate::contain::drop_contained("the output of a run whose end failed", output);
    }
}
