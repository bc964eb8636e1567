use aqueduct::prelude::*;

pub struct Connection {
    pub url: String,
}

#[task]
fn connect(url: &String) -> Connection {
    Connection { url: url.clone() }
}

#[task(retries = 2, retry_clones = true)]
fn send(connection: Connection, body: &String) -> usize {
    connection.url.len() + body.len()
}

workflow! {
    fn flow(url: String) -> usize {
        let connection = connect(&url);
        send(connection, &url)
    }
}

fn main() {}
