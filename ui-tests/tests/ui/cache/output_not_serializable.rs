use aqueduct::prelude::*;

/// A connection: not data, cannot be saved.
pub struct Connection {
    pub url: String,
}

#[task(cache)]
fn connect(url: &String) -> Connection {
    Connection { url: url.clone() }
}

fn main() {}
