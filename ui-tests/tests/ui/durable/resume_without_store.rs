// A run without a store cannot be resumed: `resume` exists only after `.store(..)`.
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
    let _ = doubled::workflow().runner().resume().await;
}
