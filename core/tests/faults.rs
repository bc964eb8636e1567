//! Model-checked fault injection (issue 9).
//!
//! Each case is generated from a seed: a workflow built with the typed builder (chains,
//! diamonds, wide fan-ins, nested and capped `for` fan-outs, sub-workflows, cleanup
//! tasks, CPU and IO tasks with retries, timeouts and concurrency limits, and in a
//! quarter of the cases branches: decisions on values or on outcomes (fallbacks, whose
//! failures are handled), nested arms, `branch_option`, moved branches; see
//! `faults/branches.rs`), durable or not (in half the durable cases, nodes of fan-out
//! bodies and sub-workflows are checkpointed item by item, `f3[2].t7`, and a resume
//! restores them item by item), and a fault plan per task or decision
//! instance and attempt (transient and permanent errors, panics, attempts past their
//! timeout, a decision's arm out of range) and per run (fail-fast, a cancel, a run
//! timeout, a failing or panicking store, crashes followed by resumes). In a quarter of
//! the cases some tasks are cached (the result cache, `faults/cache.rs`): their nodes
//! are registered with `Builder::cache` (a few twins call one task on the same inputs),
//! every case runs at least twice on one store (durable resumes and a fresh durable
//! run, sometimes with the cache in another store; or in-memory runs with
//! `Runner::cache`), and faults hit the cache too (the key function, the store's
//! `cached` and `save_cached`, rows corrupted, expired or cleared between runs). The
//! model predicts which calls are `Cached` (and from which run) and which run; within
//! one run a call may load what another call with its key saved, or run: either is
//! accepted. The run's report, result, attempt log, live values, store and cache table
//! are checked against a sequential reference model (`faults/model.rs`); failures are
//! shrunk and reported with a seed.
//!
//! `cargo test -p aqueduct --release --test faults` runs `FAULT_CASES` (10,000) cases
//! from seed `FAULT_SEED` (1), the regression seeds first. The fault kinds that hit the
//! findings of issue 9 (F1…F14) and of issue 12 (B1: a handled failure in a stopped
//! fan-out's item), all fixed, run by default; `FAULT_KNOWN=none` leaves them out,
//! `FAULT_KNOWN=F2,F14` keeps only those. Item-by-item checkpoints (issue 13): I1…I4,
//! all fixed, run by default too (see `spec::Gates`). D1 (fixed): in a third of the
//! cases, one task instance in six makes a value whose `Drop` panics wherever the
//! library drops it (`Spec::bomb`; a value taken by value is defused by the task that
//! takes it, and the harness's own thread never panics in a `Drop`); the model expects
//! nothing to change, and the live-value counts that nothing leaks. `FAULT_REPRO=<case>` runs one case
//! (a seed, or `seed:edits` as printed after shrinking; `;` separates several). Other
//! knobs: `FAULT_THREADS` (8 cases at once), `FAULT_RAYON_THREADS` (16),
//! `FAULT_SLACK_MS` (50, scheduling slack of the stop-timing checks),
//! `FAULT_CASE_LIMIT_S` (10, a hang), `FAULT_STATS=1` (print coverage),
//! `FAULT_SHRINK=0`, `FAULT_SHRINK_PER_CLASS` (3), `FAULT_SHRINK_ABORTS` (2).
//!
//! The stores (`faults/backend.rs`): by default each case's store is a `SqliteStore`
//! file of its own. `FAULT_STORE=postgres` runs the same cases on `PostgresStore`
//! against the server `DATABASE_URL` names (feature `postgres`; without `DATABASE_URL`
//! the test says so in one line and runs nothing): each store is a schema of its own,
//! created before the case and dropped after it, which the store reaches through
//! `options=-c search_path=<schema>` in its URL. The failing and panicking store wraps
//! either; the cache faults read and edit the cache table (`cache`, or
//! `aqueduct_cache`) through a connection of the harness's own. `eval
//! "$(scripts/postgres.sh)"` starts a server, then
//! `FAULT_STORE=postgres cargo test -p aqueduct --release --features postgres --test faults`
//! (about 30 cases a second on 2 cores). The server must stay up: one restarted
//! meanwhile (the distributed example's test restarts it) fails the cases in flight;
//! `AQUEDUCT_PG_PORT=54339 AQUEDUCT_PG_DIR=/tmp/aqueduct-pg-faults scripts/postgres.sh`
//! starts a server of the harness's own.
#![cfg(feature = "sqlite")]

#[path = "faults/backend.rs"]
mod backend;
#[path = "faults/branches.rs"]
mod branches;
#[path = "faults/build.rs"]
mod build;
#[path = "faults/cache.rs"]
mod cache;
#[path = "faults/case.rs"]
mod case;
#[path = "faults/driver.rs"]
mod driver;
#[path = "faults/exec.rs"]
mod exec;
#[path = "faults/generate.rs"]
mod generate;
#[path = "faults/model.rs"]
mod model;
#[path = "faults/rng.rs"]
mod rng;
#[path = "faults/shrink.rs"]
mod shrink;
#[path = "faults/spec.rs"]
mod spec;
#[path = "faults/value.rs"]
mod value;

