//! Every kind of task faked, in a workflow with a resource: the fakes compile against
//! each signature and the faked workflow runs. No warning either: the look for a fake
//! that `#[task]` puts in a body must not make rustc see the body anew.
#![deny(warnings)]

use std::sync::Arc;

use aqueduct::prelude::*;

struct Client {
    base: u64,
}

#[task]
fn items(n: &u64) -> Vec<u64> { (0..*n).collect() }

/// By value, retried with clones.
#[task(retries = 1, retry_clones = true)]
fn sorted(mut xs: Vec<u64>) -> Vec<u64> {
    xs.sort_unstable();
    xs
}

/// IO, with a resource.
#[task]
async fn fetch(x: &u64, client: &Arc<Client>) -> Result<u64, std::io::Error> {
    Ok(client.base + x)
}

/// A pattern for a parameter, and a tolerant input.
#[task]
fn report(&first: &u64, all: &Outcome<Vec<u64>>) -> String {
    format!("{first} {}", all.value().map_or(0, Vec::len))
}

workflow! {
    fn flow(n: u64, #[resource] client: Arc<Client>) -> String {
        let xs = items(&n);
        let ordered = sorted(xs);
        let fetched = for x in &ordered {
            fetch(x, &client)
        };
        report(&n, &fetched)
    }
}

fn main() {
    let faked = flow::with_fakes([
        items::fake(|n| vec![*n; 2]),
        sorted::fake(|xs| xs),
        fetch::fake(|x, client| {
            let sum = client.base * x;
            async move { Ok(sum) }
        }),
        report::fake(|first, all| format!("{first} {}", all.value().is_some())),
    ])
    .unwrap();
    let client = Arc::new(Client { base: 1 });
    assert_eq!(faked.run_blocking_with((3,), (client,)).unwrap(), "3 true");
}
