use aqueduct::prelude::*;

#[task]
fn double(x: &u64) -> u64 {
    x * 2
}

workflow! {
    fn flow(seed: u64) -> u64 {
        double(&seed)
    }
}

fn main() {
    // The fake must return what the task returns: `u64`.
    let _ = flow::with_fakes([double::fake(|x| format!("{x}"))]);
}
