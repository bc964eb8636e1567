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

workflow! {
    #[durable]
    fn check(url: String) -> u64 {
        let connection = connect(&url);
        ping(&connection)
    }
}

fn main() {}
