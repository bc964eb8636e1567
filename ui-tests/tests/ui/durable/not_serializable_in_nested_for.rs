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

#[task]
fn hosts(url: &String) -> Vec<String> {
    vec![url.clone()]
}

workflow! {
    #[durable]
    fn check(urls: Vec<String>) -> Vec<u64> {
        let each = for url in &urls {
            let names = hosts(url);
            let per_host = for name in &names {
                let connection = connect(name);
                ping(&connection)
            };
            total(&per_host)
        };
        each
    }
}

fn main() {}
