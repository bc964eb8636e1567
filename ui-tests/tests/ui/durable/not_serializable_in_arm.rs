use aqueduct::prelude::*;

pub struct Connection {
    pub url: String,
}

#[task]
fn connect(url: &String) -> Connection {
    Connection { url: url.clone() }
}

#[task]
fn ping(connection: &Connection) -> u64 {
    connection.url.len() as u64
}

#[task]
fn total(all: &[u64]) -> u64 {
    all.iter().sum()
}

workflow! {
    #[durable]
    fn check(url: String) -> u64 {
        let size = if url.len() > 3 {
            let connection = connect(&url);
            ping(&connection)
        } else {
            ping_nothing(&url)
        };
        size
    }
}

#[task]
fn ping_nothing(_url: &String) -> u64 {
    0
}

fn main() {}
