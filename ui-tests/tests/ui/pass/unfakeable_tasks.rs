//! Tasks whose functions cannot look for a fake still compile and run as written: a
//! `const fn`, a parameter of an `impl Trait` type, a parameter type private to its
//! module, a parameter pattern whose bindings a temporary of the body's tail borrows.

use std::fmt::Display;
use std::sync::Mutex;

use aqueduct::prelude::*;

#[task]
const fn one(x: &u64) -> u64 {
    *x + 1
}

#[task]
fn shown(x: &impl Display) -> String {
    x.to_string()
}

pub struct Locked {
    pub lock: Mutex<Vec<u64>>,
}

#[task]
fn locked(x: &u64) -> Locked {
    Locked { lock: Mutex::new(vec![*x]) }
}

#[task]
fn size(Locked { lock }: Locked) -> usize {
    lock.lock().unwrap().len()
}

mod stages {
    use aqueduct::prelude::*;

    struct Raw(u64);

    #[task]
    fn make(x: &u64) -> Raw {
        Raw(*x)
    }

    #[task]
    #[allow(private_interfaces)]
    pub(crate) fn parse(r: &Raw) -> u64 {
        r.0
    }

    workflow! {
        pub(crate) fn parsed(x: u64) -> u64 {
            let r = make(&x);
            parse(&r)
        }
    }
}

workflow! {
    fn flow(x: u64) -> usize {
        let y = one(&x);
        let s = shown(&y);
        let l = locked(&y);
        let n = size(l);
        n
    }
}

fn main() {
    assert_eq!(flow::workflow().run_blocking((2,)).unwrap(), 1);
    assert_eq!(stages::parsed::workflow().run_blocking((2,)).unwrap(), 2);
}
