//! The distributed commands (feature `postgres`): `worker`, and `run`, `runs` and
//! `show` with `--distributed`.

use crate::dist::{Cluster, Worker};
use crate::plan::{Params, Workflow};
use crate::report::RunReport;

use super::Failure;

/// `worker`: serves `workflow`'s distributed runs until Ctrl-C, then finishes the
/// tasks it holds and prints what it did.
pub(super) async fn work<P, O>(
    workflow: &Workflow<P, O>,
    serve: &super::Serve<P, O>,
    url: &str,
    slots: Option<usize>,
) -> Result<(), Failure>
where
    P: Params + serde::de::DeserializeOwned,
    O: Send + Sync + 'static,
{
    let cluster = Cluster::connect(url).map_err(|e| e.to_string())?;
    let mut worker = serve(Worker::new(cluster), workflow).map_err(|e| e.to_string())?;
    if let Some(slots) = slots {
        worker = worker.slots(slots);
    }
    eprintln!(
        "worker {} serving `{}`; Ctrl-C stops it",
        worker.id(),
        workflow.graph().name()
    );
    let stats = worker
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!(
                "Ctrl-C: finishing the tasks this worker holds (Ctrl-C again to leave them: \
                 other workers run them once their leases expire)"
            );
            tokio::spawn(async {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("Ctrl-C again: leaving the tasks this worker holds");
                    std::process::exit(130);
                }
            });
        })
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "claimed {} attempt(s), committed {}, lost {}",
        stats.claimed, stats.committed, stats.lost
    );
    Ok(())
}

/// `run --distributed`: submits a run (a fresh id unless given) and waits for it.
pub(super) async fn submit_and_wait<P, O>(
    workflow: &Workflow<P, O>,
    url: &str,
    run_id: Option<String>,
    input: impl FnOnce() -> P,
    done: impl FnOnce(O, &RunReport),
) -> Result<(), Failure>
where
    P: Params + serde::Serialize,
    O: Send + Sync + 'static,
{
    let cluster = Cluster::connect(url).map_err(|e| e.to_string())?;
    let name = workflow.graph().name();
    let id = run_id.unwrap_or_else(|| crate::run_id::new_run_id(name));
    cluster
        .submit(workflow, &id, input())
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "run `{id}` submitted to {}; waiting for the workers",
        cluster.location()
    );
    let served = cluster.runs(Some(workflow.plan.graph.name())).await;
    if let Ok(runs) = served
        && runs.iter().any(|run| run.id == id && run.workers == 0)
    {
        eprintln!("no worker of this build is at work yet: start some with `worker`");
    }
    let output = tokio::select! {
        output = cluster.wait(workflow, &id) => output,
        _ = tokio::signal::ctrl_c() => {
            return Err(format!(
                "stopped waiting: run `{id}` goes on in the cluster (`runs --distributed` \
                 shows it, `run --distributed --run-id {id}` waits for it again)"
            ));
        }
    };
    let output = output.map_err(|e| format!("{e}\n(run `{id}`)"))?;
    done(output, &RunReport::not_started(name));
    eprintln!("run `{id}` succeeded");
    Ok(())
}

/// `runs --distributed`: the cluster's runs of `workflow`, the last submitted first;
/// a running run no worker of its build serves says so.
pub(super) async fn runs<P, O>(workflow: &Workflow<P, O>, url: &str) -> Result<(), Failure> {
    let cluster = Cluster::connect(url).map_err(|e| e.to_string())?;
    let runs = cluster
        .runs(Some(workflow.plan.graph.name()))
        .await
        .map_err(|e| e.to_string())?;
    let this_build = workflow.plan.durable.as_ref().map(|d| d.build.as_str());
    out_raw!(
        "{}",
        super::tables::distributed_runs_table(&runs, this_build)
    );
    Ok(())
}

/// `show RUN --distributed`: a distributed run's tasks, the worker of each attempt.
pub(super) async fn show(url: &str, run_id: &str) -> Result<(), Failure> {
    let cluster = Cluster::connect(url).map_err(|e| e.to_string())?;
    let run = cluster
        .status(run_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no distributed run `{run_id}` in {}", cluster.location()))?;
    out_raw!("{}", super::tables::distributed_run_table(&run));
    Ok(())
}

/// `delete --distributed`: the cluster's runs of `workflow` that ended more than
/// `days` days ago go, with their tasks and outputs.
pub(super) async fn delete<P, O>(
    workflow: &Workflow<P, O>,
    url: &str,
    days: u32,
) -> Result<(), Failure> {
    let cluster = Cluster::connect(url).map_err(|e| e.to_string())?;
    let age = std::time::Duration::from_secs(u64::from(days) * 86_400);
    let deleted = cluster
        .delete_ended(workflow.plan.graph.name(), age)
        .await
        .map_err(|e| e.to_string())?;
    out!("deleted {deleted} distributed run(s)");
    Ok(())
}
