// A run id means nothing without a store: `run_id` exists only after `.store(..)`.
use aqueduct::prelude::*;

#[task]
fn double(x: &u64) -> u64 {
    x * 2
}

workflow! {
    #[durable]
    fn doubled(x: u64) -> u64 {
        double(&x)
    }
}

#[tokio::main]
async fn main() {
    let _ = doubled::workflow().runner().run_id("r").run((1,)).await;
}
