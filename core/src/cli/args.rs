//! The command line's own arguments, as clap parses them: the commands and their
//! options (a user's parameters struct is added to `run` by `params.rs`).

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use super::ABOUT;

/// What the command line's own argument groups are not named after: a user's
/// parameters struct (see [`Cli::main_args`]) may be called anything.
#[derive(Parser)]
#[command(about = ABOUT)]
#[group(skip)]
pub(super) struct Args {
    #[command(subcommand)]
    pub(super) command: Option<Command>,
}

#[derive(clap::Args)]
#[group(skip)]
pub(super) struct StoreArg {
    // `command` adds the default to the help: the workflow's `<name>.db`.
    /// The SQLite file of runs and checkpoints.
    #[arg(long, value_name = "PATH")]
    pub(super) store: Option<PathBuf>,
}

/// Where distributed runs are: `--distributed` works with them instead of the store's.
#[cfg(feature = "postgres")]
#[derive(clap::Args, Default)]
#[group(skip)]
pub(super) struct ClusterArg {
    /// Works with the distributed runs of a PostgreSQL cluster (see `worker`) instead
    /// of the local store's: `run` submits a run to the workers and waits for it.
    #[arg(long, requires = "database_url")]
    pub(super) distributed: bool,
    /// The cluster's database (`postgres://…`).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub(super) database_url: Option<String>,
}

#[derive(Subcommand)]
pub(super) enum Command {
    /// Runs the workflow (the default command).
    Run {
        #[command(flatten)]
        store: StoreArg,
        /// The run's id, to resume it by later [default: a fresh one].
        #[arg(long, value_name = "ID", conflicts_with = "no_store", value_parser = run_id)]
        run_id: Option<String>,
        /// Runs in memory: no checkpoints, no history.
        #[arg(long)]
        #[cfg_attr(feature = "postgres", arg(conflicts_with = "distributed"))]
        no_store: bool,
        #[cfg(feature = "postgres")]
        #[command(flatten)]
        cluster: ClusterArg,
    },
    /// Runs the tasks of the distributed runs of this workflow, from a PostgreSQL
    /// cluster, until Ctrl-C.
    #[cfg(feature = "postgres")]
    Worker {
        /// The cluster's database (`postgres://…`).
        #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
        database_url: String,
        /// At most this many tasks at once [default: the cores].
        #[arg(long, value_name = "N")]
        slots: Option<usize>,
    },
    /// Resumes a run that stopped: what finished is loaded, the rest runs.
    Resume {
        /// The run's id, as `run` printed it or `runs` lists it.
        #[arg(value_parser = run_id)]
        run_id: String,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Lists the runs in the store, most recent first.
    Runs {
        #[command(flatten)]
        store: StoreArg,
        /// A table, or JSON (an array of runs, times in milliseconds).
        #[arg(long, value_enum, default_value_t = Output::Table)]
        format: Output,
        #[cfg(feature = "postgres")]
        #[command(flatten)]
        cluster: ClusterArg,
    },
    /// Prints a run's report.
    Show {
        /// The run's id.
        #[arg(value_parser = run_id)]
        run_id: String,
        #[command(flatten)]
        store: StoreArg,
        /// A table, or JSON (the report, durations in milliseconds in `…_ms` fields).
        #[arg(long, value_enum, default_value_t = Output::Table)]
        format: Output,
        /// Draws each task as a bar on a time axis instead of the table.
        #[arg(long, conflicts_with = "format")]
        #[cfg_attr(feature = "postgres", arg(conflicts_with = "distributed"))]
        timeline: bool,
        /// Writes the timeline and the graph as one self-contained HTML page to FILE.
        #[arg(long, value_name = "FILE")]
        #[cfg_attr(feature = "postgres", arg(conflicts_with = "distributed"))]
        html: Option<PathBuf>,
        #[cfg(feature = "postgres")]
        #[command(flatten)]
        cluster: ClusterArg,
    },
    /// Deletes the runs started before some days ago, with their checkpoints; runs
    /// still running are left alone.
    Delete {
        /// How old a run must be to go, in days (0: every run not running now).
        #[arg(long, value_name = "DAYS")]
        older_than_days: u32,
        #[command(flatten)]
        store: StoreArg,
        #[cfg(feature = "postgres")]
        #[command(flatten)]
        cluster: ClusterArg,
    },
    /// Lists or clears the results of cached tasks (`#[task(cache)]`).
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Prints the workflow's graph.
    Graph {
        /// The graph's format.
        #[arg(long, value_enum, default_value_t = Format::Mermaid)]
        format: Format,
    },
}

#[derive(Subcommand)]
pub(super) enum CacheAction {
    /// Lists the cached results: task, key, the run that computed each, its age and
    /// expiry, its size.
    List {
        #[command(flatten)]
        store: StoreArg,
    },
    /// Deletes cached results, so their tasks run again: one task's, or all.
    Clear {
        /// Only this task's results (its function's name).
        #[arg(long, value_name = "NAME")]
        task: Option<String>,
        /// Only the results that expired.
        #[arg(long)]
        expired: bool,
        #[command(flatten)]
        store: StoreArg,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum Format {
    Mermaid,
    Dot,
    /// Its nodes and edges as JSON.
    Json,
}

/// How `runs` and `show` print.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Output {
    /// For people.
    Table,
    /// For programs: JSON on one line.
    Json,
}

/// The command line, its `--store` options saying which file is the default.
pub(super) fn command(store: &Path) -> clap::Command {
    let help = format!(
        "The SQLite file of runs and checkpoints [default: {}]",
        store.display()
    );
    with_store_help(<Args as clap::CommandFactory>::command(), &help)
}

/// `command` and its subcommands with `help` on their `--store`.
fn with_store_help(command: clap::Command, help: &str) -> clap::Command {
    command
        .mut_args(|arg| {
            if arg.get_id() == "store" {
                arg.help(help.to_owned())
            } else {
                arg
            }
        })
        .mut_subcommands(|sub| with_store_help(sub, help))
}

/// A run id on the command line: refused at once if no run may have it.
pub(super) fn run_id(text: &str) -> Result<String, String> {
    match crate::run_id::run_id_problem(text) {
        Some(reason) => Err(reason.to_owned()),
        None => Ok(text.to_owned()),
    }
}
