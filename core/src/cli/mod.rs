//! A command line for workflow binaries (feature `cli`).
//!
//! ```no_run
//! use aqueduct::prelude::*;
//!
//! #[task]
//! fn double(x: &u64) -> u64 { x * 2 }
//!
//! workflow! {
//!     #[durable]
//!     fn doubled(x: u64) -> u64 { double(&x) }
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     aqueduct::cli::Cli::new(doubled::workflow())
//!         .main(|| (21,), |out, _report| println!("{out}"))
//!         .await
//! }
//! ```
//!
//! gives the binary these commands (`run` when none is given):
//!
//! ```text
//! run [--store PATH] [--run-id ID] [--no-store]   run it, checkpointed in a SQLite file
//! resume RUN_ID [--store PATH]                    finish a run that stopped or crashed
//! runs [--store PATH] [--format table|json]       the run history
//! show RUN_ID [--store PATH] [--format table|json] one run's report
//! show RUN_ID --timeline | --html FILE          its tasks as bars on a time axis; a page
//! delete --older-than-days N [--store PATH]       forget old runs (not running ones)
//! delete --older-than-days N --distributed        forget the cluster's ended runs
//! cache list [--store PATH]                       cached tasks' results
//! cache clear [--task NAME] [--store PATH]        forget cached results
//! graph [--format mermaid|dot|json]               the workflow's graph
//! worker --database-url URL [--slots N]           run distributed runs' tasks (feature `postgres`)
//! run --distributed --database-url URL            submit a run to the workers and wait
//! runs --distributed --database-url URL           the cluster's runs of this workflow
//! show RUN_ID --distributed --database-url URL    a distributed run's tasks and workers
//! ```
//!
//! The store defaults to `<workflow>.db` in the working directory. A workflow with
//! cached tasks (`#[task(cache)]`) keeps their results in it too, durable or not (`run
//! --no-store` runs without it). A run shows a
//! progress bar on a terminal and a log line a second otherwise; Ctrl-C cancels it
//! cleanly, and a durable run cancelled or crashed resumes with `resume`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::plan::{Params, Workflow};
use crate::report::RunReport;
use crate::run::{RunOutcome, Runner};
use crate::store::{SqliteStore, Store};

mod tables;
mod ticker;

/// `println!` to stdout, quiet when stdout is closed (`show RUN | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `print!` to stdout, quiet when stdout is closed.
macro_rules! out_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod args;
#[cfg(feature = "postgres")]
mod dist;
mod params;
mod show;

#[cfg(feature = "postgres")]
use args::ClusterArg;
use args::{Args, CacheAction, Command, Format, Output, StoreArg};
use tables::cache_table;
use ticker::Ticker;

/// What the command line says it does (`--help`).
const ABOUT: &str = "Runs a workflow, resumes its runs, shows their history.";

/// A workflow binary's command line.
pub struct Cli<P, O> {
    /// The workflow, its resources' types forgotten: its runners come from
    /// [`Cli::runner`], which gives them.
    workflow: Workflow<P, O>,
    store: PathBuf,
    /// Makes the resources of each run, for a workflow with resources.
    resources: Option<Arc<Resources>>,
    /// Serves the workflow on a worker, with its resources if it has any.
    #[cfg(feature = "postgres")]
    serve: Arc<Serve<P, O>>,
}

/// Makes a run's resources.
type Resources = dyn Fn() -> crate::exec::Provide + Send + Sync;

/// Adds the workflow to a worker.
#[cfg(feature = "postgres")]
type Serve<P, O> = dyn Fn(crate::dist::Worker, &Workflow<P, O>) -> Result<crate::dist::Worker, crate::Error>
    + Send
    + Sync;

/// A command that could not be done, for the user.
type Failure = String;

