use aqueduct::prelude::*;

pub struct Settings {
    pub depth: u32,
}

#[task(cache = "1h")]
fn plan(settings: &Settings, name: &str) -> String {
    format!("{name} to depth {}", settings.depth)
}

fn main() {}
