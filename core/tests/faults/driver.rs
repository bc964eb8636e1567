//! Running many cases. The test spawns itself as a child process that runs the cases
//! on worker threads, so that a case that aborts the process kills only the child: the
//! parent sees which cases were in flight, runs each alone to find the culprit, and
//! goes on with the rest. Failures are confirmed, shrunk, and reported with their seed.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::{Backend, PARENT};
use crate::exec::{Violation, run_case};
use crate::generate::gated_features;
use crate::shrink::{Job, shrink};
use crate::spec::Gates;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

/// One failed case, as the parent reports it.
#[derive(Debug, Clone)]
struct Failure {
    job: String,
    class: String,
    summary: String,
    details: Vec<String>,
}

pub(crate) fn parent(regressions: &[(u64, &str)]) {
    let Some(backend) = Backend::get() else {
        // Uncaptured, so that a skip never passes for a pass.
        let _ = writeln!(
            std::io::stderr(),
            "fault injection did not run: FAULT_STORE=postgres needs DATABASE_URL \
             (`eval \"$(scripts/postgres.sh)\"` starts a server and sets it)"
        );
        return;
    };
    let gates = Gates::from_env();
    let jobs: Vec<String> = match std::env::var("FAULT_REPRO") {
        Ok(repro) => repro
            .split(';')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        Err(_) => {
            // A debug build (plain `cargo test --workspace`) runs fewer; CI runs 10,000
            // in release (`.ci/run`).
            let cases = env_num(
                "FAULT_CASES",
                if cfg!(debug_assertions) {
                    1_000
                } else {
                    10_000
                },
            );
            let start = env_num("FAULT_SEED", 1);
            let mut seen = HashSet::new();
            regressions
                .iter()
                .map(|(seed, _)| *seed)
                .chain(start..start + cases)
                .filter(|seed| seen.insert(*seed))
                .map(|seed| seed.to_string())
                .collect()
        }
    };
    let total = jobs.len();
    let started = Instant::now();
    let mut failures: Vec<Failure> = Vec::new();
    let mut pending: VecDeque<String> = jobs.into();
    let mut passed = 0usize;
    let mut abort_shrinks = env_num("FAULT_SHRINK_ABORTS", 2);
    let mut stats: BTreeMap<String, u64> = BTreeMap::new();
    while !pending.is_empty() {
        let list: Vec<String> = pending.drain(..).collect();
        let run = run_child(&list, Duration::from_secs(60));
        for (k, v) in &run.stats {
            *stats.entry(k.clone()).or_insert(0) += v;
        }
        passed += run.passed.len();
        failures.extend(run.failures);
        let finished: HashSet<&String> = run.passed.iter().chain(run.failed.iter()).collect();
        let in_flight: Vec<String> = run
            .started
            .iter()
            .filter(|j| !finished.contains(j))
            .cloned()
            .collect();
        if run.died.is_none() {
            // Every job ran (jobs never started here could only follow a death).
            continue;
        }
        let death = run.died.clone().unwrap_or_default();
        let not_started: Vec<String> = list
            .iter()
            .filter(|j| !run.started.contains(*j))
            .cloned()
            .collect();
        // Find which in-flight case kills the process: each alone.
        for job in in_flight {
            let alone = run_child(std::slice::from_ref(&job), Duration::from_secs(60));
            match alone.died {
                Some(how) => {
                    let minimal = if abort_shrinks > 0 {
                        abort_shrinks -= 1;
                        shrink_in_children(&job, &gates)
                    } else {
                        job.clone()
                    };
                    let spec = Job::parse(&minimal).map(|j| j.spec(&gates));
                    let mut details = vec![format!(
                        "the child process died ({how}) running this case alone"
                    )];
                    if let Some(spec) = &spec {
                        let what = if minimal == job {
                            "case (not shrunk)"
                        } else {
                            "minimal case"
                        };
                        details.push(format!(
                            "{what} FAULT_REPRO='{minimal}' (uses gated fault kinds: {:?}):",
                            gated_features(spec)
                        ));
                        details.extend(spec.to_string().lines().map(str::to_owned));
                    }
                    failures.push(Failure {
                        job: job.clone(),
                        class: if how.contains("watchdog") {
                            "hang".into()
                        } else {
                            "abort".into()
                        },
                        summary: format!("the process died: {how}"),
                        details,
                    });
                }
                None => {
                    passed += alone.passed.len();
                    failures.extend(alone.failures);
                    if alone.failed.is_empty() && alone.passed.is_empty() {
                        failures.push(Failure {
                            job: job.clone(),
                            class: "abort".into(),
                            summary: format!(
                                "in flight when the child died ({death}); alone it did not report"
                            ),
                            details: Vec::new(),
                        });
                    } else if alone.failed.is_empty() {
                        failures.push(Failure {
                            job: job.clone(),
                            class: "abort".into(),
                            summary: format!(
                                "in flight when the child died ({death}); passed when run alone"
                            ),
                            details: Vec::new(),
                        });
                    }
                }
            }
        }
        pending.extend(not_started);
    }
    backend.test_done();
    let elapsed = started.elapsed();
    println!(
        "fault injection on {}: {total} cases in {:.1} s ({:.0} cases/s), known findings enabled (FAULT_KNOWN): {}; {passed} passed, {} failed",
        backend.label(),
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64().max(1e-9),
        gates.label(),
        failures.len()
    );
    if std::env::var_os("FAULT_STATS").is_some() || !failures.is_empty() {
        let lines: Vec<String> = stats.iter().map(|(k, v)| format!("  {k}: {v}")).collect();
        println!(
            "coverage (before shrinking and reruns):\n{}",
            lines.join("\n")
        );
    }
    if failures.is_empty() {
        return;
    }
    let mut by_class: BTreeMap<String, Vec<&Failure>> = BTreeMap::new();
    for f in &failures {
        by_class.entry(f.class.clone()).or_default().push(f);
    }
    let mut text = String::new();
    for (class, list) in &by_class {
        let seeds: Vec<&str> = list.iter().map(|f| f.job.as_str()).collect();
        text.push_str(&format!(
            "\n== {class}: {} cases: {}\n",
            list.len(),
            seeds.join(" ")
        ));
        for f in list.iter().take(6) {
            text.push_str(&format!("-- case {} ({}): {}\n", f.job, f.class, f.summary));
            for line in &f.details {
                text.push_str(&format!("   {line}\n"));
            }
        }
    }
    println!("{text}");
    panic!(
        "{} of {total} fault-injection cases on {} failed (classes {:?}); reproduce one with FAULT_REPRO=<case> (and the same FAULT_KNOWN={} and FAULT_STORE)",
        failures.len(),
        backend.label(),
        by_class.keys().collect::<Vec<_>>(),
        gates.label()
    );
}

