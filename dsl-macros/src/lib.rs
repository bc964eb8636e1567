//! The `#[task]` and `workflow!` macros of Aqueduct.
//!
//! Depend on `aqueduct`, which re-exports both; the docs there show them in use.

use proc_macro::TokenStream;

mod crate_path;
mod errors;
mod options;
mod spans;
mod task;
mod task_call;
mod workflow;

/// Marks a function as a task a `workflow!` can call.
///
/// The function stays as written and callable without the runtime (its body begins
/// with one check for a fake put in force by a faked workflow's node; called directly,
/// it runs its body: see below). A plain
/// `fn` is CPU work and runs on rayon; an `async fn` is IO work and runs on tokio.
/// An input is `&T` (shared with its other readers; the task runs if it succeeded),
/// `&Outcome<T>` (whatever became of it: a cleanup task), or `T` (moved into this
/// task, its one reader; the workflow passes the binding without `&`). The return
/// type is the output `T`, or `Result<T, E>` whose `Err` fails the task.
///
/// # Options
///
/// `retries = 3, retry_delay = "1s", backoff = "exponential", max_delay = "30s",
/// jitter = true, retry_panics = false, timeout = "10s", concurrency = 4`, each checked
/// at its token. Unless given: no retries; with `retries`, a `retry_delay` of `"1s"`,
/// `"exponential"` backoff, no `max_delay`, `jitter = true` (each delay a random part of
/// it, between half and all), and panics not retried; no timeout and no concurrency
/// limit. A task with an input by value cannot be retried with that value:
/// `retries` on it is an error unless it also says `retry_clones = true`, which gives
/// every attempt but the last a clone of each by-value input (their types must be
/// `Clone`); the last attempt takes the value itself.
///
/// # `cache`
///
/// `cache` (kept until cleared), `cache = "7d"` (an expiry: `ms`, `s`, `m`, `h` or
/// `d`), with `version = N` (0 unless given): the task's results are kept in the
/// run's store (a durable run's, or the one given to `Runner::cache`), keyed by the
/// task's name, a hash of its signature and body, `version`, and its inputs' serde
/// encodings; a later call with the same key loads the result instead of running, and
/// the report says `cached`. Every input type must be `serde::Serialize` and the output
/// `Serialize + Deserialize`, checked at `cache`; an input `&Outcome<T>` is refused.
/// The code hash does not see the functions the task calls: bump `version` when they
/// change. `version` without `cache` is an error.
///
/// ```ignore
/// #[task(cache = "7d", version = 2)]
/// async fn quote(symbol: &String) -> Result<u64, std::io::Error> { /* … */ }
/// ```
///
/// # Fakes
///
/// `name::fake(f)` makes a fake of the task for a workflow's `with_fakes` (see
/// `aqueduct::fake`): `f` takes the task's inputs as the task does and returns what it
/// returns; for an `async fn` task, a `Send + 'static` future of it (copy what the
/// future needs out of the inputs first). A fake of another signature is a compile
/// error at the fake (for a wrong input type, with a note showing the task's
/// signature). `.without_retry_delays()` on it keeps the task's retries without their
/// delays.
///
/// ```ignore
/// let faked = flow::with_fakes([fetch::fake(|page| {
///     let page = *page;
///     async move { Ok(format!("page {page}")) }
/// })])?;
/// ```
///
/// # `crate = path`
///
/// The expansion names Aqueduct `::aqueduct`. A crate that depends on it under another
/// name, or reaches it through another crate's re-export, says where it is:
///
/// ```ignore
/// // Cargo.toml: flow = { package = "aqueduct", version = "0.1" }
/// #[flow::task(crate = flow)]
/// fn double(x: &u64) -> u64 {
///     x * 2
/// }
///
/// #[my_lib::aqueduct::task(crate = my_lib::aqueduct, retries = 3)]
/// async fn fetch(url: &String) -> Result<String, std::io::Error> { /* … */ }
/// ```
///
/// The value is a path as it would be written in a `use` (`flow`, `::flow`,
/// `my_lib::aqueduct`, and `$crate::aqueduct` in a `macro_rules!` of a crate that
/// re-exports Aqueduct), or that path in a string (`crate = "flow"`), as serde's and
/// tokio's `crate` options take it. It sits among the other options, in any order.
/// Without it, in a crate where `::aqueduct` does not resolve, rustc says "cannot find
/// `aqueduct` in the crate root" (and may suggest an unrelated import): that is the
/// sign this option is missing.
/// A workflow that calls the task names the crate for itself:
/// `#[aqueduct(crate = path)]`, see [`workflow!`](macro@workflow).
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    task::expand(args.into(), item.into()).into()
}

