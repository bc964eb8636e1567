//! Compile-fail and compile-pass snapshots of Aqueduct's macros; see `tests/ui.rs`.
