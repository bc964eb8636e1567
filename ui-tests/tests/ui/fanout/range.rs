use aqueduct::prelude::*;

#[task]
fn fetch(page: &u32) -> u32 {
    *page
}

#[task]
fn total(pages: &[u32]) -> u32 {
    pages.iter().sum()
}

workflow! {
    fn flow(count: u32) -> u32 {
        let each = for page in 0..count {
            fetch(page)
        };
        total(&each)
    }
}

fn main() {}
