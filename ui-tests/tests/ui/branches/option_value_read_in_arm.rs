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
    fn flow(n: u32) -> usize {
        let high = if n > 3 {
            let p = process_one(&n);
            let refined = refine(&p);
            let size = show(&refined);
            refined
        };
        count_all(&high)
    }
}

#[task]
fn process_one(n: &u32) -> Processed {
    Processed { score: *n, kind: Kind::Json(String::new()) }
}

#[task]
fn count_all(high: &Option<String>) -> usize {
    high.as_ref().map_or(0, String::len)
}