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

#[task]
async fn fetch(n: &u32) -> Result<Processed, TaskError> {
    Ok(Processed { score: *n, kind: Kind::Json(String::new()) })
}

workflow! {
    fn flow(n: u32, ns: Vec<u32>) -> Vec<Processed> {
        let fetched = fetch(&n);
        let each = for m in &ns {
            let kept = match fetched {
                Outcome::Ok(p) => p,
                _ => process(m),
            };
            kept
        };
        each
    }
}
