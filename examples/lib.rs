//! Runnable examples of Aqueduct: see the `[[example]]` targets in this package.

/// Appends `event` as a line to the file named by `CRASH_LOG`, if set: what the crash
/// tests' workflows (`bin/crash_*.rs`) log, so a test can see what ran before a kill.
/// One `write` per line: with `O_APPEND` two tasks' lines never interleave. `sync`
/// makes it survive more than the process (a SIGKILL keeps unsynced lines too).
pub fn crash_log(event: &str, sync: bool) {
    use std::io::Write;
    let Some(path) = std::env::var_os("CRASH_LOG") else {
        return;
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("the crash log opens");
    file.write_all(format!("{event}\n").as_bytes())
        .expect("the crash log takes a line");
    if sync {
        file.sync_data().expect("the crash log syncs");
    }
}

/// The workflows the distributed tests (`tests/distributed.rs`) run on worker
/// processes (`bin/dist_worker.rs`): built the same in every process, so every
/// process has the same fingerprint.
pub mod dist {
    use std::time::Duration;

    use aqueduct::graph::{Builder, Handle, Step};
    use aqueduct::task::TaskInfo;
    use aqueduct::{Kind, Outcome, Workflow};

    /// `width` chains of three tasks from the parameter (CPU, IO, CPU; `x + i`, `* 2`,
    /// `+ 1`), each task logging its execution, their sum, and a cleanup that reads the
    /// sum's outcome: `3 * width + 2` tasks.
    pub fn spread(width: usize) -> Workflow<(u64,), String> {
        let (mut b, (x,)) = Builder::<(u64,)>::new("spread", ["x"]);
        b.durable(1);
        let mut ends: Vec<Handle<u64>> = Vec::new();
        for i in 0..width as u64 {
            let first = b.node(
                TaskInfo::new("add", Kind::Cpu),
                format!("add{i}"),
                (x,),
                move |inp| {
                    let (x,) = inp.get();
                    crate::crash_log(&format!("add{i}"), false);
                    Step::done(Ok(x + i))
                },
            );
            let second = b.node(
                TaskInfo::new("twice", Kind::Io),
                format!("twice{i}"),
                (first,),
                move |inp| {
                    let (v,) = inp.get();
                    let v = *v;
                    Step::pending(async move {
                        crate::crash_log(&format!("twice{i}"), false);
                        tokio::task::yield_now().await;
                        Ok(v * 2)
                    })
                },
            );
            let third = b.node(
                TaskInfo::new("inc", Kind::Cpu),
                format!("inc{i}"),
                (second,),
                move |inp| {
                    let (v,) = inp.get();
                    crate::crash_log(&format!("inc{i}"), false);
                    Step::done(Ok(v + 1))
                },
            );
            for node in [first, second, third] {
                b.checkpoint(node);
            }
            ends.push(third);
        }
        let total = b.node(TaskInfo::new("sum", Kind::Cpu), "total", ends, |inp| {
            crate::crash_log("total", false);
            Step::done(Ok(inp.get().into_iter().sum::<u64>()))
        });
        b.checkpoint(total);
        let mut cleanup = TaskInfo::new("cleanup", Kind::Cpu);
        cleanup.outcome_inputs = 1;
        let done = b.node(cleanup, "cleanup", (total,), |inp| {
            let (total,): (&Outcome<u64>,) = inp.outcomes();
            crate::crash_log("cleanup", false);
            Step::done(Ok(match total.value() {
                Some(total) => format!("total {total}"),
                None => "no total".to_owned(),
            }))
        });
        b.checkpoint(done);
        b.output(done)
    }

    /// A task that naps for `ms` milliseconds (IO: a tokio sleep) logging its start and
    /// end — or aborts its process for `ms = 0` — then a CPU task: what the tests kill
    /// or stall a worker in.
    pub fn nap() -> Workflow<(u64,), u64> {
        let (mut b, (ms,)) = Builder::<(u64,)>::new("nap", ["ms"]);
        b.durable(1);
        let napped = b.node(TaskInfo::new("nap", Kind::Io), "napped", (ms,), |inp| {
            let (ms,) = inp.get();
            let ms = *ms;
            Step::pending(async move {
                crate::crash_log(&format!("nap start {}", std::process::id()), true);
                if ms == 0 {
                    // A task that crashes the process it runs in.
                    std::process::abort();
                }
                tokio::time::sleep(Duration::from_millis(ms)).await;
                crate::crash_log(&format!("nap end {}", std::process::id()), true);
                Ok(ms)
            })
        });
        let after = b.node(
            TaskInfo::new("after", Kind::Cpu),
            "after",
            (napped,),
            |inp| {
                let (ms,) = inp.get();
                Step::done(Ok(ms + 1))
            },
        );
        b.checkpoint(napped);
        b.checkpoint(after);
        b.output(after)
    }
}
