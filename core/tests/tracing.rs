//! Every run is a span and every task execution a span inside it, named after its task.

use std::io::Write;
use std::sync::{Arc, Mutex};

use aqueduct::prelude::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[task]
fn double(x: &u64) -> u64 {
    tracing::info!("doubling");
    x * 2
}

#[task]
async fn shout(x: &u64) -> String {
    tracing::info!("shouting");
    format!("{x}!")
}

workflow! {
    fn traced(x: u64) -> String {
        let twice = double(&x);
        shout(&twice)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_and_tasks_are_spans() {
    let capture = Capture::default();
    let writer = capture.clone();
    // Global, because tasks run on rayon and tokio threads, not this one.
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    assert_eq!(traced(4).await.unwrap(), "8!");
    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains(
            r#"workflow{name=traced}:task{task="double" node=twice attempt=1}: tracing: doubling"#
        ),
        "{log}"
    );
    assert!(
        log.contains(
            r#"workflow{name=traced}:task{task="shout" node=shout attempt=1}: tracing: shouting"#
        ),
        "{log}"
    );
}
