//! Every form of `if` and `match` in `workflow!`, kept compiling.
use aqueduct::prelude::*;

#[derive(Debug, Clone)]
pub enum Kind {
    Csv(String),
    Json { text: String, strict: bool },
    Empty,
}

#[derive(Debug, Clone)]
pub struct Doc {
    pub score: u32,
    pub kind: Kind,
}

#[task]
fn load(n: &u32) -> Doc {
    Doc { score: *n, kind: Kind::Empty }
}

#[task]
async fn fetch(n: &u32) -> Result<Doc, TaskError> {
    Ok(Doc { score: *n, kind: Kind::Csv(String::new()) })
}

#[task]
fn grade(doc: &Doc) -> String {
    format!("{}", doc.score)
}

#[task]
fn parse(text: &str) -> usize {
    text.len()
}

#[task]
fn zero(_doc: &Doc) -> usize {
    0
}

#[task]
fn strictness(text: &str, strict: &bool) -> usize {
    text.len() + usize::from(*strict)
}

#[task]
fn consume(doc: Doc) -> u32 {
    doc.score
}

#[task]
fn explain(error: &TaskError) -> String {
    error.to_string()
}

#[task]
fn count(xs: &Vec<u32>) -> usize {
    xs.len()
}

#[task]
fn double(x: &u32) -> u32 {
    x * 2
}

#[task]
fn describe(a: &String, b: &Option<String>, c: &usize, d: &u32, e: &String, f: &usize) -> String {
    format!("{a}{b:?}{c}{d}{e}{f}")
}

workflow! {
    fn inner(n: u32) -> u32 {
        double(&n)
    }
}

workflow! {
    fn every_branch(n: u32, xs: Vec<u32>) -> String {
        let doc = load(&n);
        // `if` / `else if` / `else`, and a condition calling a macro.
        let a = if doc.score > 80 {
            grade(&doc)
        } else if matches!(doc.kind, Kind::Empty) {
            let fetched = fetch(&n);
            grade(&fetched)
        } else {
            grade(&doc)
        };
        // `if` without `else`: an `Option`.
        let b = if n % 2 == 0 { grade(&doc) };
        // `match` on a field, parts by reference, a guard, a struct pattern, a wildcard.
        let c = match doc.kind {
            Kind::Csv(text) if text.len() > n as usize => parse(text),
            Kind::Json { text, strict } => strictness(text, strict),
            _ => zero(&doc),
        };
        // Moving a branch's value moves the taken arm's; an arm with a `for` and a
        // sub-workflow; nested branches.
        let owned = if n > 3 { load(&n) } else { fetch(&n) };
        let d = if xs.is_empty() {
            consume(owned)
        } else {
            let each = for x in &xs {
                let y = if x > 2 { double(x) } else { inner(x).await };
                y
            };
            let total = count(&each);
            match total {
                0 => inner(&n).await,
                _ => consume(owned),
            }
        };
        // A fallback, its failure read by an arm.
        let fetched = fetch(&n);
        let e = match fetched {
            Outcome::Ok(doc) => grade(doc),
            Outcome::Failed(error) => explain(error),
            Outcome::Skipped => grade(&doc),
        };
        let again = fetch(&n);
        let kept = match again {
            Outcome::Ok(doc) => doc,
            _ => load(&n),
        };
        let f = zero(&kept);
        describe(&a, &b, &c, &d, &e, &f)
    }
}

#[task]
fn label(n: &u32) -> String {
    n.to_string()
}

workflow! {
    #[durable]
    fn durable_branch(n: u32) -> String {
        let text = label(&n);
        if n > 1 { label(&n) } else { text }
    }
}

fn main() {
    let _ = every_branch::workflow().graph().to_mermaid();
    let _ = durable_branch::workflow();
}
