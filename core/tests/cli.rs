//! The command line of workflow binaries (feature `cli`), driven in-process.
#![cfg(feature = "cli")]

use std::process::ExitCode;

mod scratch;

use aqueduct::cli::Cli;
use aqueduct::prelude::*;
use aqueduct::store::{SqliteStore, Store};
use scratch::TempDir;

#[task]
fn double(x: &u64) -> u64 {
    x * 2
}

workflow! {
    #[durable]
    fn kept(x: u64) -> u64 {
        double(&x)
    }
}

workflow! {
    fn fleeting(x: u64) -> u64 {
        double(&x)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_records_a_durable_run_in_the_store_it_is_given() {
    let dir = TempDir::new("cli-run");
    let path = dir.db();
    let mut got = None;
    let code = Cli::new(kept::workflow())
        .main_from(
            [
                "kept",
                "run",
                "--run-id",
                "r1",
                "--store",
                path.to_str().unwrap(),
            ],
            || (21,),
            |out, _| got = Some(out),
        )
        .await;
    assert_eq!((code, got), (ExitCode::SUCCESS, Some(42)));
    let store = SqliteStore::open(&path).unwrap();
    let runs = store.runs().unwrap();
    assert_eq!(
        (runs[0].id.as_str(), runs[0].status.as_str()),
        ("r1", "succeeded")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_that_is_not_durable_runs_in_memory_but_refuses_a_run_id() {
    let mut got = None;
    let code = Cli::new(fleeting::workflow())
        .main_from(["fleeting"], || (4,), |out, _| got = Some(out))
        .await;
    assert_eq!(
        (code, got),
        (ExitCode::SUCCESS, Some(8)),
        "`run` is the default"
    );

    let mut called = false;
    let code = Cli::new(fleeting::workflow())
        .main_from(
            ["fleeting", "run", "--run-id", "r1"],
            || (4,),
            |_, _| called = true,
        )
        .await;
    assert_eq!((code, called), (ExitCode::FAILURE, false));
    let code = Cli::new(fleeting::workflow())
        .main_from(["fleeting", "runs"], || (4,), |_, _| {})
        .await;
    assert_eq!(code, ExitCode::FAILURE, "no history without a store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_commands_and_formats_are_usage_errors() {
    for args in [
        &["kept", "launch"][..],
        &["kept", "graph", "--format", "svg"],
        &["kept", "resume"],
    ] {
        let code = Cli::new(kept::workflow())
            .main_from(args.iter().copied(), || (1,), |_, _| {})
            .await;
        assert_eq!(code, ExitCode::from(2), "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_leaves_a_running_run_alone() {
    let dir = TempDir::new("cli-delete-live");
    let path = dir.db();
    let store = SqliteStore::open(&path).unwrap();
    let record = aqueduct::store::RunRecord {
        id: "live".into(),
        workflow: "kept".into(),
        fingerprint: "abc".into(),
        graph: "workflow kept version 1\n".into(),
        input: b"[1]".to_vec(),
    };
    // Claimed by a process on another host, whose heartbeat is fresh.
    store.claim("live", "elsewhere:1:x", Some(&record)).unwrap();
    let code = Cli::new(kept::workflow())
        .main_from(
            [
                "kept",
                "delete",
                "--older-than-days",
                "0",
                "--store",
                path.to_str().unwrap(),
            ],
            || (1,),
            |_, _| {},
        )
        .await;
    assert_eq!(code, ExitCode::SUCCESS);
    assert_eq!(store.runs().unwrap().len(), 1, "the running run is kept");
}

#[task(cache)]
fn tripled(x: &u64) -> u64 {
    x * 3
}

workflow! {
    fn remembered(x: u64) -> u64 {
        tripled(&x)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_with_cached_tasks_keeps_them_in_the_store_and_cache_clears_them() {
    let dir = TempDir::new("cli-cache");
    let path = dir.db();
    let store = path.to_str().unwrap();
    let run = |x: u64| {
        Cli::new(remembered::workflow()).main_from(
            ["remembered", "run", "--store", store],
            move || (x,),
            |_, _| {},
        )
    };
    assert_eq!(run(2).await, ExitCode::SUCCESS);
    assert_eq!(run(3).await, ExitCode::SUCCESS);
    let cached = || SqliteStore::open(&path).unwrap().cache_entries().unwrap();
    assert_eq!(
        cached().len(),
        2,
        "not durable, but its cached task's results are kept"
    );
    assert!(SqliteStore::open(&path).unwrap().runs().unwrap().is_empty());

    let cli = |args: &'static [&'static str]| {
        let args = ["remembered"]
            .iter()
            .chain(args)
            .copied()
            .chain(["--store", store]);
        Cli::new(remembered::workflow()).main_from(args.collect::<Vec<_>>(), || (0,), |_, _| {})
    };
    assert_eq!(cli(&["cache", "list"]).await, ExitCode::SUCCESS);
    // A name that is no cached task of this workflow (a typo, a node's name) and
    // clears nothing is an error naming the ones it has.
    assert_eq!(
        cli(&["cache", "clear", "--task", "tripld"]).await,
        ExitCode::FAILURE
    );
    assert_eq!(cached().len(), 2);
    // Nothing expired: nothing goes.
    let expired = cli(&["cache", "clear", "--task", "tripled", "--expired"]).await;
    assert_eq!(expired, ExitCode::SUCCESS);
    assert_eq!(cached().len(), 2);
    assert_eq!(
        cli(&["cache", "clear", "--task", "tripled"]).await,
        ExitCode::SUCCESS
    );
    assert!(cached().is_empty());

    // Reading a store that is not there is an error, and creates nothing.
    let missing = dir.0.join("typo.db");
    let code = Cli::new(remembered::workflow())
        .main_from(
            [
                "remembered",
                "cache",
                "list",
                "--store",
                missing.to_str().unwrap(),
            ],
            || (0,),
            |_, _| {},
        )
        .await;
    assert_eq!(code, ExitCode::FAILURE);
    assert!(!missing.exists());

    // `--no-store` keeps nothing.
    let code = Cli::new(remembered::workflow())
        .main_from(
            ["remembered", "run", "--no-store", "--store", store],
            || (5,),
            |_, _| {},
        )
        .await;
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(cached().is_empty());
}

/// A run id no run may have is refused before anything runs, on the command line (a
/// usage error) and by `Runner::run_id`; the store keeps no run for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_id_that_no_run_may_have_is_refused() {
    let dir = TempDir::new("cli-run-id");
    let path = dir.db();
    let store = path.to_str().unwrap();
    let long = "x".repeat(257);
    for id in ["", "   ", "two\nlines", " padded", long.as_str()] {
        let mut called = false;
        let code = Cli::new(kept::workflow())
            .main_from(
                ["kept", "run", "--run-id", id, "--store", store],
                || (1,),
                |_, _| called = true,
            )
            .await;
        assert_eq!((code, called), (ExitCode::from(2), false), "{id:?}");
        let outcome = kept::workflow()
            .runner()
            .store(std::sync::Arc::new(SqliteStore::open(&path).unwrap()))
            .run_id(id)
            .run((1,))
            .await;
        match outcome.result {
            Err(aqueduct::Error::InvalidRunId { run, reason }) => {
                assert_eq!(run, id);
                assert!(reason.starts_with("a run id"), "{reason}");
            }
            other => panic!("{id:?}: {other:?}"),
        }
    }
    assert!(SqliteStore::open(&path).unwrap().runs().unwrap().is_empty());
    // An id with spaces inside is a run id like any other.
    let outcome = kept::workflow()
        .runner()
        .store(std::sync::Arc::new(SqliteStore::open(&path).unwrap()))
        .run_id("nightly run 7")
        .run((2,))
        .await;
    assert_eq!(outcome.result.unwrap(), 4);
}

/// The workflow's parameters, from the command line.
#[derive(clap::Args)]
struct Doubling {
    /// The number to double.
    #[arg(long)]
    x: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_come_from_the_command_line() {
    for args in [
        &["fleeting", "run", "--x", "5"][..],
        &["fleeting", "--x", "5"],
    ] {
        let mut got = None;
        let code = Cli::new(fleeting::workflow())
            .main_args_from(
                args.iter().copied(),
                |p: Doubling| (p.x,),
                |out, _| got = Some(out),
            )
            .await;
        assert_eq!((code, got), (ExitCode::SUCCESS, Some(10)), "{args:?}");
    }
    // A missing or malformed parameter is a usage error; nothing runs.
    for args in [&["fleeting", "run"][..], &["fleeting", "--x", "five"]] {
        let mut called = false;
        let code = Cli::new(fleeting::workflow())
            .main_args_from(
                args.iter().copied(),
                |p: Doubling| (p.x,),
                |_, _| called = true,
            )
            .await;
        assert_eq!((code, called), (ExitCode::from(2), false), "{args:?}");
    }
    // Other commands do not need them.
    let dir = TempDir::new("cli-params");
    let path = dir.db();
    let store = path.to_str().unwrap();
    let code = Cli::new(kept::workflow())
        .main_args_from(
            [
                "kept", "run", "--x", "4", "--store", store, "--run-id", "p1",
            ],
            |p: Doubling| (p.x,),
            |_, _| {},
        )
        .await;
    assert_eq!(code, ExitCode::SUCCESS);
    let code = Cli::new(kept::workflow())
        .main_args_from(
            ["kept", "runs", "--store", store],
            |p: Doubling| (p.x,),
            |_, _| {},
        )
        .await;
    assert_eq!(code, ExitCode::SUCCESS, "`runs` needs no parameters");
    let input = SqliteStore::open(&path)
        .unwrap()
        .run("p1")
        .unwrap()
        .unwrap()
        .input;
    assert_eq!(input, b"[4]");
}

/// A parameter named like one of the command line's own options.
#[derive(clap::Args)]
struct Clashing {
    #[arg(long)]
    store: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_named_like_an_option_of_the_cli_is_refused() {
    let mut called = false;
    let code = Cli::new(fleeting::workflow())
        .main_args_from(
            ["fleeting", "run", "--store", "3"],
            |p: Clashing| (p.store,),
            |_, _| called = true,
        )
        .await;
    assert_eq!((code, called), (ExitCode::from(2), false));
}

/// A parameters struct named like the command line's own types, with a doc comment:
/// the command line keeps its own description.
mod named_args {
    /// The workflow's parameters.
    #[derive(clap::Args)]
    pub(super) struct Args {
        /// The number to double.
        #[arg(long)]
        pub(super) x: u64,
    }

    /// `-h` is the help's.
    #[derive(clap::Args)]
    pub(super) struct Host {
        #[arg(short, long)]
        pub(super) host: String,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameters_struct_may_be_named_args_but_not_take_dash_h() {
    let mut got = None;
    let code = Cli::new(fleeting::workflow())
        .main_args_from(
            ["fleeting", "run", "--x", "2"],
            |p: named_args::Args| (p.x,),
            |out, _| got = Some(out),
        )
        .await;
    assert_eq!((code, got), (ExitCode::SUCCESS, Some(4)));
    let mut called = false;
    let code = Cli::new(fleeting::workflow())
        .main_args_from(
            ["fleeting", "run", "-h", "x"],
            |p: named_args::Host| (p.host.len() as u64,),
            |_, _| called = true,
        )
        .await;
    assert_eq!((code, called), (ExitCode::from(2), false));
}
