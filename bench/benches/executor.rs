//! Aqueduct against hand-written tokio and rayon, workload by workload, in one run:
//! `cargo bench -p aqueduct-bench`. Read the medians side by side within each group.

use std::sync::LazyLock;
use std::time::Duration;

use aqueduct::Kind;
use aqueduct_bench::{
    baseline, calibrate, chain, cpu_fanout, diamond_cpu, diamond_io, fanout, independent, runtime,
};
use divan::Bencher;

fn main() {
    divan::main();
}

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(runtime);

/// `compute` rounds of about 50 ms on this machine.
static FIFTY_MS: LazyLock<u64> = LazyLock::new(|| calibrate(Duration::from_millis(50)));

#[divan::bench_group]
mod chain_100 {
    use super::*;

    #[divan::bench]
    fn aqueduct_cpu(bencher: Bencher) {
        let workflow = chain(100, Kind::Cpu);
        bencher.bench(|| RT.block_on(workflow.run((0,))).unwrap());
    }

    #[divan::bench]
    fn rayon(bencher: Bencher) {
        bencher.bench(|| baseline::rayon_chain(100, 0));
    }

    #[divan::bench]
    fn aqueduct_io(bencher: Bencher) {
        let workflow = chain(100, Kind::Io);
        bencher.bench(|| RT.block_on(workflow.run((0,))).unwrap());
    }

    #[divan::bench]
    fn tokio(bencher: Bencher) {
        bencher.bench(|| RT.block_on(baseline::tokio_chain(100, 0)));
    }
}

#[divan::bench_group]
mod diamond {
    use super::*;

    #[divan::bench]
    fn aqueduct_cpu(bencher: Bencher) {
        bencher.bench(|| RT.block_on(diamond_cpu(0)).unwrap());
    }

    #[divan::bench]
    fn rayon(bencher: Bencher) {
        bencher.bench(|| baseline::rayon_diamond(0));
    }

    #[divan::bench]
    fn aqueduct_io(bencher: Bencher) {
        bencher.bench(|| RT.block_on(diamond_io(0)).unwrap());
    }

    #[divan::bench]
    fn tokio(bencher: Bencher) {
        bencher.bench(|| RT.block_on(baseline::tokio_diamond(0)));
    }
}

#[divan::bench_group]
mod fanout_100 {
    use super::*;

    #[divan::bench]
    fn aqueduct_cpu(bencher: Bencher) {
        let workflow = fanout(100, Kind::Cpu);
        bencher.bench(|| RT.block_on(workflow.run((0,))).unwrap());
    }

    #[divan::bench]
    fn rayon(bencher: Bencher) {
        bencher.bench(|| baseline::rayon_fanout(100, 0));
    }

    #[divan::bench]
    fn aqueduct_io(bencher: Bencher) {
        let workflow = fanout(100, Kind::Io);
        bencher.bench(|| RT.block_on(workflow.run((0,))).unwrap());
    }

    #[divan::bench]
    fn tokio(bencher: Bencher) {
        bencher.bench(|| RT.block_on(baseline::tokio_fanout(100, 0)));
    }
}

#[divan::bench_group(sample_count = 30)]
mod independent_10k {
    use super::*;

    #[divan::bench]
    fn aqueduct_cpu(bencher: Bencher) {
        let workflow = independent(10_000, Kind::Cpu);
        bencher.bench(|| RT.block_on(workflow.run((0,))).unwrap());
    }

    #[divan::bench]
    fn rayon(bencher: Bencher) {
        bencher.bench(|| baseline::rayon_independent(10_000, 0));
    }

    #[divan::bench]
    fn aqueduct_io(bencher: Bencher) {
        let workflow = independent(10_000, Kind::Io);
        bencher.bench(|| RT.block_on(workflow.run((0,))).unwrap());
    }

    #[divan::bench]
    fn tokio(bencher: Bencher) {
        bencher.bench(|| RT.block_on(baseline::tokio_independent(10_000, 0)));
    }
}

#[divan::bench_group(sample_count = 30)]
mod tutorial_shape {
    use super::*;
    use aqueduct_bench::{catalog, tutorial_config, tutorial_notifier};

    #[divan::bench]
    fn aqueduct(bencher: Bencher) {
        bencher.bench(|| {
            RT.block_on(catalog::parallel_catalog(
                tutorial_config(),
                tutorial_notifier(),
            ))
            .unwrap()
        });
    }

    #[divan::bench]
    fn by_hand(bencher: Bencher) {
        bencher.bench(|| RT.block_on(baseline::tutorial(tutorial_config())));
    }

