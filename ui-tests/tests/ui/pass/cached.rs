//! Cached tasks in every form a workflow can call them: shared, field and moved
//! inputs, a `&[T]` parameter given a `Vec`, an async task, in a `for` body and in a
//! `match` arm on a part.

use aqueduct::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Order {
    pub id: u64,
    pub lines: Vec<u64>,
    pub kind: Kind,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub enum Kind {
    Small(u64),
    Large { weight: u64 },
}

#[task]
fn load(id: &u64) -> Order {
    Order { id: *id, lines: vec![1, 2, 3], kind: Kind::Small(*id) }
}

#[task(cache)]
fn total(lines: &[u64]) -> u64 {
    lines.iter().sum()
}

#[task(cache = "7d", version = 3)]
fn priced(id: &u64, total: &u64) -> String {
    format!("{id}: {total}")
}

#[task]
fn lines(order: &Order) -> Vec<u64> {
    order.lines.clone()
}

#[task(cache)]
fn sorted(mut lines: Vec<u64>) -> Vec<u64> {
    lines.sort_unstable();
    lines
}

#[task(cache = "12h")]
async fn fetch(line: &u64) -> String {
    format!("line {line}")
}

#[task(cache)]
fn weigh(weight: &u64) -> u64 {
    weight * 2
}

#[task]
fn none() -> u64 {
    0
}

#[task]
fn combine(label: &String, heavy: &u64, fetched: &Vec<String>) -> Vec<String> {
    let mut all = vec![label.clone(), heavy.to_string()];
    all.extend(fetched.iter().cloned());
    all
}

workflow! {
    fn every_cached_form(id: u64) -> Vec<String> {
        let order = load(&id);
        let sum = total(&order.lines);
        let label = priced(&order.id, &sum);
        let all = lines(&order);
        let ordered = sorted(all);
        let heavy = match order.kind {
            Kind::Large { weight } => weigh(weight),
            Kind::Small(_) => none(),
        };
        let fetched = for line in &ordered {
            fetch(line)
        };
        combine(&label, &heavy, &fetched)
    }
}

fn main() {}
