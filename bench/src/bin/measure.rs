//! Measurements that are not timings of a closure:
//!
//! - `measure run WORKLOAD IMPL [N]` runs one workload once, for `/usr/bin/time -v`
//!   (peak memory) or `valgrind --tool=callgrind` (instruction counts). WORKLOAD is
//!   `chain`, `fanout` or `independent`; IMPL is `aqueduct-cpu`, `aqueduct-io`,
//!   `tokio` or `rayon`, or for `chain` also `hops`: the chain's values computed in one
//!   rayon job that a future awaits, the two thread hops any CPU run makes and nothing
//!   else (the floor under a CPU run's fixed cost).
//! - `measure lateness` runs cpu-fanout (8 × 50 ms) beside a 1 ms tokio interval and
//!   prints how late the interval's ticks were.

use std::time::{Duration, Instant};

use aqueduct::Kind;
use aqueduct_bench::{baseline, calibrate, chain, cpu_fanout, fanout, independent, runtime};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let number = |arg: Option<&&str>, default: usize| {
        arg.map_or(Ok(default), |n| n.parse())
            .unwrap_or_else(|_| usage())
    };
    match args.as_slice() {
        ["run", workload, implementation, rest @ ..] => {
            let (n, runs) = (number(rest.first(), 10_000), number(rest.get(1), 1));
            println!("{}", run(workload, implementation, n, runs));
        }
        ["build", workload, rest @ ..] => {
            let workflow = build(workload, number(rest.first(), 10_000), Kind::Cpu);
            println!("{} nodes", workflow.graph().len());
        }
        ["items", rest @ ..] => items(number(rest.first(), 1_000_000)),
        ["durable-items", rest @ ..] => durable_items(number(rest.first(), 100_000)),
        ["formats"] => formats(),
        ["cache", rest @ ..] => cache(number(rest.first(), 10_000)),
        ["lateness"] => lateness(),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: measure run chain|fanout|independent aqueduct-cpu|aqueduct-io|tokio|rayon|hops [N] [RUNS]"
    );
    eprintln!("       measure build chain|fanout|independent [N]");
    eprintln!("       measure items [N]");
    eprintln!("       measure durable-items [N]");
    eprintln!("       measure formats");
    eprintln!("       measure cache [N]");
    eprintln!("       measure lateness");
    std::process::exit(2)
}

fn build(workload: &str, n: usize, kind: Kind) -> aqueduct::Workflow<(u64,), u64> {
    match workload {
        "chain" => chain(n, kind),
        "fanout" => fanout(n, kind),
        "independent" => independent(n, kind),
        _ => usage(),
    }
}

/// Runs a workload `runs` times (an Aqueduct graph is built once) and returns the
/// last result. With more than one run, prints the median and 90th percentile of one
/// run's wall time to stderr: a median of thousands of runs is steadier on a shared
/// machine than a mean, which one descheduled run moves.
fn run(workload: &str, implementation: &str, n: usize, runs: usize) -> u64 {
    let rt = runtime();
    let repeat = |once: &dyn Fn() -> u64| {
        let mut times = Vec::with_capacity(runs);
        let mut last = 0;
        for _ in 0..runs {
            let started = Instant::now();
            last = once();
            times.push(started.elapsed());
        }
        if runs > 1 {
            times.sort();
            let (median, p90) = (times[runs / 2], times[runs * 9 / 10]);
            eprintln!(
                "{workload} {n} {implementation}: {runs} runs, median {median:?}, p90 {p90:?}"
            );
        }
        last
    };
    let by_aqueduct = |kind| {
        let workflow = build(workload, n, kind);
        repeat(&|| {
            rt.block_on(workflow.run((0,)))
                .expect("the workload succeeds")
        })
    };
    match (workload, implementation) {
        (_, "aqueduct-cpu") => by_aqueduct(Kind::Cpu),
        (_, "aqueduct-io") => by_aqueduct(Kind::Io),
        ("chain", "tokio") => repeat(&|| rt.block_on(baseline::tokio_chain(n, 0))),
        ("fanout", "tokio") => repeat(&|| rt.block_on(baseline::tokio_fanout(n, 0))),
        ("independent", "tokio") => repeat(&|| rt.block_on(baseline::tokio_independent(n, 0))),
        ("chain", "rayon") => repeat(&|| baseline::rayon_chain(n, 0)),
        ("chain", "hops") => repeat(&|| rt.block_on(baseline::hops_chain(n, 0))),
        ("fanout", "rayon") => repeat(&|| baseline::rayon_fanout(n, 0)),
        ("independent", "rayon") => repeat(&|| baseline::rayon_independent(n, 0)),
        _ => usage(),
    }
}

/// A fan-out over `n` items with one small CPU task each: prints the time.
fn items(n: usize) {
    let rt = runtime();
    let items: Vec<u64> = (0..n as u64).collect();
    let started = Instant::now();
    let sum = rt
        .block_on(aqueduct_bench::per_item(items))
        .expect("the fan-out succeeds");
    let elapsed = started.elapsed();
    println!(
        "fan-out over {n} items: {elapsed:?} ({:.0} ns per item), sum {sum}",
        elapsed.as_nanos() as f64 / n as f64
    );
}

