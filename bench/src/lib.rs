//! The workloads of the benchmark suite, each written twice: with Aqueduct, and by hand
//! the way a careful engineer would with tokio (one `tokio::spawn` per node, values
//! passed through join handles) or rayon (`scope`/`join`, one job per node).
//!
//! `benches/executor.rs` times them side by side; `src/bin/measure.rs` measures peak
//! memory and timer lateness.

use std::time::{Duration, Instant};

use aqueduct::graph::{Builder, Handle, Step};
use aqueduct::prelude::*;
use aqueduct::task::TaskInfo;
use aqueduct::{Kind, Workflow};

/// A runtime like a service's: multi-threaded, one worker per core.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

const ADD_CPU: TaskInfo = TaskInfo::new("add", Kind::Cpu);
const ADD_IO: TaskInfo = TaskInfo::new("add", Kind::Io);

/// Adds `k` to its input: CPU work on rayon, or IO work on tokio.
fn add(b: &mut Builder<(u64,)>, kind: Kind, input: Handle<u64>, k: u64) -> Handle<u64> {
    add_named(b, kind, "add".into(), input, k)
}

/// [`add`] as a node of its own name (a durable graph's checkpoints need unique ones).
fn add_named(
    b: &mut Builder<(u64,)>,
    kind: Kind,
    name: std::borrow::Cow<'static, str>,
    input: Handle<u64>,
    k: u64,
) -> Handle<u64> {
    match kind {
        Kind::Io => b.node(ADD_IO, name, (input,), move |i| {
            let (x,) = i.get();
            let x = *x;
            Step::pending(async move { Ok(x + k) })
        }),
        _ => b.node(ADD_CPU, name, (input,), move |i| {
            let (x,) = i.get();
            Step::done(Ok(x + k))
        }),
    }
}

/// `chain-N`: N tasks in a line, each adds 1.
pub fn chain(n: usize, kind: Kind) -> Workflow<(u64,), u64> {
    let (mut b, (mut x,)) = Builder::<(u64,)>::new("chain", ["seed"]);
    for _ in 0..n {
        x = add(&mut b, kind, x, 1);
    }
    b.output(x)
}

/// `fanout-N`: one task, N tasks reading it, one sink reading all N.
pub fn fanout(n: usize, kind: Kind) -> Workflow<(u64,), u64> {
    let (mut b, (seed,)) = Builder::<(u64,)>::new("fanout", ["seed"]);
    let source = add(&mut b, kind, seed, 1);
    let middle: Vec<_> = (0..n as u64)
        .map(|k| add(&mut b, kind, source, k))
        .collect();
    let sink = sink(&mut b, kind, middle);
    b.output(sink)
}

/// `independent-N`: N tasks with no task inputs, then one sink reading all N.
pub fn independent(n: usize, kind: Kind) -> Workflow<(u64,), u64> {
    let (mut b, (seed,)) = Builder::<(u64,)>::new("independent", ["seed"]);
    let tasks: Vec<_> = (0..n as u64).map(|k| add(&mut b, kind, seed, k)).collect();
    let sink = sink(&mut b, kind, tasks);
    b.output(sink)
}

/// `independent-N` as a `#[durable]` workflow: every task (named `t0`, `t1`, …) and
/// the sink are checkpointed when run with a store.
pub fn independent_durable(n: usize) -> Workflow<(u64,), u64> {
    let (mut b, (seed,)) = Builder::<(u64,)>::new("independent_durable", ["seed"]);
    b.durable(1);
    let tasks: Vec<_> = (0..n as u64)
        .map(|k| {
            let task = add_named(&mut b, Kind::Cpu, format!("t{k}").into(), seed, k);
            b.checkpoint(task);
            task
        })
        .collect();
    let sink = sink(&mut b, Kind::Cpu, tasks);
    b.checkpoint(sink);
    b.output(sink)
}

/// `chain-N` as a `#[durable]` workflow (tasks `t0` … `tN-1`, each checkpointed): the
/// hard case for batching, as tasks finish one at a time.
pub fn chain_durable(n: usize) -> Workflow<(u64,), u64> {
    let (mut b, (mut x,)) = Builder::<(u64,)>::new("chain_durable", ["seed"]);
    b.durable(1);
    for k in 0..n {
        x = add_named(&mut b, Kind::Cpu, format!("t{k}").into(), x, 1);
        b.checkpoint(x);
    }
    b.output(x)
}