    /// The same run, durable: each of its 9 tasks' outputs checkpointed in SQLite.
    #[divan::bench]
    fn aqueduct_durable(bencher: Bencher) {
        let store = aqueduct_bench::scratch_store("tutorial");
        let workflow = catalog::parallel_catalog::workflow();
        bencher.bench(|| {
            let runner = workflow
                .runner_with((tutorial_notifier(),))
                .store(std::sync::Arc::clone(&store));
            RT.block_on(runner.run((tutorial_config(),)))
                .result
                .unwrap()
        });
    }

    /// The same durable run, its checkpoints in postcard instead of JSON.
    #[divan::bench]
    fn aqueduct_durable_postcard(bencher: Bencher) {
        let store = aqueduct_bench::scratch_store("tutorial-postcard");
        let workflow = catalog::parallel_catalog::workflow();
        bencher.bench(|| {
            let runner = workflow
                .runner_with((tutorial_notifier(),))
                .store(std::sync::Arc::clone(&store))
                .checkpoint_format(aqueduct::CheckpointFormat::Postcard);
            RT.block_on(runner.run((tutorial_config(),)))
                .result
                .unwrap()
        });
    }
}

/// 1,000 trivial CPU tasks and a sink, every output checkpointed in a SQLite file
/// (WAL, `synchronous = FULL`), against the same workflow in memory: checkpointed
/// tasks per second is 1,001 / the median.
#[divan::bench_group(sample_count = 20)]
mod checkpointed_1000 {
    use super::*;

    #[divan::bench]
    fn aqueduct_sqlite(bencher: Bencher) {
        let store = aqueduct_bench::scratch_store("checkpointed");
        let workflow = aqueduct_bench::independent_durable(1_000);
        bencher.bench(|| {
            let runner = workflow.runner().store(std::sync::Arc::clone(&store));
            RT.block_on(runner.run((1,))).result.unwrap()
        });
    }

    #[divan::bench]
    fn aqueduct_in_memory(bencher: Bencher) {
        let workflow = aqueduct_bench::independent_durable(1_000);
        bencher.bench(|| RT.block_on(workflow.run((1,))).unwrap());
    }

    /// A chain of 1,000: tasks end one at a time, the hard case for batching.
    #[divan::bench]
    fn chain_sqlite(bencher: Bencher) {
        let store = aqueduct_bench::scratch_store("chain");
        let workflow = aqueduct_bench::chain_durable(1_000);
        bencher.bench(|| {
            let runner = workflow.runner().store(std::sync::Arc::clone(&store));
            RT.block_on(runner.run((1,))).result.unwrap()
        });
    }

    #[divan::bench]
    fn chain_in_memory(bencher: Bencher) {
        let workflow = aqueduct_bench::chain_durable(1_000);
        bencher.bench(|| RT.block_on(workflow.run((1,))).unwrap());
    }
}

#[divan::bench_group(sample_count = 5, sample_size = 1)]
mod cpu_fanout_8x50ms {
    use super::*;

    #[divan::bench]
    fn aqueduct(bencher: Bencher) {
        let rounds = *FIFTY_MS;
        bencher.bench(|| RT.block_on(cpu_fanout(rounds)).unwrap());
    }

    #[divan::bench]
    fn rayon(bencher: Bencher) {
        let rounds = *FIFTY_MS;
        bencher.bench(|| baseline::rayon_cpu_fanout(rounds));
    }

    #[divan::bench]
    fn sequential(bencher: Bencher) {
        let rounds = *FIFTY_MS;
        bencher.bench(|| baseline::sequential_cpu_fanout(rounds));
    }
}

#[divan::bench_group(sample_count = 5, sample_size = 1)]
mod fanout_items_1m {
    use super::*;

    #[divan::bench]
    fn aqueduct_for(bencher: Bencher) {
        bencher
            .with_inputs(|| (0..1_000_000u64).collect::<Vec<_>>())
            .bench_values(|items| RT.block_on(aqueduct_bench::per_item(items)).unwrap());
    }

    #[divan::bench]
    fn tokio_spawn_per_item(bencher: Bencher) {
        bencher.bench(|| RT.block_on(baseline::tokio_independent(1_000_000, 0)));
    }

    #[divan::bench]
    fn rayon_scope(bencher: Bencher) {
        bencher.bench(|| baseline::rayon_independent(1_000_000, 0));
    }

    #[divan::bench]
    fn rayon_par_iter(bencher: Bencher) {
        bencher
            .with_inputs(|| (0..1_000_000u64).collect::<Vec<_>>())
            .bench_refs(|items| baseline::rayon_par_iter(items));
    }
}
