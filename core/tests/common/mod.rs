//! Workflows shared by several test binaries.

use std::time::{Duration, Instant};

use aqueduct::prelude::*;

/// Keeps a CPU busy for `ms` milliseconds.
#[task]
fn burn(ms: &u64) -> u64 {
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(*ms) {
        std::hint::spin_loop();
    }
    *ms
}

#[task]
fn total(a: &u64, b: &u64, c: &u64, d: &u64) -> u64 {
    a + b + c + d
}

workflow! {
    /// Four CPU tasks of `ms` milliseconds each, then their sum.
    pub(crate) fn cpu_heavy(ms: u64) -> u64 {
        let a = burn(&ms);
        let b = burn(&ms);
        let c = burn(&ms);
        let d = burn(&ms);
        total(&a, &b, &c, &d)
    }
}
