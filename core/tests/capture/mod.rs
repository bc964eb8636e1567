//! What a global `tracing` subscriber writes, kept for a test to read (tasks run on
//! rayon's and tokio's threads, so the subscriber is the process's).

use std::io::Write;
use std::sync::{Arc, Mutex};

/// The bytes written so far; a clone writes to the same buffer.
#[derive(Clone, Default)]
pub(crate) struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Installs a global `fmt` subscriber at `level`, without colours, writing here.
    pub(crate) fn install(level: tracing::Level) -> Self {
        let capture = Self::default();
        let writer = capture.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(level)
            .init();
        capture
    }

    /// Everything written so far, as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
