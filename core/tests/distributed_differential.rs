//! Distributed runs against one process, case by case (feature `postgres`): workflows
//! generated from a seed — chains and fan-ins of CPU and IO tasks that fail on some
//! values, tolerant readers, `if`/`else`, a `match` on a failure's outcome, an `if`
//! without `else`, fan-outs (some capped) whose items branch, a `match` on a fan-out's
//! outcome — run once in one process
//! and once on two workers; the output, or the failures and skipped tasks, must be the
//! same. `DIFF_CASES` (50) cases from `DIFF_SEED` (1). Needs `DATABASE_URL`; see
//! `core/tests/postgres.rs`.
#![cfg(feature = "postgres")]

use std::time::Duration;

use aqueduct::dist::{Cluster, Worker};
use aqueduct::graph::{Builder, Handle, Step};
use aqueduct::task::{Kind, TaskError, TaskInfo};
use aqueduct::{Error, Outcome, Workflow};

#[path = "postgres/database.rs"]
mod database;
#[path = "postgres/workers.rs"]
mod running;
use database::Database;
use running::workers;

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What a generated task computes from its inputs' sum: a value below 1,000, or a
/// failure when that value is a multiple of `fails` (if set).
fn compute(sum: u64, salt: u64, fails: u64) -> Result<u64, TaskError> {
    let value = (sum.wrapping_mul(7) + salt) % 1000;
    if fails > 0 && value.is_multiple_of(fails) {
        return Err(TaskError::permanent(TaskError::msg(format!(
            "{value} is refused"
        ))));
    }
    Ok(value)
}

const CPU: TaskInfo = TaskInfo::new("cpu", Kind::Cpu);
const IO: TaskInfo = TaskInfo::new("io", Kind::Io);
const TOLERANT: TaskInfo = TaskInfo {
    outcome_inputs: 1,
    ..TaskInfo::new("tolerant", Kind::Cpu)
};

/// Builds workflows in `b` (the workflow's or a body's), naming nodes uniquely.
struct Gen<'r> {
    rng: &'r mut Rng,
    names: usize,
}

