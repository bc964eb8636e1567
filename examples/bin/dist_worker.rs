//! A worker process of the distributed tests: `dist_worker URL LEASE_MS SLOTS` serves
//! `aqueduct_examples::dist::{spread(WIDTH), nap()}` (WIDTH from `DIST_WIDTH`, 10 by
//! default) until its stdin closes, then prints what it did: `claimed=N committed=N
//! lost=N`. `dist_worker submit URL RUN_ID` submits a run of `spread(WIDTH)` and
//! prints how long it took to end (what BENCHMARKS.md quotes).

use std::time::Duration;

use aqueduct::dist::{Cluster, Worker};
use tokio::io::AsyncReadExt;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, command, url, run] = args.as_slice()
        && command == "submit"
    {
        return submit(url, run).await;
    }
    let [_, url, lease, slots] = args.as_slice() else {
        eprintln!("usage: dist_worker URL LEASE_MS SLOTS");
        std::process::exit(2);
    };
    let width = std::env::var("DIST_WIDTH")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(10);
    let spread = Box::leak(Box::new(aqueduct_examples::dist::spread(width)));
    let nap = Box::leak(Box::new(aqueduct_examples::dist::nap()));
    let cluster = Cluster::connect(url).expect("the cluster");
    let worker = Worker::new(cluster)
        .serve(spread)
        .expect("spread is distributable")
        .serve(nap)
        .expect("nap is distributable")
        .lease(Duration::from_millis(lease.parse().expect("a lease in ms")))
        .slots(slots.parse().expect("a number of slots"));
    eprintln!("worker {} ready", worker.id());
    let stdin_closed = async {
        let mut stdin = tokio::io::stdin();
        let mut buffer = [0u8; 64];
        while matches!(stdin.read(&mut buffer).await, Ok(n) if n > 0) {}
    };
    let stats = worker.run(stdin_closed).await.expect("the worker runs");
    println!(
        "claimed={} committed={} lost={}",
        stats.claimed, stats.committed, stats.lost
    );
}

/// Submits a run of `spread(WIDTH)` and waits for it: prints the tasks, the time from
/// submission to the end, and the tasks a second.
async fn submit(url: &str, run: &str) {
    let width = std::env::var("DIST_WIDTH")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(10);
    let spread = aqueduct_examples::dist::spread(width);
    let cluster = Cluster::connect(url).expect("the cluster");
    let started = std::time::Instant::now();
    cluster.submit(&spread, run, (7,)).await.expect("submitted");
    let output = cluster.wait(&spread, run).await.expect("the run succeeds");
    let took = started.elapsed();
    let tasks = 3 * width + 2;
    println!(
        "{tasks} tasks in {took:?}: {:.0} tasks/s ({output})",
        tasks as f64 / took.as_secs_f64()
    );
}
