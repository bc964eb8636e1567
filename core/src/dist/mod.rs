//! Distributed runs (feature `postgres`): one run's tasks executed by worker processes
//! on any number of machines, coordinated through PostgreSQL.
//!
//! A [`Cluster`] is the database. [`Cluster::submit`] records a run and one row per
//! task, the tasks with no task input `ready`; any [`Worker`] serving the same build of
//! the workflow (its fingerprint) claims ready tasks in batches (`FOR UPDATE SKIP
//! LOCKED`, a lease timed by the server's clock), runs them — CPU tasks on its rayon
//! pool, IO tasks on its tokio runtime — and commits their ends in batches, each end
//! fenced by the attempt it claimed: the outputs, the tasks' ends, their successors'
//! counts, those now ready, and the runs' ends. [`Cluster::wait`] returns the run's
//! output; [`Cluster::status`] and [`Cluster::runs`] show runs and their tasks.
//!
//! A `for` or a sub-workflow is distributed item by item: each item's tasks are rows of
//! their own (named `fan[3].task`) that any worker runs, and the fan-out gathers them
//! as one process does. `#[task(concurrency = N)]` holds across a run's workers, and a
//! cached task (`#[task(cache)]`) looks its result up on its worker.
//!
//! An `if` or `match` runs as in one process: a worker runs its decision like a task,
//! the tasks of the arms it did not take end `not_taken` without running (in the same
//! commit), and a worker gives the branch the taken arm's value. A failure that a
//! `match` reads (`Outcome::Ok(v) => …, _ => …`) does not fail the run.
//!
//! Guarantees: every task executes at least once (a worker that dies or stalls past
//! its lease loses the task to another), and its output is committed exactly once (a
//! late commit of a lost attempt matches no row and is dropped). A task with side
//! effects should make them idempotent: [`current_attempt`] gives it the run id, its
//! node and the attempt.
//!
//! Refused at [`Worker::serve`] and [`Cluster::submit`] with
//! [`Error::NotDistributable`], with the reason: a workflow that is not `#[durable]`, a
//! nested `for`.

mod capped;
mod cascade;
mod commit;
mod committer;
mod current;
mod decided;
mod execute;
mod items;
mod lease;
mod protocol;
mod read;
mod reading;
mod runs;
mod served;
mod start;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::Error;
use crate::plan::{Call, Params, Plan, Workflow};
use crate::store::postgres::connect::{self, SslMode, Target};
use crate::store::{PostgresStore, StoreError};
use crate::task::Kind;

pub use current::{AttemptId, current_attempt};
pub use worker::{Worker, WorkerStats};

/// A PostgreSQL database where distributed runs are submitted, executed and waited
/// for. Cheap to clone: each use opens its own connection.
#[derive(Clone)]
pub struct Cluster {
    target: Arc<Target>,
    tls: Option<MakeRustlsConnect>,
    /// Whether a submission found the tasks' table analyzed (or analyzed it): later
    /// ones do not look again.
    analyzed: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("url", &self.target.shown)
            .finish_non_exhaustive()
    }
}

/// A connection and the notifications it receives.
type Listening = (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::Notification>,
);

/// What a distributed run is, as [`Cluster::status`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DistributedRun {
    /// The run's id.
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// Its tasks: node, state, attempts, the worker of each attempt, the error.
    pub tasks: Vec<DistributedTask>,
}

/// A distributed run as [`Cluster::runs`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DistributedRunSummary {
    /// The run's id.
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// When it was submitted (ms since the Unix epoch, the server's clock).
    pub submitted_ms: u64,
    /// When its last task ended.
    pub ended_ms: Option<u64>,
    /// How many tasks it has.
    pub tasks: u32,
    /// How many of them have not ended.
    pub unfinished: u32,
    /// How many of them failed (their own attempts; not those skipped or not taken,
    /// nor failures a `match` handled).
    pub failed: u32,
    /// How many workers at work now serve its build (its fingerprint): a running run
    /// with none waits for one (a worker of another build never takes its tasks).
    pub workers: u32,
    /// The fingerprint of the build that submitted it.
    pub fingerprint: String,
}