/// Wires tasks into a workflow with `let` bindings; every binding is a node and every
/// input an edge.
///
/// Expands to an `async`-style function with the workflow's parameters that runs the
/// graph and returns `Result<Output, aqueduct::Error>`, and a same-named type whose
/// `workflow()` gives the built graph and `with_fakes(fakes)` the same graph built with
/// some tasks replaced by fakes (`task_name::fake(f)`, for tests: see `aqueduct::fake`).
///
/// # Forms
///
/// - `let b = task(&a, &c.field);` — a node; `&a` shares `a` (or a field of it) with
///   every other reader.
/// - `let b = task(a);` — `a` is moved into `task`, its one reader: reading `a`
///   anywhere else (another task, the tail, a loop) is a compile error at both tokens.
///   Fields cannot be moved (`task(a.field)`): the rest of `a` would be shared while
///   one part is gone; have a task return the part as a binding of its own.
/// - `let each = for item in &items { … };` — a fan-out: the body runs once per item,
///   which it reads in place (bare `item` is already a reference); `for item in items`
///   takes `items` and moves each item into its run (`item` shared with `&item`, or
///   moved into one task).
/// - `#[concurrency = N] for …` — at most N items at once.
/// - `let v = if cond { … } else if other { … } else { … };` — a branch: `cond` is
///   ordinary Rust over earlier bindings, where a name is the value itself, read in
///   place (`p.score > 80`, `n % 2 == 0`); the arm it picks runs, the others are
///   reported not taken. `v` is the taken arm's value (each arm ends with one, of one
///   type), shared in place. Without `else`, `v` is an `Option`, `None` when not
///   taken, and the arm's value is moved into it.
/// - `let v = match x.field { Kind::A(part) => task(part), _ => … };` — the `match` is on
///   a reference, so the arms' parts (`part`) are references, passed bare like a loop's
///   item; rustc checks the patterns and that the `match` is exhaustive. Names bound in
///   an arm stay inside it. The nodes are named `v.match`, `v.A.task`, `v`.
/// - `let v = match b { Outcome::Ok(value) => value, _ => fallback(&c) };` — patterns
///   naming `Outcome` match what became of binding `b`: the arms run whether it
///   succeeded or not, and its failure is *handled*: reported so, it does not fail the
///   run.
/// - `let out = other(&a).await;` — another workflow as one node.
/// - `#[durable]` / `#[durable(version = N)]` on the `fn` — resumable runs.
/// - `fn f(day: String, #[resource] db: Pool)` — a resource, after the other
///   parameters: a value each run is given (a connection pool, a client), read by tasks
///   with `&db` like any input, never saved, checkpointed or part of a durable run's
///   input (so it needs no serde), and never moved. The function takes it like any
///   parameter; `f::workflow()` is a `Workflow<P, O, R>` that runs with `run_with(params,
///   resources)` and `runner_with(resources)` (`run` and `runner` without them do not
///   compile), and a resumed run is given them again.
///
/// ```ignore
/// use std::sync::Arc;
/// use aqueduct::prelude::*;
///
/// struct Client; // not `Serialize`, and need not be
///
/// impl Client {
///     fn get(&self, page: u32) -> String {
///         format!("page {page}")
///     }
/// }
///
/// #[task]
/// async fn fetch(page: &u32, client: &Arc<Client>) -> String {
///     client.get(*page)
/// }
///
/// workflow! {
///     #[durable]
///     fn crawl(page: u32, #[resource] client: Arc<Client>) -> String {
///         fetch(&page, &client)
///     }
/// }
///
/// # #[tokio::main] async fn main() {
/// let client = Arc::new(Client);
/// assert_eq!(crawl(3, Arc::clone(&client)).await.unwrap(), "page 3");
/// let outcome = crawl::workflow().runner_with((client,)).run((4,)).await;
/// assert_eq!(outcome.result.unwrap(), "page 4");
/// # }
/// ```
///
/// # `#[aqueduct(crate = path)]`
///
/// The expansion names Aqueduct `::aqueduct`. A crate that depends on it under another
/// name, or reaches it through another crate's re-export, says where it is with this
/// attribute on the workflow's `fn`, beside its docs and `#[durable]`:
///
/// ```ignore
/// // Cargo.toml: flow = { package = "aqueduct", version = "0.1" }
/// use flow::{task, workflow};
///
/// #[task(crate = flow)]
/// fn double(x: &u64) -> u64 {
///     x * 2
/// }
///
/// workflow! {
///     #[aqueduct(crate = flow)]
///     pub fn doubled(x: u64) -> u64 {
///         double(&x)
///     }
/// }
/// ```
///
/// The path takes the forms `#[task(crate = …)]` takes. The attribute is the macro's
/// own and is not emitted. The tasks and workflows a workflow calls are expanded on
/// their own, so each of them names the crate too.
#[proc_macro]
pub fn workflow(input: TokenStream) -> TokenStream {
    workflow::expand(input.into()).into()
}
