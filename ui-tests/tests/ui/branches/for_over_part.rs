use aqueduct::prelude::*;

#[derive(Debug, Clone)]
pub enum Kind {
    Csv(String),
    Json(String),
    Xml(String),
}

#[derive(Debug, Clone)]
pub struct Processed {
    pub score: u32,
    pub kind: Kind,
}

#[task]
fn process(n: &u32) -> Processed {
    Processed { score: *n, kind: Kind::Csv(String::new()) }
}

#[task]
fn refine(p: &Processed) -> String {
    format!("{}", p.score)
}

#[task]
fn count(p: &Processed) -> usize {
    p.score as usize
}

#[task]
fn parse(text: &str) -> usize {
    text.len()
}

#[task]
fn consume(p: Processed) -> usize {
    p.score as usize
}

#[task]
fn show(s: &String) -> usize {
    s.len()
}

fn main() {}

#[derive(Debug, Clone)]
pub enum Payload {
    Batch(Vec<u32>),
    One(u32),
}

#[task]
fn load(n: &u32) -> Payload {
    Payload::One(*n)
}

#[task]
fn double(n: &u32) -> u32 {
    n * 2
}

#[task]
fn sum(all: &[u32]) -> u32 {
    all.iter().sum()
}

workflow! {
    fn flow(n: u32) -> u32 {
        let payload = load(&n);
        let total = match payload {
            Payload::Batch(items) => {
                let each = for item in &items {
                    double(item)
                };
                sum(&each)
            }
            Payload::One(one) => double(one),
        };
        total
    }
}