/// A SQLite store in a fresh file under the system's temporary directory.
pub fn scratch_store(name: &str) -> std::sync::Arc<dyn aqueduct::store::Store> {
    let path =
        std::env::temp_dir().join(format!("aqueduct-bench-{name}-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    std::sync::Arc::new(aqueduct::store::SqliteStore::open(path).expect("a scratch store"))
}

/// One node reading every handle.
fn sink(b: &mut Builder<(u64,)>, kind: Kind, inputs: Vec<Handle<u64>>) -> Handle<u64> {
    let info = TaskInfo::new("sink", kind);
    match kind {
        Kind::Io => b.node(info, "sink", inputs, |i| {
            let sum = i.get().into_iter().sum();
            Step::pending(async move { Ok(sum) })
        }),
        _ => b.node(info, "sink", inputs, |i| {
            Step::done(Ok(i.get().into_iter().sum()))
        }),
    }
}

#[task]
fn inc(x: &u64) -> u64 {
    x + 1
}

#[task]
fn join2(a: &u64, b: &u64) -> u64 {
    a + b
}

#[task]
async fn inc_io(x: &u64) -> u64 {
    x + 1
}

#[task]
async fn join2_io(a: &u64, b: &u64) -> u64 {
    a + b
}

workflow! {
    /// `diamond`: a → b, c → d, CPU tasks.
    pub fn diamond_cpu(seed: u64) -> u64 {
        let a = inc(&seed);
        let b = inc(&a);
        let c = inc(&a);
        join2(&b, &c)
    }
}

workflow! {
    /// `diamond`: a → b, c → d, IO tasks.
    pub fn diamond_io(seed: u64) -> u64 {
        let a = inc_io(&seed);
        let b = inc_io(&a);
        let c = inc_io(&a);
        join2_io(&b, &c)
    }
}

/// Busy work for about `ms` milliseconds: a fixed number of multiply-adds, so the work
/// is the same whatever runs it.
pub fn compute(rounds: u64) -> u64 {
    let mut x = rounds;
    for i in 0..rounds {
        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
    }
    x
}

/// How many `compute` rounds take about `target` on this machine.
pub fn calibrate(target: Duration) -> u64 {
    let rounds = 1_000_000;
    let start = Instant::now();
    std::hint::black_box(compute(rounds));
    let per_round = start.elapsed().as_secs_f64() / rounds as f64;
    (target.as_secs_f64() / per_round) as u64
}

#[task]
fn burn(rounds: &u64) -> u64 {
    compute(*rounds)
}

#[task]
#[allow(clippy::too_many_arguments)]
fn gather8(a: &u64, b: &u64, c: &u64, d: &u64, e: &u64, f: &u64, g: &u64, h: &u64) -> u64 {
    a ^ b ^ c ^ d ^ e ^ f ^ g ^ h
}

workflow! {
    /// `cpu-fanout`: 8 CPU tasks of `rounds` of compute each, then a sink.
    pub fn cpu_fanout(rounds: u64) -> u64 {
        let a = burn(&rounds);
        let b = burn(&rounds);
        let c = burn(&rounds);
        let d = burn(&rounds);
        let e = burn(&rounds);
        let f = burn(&rounds);
        let g = burn(&rounds);
        let h = burn(&rounds);
        gather8(&a, &b, &c, &d, &e, &f, &g, &h)
    }
}

/// The flagship example's workflow, compiled into this crate as it is.
#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../examples/parallel_catalog.rs"]
pub mod catalog;

#[task]
fn plus_one(x: &u64) -> u64 {
    x + 1
}

#[task]
fn sum_items(all: &[u64]) -> u64 {
    all.iter().sum()
}

workflow! {
    /// `fanout-items`: a fan-out over a `Vec` of numbers, one small CPU task per item,
    /// then a sum.
    pub fn per_item(items: Vec<u64>) -> u64 {
        let each = for x in &items {
            plus_one(x)
        };
        sum_items(&each)
    }
}

workflow! {
    /// `durable-items`: [`per_item`], durable: every item's task is checkpointed
    /// (`each[i].plus_one`).
    #[durable]
    pub fn per_item_durable(items: Vec<u64>) -> u64 {
        let each = for x in &items {
            plus_one(x)
        };
        sum_items(&each)
    }
}

/// [`plus_one`], cached: what `measure cache` looks up.
#[task(cache)]
fn plus_one_cached(x: &u64) -> u64 {
    x + 1
}

workflow! {
    /// `cache`: [`per_item`] with a cached task per item, so that a second run over the
    /// same items loads every item's result.
    pub fn per_item_cached(items: Vec<u64>) -> u64 {
        let each = for x in &items {
            plus_one_cached(x)
        };
        sum_items(&each)
    }
}

/// The tutorial-shape workload: the flagship example with real data and no sleeps.
pub fn tutorial_config() -> catalog::CatalogConfig {
    catalog::CatalogConfig {
        load_latency: Duration::ZERO,
        publish_latency: Duration::ZERO,
        scoring_rounds: 20,
        ..catalog::CatalogConfig::default()
    }
}

/// The tutorial-shape workload's notification service: it never refuses.
pub fn tutorial_notifier() -> std::sync::Arc<catalog::Notifier> {
    std::sync::Arc::new(catalog::Notifier::new(0))
}

/// The same workloads written by hand.
pub mod baseline {
    use std::sync::Arc;

    /// `chain-N` on tokio: N spawned tasks, each awaiting the one before it.
    pub async fn tokio_chain(n: usize, seed: u64) -> u64 {
        let mut previous = tokio::spawn(async move { seed });
        for _ in 0..n {
            previous = tokio::spawn(async move { previous.await.expect("no panic") + 1 });
        }
        previous.await.expect("no panic")
    }

    /// `fanout-N` on tokio: a source, N tasks sharing its value through an `Arc`, a sink.
    pub async fn tokio_fanout(n: usize, seed: u64) -> u64 {
        let source = Arc::new(
            tokio::spawn(async move { seed + 1 })
                .await
                .expect("no panic"),
        );
        let middle: Vec<_> = (0..n as u64)
            .map(|k| {
                let source = Arc::clone(&source);
                tokio::spawn(async move { *source + k })
            })
            .collect();
        tokio::spawn(async move {
            let mut sum = 0;
            for task in middle {
                sum += task.await.expect("no panic");
            }
            sum
        })
        .await
        .expect("no panic")
    }

    /// `independent-N` on tokio: N spawned tasks, then a sink.
    pub async fn tokio_independent(n: usize, seed: u64) -> u64 {
        let tasks: Vec<_> = (0..n as u64)
            .map(|k| tokio::spawn(async move { seed + k }))
            .collect();
        tokio::spawn(async move {
            let mut sum = 0;
            for task in tasks {
                sum += task.await.expect("no panic");
            }
            sum
        })
        .await
        .expect("no panic")
    }

    /// `diamond` on tokio.
    pub async fn tokio_diamond(seed: u64) -> u64 {
        let a = Arc::new(
            tokio::spawn(async move { seed + 1 })
                .await
                .expect("no panic"),
        );
        let (a1, a2) = (Arc::clone(&a), a);
        let b = tokio::spawn(async move { *a1 + 1 });
        let c = tokio::spawn(async move { *a2 + 1 });
        tokio::spawn(async move { b.await.expect("no panic") + c.await.expect("no panic") })
            .await
            .expect("no panic")
    }

    /// `chain-N` on rayon: each step a job spawned by the one before it.
    pub fn rayon_chain(n: usize, seed: u64) -> u64 {
        fn step<'s>(
            scope: &rayon::Scope<'s>,
            value: u64,
            left: usize,
            out: &'s std::sync::atomic::AtomicU64,
        ) {
            if left == 0 {
                out.store(value, std::sync::atomic::Ordering::Relaxed);
            } else {
                scope.spawn(move |scope| step(scope, value + 1, left - 1, out));
            }
        }
        let out = std::sync::atomic::AtomicU64::new(0);
        rayon::scope(|scope| step(scope, seed, n, &out));
        out.into_inner()
    }

    /// `chain-N` as the hops a CPU run makes from tokio: a future hands the chain to a
    /// rayon job and awaits its value (the floor under any CPU run's fixed cost).
    pub async fn hops_chain(n: usize, seed: u64) -> u64 {
        let (tx, rx) = tokio::sync::oneshot::channel();
        rayon::spawn(move || {
            let value = (0..n as u64).fold(seed, |x, _| std::hint::black_box(x + 1));
            let _ = tx.send(value);
        });
        rx.await.unwrap_or_default()
    }

    /// `fanout-N` on rayon: a source job, N jobs in a scope, a sink.
    pub fn rayon_fanout(n: usize, seed: u64) -> u64 {
        let source = rayon::join(|| seed + 1, || ()).0;
        let mut middle = vec![0u64; n];
        rayon::scope(|scope| {
            for (k, slot) in middle.iter_mut().enumerate() {
                scope.spawn(move |_| *slot = source + k as u64);
            }
        });
        middle.iter().sum()
    }

    /// `independent-N` on rayon: N jobs in a scope, then a sink.
    pub fn rayon_independent(n: usize, seed: u64) -> u64 {
        let mut tasks = vec![0u64; n];
        rayon::scope(|scope| {
            for (k, slot) in tasks.iter_mut().enumerate() {
                scope.spawn(move |_| *slot = seed + k as u64);
            }
        });
        tasks.iter().sum()
    }

    /// `fanout-items` as a Rust user writes it by hand: `par_iter().map().collect()`,
    /// then a sum.
    pub fn rayon_par_iter(items: &[u64]) -> u64 {
        use rayon::prelude::*;
        let each: Vec<u64> = items.par_iter().map(|x| x + 1).collect();
        each.iter().sum()
    }

    /// `diamond` on rayon.
    pub fn rayon_diamond(seed: u64) -> u64 {
        let a = seed + 1;
        let (b, c) = rayon::join(|| a + 1, || a + 1);
        b + c
    }

    /// `cpu-fanout` on rayon: 8 jobs of compute, then a sink.
    pub fn rayon_cpu_fanout(rounds: u64) -> u64 {
        let mut results = [0u64; 8];
        rayon::scope(|scope| {
            for slot in results.iter_mut() {
                scope.spawn(move |_| *slot = super::compute(rounds));
            }
        });
        results.iter().fold(0, |a, b| a ^ b)
    }

    /// The flagship example's graph, written by hand: the same task functions, CPU
    /// work on rayon (the partitions with `join`), IO work on tokio, the report and the
    /// notifications with `tokio::join!`.
    pub async fn tutorial(cfg: crate::catalog::CatalogConfig) -> crate::catalog::Summary {
        use crate::catalog::*;
        use aqueduct::Outcome;
        let products = generate_data(&cfg).await;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let rounds = cfg.clone();
        rayon::spawn(move || {
            let parts = partition_data(products);
            let (s1, (s2, s3)) = rayon::join(
                || process_partition(&parts.first, &rounds),
                || {
                    rayon::join(
                        || process_partition(&parts.second, &rounds),
                        || process_partition(&parts.third, &rounds),
                    )
                },
            );
            let _ = sender.send(combine_results(&s1, &s2, &s3));
        });
        let combined = receiver.await.expect("the rayon job sends");
        let notifier = crate::tutorial_notifier();
        let (report, sent) = tokio::join!(
            generate_report(&combined, &cfg),
            send_notifications(&combined, &cfg, &notifier)
        );
        let sent = match sent {
            Ok(sent) => Outcome::Ok(sent),
            Err(error) => Outcome::Failed(error.into()),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        rayon::spawn(move || {
            let _ = tx.send(cleanup(&combined, &Outcome::Ok(report), &sent));
        });
        rx.await.expect("the rayon job sends")
    }

    /// `cpu-fanout` one task after another.
    pub fn sequential_cpu_fanout(rounds: u64) -> u64 {
        (0..8).map(|_| super::compute(rounds)).fold(0, |a, b| a ^ b)
    }
}