impl<P, O> Cli<P, O>
where
    P: Params + serde::Serialize + serde::de::DeserializeOwned,
    O: Send + Sync + 'static,
{
    /// A command line for `workflow`, its store `<workflow name>.db` in the working
    /// directory.
    pub fn new<R: Params + crate::run::NoResources>(workflow: &Workflow<P, O, R>) -> Self {
        let store = PathBuf::from(format!("{}.db", workflow.graph().name()));
        let workflow = Workflow::from_plan(Arc::clone(&workflow.plan));
        Self {
            workflow,
            store,
            resources: None,
            #[cfg(feature = "postgres")]
            serve: Arc::new(|worker, workflow| worker.serve(workflow)),
        }
    }

    /// A command line for `workflow`, which has resources (`#[resource]`
    /// parameters): `resources` makes them, for each run or resume (a connection pool,
    /// a client), and once for a `worker`, whose tasks share clones of them. Commands
    /// that run nothing (`runs`, `show`, `graph`) never call it.
    pub fn with_resources<R>(
        workflow: &Workflow<P, O, R>,
        resources: impl Fn() -> R + Send + Sync + 'static,
    ) -> Self
    where
        R: Params + Clone + Sync,
    {
        let store = PathBuf::from(format!("{}.db", workflow.graph().name()));
        let resources = Arc::new(resources);
        #[cfg(feature = "postgres")]
        let serve: Arc<Serve<P, O>> = {
            let resources = Arc::clone(&resources);
            Arc::new(move |worker, workflow| {
                let split = Workflow::<P, O, R>::from_plan(Arc::clone(&workflow.plan));
                worker.serve_with(&split, resources())
            })
        };
        let make: Arc<Resources> = Arc::new(move || crate::run::provide::<P, R>(resources()));
        Self {
            workflow: Workflow::from_plan(Arc::clone(&workflow.plan)),
            store,
            resources: Some(make),
            #[cfg(feature = "postgres")]
            serve,
        }
    }

    /// A runner of the workflow, given its resources if it has any.
    fn runner(&self) -> Runner<P, O> {
        let runner = Runner::new(Arc::clone(&self.workflow.plan));
        match &self.resources {
            Some(make) => runner.provided(make()),
            None => runner,
        }
    }

    /// Where the store is when `--store` is not given.
    pub fn default_store(mut self, path: impl Into<PathBuf>) -> Self {
        self.store = path.into();
        self
    }

    /// Parses the process's arguments and does what they say. `input` makes a new
    /// run's parameters; `done` gets a successful run's output and report (for a run
    /// `--distributed`, a report with no task: `show RUN --distributed` lists them).
    /// Errors go to stderr, with a failure exit code.
    pub async fn main(
        self,
        input: impl FnOnce() -> P,
        done: impl FnOnce(O, &RunReport),
    ) -> ExitCode {
        self.main_from(std::env::args_os(), input, done).await
    }

    /// [`main`](Self::main) with the arguments given (the first is the program's name).
    pub async fn main_from(
        self,
        args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
        input: impl FnOnce() -> P,
        done: impl FnOnce(O, &RunReport),
    ) -> ExitCode {
        let parsed = args::command(&self.store)
            .try_get_matches_from(args)
            .and_then(|matches| <Args as clap::FromArgMatches>::from_arg_matches(&matches));
        match parsed {
            Ok(args) => self.exit(args.command, Some(input), done).await,
            Err(error) => usage(&error),
        }
    }

    /// [`main`](Self::main), with the workflow's parameters from the command line:
    /// `A` is a clap [`Args`](clap::Args) struct (`#[derive(clap::Args)]`, clap with its
    /// `derive` feature) that `input` turns into the parameters. `run` takes its
    /// arguments (`my_flow run --pages 30 --day 2026-11-28`, or without `run`, the
    /// default command), and `run --help` lists them. An argument named like one of the
    /// command line's own (`--store`, `--run-id`, `--no-store`, `--distributed`,
    /// `--database-url`) is refused.
    ///
    /// ```no_run
    /// use aqueduct::prelude::*;
    ///
    /// #[task]
    /// fn fetch(pages: &u32, day: &String) -> String {
    ///     format!("{pages} pages of {day}")
    /// }
    ///
    /// workflow! {
    ///     fn crawl(pages: u32, day: String) -> String {
    ///         fetch(&pages, &day)
    ///     }
    /// }
    ///
    /// /// What to crawl.
    /// #[derive(clap::Args)]
    /// struct Params {
    ///     /// How many pages.
    ///     #[arg(long, default_value_t = 10)]
    ///     pages: u32,
    ///     /// Which day, `YYYY-MM-DD`.
    ///     #[arg(long)]
    ///     day: String,
    /// }
    ///
    /// #[tokio::main]
    /// async fn main() -> std::process::ExitCode {
    ///     aqueduct::cli::Cli::new(crawl::workflow())
    ///         .main_args(|p: Params| (p.pages, p.day), |out, _| println!("{out}"))
    ///         .await
    /// }
    /// ```
    pub async fn main_args<A: clap::Args>(
        self,
        input: impl FnOnce(A) -> P,
        done: impl FnOnce(O, &RunReport),
    ) -> ExitCode {
        self.main_args_from(std::env::args_os(), input, done).await
    }

    /// [`main_args`](Self::main_args) with the arguments given (the first is the
    /// program's name).
    pub async fn main_args_from<A: clap::Args>(
        self,
        args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
        input: impl FnOnce(A) -> P,
        done: impl FnOnce(O, &RunReport),
    ) -> ExitCode {
        if let Err(clash) = params::clashes::<A>() {
            eprintln!("error: {clash}");
            return ExitCode::from(2);
        }
        match params::parse::<Args, A>(args::command(&self.store), args) {
            Ok((command, params)) => {
                let input = params.map(|params| move || input(params));
                self.exit(command.command, input, done).await
            }
            Err(error) => usage(&error),
        }
    }

    /// Does `command`: its failure goes to stderr, with a failure exit code.
    async fn exit(
        self,
        command: Option<Command>,
        input: Option<impl FnOnce() -> P>,
        done: impl FnOnce(O, &RunReport),
    ) -> ExitCode {
        match self.command(command, input, done).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(failure) => {
                eprintln!("error: {failure}");
                ExitCode::FAILURE
            }
        }
    }

    async fn command(
        self,
        command: Option<Command>,
        input: Option<impl FnOnce() -> P>,
        done: impl FnOnce(O, &RunReport),
    ) -> Result<(), Failure> {
        // Every command line that runs has its parameters: `main` makes them, and
        // `main_args` parses them with `run`.
        let input = move || input.ok_or_else(|| "the run's parameters are missing".to_owned());
        let command = command.unwrap_or(Command::Run {
            store: StoreArg { store: None },
            run_id: None,
            no_store: false,
            #[cfg(feature = "postgres")]
            cluster: ClusterArg::default(),
        });
        match command {
            #[cfg(feature = "postgres")]
            Command::Run {
                cluster:
                    ClusterArg {
                        distributed: true,
                        database_url: Some(url),
                    },
                run_id,
                ..
            } => dist::submit_and_wait(&self.workflow, &url, run_id, input()?, done).await,
            #[cfg(feature = "postgres")]
            Command::Runs {
                cluster: ClusterArg {
                    distributed: true, ..
                },
                format: Output::Json,
                ..
            }
            | Command::Show {
                cluster: ClusterArg {
                    distributed: true, ..
                },
                format: Output::Json,
                ..
            } => Err(
                "`--format json` reads the local store; with `--distributed` only \
                      the table is printed in this version"
                    .to_owned(),
            ),
            #[cfg(feature = "postgres")]
            Command::Runs {
                cluster:
                    ClusterArg {
                        distributed: true,
                        database_url: Some(url),
                    },
                ..
            } => dist::runs(&self.workflow, &url).await,
            #[cfg(feature = "postgres")]
            Command::Show {
                run_id,
                cluster:
                    ClusterArg {
                        distributed: true,
                        database_url: Some(url),
                    },
                ..
            } => dist::show(&url, &run_id).await,
            #[cfg(feature = "postgres")]
            Command::Worker {
                database_url,
                slots,
            } => dist::work(&self.workflow, &*self.serve, &database_url, slots).await,
            Command::Run {
                store,
                run_id,
                no_store,
                ..
            } => {
                let input = input()?;
                let runner = self.runner();
                if run_id.is_some() {
                    // A run id promises a resumable run: say why there is none.
                    self.require_durable()?;
                }
                let cached = self.workflow.plan.caches_any;
                let outcome = if no_store || (!self.workflow.is_durable() && !cached) {
                    watch(runner, |r| r.run(input())).await
                } else if !self.workflow.is_durable() {
                    // Not recorded, but its cached tasks' results are kept, if the store
                    // opens: a cache never keeps a run from running.
                    let runner = match self.open_any(store) {
                        Ok(store) => runner.cache(store),
                        Err(failure) => {
                            eprintln!("warning: {failure}; running without the cache");
                            runner
                        }
                    };
                    watch(runner, |r| r.run(input())).await
                } else {
                    let runner = runner.store(self.open(store)?);
                    let runner = match run_id {
                        Some(id) => runner.run_id(id),
                        None => runner,
                    };
                    watch(runner, |r| r.run(input())).await
                };
                finish(outcome, done)
            }
            Command::Resume { run_id, store } => {
                let runner = self.runner().store(self.open(store)?).run_id(run_id);
                finish(watch(runner, |r| r.resume()).await, done)
            }
            Command::Runs { store, format, .. } => {
                self.require_durable()?;
                show::runs(&*self.existing(store)?, format)
            }
            Command::Show {
                run_id,
                store,
                format,
                timeline,
                html,
                ..
            } => {
                self.require_durable()?;
                let view = show::View {
                    format,
                    timeline,
                    html,
                };
                show::run(
                    &*self.existing(store)?,
                    &run_id,
                    view,
                    self.workflow.graph(),
                )
            }
            #[cfg(feature = "postgres")]
            Command::Delete {
                older_than_days,
                cluster:
                    ClusterArg {
                        distributed: true,
                        database_url: Some(url),
                    },
                ..
            } => dist::delete(&self.workflow, &url, older_than_days).await,
            Command::Delete {
                older_than_days,
                store,
                ..
            } => {
                let age = Duration::from_secs(u64::from(older_than_days) * 86_400);
                let before = SystemTime::now() - age;
                self.require_durable()?;
                let deleted = self
                    .existing(store)?
                    .delete_before(before)
                    .map_err(|e| e.to_string())?;
                out!("deleted {} run(s)", deleted.deleted);
                if !deleted.skipped.is_empty() {
                    out!(
                        "skipped {} run(s) still running: {}",
                        deleted.skipped.len(),
                        deleted.skipped.join(", ")
                    );
                }
                Ok(())
            }
            Command::Cache {
                action: CacheAction::List { store },
            } => {
                let entries = self.existing(store)?.cache_entries();
                out_raw!("{}", cache_table(&entries.map_err(|e| e.to_string())?));
                Ok(())
            }
            Command::Cache {
                action:
                    CacheAction::Clear {
                        task,
                        expired,
                        store,
                    },
            } => {
                let store = self.existing(store)?;
                let expired_by = expired.then(tables::now_ms);
                let cleared = store.clear_cache(task.as_deref(), expired_by);
                let cleared = cleared.map_err(|e| e.to_string())?;
                let what = if expired { "expired cached" } else { "cached" };
                let Some(task) = task else {
                    out!("cleared {cleared} {what} result(s)");
                    return Ok(());
                };
                let known = cached_tasks(&self.workflow.plan);
                if cleared == 0 && !known.contains(task.as_str()) {
                    let known: Vec<String> = known.iter().map(|t| format!("`{t}`")).collect();
                    return Err(format!(
                        "no task named `{task}` is cached by `{}` (its cached tasks: {}); \
                         `--task` takes a task function's name, which `cache list` shows",
                        self.workflow.graph().name(),
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ));
                }
                out!("cleared {cleared} {what} result(s) of `{task}`");
                Ok(())
            }
            Command::Graph { format } => {
                let graph = self.workflow.graph();
                out_raw!(
                    "{}",
                    match format {
                        Format::Mermaid => graph.to_mermaid(),
                        Format::Dot => graph.to_dot(),
                        Format::Json => show::json(&graph)? + "\n",
                    }
                );
                Ok(())
            }
        }
    }

    fn require_durable(&self) -> Result<(), Failure> {
        if self.workflow.is_durable() {
            return Ok(());
        }
        Err(crate::Error::NotDurable {
            workflow: self.workflow.graph().name().to_owned(),
        }
        .to_string())
    }

    /// The store of runs, for a command about runs: only a durable workflow has them.
    fn open(&self, store: StoreArg) -> Result<Arc<dyn Store>, Failure> {
        self.require_durable()?;
        self.open_any(store)
    }

    /// The store, which must exist: for a command that reads it (a mistyped `--store`
    /// is an error, not an empty store).
    fn existing(&self, store: StoreArg) -> Result<Arc<dyn Store>, Failure> {
        let path = store.store.clone().unwrap_or_else(|| self.store.clone());
        if !path.exists() {
            let distributed = if cfg!(feature = "postgres") {
                " (a distributed run: add `--distributed`)"
            } else {
                ""
            };
            return Err(format!(
                "no store at `{}`: a run creates it; `--store PATH` names another{distributed}",
                path.display()
            ));
        }
        self.open_any(store)
    }

    /// The store, for its cache: any workflow may have cached tasks.
    fn open_any(&self, store: StoreArg) -> Result<Arc<dyn Store>, Failure> {
        let path = store.store.unwrap_or_else(|| self.store.clone());
        let store = SqliteStore::open(path).map_err(|e| e.to_string())?;
        Ok(Arc::new(store))
    }
}

