//! The types and tasks the `branches` cases share (a module of each case, not a case).
#![allow(dead_code)]

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
pub fn process(n: &u32) -> Processed {
    Processed { score: *n, kind: Kind::Csv(String::new()) }
}

#[task]
pub fn refine(p: &Processed) -> String {
    format!("{}", p.score)
}

#[task]
pub fn count(p: &Processed) -> usize {
    p.score as usize
}

#[task]
pub fn parse(text: &str) -> usize {
    text.len()
}

#[task]
pub fn consume(p: Processed) -> usize {
    p.score as usize
}

#[task]
pub fn show(s: &String) -> usize {
    s.len()
}