impl Gen<'_> {
    fn name(&mut self, prefix: &str) -> String {
        self.names += 1;
        format!("{prefix}{}", self.names)
    }

    /// A task over `inputs` (CPU or IO), that fails on some values.
    fn task<P: aqueduct::graph::Params>(
        &mut self,
        b: &mut Builder<P>,
        inputs: Vec<Handle<u64>>,
    ) -> Handle<u64> {
        let salt = self.rng.below(1000);
        let fails = if self.rng.below(10) < 3 {
            3 + self.rng.below(5)
        } else {
            0
        };
        let name = self.name("t");
        let node = if self.rng.below(3) == 0 {
            b.node(IO, name, inputs, move |input| {
                let sum: u64 = input.get().into_iter().sum();
                Step::pending(async move {
                    tokio::task::yield_now().await;
                    compute(sum, salt, fails)
                })
            })
        } else {
            b.node(CPU, name, inputs, move |input| {
                let sum: u64 = input.get().into_iter().sum();
                Step::done(compute(sum, salt, fails))
            })
        };
        b.checkpoint(node);
        node
    }

    fn pick(&mut self, pool: &[Handle<u64>]) -> Handle<u64> {
        pool[self.rng.below(pool.len() as u64) as usize]
    }

    /// One step of the workflow's top level: adds a handle to `pool`.
    fn step(&mut self, b: &mut Builder<(u64,)>, pool: &mut Vec<Handle<u64>>, x: Handle<u64>) {
        let made = match self.rng.below(9) {
            0..=2 => {
                let inputs = [self.pick(pool), self.pick(pool)];
                let count = 1 + self.rng.below(2) as usize;
                self.task(b, inputs[..count].to_vec())
            }
            3 => {
                let read = self.pick(pool);
                let name = self.name("tolerant");
                let node = b.node(TOLERANT, name, (read,), |input| {
                    let (read,) = input.outcomes();
                    Step::done(Ok(match read {
                        Outcome::Ok(v) => v + 1,
                        Outcome::Failed(_) => 500,
                        _ => 600,
                    }))
                });
                b.checkpoint(node);
                node
            }
            4 | 5 => self.if_else(b, pool),
            6 => self.rescue(b, pool, x),
            7 => self.if_only(b, pool),
            _ => self.fan_out(b, pool),
        };
        pool.push(made);
    }

    /// `if v % arms == k { chain } …`: arms of one or two tasks each.
    fn if_else(&mut self, b: &mut Builder<(u64,)>, pool: &[Handle<u64>]) -> Handle<u64> {
        let on = self.pick(pool);
        let arms = 2 + self.rng.below(2) as u32;
        let labels: &[&'static str] = if arms == 2 {
            &["then", "else"]
        } else {
            &["a", "b", "c"]
        };
        let name = self.name("d");
        let decision = b.decide(name, "v % arms", labels, (on,), 0, move |input| {
            let (v,) = input.get();
            Ok((*v % u64::from(arms)) as u32)
        });
        b.checkpoint(decision.handle());
        let tails: Vec<Handle<u64>> = (0..arms)
            .map(|arm| {
                let first = self.pick(pool);
                b.arm(decision, arm, |b| {
                    let mut last = self.task(b, vec![first]);
                    if self.rng.below(2) == 0 {
                        last = self.task(b, vec![last, on]);
                    }
                    last
                })
            })
            .collect();
        let name = self.name("branch");
        let branch = b.branch(name, decision, tails);
        b.checkpoint(branch);
        branch
    }

    /// `match read { Ok(v) => task(v), _ => fallback(x) }`: handles `read`'s failure.
    fn rescue(
        &mut self,
        b: &mut Builder<(u64,)>,
        pool: &[Handle<u64>],
        x: Handle<u64>,
    ) -> Handle<u64> {
        let read = self.pick(pool);
        let name = self.name("match");
        let decision = b.decide(name, "read", &["ok", "other"], (read,), 1, |input| {
            let (read,) = input.outcomes();
            Ok(u32::from(read.value().is_none()))
        });
        b.checkpoint(decision.handle());
        let ok = b.arm(decision, 0, |b| self.task(b, vec![read]));
        let other = b.arm(decision, 1, |b| self.task(b, vec![x]));
        let name = self.name("rescued");
        let branch = b.branch(name, decision, vec![ok, other]);
        b.checkpoint(branch);
        branch
    }

    /// `if v % 2 == 0 { task }`, then its `Option` as a value.
    fn if_only(&mut self, b: &mut Builder<(u64,)>, pool: &[Handle<u64>]) -> Handle<u64> {
        let on = self.pick(pool);
        let name = self.name("d");
        let decision = b.decide(name, "v even", &["then", "else"], (on,), 0, |input| {
            let (v,) = input.get();
            Ok((*v % 2) as u32)
        });
        b.checkpoint(decision.handle());
        let then = b.arm(decision, 0, |b| self.task(b, vec![on]));
        let name = self.name("maybe");
        let maybe = b.branch_option(name, decision, then);
        b.checkpoint(maybe);
        let name = self.name("unwrapped");
        let node = b.node(CPU, name, (maybe,), |input| {
            let (maybe,) = input.get();
            Step::done(Ok(maybe.unwrap_or(7)))
        });
        b.checkpoint(node);
        node
    }

    /// A list made from a value, a `for` over it (capped or not) whose items run a task
    /// and maybe an `if`, and the sum of what the items gave.
    fn fan_out(&mut self, b: &mut Builder<(u64,)>, pool: &[Handle<u64>]) -> Handle<u64> {
        let from = self.pick(pool);
        let name = self.name("list");
        let list = b.node(CPU, name, (from,), |input| {
            let (v,) = input.get();
            Step::done(Ok((0..v % 6).map(|i| (v + i) % 100).collect::<Vec<u64>>()))
        });
        b.checkpoint(list);
        let (branches, tolerant) = (self.rng.below(2) == 0, self.rng.below(3) == 0);
        let name = self.name("each");
        let each = b.fan_out(name, list, "item", (), |body, item, ()| {
            let mut first = self.task(body, vec![item]);
            if tolerant {
                // The item succeeds whatever became of its first task.
                first = body.node(TOLERANT, "kept", (first,), |input| {
                    let (first,) = input.outcomes();
                    Step::done(Ok(first.value().map_or(1, |v| v + 1)))
                });
                body.checkpoint(first);
            }
            if !branches {
                return first;
            }
            let decision = body.decide("d", "odd", &["then", "else"], (item,), 0, |input| {
                let (v,) = input.get();
                Ok((*v % 2) as u32)
            });
            body.checkpoint(decision.handle());
            let then = body.arm(decision, 0, |body| self.task(body, vec![first]));
            let other = body.arm(decision, 1, |body| self.task(body, vec![first, item]));
            let branch = body.branch("branch", decision, vec![then, other]);
            body.checkpoint(branch);
            branch
        });
        if self.rng.below(3) == 0 {
            b.cap_items(each, 2);
        }
        b.checkpoint(each);
        let sum = |b: &mut Builder<(u64,)>, name: String| {
            let sum = b.node(CPU, name, (each,), |input| {
                let (each,) = input.get();
                Step::done(Ok(each.iter().sum::<u64>() % 1000))
            });
            b.checkpoint(sum);
            sum
        };
        if self.rng.below(2) == 0 {
            let name = self.name("sum");
            return sum(b, name);
        }
        // `match each { Ok(_) => sum, _ => fallback }`: handles the items' failures.
        let name = self.name("match");
        let decision = b.decide(name, "each", &["ok", "other"], (each,), 1, |input| {
            let (each,) = input.outcomes();
            Ok(u32::from(each.value().is_none()))
        });
        b.checkpoint(decision.handle());
        let name = self.name("sum");
        let ok = b.arm(decision, 0, |b| sum(b, name));
        let other = b.arm(decision, 1, |b| self.task(b, vec![from]));
        let name = self.name("rescued");
        let branch = b.branch(name, decision, vec![ok, other]);
        b.checkpoint(branch);
        branch
    }
}

