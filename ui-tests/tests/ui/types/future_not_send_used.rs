use aqueduct::prelude::*;
use std::rc::Rc;

#[task]
async fn fetch(x: &u64) -> u64 {
    let local = Rc::new(*x);
    tokio::task::yield_now().await;
    *local
}

workflow! {
    fn flow(seed: u64) -> u64 {
        fetch(&seed)
    }
}

fn main() {}
