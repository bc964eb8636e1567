//! A durable workflow whose resource cannot be saved: it never is.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aqueduct::prelude::*;

struct Meter(AtomicU64);

#[task]
fn items(n: &u64) -> Vec<u64> {
    (0..*n).collect()
}

#[task]
fn measure(x: &u64, meter: &Arc<Meter>) -> u64 {
    meter.0.fetch_add(*x, Ordering::SeqCst) + x
}

#[task]
fn total(xs: &[u64]) -> u64 {
    xs.iter().sum()
}

workflow! {
    #[durable]
    fn metered(n: u64, #[resource] meter: Arc<Meter>) -> u64 {
        let xs = items(&n);
        let each = for x in &xs {
            measure(x, &meter)
        };
        total(&each)
    }
}

fn main() {
    let meter = Arc::new(Meter(AtomicU64::new(0)));
    let _ = metered::workflow().run_blocking_with((3,), (meter,));
}
