//! A cached task whose types serde cannot handle, called from a workflow: each mistake
//! is reported at `cache`, and where the workflow calls the task.
use aqueduct::prelude::*;

pub struct Settings {
    pub depth: u32,
}

pub struct Plan {
    pub steps: Vec<String>,
}

#[task]
fn settings() -> Settings {
    Settings { depth: 3 }
}

#[task(cache)]
fn plan(settings: &Settings) -> Plan {
    Plan { steps: vec![format!("{}", settings.depth)] }
}

#[task]
fn count(plan: &Plan) -> usize {
    plan.steps.len()
}

workflow! {
    fn planned() -> usize {
        let s = settings();
        let p = plan(&s);
        count(&p)
    }
}

fn main() {}
