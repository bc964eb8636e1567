//! Aqueduct's macros where `::aqueduct` does not resolve.
//!
//! This crate has Aqueduct only as `flow` (`flow = { package = "aqueduct", … }`), so
//! every `#[task]` and `workflow!` here says where it is with `crate = …`. Without it
//! they would not compile (rustc: "cannot find `aqueduct` in the crate root"),
//! which no test can show from inside this crate. It also re-exports Aqueduct as
//! [`engine`], as a crate built on Aqueduct would, with macros that reach it through
//! `$crate`; `tests/rename.rs` uses every form.

/// Aqueduct, re-exported as a crate built on it would.
pub use flow as engine;

/// A task returning a constant, declared through `$crate`, as a `macro_rules!` of a
/// crate that re-exports Aqueduct would.
#[macro_export]
macro_rules! constant_task {
    ($vis:vis fn $name:ident() -> u64 { $value:expr }) => {
        #[$crate::engine::task(crate = $crate::engine)]
        $vis fn $name() -> u64 {
            $value
        }
    };
}

/// A workflow of one call of `$task` on its parameter, declared through `$crate`.
#[macro_export]
macro_rules! one_call_workflow {
    ($vis:vis fn $name:ident = $task:ident) => {
        $crate::engine::workflow! {
            #[aqueduct(crate = $crate::engine)]
            $vis fn $name(x: u64) -> u64 {
                $task(&x)
            }
        }
    };
}

#[flow::task(crate = flow)]
fn triple(x: &u64) -> u64 {
    x * 3
}

flow::workflow! {
    /// A workflow in the library itself, so `cargo doc` sees its generated docs and
    /// their links through `flow`.
    #[aqueduct(crate = flow)]
    pub fn tripled(x: u64) -> u64 {
        triple(&x)
    }
}