/// The workflow of case `seed`.
fn generate(seed: u64) -> Workflow<(u64,), u64> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let (mut b, (x,)) = Builder::<(u64,)>::new(format!("case{seed}"), ["x"]);
    b.durable(1);
    let mut generator = Gen {
        rng: &mut rng,
        names: 0,
    };
    let mut pool = vec![x];
    for _ in 0..4 + generator.rng.below(8) {
        generator.step(&mut b, &mut pool, x);
    }
    let last: Vec<Handle<u64>> = pool.iter().rev().take(3).copied().collect();
    let output = generator.task(&mut b, last);
    b.output(output)
}

/// How a run ended, comparably: its output, or its error's kind, failures and skipped.
fn ending(result: &Result<u64, Error>) -> String {
    match result {
        Ok(value) => format!("ok {value}"),
        Err(Error::Failed {
            failures, skipped, ..
        }) => {
            let mut failed: Vec<String> = failures
                .iter()
                .map(|f| format!("{} ({}): {}", f.node, f.task, f.error))
                .collect();
            failed.sort();
            let mut skipped = skipped.clone();
            skipped.sort();
            format!("failed {failed:?} skipped {skipped:?}")
        }
        Err(other) => format!("error {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_workflows_end_on_workers_as_in_one_process() {
    let Some(db) = Database::new("dist_differential") else {
        return;
    };
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (cases, first) = (env("DIFF_CASES", 50), env("DIFF_SEED", 1));
    let cluster = Cluster::connect(&db.url).unwrap();
    let (mut failed, mut branched) = (0, 0);
    for seed in first..first + cases {
        // Built once, so that both runs share its fingerprint; leaked (as `workflow!`'s
        // statics are) for the workers.
        let workflow: &'static Workflow<(u64,), u64> = Box::leak(Box::new(generate(seed)));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let serve = |worker: Worker| {
            let worker = worker.serve(workflow);
            let worker = worker.unwrap_or_else(|e| panic!("case {seed}: {e}"));
            worker.slots(4).lease(Duration::from_secs(5))
        };
        let running = workers(&cluster, serve, 2, &stopped);
        for x in [seed % 1000, (seed * 37 + 11) % 1000] {
            let alone = workflow.run((x,)).await;
            let id = format!("case-{seed}-{x}");
            cluster.submit(workflow, &id, (x,)).await.unwrap();
            let distributed =
                tokio::time::timeout(Duration::from_secs(60), cluster.wait(workflow, &id))
                    .await
                    .unwrap_or_else(|_| panic!("case {seed}, x = {x}: the run never ended"));
            assert_eq!(
                ending(&distributed),
                ending(&alone),
                "case {seed}, x = {x}: distributed (left) and one process (right) differ"
            );
            failed += usize::from(alone.is_err());
            let status = cluster.status(&id).await.unwrap().unwrap();
            assert_eq!(
                status.status == "succeeded",
                alone.is_ok(),
                "case {seed}, x = {x}: {status:?}"
            );
            branched += usize::from(status.tasks.iter().any(|t| t.state == "not_taken"));
        }
        stop.send(true).unwrap();
        for worker in running {
            assert_eq!(worker.await.unwrap().lost, 0, "case {seed}");
        }
    }
    // The cases reach what they are for.
    assert!(
        failed > 0 && branched > 0,
        "{failed} failed, {branched} branched"
    );
}