/// Seeds that failed (with this generator), with what they hit; they run first. Those
/// of a known finding (F…) fail only with its fault kind enabled (`FAULT_KNOWN`, on by
/// default), and only on code without the fix: on the pre-fix tree (cfedd60) or, for the N… and
/// "residual" ones, on the first fix commit (7c53b32). Shrunk reproductions in the
/// notes are `FAULT_REPRO` values.
const REGRESSIONS: &[(u64, &str)] = &[
    // F1: a capped fan-out stopped with items waiting aborts the process.
    (22, "F1 abort"),
    (24, "F1 abort"),
    (
        62,
        "F1 item that ran missing from the report; 62:rm13,rm6,rm4,rm18,rm12,rm11,rm2,rm10,nf0.9.0.1,nc0,nt2,nr3,nw1,nw9,fi2147483648",
    ),
    (236, "F1; 236:rm5,rm4,nc0,nt0,nr0,nt1,nr2,nw6"),
    // F2: `concurrency` inside a `for` body: waiting items cancelled, jobs run in the wrong item.
    (7, "F2 abort"),
    (
        23,
        "F2 abort; 23:rm21,rm18,rm12,rm23,rm8,rm20,rm9,rm11,nf0.4.1_2.1,rm6",
    ),
    (97, "F2 attempts; 97:rm11,rm5,rm3,rm10,nm0,nr1,fi8,fi8,fi8"),
    (4, "F2 status"),
    (57, "F2 restore"),
    // F3: resumed cleanup tasks and stale checkpoints.
    (
        970,
        "F3 stale checkpoint restored; 970:cr1,rm6,rm19,rm3,rm2,nf2.5..1,nf2.1..1,nt0,nm0,nr4,nw1,fi1,nr1,fi2147483648,fi5,fi2147483648,fi2147483649,fi2147483649",
    ),
    (372, "F3 stale checkpoint restored"),
    (18, "F3 cleanup restored although its input ran again"),
    (
        7455,
        "F3 abort (a restored node re-dispatched); 7455:rm17,rm23,rm12,rm8,rm6,rm3",
    ),
    (
        1367,
        "F3 residual at 7c53b32: a later resume restores a stale cleanup checkpoint",
    ),
    (3238, "F3 residual at 7c53b32"),
    // F4: a store save failure or panic ignored.
    (
        180,
        "F4 a failed save, yet Ok; 180:dr3,dr2,dr1,ff0,rm11,rm8,rm3,rm10,rm7,nr0,nr1,nw1,fi2147483648,fi2147483648,fi2147483649,fi2147483649",
    ),
    (344, "F4"),
    (
        519,
        "F4; 519:dr1,rm15,rm11,rm9,rm2,rm1,rm14,nr2,rm18,nr1,rm19",
    ),
    (3901, "F4 tasks start after the store failed"),
    // F5: panics outside task bodies.
    (
        255,
        "F5 abort (a checkpoint's Serialize panics on rayon); 255:dr1,cr0,sf0,rm7,rm1,rm9,rm6,rm5,rm4,nw3,fi2147483648,fi2147483648",
    ),
    (60, "F5 the store's finish panics through the run future"),
    (162, "F5"),
    // F6: CPU timeouts counting queue time / exceeding concurrency.
    (
        5734,
        "F6 an abandoned attempt and its retry exceed the limit; 5734:dr1,ff0,rm1,nr0,nc1,nt1,nr1,fi3,fi3",
    ),
    (
        8426,
        "F6 queue time: an abandoned queued attempt still runs",
    ),
    (8530, "F6 queue time: a spurious timeout"),
    // F11: fan-out item values kept alive until the run ends.
    (12, "F11"),
    (4, "F11"),
    (
        99,
        "F11 residual at 7c53b32: a failed nested fan-out's ItemsFailed kept in the item's record",
    ),
    (439, "F11 residual at 7c53b32"),
    // F14: cleanup tasks not run after a soft stop.
    (8, "F14"),
    (58, "F14"),
    (64, "F14"),
    // N1 (7c53b32): a supervised CPU attempt the stop kept queued counted as an attempt.
    (40, "N1"),
    (125, "N1"),
    (
        27,
        "N1; 27:gr0,rm23,rm17,rm6,rm16,rm15,rm14,rm13,rm12,rm11,rm10,rm9,rm5,rm4,nt0,nr0,nt1,nt2,nt4,nw1,nw3,fi2147483648,fi2147483648,fi2147483649",
    ),
    // N2 (7c53b32): Cancelled although the output succeeded; now the documented rule.
    (52, "N2 rule"),
    (389, "N2 rule"),
    // The harness itself: a crash during `claim` looked like a released lease.
    (108_605, "harness lease race"),
    // The 1,000,000-case campaign: a resume straight after a simulated crash was refused
    // while the dropped run still held its lease (its last tasks ending); the harness
    // now waits for the release, as a user must.
    (104255, "campaign: resume right after a crash"),
    (181738, "campaign: resume right after a crash"),
    (210738, "campaign: resume right after a crash"),
    (218574, "campaign: resume right after a crash"),
    (229768, "campaign: resume right after a crash"),
    (260046, "campaign: resume right after a crash"),
    // Branches (`if`/`match`), harness bugs: a `branch_option` over a shared branch
    // moved that branch's arms, which had other readers (33); a fan-out of no items
    // after a stop may be cancelled (499); `causality` ordered a branch's readers
    // after the arms it did not take, which end at once (524011, 527688).
    (33, "branches: harness"),
    (499, "branches: harness"),
    (
        524_011,
        "branches: harness, causality through an arm not taken",
    ),
    (
        527_688,
        "branches: harness, causality through an arm not taken",
    ),
    // B1 (fixed): a fan-out whose item had a handled failure and did not finish because
    // the run stopped was `Failed`, not `Cancelled`.
    (1640, "B1"),
    // Item-by-item checkpoints. The harness: an item that never started (the run
    // stopped first, a capped fan-out's item waiting) has its restorable nodes
    // cancelled, not restored.
    (
        4036,
        "items: harness, restorable nodes of an item that never started",
    ),
    (
        3458,
        "items: harness, restorable nodes of an item that never started",
    ),
    // I1 (fixed): a nested body's checkpoints were not saved when the enclosing body
    // checkpointed nothing of its own.
    (
        66,
        "I1; 66:dr1,cr0,gr0,cc0,dr1,ff0,rm18,rm7,rm21,rm17,rm16,rm6,rm4,nf0.5.0.2,nr0,nr1",
    ),
    (429, "I1"),
    // I2 (fixed in 76b4b00, found at 02cb8c6): a fan-out in an item whose inputs run
    // again restored its items' checkpoints.
    (
        945,
        "I2; 945:dr2,cc1,rm2,rm14,rm24,rm22,rm21,rm20,rm13,nf0.19.0_0.1,nc0,nt0,nr0,nt1,nr1,nk11,rm17,nk18,nw1",
    ),
    (1363, "I2"),
    (1832, "I2"),
    // I3 (fixed in 76b4b00, found at 02cb8c6): an item's stale checkpoint was not
    // discarded; a later resume restored it.
    (
        1512,
        "I3; 1512:cr0,rm2,rm20,rm19,rm16,nf0.14.1.1,rm12,nf0.14.4.1,nf0.15.3.1,nf0.18.2.4,nf0.18.3.1,nf0.18.3.3",
    ),
    (1396, "I3"),
    // I4 (fixed; flaky before, about 1 run in 10): values restored for items that never
    // started were alive past their fan-out's end, in a resumed run checkpointing items.
    (5426, "I4"),
    // The result cache. A cached call taking an input by value: its key function
    // cannot read it with `In::get` (a panic: the call ran, never cached), it peeks
    // at it with `In::peek` (added in 40c213b) (158, 233). The harness: a garbage row
    // on an expired one is not read, so it warns of nothing (881); bodies of cached
    // tasks fuse in runs without a cache (2055, 3466: library change 95617e0).
    (
        158,
        "cache: a moved input of a cached call, keyed by In::peek",
    ),
    (
        233,
        "cache: a moved input of a cached call, keyed by In::peek",
    ),
    (881, "cache: harness, a garbage lookup of an expired row"),
    (2055, "cache: harness, cached bodies fuse without a cache"),
    (3466, "cache: harness, cached bodies fuse without a cache"),
    // A stop cancelling a sub-workflow or fan-out of a resumed run before it expanded:
    // the values restored for its nested runs lived until the run's end (about 1 in 200
    // runs of this seed; `drop_nested` on every end without expanding fixes it).
    (
        309_047,
        "restored nested values of an unexpanded sub-workflow outlived it",
    ),
    // D1 (2026-12-01, fixed in b905acf): values whose `Drop` panics, and a regression of
    // the same change.
    (
        192,
        "D1: a failed fan-out's error dropped its items' values uncontained",
    ),
    (
        5026,
        "D1: a task whose checkpoint failed dropped its value in the scheduler",
    ),
    (
        41,
        "dropping a run's values took an alias: an output reached through two branches was lost; 41:cc0,ff0,rm18,rm13,rm4,rm21,rm20,rm11,rm2,nf0.22..1,nc0,nr0,nc1,nr1,nw22,fi2147483648,fi2147483648,fi2147483649",
    ),
];

#[test]
fn faults() {
    if std::env::var_os("FAULT_CHILD").is_some() {
        return;
    }
    driver::parent(REGRESSIONS);
}

/// The worker process `faults` spawns; does nothing when run directly.
#[test]
fn faults_child() {
    if std::env::var_os("FAULT_CHILD").is_none() {
        return;
    }
    driver::child();
}
