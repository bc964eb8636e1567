//! The tutorial-shape workload (the flagship catalog on 10,000 products) distributed
//! over worker processes through PostgreSQL, beside the same workflow in one process
//! (in memory, and durable in SQLite), in one run of this program:
//!
//! - `distributed URL [RUNS] [WORKERS]` starts WORKERS (2) worker processes (this
//!   program, `worker URL`), then runs the workflow RUNS (10) times each way and prints
//!   the medians.
//! - `distributed worker URL` serves the workflow until its stdin closes.

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aqueduct::dist::{Cluster, Worker};
use aqueduct_bench::catalog::parallel_catalog;
use aqueduct_bench::{runtime, scratch_store, tutorial_config, tutorial_notifier};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["worker", url] => worker(url),
        [url, rest @ ..] => {
            let number = |at: usize, default: usize| {
                rest.get(at)
                    .map_or(default, |n| n.parse().unwrap_or_else(|_| usage()))
            };
            compare(url, number(0, 10), number(1, 2));
        }
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: distributed URL [RUNS] [WORKERS]");
    eprintln!("       distributed worker URL");
    std::process::exit(2)
}

/// Serves the tutorial workflow until stdin closes.
fn worker(url: &str) {
    let rt = runtime();
    let cluster = Cluster::connect(url).expect("the cluster");
    let worker = Worker::new(cluster)
        .serve_with(parallel_catalog::workflow(), (tutorial_notifier(),))
        .expect("the tutorial is distributable");
    let (closed, stdin_closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        use std::io::Read as _;
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = closed.send(());
    });
    let stdin_closed = async {
        let _ = stdin_closed.await;
    };
    rt.block_on(worker.run(stdin_closed))
        .expect("the worker runs");
}

/// Times `runs` runs of the tutorial in memory, durable in SQLite, and distributed
/// over `workers` worker processes; prints the medians.
fn compare(url: &str, runs: usize, workers: usize) {
    let rt = runtime();
    let workflow = parallel_catalog::workflow();
    let cluster = Cluster::connect(url).expect("the cluster");
    let me = std::env::current_exe().expect("this program");
    let mut children: Vec<Child> = (0..workers)
        .map(|_| {
            Command::new(&me)
                .args(["worker", url])
                .stdin(Stdio::piped())
                .spawn()
                .expect("a worker process")
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let store = scratch_store("distributed");
    let tag = std::process::id();
    let (mut memory, mut sqlite, mut distributed) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let started = Instant::now();
        let expected = rt
            .block_on(workflow.run_with((tutorial_config(),), (tutorial_notifier(),)))
            .expect("in memory");
        memory.push(started.elapsed());

        let runner = workflow
            .runner_with((tutorial_notifier(),))
            .store(std::sync::Arc::clone(&store))
            .run_id(format!("sqlite-{run}"));
        let started = Instant::now();
        let durable = rt
            .block_on(runner.run((tutorial_config(),)))
            .result
            .expect("durable");
        sqlite.push(started.elapsed());

        let id = format!("bench-{tag}-{run}");
        let started = Instant::now();
        let output = rt.block_on(async {
            cluster.submit(workflow, &id, (tutorial_config(),)).await?;
            cluster.wait(workflow, &id).await
        });
        distributed.push(started.elapsed());
        let output = output.expect("distributed");
        assert_eq!(
            (format!("{output:?}"), format!("{durable:?}")),
            (format!("{expected:?}"), format!("{expected:?}")),
            "every way gives one result"
        );
    }
    for child in &mut children {
        drop(child.stdin.take());
    }
    for mut child in children {
        let _ = child.wait();
    }
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (memory, sqlite, distributed) = (
        median(&mut memory),
        median(&mut sqlite),
        median(&mut distributed),
    );
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "tutorial-shape, {runs} runs each, medians:");
    let _ = writeln!(out, "  in memory, one process:   {memory:?}");
    let _ = writeln!(
        out,
        "  durable in SQLite:        {sqlite:?} ({:.2}x in memory)",
        sqlite.as_secs_f64() / memory.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  distributed, {workers} workers:    {distributed:?} ({:.2}x in memory, {:.2}x SQLite)",
        distributed.as_secs_f64() / memory.as_secs_f64(),
        distributed.as_secs_f64() / sqlite.as_secs_f64()
    );
}
