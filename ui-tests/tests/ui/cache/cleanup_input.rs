use aqueduct::prelude::*;

#[task(cache)]
fn report(rows: &Outcome<Vec<u64>>) -> String {
    format!("{}", rows.value().is_some())
}

fn main() {}
