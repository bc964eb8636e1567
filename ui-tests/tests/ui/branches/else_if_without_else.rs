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

workflow! {
    fn flow(n: u32) -> Option<String> {
        let processed = process(&n);
        let label = if n > 10 { refine(&processed) } else if n > 3 { refine(&processed) };
        label
    }
}
