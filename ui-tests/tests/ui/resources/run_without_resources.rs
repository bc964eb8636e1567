use std::sync::Arc;

use aqueduct::prelude::*;

struct Client;

#[task]
fn call(x: &u64, _client: &Arc<Client>) -> u64 {
    *x
}

workflow! {
    fn flow(x: u64, #[resource] client: Arc<Client>) -> u64 {
        call(&x, &client)
    }
}

#[tokio::main]
async fn main() {
    let _ = flow::workflow().run((1,)).await;
    let _ = flow::workflow().runner();
}
