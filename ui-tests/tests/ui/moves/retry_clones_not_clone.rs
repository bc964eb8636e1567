use aqueduct::prelude::*;

pub struct Connection {
    pub url: String,
}

#[task(retries = 2, retry_clones = true)]
fn send(connection: Connection, body: &String) -> usize {
    connection.url.len() + body.len()
}

fn main() {}