/// What one child process did.
#[derive(Default)]
struct ChildRun {
    started: Vec<String>,
    passed: Vec<String>,
    failed: Vec<String>,
    failures: Vec<Failure>,
    /// How it died, if it did.
    died: Option<String>,
    stats: BTreeMap<String, u64>,
}

fn run_child(jobs: &[String], watchdog: Duration) -> ChildRun {
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args(["faults_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("FAULT_CHILD", "1")
        .env(PARENT, std::process::id().to_string())
        .env(
            "FAULT_SHRINK",
            if jobs.len() == 1 && std::env::var_os("FAULT_NO_SHRINK_ALONE").is_some() {
                "0"
            } else {
                "1"
            },
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the fault-injection child");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = jobs.join("\n");
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
        let _ = stdin.write_all(b"\n");
    });
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut run = ChildRun::default();
    let mut block: Option<Failure> = None;
    let mut killed = false;
    loop {
        match rx.recv_timeout(watchdog) {
            Ok(line) => {
                if let Some(job) = line.strip_prefix("@S ") {
                    run.started.push(job.to_owned());
                } else if let Some(job) = line.strip_prefix("@D ") {
                    run.passed.push(job.to_owned());
                } else if let Some(rest) = line.strip_prefix("@F ") {
                    let mut parts = rest.splitn(3, '\t');
                    block = Some(Failure {
                        job: parts.next().unwrap_or_default().to_owned(),
                        class: parts.next().unwrap_or_default().to_owned(),
                        summary: parts.next().unwrap_or_default().to_owned(),
                        details: Vec::new(),
                    });
                } else if let Some(detail) = line.strip_prefix("@|") {
                    if let Some(b) = &mut block {
                        b.details.push(detail.to_owned());
                    }
                } else if let Some(stats) = line.strip_prefix("@STATS ") {
                    for pair in stats.split(';') {
                        if let Some((k, v)) = pair.split_once('=') {
                            *run.stats.entry(k.to_owned()).or_insert(0) +=
                                v.parse::<u64>().unwrap_or(0);
                        }
                    }
                } else if line.starts_with("@E ")
                    && let Some(b) = block.take()
                {
                    run.failed.push(b.job.clone());
                    run.failures.push(b);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                killed = true;
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait().expect("wait for the child");
    let _ = writer.join();
    let _ = reader.join();
    if killed {
        run.died = Some(format!(
            "killed by the watchdog after {watchdog:?} without output"
        ));
    } else if !status.success() {
        run.died = Some(format!("{status}"));
    }
    run
}

/// Shrinks a case that kills the process, one child per trial.
fn shrink_in_children(job: &str, gates: &Gates) -> String {
    let Some(job) = Job::parse(job) else {
        return job.to_owned();
    };
    let mut fails = |trial: &Job| {
        run_child(&[trial.text()], Duration::from_secs(15))
            .died
            .is_some()
    };
    let (best, _) = shrink(&job, gates, Duration::from_secs(60), 40, &mut fails);
    best.text()
}

/// The child: runs the jobs read from stdin, reporting each on stdout.
pub(crate) fn child() {
    let gates = Gates::from_env();
    static SHOWN: AtomicUsize = AtomicUsize::new(0);
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        if message.contains("[injected]") {
            return;
        }
        let shown = SHOWN.fetch_add(1, Ordering::Relaxed);
        if shown < 20 {
            let thread = std::thread::current();
            eprintln!(
                "@panic in thread {:?}: {info}",
                thread.name().unwrap_or("?")
            );
        } else if shown == 20 {
            eprintln!("@panic: (more unexpected panics in this child process are not shown)");
        }
    }));
    let rayon_threads = env_num("FAULT_RAYON_THREADS", 16) as usize;
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(rayon_threads)
        .build_global();
    let jobs: Vec<String> = std::io::stdin()
        .lock()
        .lines()
        .map_while(Result::ok)
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let shrunk = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let threads = env_num("FAULT_THREADS", 8).max(1) as usize;
    let shrink_on = std::env::var("FAULT_SHRINK").map_or(true, |s| s != "0");
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (jobs, next, shrunk) = (Arc::clone(&jobs), Arc::clone(&next), Arc::clone(&shrunk));
            std::thread::spawn(move || {
                let mut rt = None;
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(text) = jobs.get(i) else { break };
                    println!("@S {text}");
                    let Some(job) = Job::parse(text) else {
                        println!("@F {text}\tharness\tcannot parse the case\n@E {text}");
                        continue;
                    };
                    let violations = run_case(job.spec(&gates), gates, &mut rt);
                    if violations.is_empty() {
                        println!("@D {text}");
                        continue;
                    }
                    let block =
                        failure_block(&job, text, &violations, &gates, &mut rt, shrink_on, &shrunk);
                    println!("{block}");
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    if let Some(backend) = Backend::get() {
        backend.child_done();
    }
    let stats: Vec<String> = crate::case::lock(crate::exec::stats())
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("@STATS {}", stats.join(";"));
}

fn failure_block(
    job: &Job,
    text: &str,
    violations: &[Violation],
    gates: &Gates,
    rt: &mut Option<tokio::runtime::Runtime>,
    shrink_on: bool,
    shrunk: &Mutex<BTreeMap<String, usize>>,
) -> String {
    let class = violations[0].0.clone();
    let same = |vs: &[Violation]| vs.iter().any(|(c, _)| *c == class);
    // How reproducible is it? (A hang costs its whole time limit per try.)
    let hang = class == "hang";
    let mut again = 0;
    for _ in 0..if hang { 1 } else { 2 } {
        if same(&run_case(job.spec(gates), *gates, rt)) {
            again += 1;
        }
    }
    let per_class = env_num("FAULT_SHRINK_PER_CLASS", 3) as usize;
    let take = shrink_on && (!hang || std::env::var_os("FAULT_SHRINK_HANGS").is_some()) && {
        let mut s = crate::case::lock(shrunk);
        let n = s.entry(class.clone()).or_insert(0);
        *n += 1;
        *n <= per_class
    };
    let mut lines = Vec::new();
    lines.push(format!(
        "reproduced {again} of {} reruns",
        if hang { 1 } else { 2 }
    ));
    lines.push("violations:".to_owned());
    for (c, m) in violations.iter().take(8) {
        lines.push(format!("  [{c}] {m}"));
    }
    let spec = job.spec(gates);
    lines.push(format!(
        "case {text} (uses gated fault kinds: {:?}):",
        gated_features(&spec)
    ));
    lines.extend(spec.to_string().lines().map(|l| format!("  {l}")));
    if take && again > 0 {
        let mut fails =
            |trial: &Job| (0..2).any(|_| same(&run_case(trial.spec(gates), *gates, rt)));
        let (best, trials) = shrink(job, gates, Duration::from_secs(60), 150, &mut fails);
        let spec = best.spec(gates);
        let vs = run_case(spec.clone(), *gates, rt);
        lines.push(format!(
            "minimal reproduction after {trials} trials: FAULT_REPRO='{}' (uses gated fault kinds: {:?})",
            best.text(),
            gated_features(&spec)
        ));
        lines.extend(spec.to_string().lines().map(|l| format!("  {l}")));
        for (c, m) in vs.iter().take(6) {
            lines.push(format!("  [{c}] {m}"));
        }
    }
    let mut block = format!("@F {text}\t{class}\t{}", violations[0].1.replace('\n', " "));
    for l in lines {
        block.push_str("\n@|");
        block.push_str(&l);
    }
    block.push_str(&format!("\n@E {text}"));
    block
}
