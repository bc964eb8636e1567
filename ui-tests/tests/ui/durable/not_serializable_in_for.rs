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
    fn check(urls: Vec<String>) -> u64 {
        let each = for url in &urls {
            let connection = connect(url);
            ping(&connection)
        };
        total(&each)
    }
}

fn main() {}
