//! The progress of a running command: a bar on a terminal, a log line a second
//! elsewhere.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use crate::progress::Progress;

/// A progress bar on a terminal, a log line a second elsewhere.
pub(super) struct Ticker {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Ticker {
    pub(super) fn start(progress: Arc<Progress>) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let terminal = std::io::stderr().is_terminal();
            let bar = terminal.then(|| {
                let bar = indicatif::ProgressBar::new(0);
                let style = indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} tasks, {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> ");
                bar.set_style(style);
                bar
            });
            let mut last = None;
            let mut tick = tokio::time::interval(if terminal {
                Duration::from_millis(100)
            } else {
                Duration::from_secs(1)
            });
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut stopped => break,
                }
                let now = (progress.done(), progress.total(), progress.running());
                match &bar {
                    Some(bar) => {
                        bar.set_length(now.1);
                        bar.set_position(now.0);
                        bar.set_message(format!("{} running", now.2));
                    }
                    None if last != Some(now) && now.1 > 0 => {
                        eprintln!("{}", progress_line(now));
                    }
                    None => {}
                }
                last = Some(now);
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
        });
        Self { stop, task }
    }

    pub(super) fn stop(self, progress: &Progress) {
        let _ = self.stop.send(());
        self.task.abort();
        if !std::io::stderr().is_terminal() && progress.total() > 0 {
            eprintln!(
                "{}",
                progress_line((progress.done(), progress.total(), progress.running()))
            );
        }
    }
}

fn progress_line((done, total, running): (u64, u64, u64)) -> String {
    format!("progress: {done}/{total} tasks done, {running} running")
}
