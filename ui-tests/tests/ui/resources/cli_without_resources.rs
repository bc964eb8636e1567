use std::sync::Arc;

use aqueduct::cli::Cli;
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

fn main() {
    // `Cli::with_resources(flow::workflow(), || (Arc::new(Client),))` gives them.
    let _ = Cli::new(flow::workflow());
}