/// A durable fan-out over `n` items in a fresh SQLite file, every item checkpointed:
/// prints the time and the items checkpointed per second.
fn durable_items(n: usize) {
    let rt = runtime();
    let items: Vec<u64> = (0..n as u64).collect();
    let store = aqueduct_bench::scratch_store("durable-items");
    let started = Instant::now();
    let outcome = rt.block_on(
        aqueduct_bench::per_item_durable::workflow()
            .runner()
            .store(std::sync::Arc::clone(&store))
            .run_id("items")
            .run((items,)),
    );
    let elapsed = started.elapsed();
    let sum = outcome.result.expect("the durable fan-out succeeds");
    let saved = store.checkpoints("items").expect("the checkpoints").len();
    println!(
        "durable fan-out over {n} items: {elapsed:?}, {:.0} items checkpointed/s ({saved} checkpoints), sum {sum}",
        n as f64 / elapsed.as_secs_f64()
    );
}

/// A fan-out over `n` items with a cached task each, in memory with a cache in a fresh
/// SQLite file: the run that computes and saves every item, then 5 runs that load
/// every item, beside the same fan-out uncached; medians, and the cost per item.
fn cache(n: usize) {
    let rt = runtime();
    let items: Vec<u64> = (0..n as u64).collect();
    let store = aqueduct_bench::scratch_store("cache");
    let workflow = aqueduct_bench::per_item_cached::workflow();
    let timed = |cached: bool| {
        let started = Instant::now();
        let runner = workflow.runner();
        let runner = if cached {
            runner.cache(std::sync::Arc::clone(&store))
        } else {
            runner
        };
        let outcome = rt.block_on(runner.run((items.clone(),)));
        outcome.result.expect("the cached fan-out succeeds");
        started.elapsed()
    };
    let first = timed(true);
    let median = |cached: bool| {
        let mut times: Vec<Duration> = (0..5).map(|_| timed(cached)).collect();
        times.sort();
        times[2]
    };
    let (hits, plain) = (median(true), median(false));
    let per = |d: Duration| d.as_nanos() as f64 / n as f64 / 1e3;
    println!(
        "{n} items: computed and saved {first:?} ({:.1} µs/item); loaded median {hits:?} ({:.1} µs/item); uncached median {plain:?} ({:.2} µs/item); {} results stored",
        per(first),
        per(hits),
        per(plain),
        store.cache_entries().expect("the cache").len()
    );
}

/// The tutorial-shape workload, durable, its checkpoints in JSON then in postcard (each
/// 20 runs in a fresh store): the bytes checkpointed per run and the median run time.
fn formats() {
    let rt = runtime();
    let workflow = aqueduct_bench::catalog::parallel_catalog::workflow();
    for format in [
        aqueduct::CheckpointFormat::Json,
        aqueduct::CheckpointFormat::Postcard,
    ] {
        let store = aqueduct_bench::scratch_store(format.name());
        let mut times = Vec::new();
        for run in 0..20 {
            let runner = workflow
                .runner_with((aqueduct_bench::tutorial_notifier(),))
                .store(std::sync::Arc::clone(&store))
                .run_id(format!("run-{run}"))
                .checkpoint_format(format);
            let started = Instant::now();
            rt.block_on(runner.run((aqueduct_bench::tutorial_config(),)))
                .result
                .expect("the tutorial succeeds");
            times.push(started.elapsed());
        }
        times.sort();
        let bytes: usize = store
            .checkpoints("run-0")
            .expect("the checkpoints")
            .iter()
            .map(|c| c.data.len())
            .sum();
        println!(
            "{}: {bytes} bytes of checkpoints per run, median run {:?} (fastest {:?})",
            format.name(),
            times[times.len() / 2],
            times[0]
        );
    }
}

/// The worst delay of a 1 ms interval's ticks while cpu-fanout runs, over 5 runs.
fn lateness() {
    let rt = runtime();
    let rounds = calibrate(Duration::from_millis(50));
    let worst = rt.block_on(async move {
        let mut worst = Duration::ZERO;
        for _ in 0..5 {
            let run = tokio::spawn(cpu_fanout(rounds));
            let mut ticker = tokio::time::interval(Duration::from_millis(1));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            let mut expected = Instant::now() + Duration::from_millis(1);
            while !run.is_finished() {
                ticker.tick().await;
                let now = Instant::now();
                worst = worst.max(now.saturating_duration_since(expected));
                expected = now + Duration::from_millis(1);
            }
            run.await.expect("no panic").expect("the workload succeeds");
        }
        worst
    });
    println!("cpu-fanout 8 x 50 ms, 5 runs: worst lateness of a 1 ms tokio interval: {worst:?}");
}