/// A command line clap refused (exit code 2), or `--help` (printed, success).
fn usage(error: &clap::Error) -> ExitCode {
    let _ = error.print();
    if error.use_stderr() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// Starts `runner` by `start` (a run or a resume) with a progress display and Ctrl-C
/// handling.
async fn watch<P, O, S, F>(
    runner: Runner<P, O, S>,
    start: impl FnOnce(Runner<P, O, S>) -> F,
) -> RunOutcome<O>
where
    P: Params,
    O: Send + Sync + 'static,
    F: std::future::Future<Output = RunOutcome<O>>,
{
    let progress = runner.progress();
    let cancel = runner.cancel_handle();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "Ctrl-C: cancelling the run (cleanup tasks still run; Ctrl-C again to stop them)"
            );
            cancel.cancel();
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("Ctrl-C again: stopping everything now");
            cancel.kill();
        }
    });
    let ticker = Ticker::start(Arc::clone(&progress));
    let outcome = start(runner).await;
    ctrl_c.abort();
    ticker.stop(&progress);
    outcome
}

fn finish<O>(outcome: RunOutcome<O>, done: impl FnOnce(O, &RunReport)) -> Result<(), Failure> {
    let RunOutcome {
        result,
        report,
        run_id,
        ..
    } = outcome;
    match result {
        Ok(output) => {
            done(output, &report);
            // What went wrong without failing the run (a cache that could not be
            // read): the table says it on failure.
            for warning in &report.warnings {
                eprintln!("warning: {warning}");
            }
            if let Some(id) = run_id {
                eprintln!("run `{id}` succeeded");
            }
            Ok(())
        }
        Err(error) => {
            if !report.tasks.is_empty() {
                eprintln!("{report}");
            }
            Err(match run_id {
                Some(id) if !report.tasks.is_empty() => {
                    format!("{error}\n(run `{id}`: `resume {id}` runs what did not finish)")
                }
                _ => error.to_string(),
            })
        }
    }
}

/// The names of the cached tasks `plan` calls, in its fan-outs' bodies and
/// sub-workflows too.
fn cached_tasks(plan: &crate::plan::Plan) -> std::collections::BTreeSet<&'static str> {
    let mut names = std::collections::BTreeSet::new();
    let mut plans = vec![plan];
    while let Some(plan) = plans.pop() {
        for node in 0..plan.graph.len() {
            let info = plan.graph.info(node);
            if info.cache.is_some() {
                names.insert(info.name);
            }
            if let crate::plan::Call::FanOut(def) = &plan.calls[node] {
                plans.push(&def.body);
            }
        }
    }
    names
}