/// One task of a [`DistributedRun`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DistributedTask {
    /// The node's name.
    pub node: String,
    /// Its state: `waiting` (for its inputs), `ready`, `running`, `done`, `failed`,
    /// `skipped` (an input it requires did not succeed), `not_taken` (in an arm of an
    /// `if` or `match` that was not taken) or `cancelled`.
    pub state: String,
    /// How many attempts were claimed: the value of an `if` or `match` is claimed once
    /// (a worker encodes it), a fan-out's own row twice (to make its items, then to
    /// gather them).
    pub attempts: u32,
    /// The worker (`host:pid:tag`) that claimed each attempt, the first first.
    pub workers: Vec<String>,
    /// Why its last failed attempt failed: its last attempt's error, or for a task
    /// that succeeded after a retry, the error of the attempt before.
    pub error: Option<String>,
    /// Whether a `match` on its outcome handled its failure (it does not fail the run).
    pub handled: bool,
    /// For a cached task whose result was loaded (`#[task(cache)]`), the run that
    /// computed it.
    pub cached_from: Option<String>,
}

impl Cluster {
    /// The database at `url` (as [`PostgresStore::connect`] reads it: TLS modes, the
    /// password never shown); its tables are checked, created or migrated.
    ///
    /// # Errors
    /// As [`PostgresStore::connect`].
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        // The store makes the schema (and refuses a newer one) before anything else.
        drop(PostgresStore::connect(url)?);
        let target = connect::parse(url).map_err(|message| StoreError {
            location: connect::redact(url),
            message,
        })?;
        let tls = match target.ssl {
            SslMode::Disable => None,
            _ => Some(MakeRustlsConnect::new(connect::tls(&target).map_err(
                |message| StoreError {
                    location: target.shown.clone(),
                    message,
                },
            )?)),
        };
        let mut target = target;
        // A worker that stalls inside a transaction (SIGSTOP, a frozen VM, a network
        // partition) must not hold its locks for long: the server ends such a session,
        // rolling it back; no statement waits more than a lease's worth for a lock.
        target.config.options(
            "-c idle_in_transaction_session_timeout=10000 -c lock_timeout=10000 \
             -c statement_timeout=60000",
        );
        target.config.keepalives(true);
        target.config.keepalives_idle(Duration::from_secs(10));
        Ok(Self {
            target: Arc::new(target),
            tls,
            analyzed: Arc::default(),
        })
    }

    /// Where the cluster's database is, without its password.
    pub fn location(&self) -> &str {
        &self.target.shown
    }

    /// Submits a run of `workflow` with `params` under `run_id`: recorded with its tasks
    /// in one transaction. Submitting the same id again with the same parameters and
    /// build changes nothing (the run is the first one).
    ///
    /// # Errors
    /// [`Error::NotDistributable`] for a workflow this version cannot distribute;
    /// [`Error::InputChanged`] or [`Error::FingerprintMismatch`] for an id submitted
    /// before with other parameters or by another build; [`Error::Store`] if the
    /// database fails (nothing is then recorded).
    pub async fn submit<P, O, R>(
        &self,
        workflow: &Workflow<P, O, R>,
        run_id: &str,
        params: P,
    ) -> Result<(), Error>
    where
        P: Params + serde::Serialize,
        R: Params,
    {
        crate::run_id::check_run_id(run_id)?;
        let plan = &workflow.plan;
        // The workflow as `workflow!` splits it, so that a resource is never taken for a
        // parameter and saved.
        if R::LEN != plan.resources {
            return Err(Error::MissingResources {
                workflow: plan.graph.name().to_owned(),
            });
        }
        let fingerprint = distributable(plan)?;
        let input = serde_json::to_vec(&params).map_err(|error| Error::Checkpoint {
            run: run_id.to_owned(),
            node: "(parameters)".into(),
            message: error.to_string(),
        })?;
        let mut client = self.client().await?;
        runs::submit(&mut client, plan, fingerprint, run_id, &input)
            .await
            .map_err(|failure| failure.into_error(&self.target.shown, run_id))?;
        runs::analyze_once(&client, &self.analyzed).await;
        Ok(())
    }

    /// Waits for run `run_id` of `workflow` to end and returns its output (decoded),
    /// or its failure. Wakes on the database's notifications, and polls every
    /// second in case one was lost. Failures are named as one process names them
    /// (`task[3]` for a task of a `for`'s item); a task's error is rebuilt from its
    /// text, so its source cannot be downcast as in one process.
    ///
    /// # Errors
    /// [`Error::Failed`] naming the tasks that failed; [`Error::Cancelled`] for a
    /// run [cancelled](Self::cancel) (none of its tasks failed); [`Error::UnknownRun`];
    /// [`Error::Store`] if the database fails.
    pub async fn wait<P, O, R>(
        &self,
        workflow: &Workflow<P, O, R>,
        run_id: &str,
    ) -> Result<O, Error>
    where
        O: Send + Sync + 'static,
    {
        let (mut client, mut notes) = self.listening("aqueduct_done").await?;
        let mut pause = Duration::from_millis(100);
        let fingerprint = distributable(&workflow.plan)?;
        loop {
            let output = workflow.plan.graph.output();
            match read::ended(&client, run_id, output, fingerprint).await {
                Ok(Some(ended)) => return ended.into_output(&workflow.plan, run_id),
                Ok(None) => {}
                // The connection went away (a server restart): wait for it, a little
                // longer each time; the run goes on without us.
                Err(runs::Failure::Sql(error))
                    if client.is_closed() || protocol::transient(&error) =>
                {
                    tracing::warn!(error = %explain(&error), "waiting for the cluster to come back");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                    if let Ok(again) = self.listening("aqueduct_done").await {
                        (client, notes) = again;
                    }
                    continue;
                }
                Err(failure) => return Err(failure.into_error(&self.target.shown, run_id)),
            }
            tokio::select! {
                _ = notes.recv() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Cancels run `run_id`: no task of it starts any more (the attempts running end
    /// and commit), and [`wait`](Self::wait) returns [`Error::Cancelled`] naming the
    /// tasks that never ran. Returns `false` if the run is not running (unknown, or
    /// ended already: nothing changes).
    ///
    /// # Errors
    /// [`StoreError`] if the database fails.
    pub async fn cancel(&self, run_id: &str) -> Result<bool, StoreError> {
        let mut client = self.reader().await?;
        runs::cancel(&mut client, run_id)
            .await
            .map_err(|error| self.store_error(explain(&error)))
    }

    /// Deletes the runs of the workflow named `workflow` that ended more than `age`
    /// ago (by the server's clock), with their tasks and outputs; runs still running
    /// stay. Returns how many went.
    ///
    /// # Errors
    /// [`StoreError`] if the database fails.
    pub async fn delete_ended(&self, workflow: &str, age: Duration) -> Result<u64, StoreError> {
        let client = self.reader().await?;
        let now: i64 = client
            .query_one(&format!("SELECT {}", crate::store::postgres::NOW_MS), &[])
            .await
            .map_err(|error| self.store_error(explain(&error)))?
            .get(0);
        let before = now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
        runs::delete_ended(&client, workflow, before)
            .await
            .map_err(|error| self.store_error(explain(&error)))
    }

    /// The run `run_id` and its tasks, if it was submitted.
    ///
    /// # Errors
    /// [`StoreError`] if the database fails.
    pub async fn status(&self, run_id: &str) -> Result<Option<DistributedRun>, StoreError> {
        let client = self.reader().await?;
        read::status(&client, run_id)
            .await
            .map_err(|error| self.store_error(explain(&error)))
    }

    /// The runs of the workflow named `workflow` (of every workflow if `None`), the
    /// last submitted first.
    ///
    /// # Errors
    /// [`StoreError`] if the database fails.
    pub async fn runs(
        &self,
        workflow: Option<&str>,
    ) -> Result<Vec<DistributedRunSummary>, StoreError> {
        let client = self.reader().await?;
        read::runs(&client, workflow)
            .await
            .map_err(|error| self.store_error(explain(&error)))
    }

    /// A connection listening on `channel`, and its notifications.
    pub(super) async fn listening(&self, channel: &str) -> Result<Listening, Error> {
        let (client, notes) = self.listener().await?;
        client
            .batch_execute(&format!("LISTEN {channel}"))
            .await
            .map_err(|error| self.sql_error(&error))?;
        Ok((client, notes))
    }

    /// A connection to read with, or why not.
    async fn reader(&self) -> Result<tokio_postgres::Client, StoreError> {
        self.client().await.map_err(|error| match error {
            Error::Store(error) => error,
            other => self.store_error(other.to_string()),
        })
    }

    async fn client(&self) -> Result<tokio_postgres::Client, Error> {
        let (client, _notes) = self.listener().await?;
        Ok(client)
    }

    /// A connection, and the notifications it receives (after a `LISTEN`).
    async fn listener(&self) -> Result<Listening, Error> {
        let (sent, notes) = tokio::sync::mpsc::unbounded_channel();
        let client = match &self.tls {
            None => {
                let (client, connection) = self
                    .target
                    .config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|error| self.connect_error(&error))?;
                tokio::spawn(drive(connection, sent));
                client
            }
            Some(tls) => {
                let (client, connection) = self
                    .target
                    .config
                    .connect(tls.clone())
                    .await
                    .map_err(|error| self.connect_error(&error))?;
                tokio::spawn(drive(connection, sent));
                client
            }
        };
        Ok((client, notes))
    }

    fn store_error(&self, message: String) -> StoreError {
        StoreError {
            location: self.target.shown.clone(),
            message: connect::redact(&message),
        }
    }

    fn connect_error(&self, error: &tokio_postgres::Error) -> Error {
        Error::Store(self.store_error(format!("cannot connect: {}", explain(error))))
    }

    fn sql_error(&self, error: &tokio_postgres::Error) -> Error {
        Error::Store(self.store_error(explain(error)))
    }
}

/// Drives a connection, passing its notifications on, until it closes.
async fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    notes: tokio::sync::mpsc::UnboundedSender<tokio_postgres::Notification>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let message = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
        match message {
            Some(Ok(tokio_postgres::AsyncMessage::Notification(note))) => {
                let _ = notes.send(note);
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => {
                tracing::warn!(error = %explain(&error), "a cluster connection closed");
                return;
            }
            None => return,
        }
    }
}

pub(super) use connect::explain;

/// The plan's build (the fingerprint of its shape and its tasks' code, which runs and
/// workers are matched by), if this version can distribute it: durable, every node a
/// parameter, a task, an `if` or `match` (its decision and value), or a fan-out or
/// sub-workflow whose body is of those (its output not a parameter).
fn distributable(plan: &Plan) -> Result<&str, Error> {
    let workflow = plan.graph.name().to_owned();
    let refuse = |reason: String| Error::NotDistributable {
        workflow: workflow.clone(),
        reason,
    };
    let Some(durable) = &plan.durable else {
        return Err(refuse(
            "its values must be saved between workers: declare it `#[durable]`".into(),
        ));
    };
    let graph = &plan.graph;
    for node in 0..graph.len() {
        let name = graph.name_of(node);
        match &plan.calls[node] {
            Call::Param => continue,
            Call::Task(_) | Call::Branch(_) => {
                tasks_only(plan, node).map_err(|why| refuse(format!("node `{name}` {why}")))?
            }
            Call::FanOut(def) => {
                let body = &def.body;
                for part in 0..body.graph.len() {
                    if !matches!(body.calls[part], Call::Param) {
                        let inner = body.graph.name_of(part);
                        tasks_only(body, part).map_err(|why| {
                            refuse(format!("node `{inner}` of `{name}`'s body {why}"))
                        })?;
                    }
                }
                if body.graph.kind(body.graph.output()) == Kind::Param
                    || plan.codecs[node].is_none()
                {
                    return Err(refuse(format!(
                        "node `{name}` gives back one of its body's parameters, which workers \
                         do not save"
                    )));
                }
            }
        }
    }
    if graph.kind(graph.output()) == Kind::Param {
        return Err(refuse(
            "it returns a parameter: there is no task to run".into(),
        ));
    }
    Ok(&durable.build)
}

/// Whether node `node` of `plan` (a workflow's or a body's) is one workers run: a
/// task, a decision or the value of an `if` or `match`, not (in a body) a nested
/// `for`; its output saved. Why not.
fn tasks_only(plan: &Plan, node: usize) -> Result<(), String> {
    let info = plan.graph.info(node);
    match &plan.calls[node] {
        Call::Task(_) if matches!(info.kind, Kind::Cpu | Kind::Io | Kind::Decision) => {}
        Call::Branch(_) => {}
        Call::FanOut(_) => {
            return Err(
                "is a `for` or sub-workflow inside a `for`, which this version runs \
                        only in one process: make the inner loop a task of its own, or run \
                        the workflow with `Workflow::run`"
                    .into(),
            );
        }
        _ => return Err("is not a task, `if`, `match` or `for`".into()),
    }
    if plan.codecs[node].is_none() {
        return Err("is not checkpointed: workers pass values through the database".into());
    }
    Ok(())
}
