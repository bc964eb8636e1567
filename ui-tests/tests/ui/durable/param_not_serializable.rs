use aqueduct::prelude::*;

pub struct Secret {
    pub key: String,
}

#[task]
fn sign(secret: &Secret) -> u64 {
    secret.key.len() as u64
}

workflow! {
    #[durable]
    fn signed(secret: Secret) -> u64 {
        sign(&secret)
    }
}

fn main() {}
