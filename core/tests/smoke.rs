use aqueduct::prelude::*;

#[task]
fn double(x: &u64) -> u64 {
    x * 2
}

#[derive(Debug)]
struct Oops;
impl std::fmt::Display for Oops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("oops")
    }
}
impl std::error::Error for Oops {}

#[task]
async fn lookup(x: &u64, name: &str) -> Result<u64, Oops> {
    Ok(*x + name.len() as u64)
}

#[task]
fn add(a: &u64, b: &u64) -> u64 {
    a + b
}

workflow! {
    /// Doc comments are kept.
    pub fn my_flow(seed: u64, name: String) -> u64 {
        let a = double(&seed);
        let b = lookup(&a, &name);
        add(&a, &b)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn smoke() {
    assert_eq!(my_flow(3, "x".into()).await.unwrap(), 13);
    println!("{}", my_flow::workflow().graph().to_mermaid());
}
