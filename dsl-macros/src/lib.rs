//! The `#[task]` and `workflow!` macros of Aqueduct.
//!
//! Depend on `aqueduct`, which re-exports both; the docs there show them in use.

use proc_macro::TokenStream;

mod errors;
mod options;
mod task;
mod workflow;

/// Marks a function as a task a `workflow!` can call.
///
/// The function stays exactly as written and callable without the runtime. A plain
/// `fn` is CPU work and runs on rayon; an `async fn` is IO work and runs on tokio.
/// Inputs are shared references (`&T`); the return type is the output `T`, or
/// `Result<T, E>` whose `Err` fails the task.
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    task::expand(args.into(), item.into()).into()
}

/// Wires tasks into a workflow with `let` bindings; every binding is a node and every
/// `&input` an edge.
///
/// Expands to an `async`-style function with the workflow's parameters that runs the
/// graph and returns `Result<Output, aqueduct::Error>`, and a same-named type whose
/// `workflow()` gives the built graph.
#[proc_macro]
pub fn workflow(input: TokenStream) -> TokenStream {
    workflow::expand(input.into()).into()
}
