//! Distributed runs with worker processes (`bin/dist_worker.rs`) against a real
//! PostgreSQL server: a 2,000-task run finished by four workers, a worker killed with
//! SIGKILL mid-task, a worker stalled with SIGSTOP past its lease whose late commit is
//! refused, and the server restarted mid-run. Needs `DATABASE_URL` (and, for the
//! restart, `AQUEDUCT_PG_BIN` and `AQUEDUCT_PG_DATA`): `eval "$(scripts/postgres.sh)"`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aqueduct::dist::Cluster;

#[path = "../../core/tests/postgres/database.rs"]
mod database;
use database::Database;

const BIN: &str = env!("CARGO_BIN_EXE_dist_worker");

/// One test at a time: they share the server, which one of them restarts.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A worker process; closing its stdin stops it.
struct WorkerProcess {
    child: Option<Child>,
}

impl WorkerProcess {
    fn start(url: &str, lease_ms: u64, slots: usize, width: usize, log: &PathBuf) -> Self {
        let child = Command::new(BIN)
            .args([url, &lease_ms.to_string(), &slots.to_string()])
            .env("DIST_WIDTH", width.to_string())
            .env("CRASH_LOG", log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the worker starts");
        Self { child: Some(child) }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Stops it (closes its stdin) and reads what it did: (claimed, committed, lost).
    fn stop(mut self) -> (u64, u64, u64) {
        let mut child = self.child.take().expect("running");
        drop(child.stdin.take());
        let output = child.wait_with_output().expect("the worker ends");
        let text = String::from_utf8_lossy(&output.stdout);
        let field = |name: &str| {
            text.split_whitespace()
                .find_map(|word| word.strip_prefix(&format!("{name}=")))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no `{name}` in {text:?}"))
        };
        (field("claimed"), field("committed"), field("lost"))
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

fn scratch_log(name: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("aqueduct-dist-{name}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

fn lines(log: &PathBuf) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until `log` has a line starting with `prefix`, and returns it.
fn wait_for_line(log: &PathBuf, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(line) = lines(log).into_iter().find(|l| l.starts_with(prefix)) {
            return line;
        }
        assert!(Instant::now() < deadline, "no `{prefix}` in the log");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn four_worker_processes_finish_a_run_of_two_thousand_tasks() {
    let _serial = serial();
    let Some(db) = Database::new("dist_procs") else {
        return;
    };
    let width = 666; // 3 × 666 + 2 = 2,000 tasks
    let log = scratch_log("procs");
    let workers: Vec<WorkerProcess> = (0..4)
        .map(|_| WorkerProcess::start(&db.url, 10_000, 4, width, &log))
        .collect();
    let rt = runtime();
    let workflow = aqueduct_examples::dist::spread(width);
    let expected = rt.block_on(workflow.run((7,))).unwrap();
    let _ = std::fs::remove_file(&log); // the in-process run logged too
    let cluster = Cluster::connect(&db.url).unwrap();
    rt.block_on(cluster.submit(&workflow, "big", (7,))).unwrap();
    let output = rt
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(120), cluster.wait(&workflow, "big")).await
        })
        .expect("the run ends in two minutes")
        .unwrap();
    assert_eq!(output, expected);
    let status = rt.block_on(cluster.status("big")).unwrap().unwrap();
    assert_eq!(status.tasks.len(), 2000);
    assert!(
        status
            .tasks
            .iter()
            .all(|t| t.state == "done" && t.attempts == 1)
    );
    let outputs: i64 = db
        .sql()
        .query_one(
            "SELECT COUNT(*) FROM aqueduct_dist_tasks WHERE run_id = 'big' AND data IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(outputs, 2000, "every output committed once");
    // No crash: every task ran exactly once.
    let ran = lines(&log);
    assert_eq!(ran.len(), 2000, "each task executed once");
    let mut committed = 0;
    for worker in workers {
        let (claimed, done, lost) = worker.stop();
        assert!(done > 0, "every worker did work");
        assert_eq!((claimed, lost), (done, 0));
        committed += done;
    }
    assert_eq!(committed, 2000);
    let _ = std::fs::remove_file(&log);
}

#[test]
fn a_task_of_a_worker_killed_with_sigkill_is_finished_by_another() {
    let _serial = serial();
    let Some(db) = Database::new("dist_kill") else {
        return;
    };
    let log = scratch_log("kill");
    let first = WorkerProcess::start(&db.url, 1_000, 1, 1, &log);
    let rt = runtime();
    let workflow = aqueduct_examples::dist::nap();
    let cluster = Cluster::connect(&db.url).unwrap();
    rt.block_on(cluster.submit(&workflow, "nap", (1_500,)))
        .unwrap();
    let started = wait_for_line(&log, "nap start");
    assert_eq!(started, format!("nap start {}", first.pid()));
    let second = WorkerProcess::start(&db.url, 1_000, 1, 1, &log);
    signal(first.pid(), "KILL");
    let output = rt
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(30), cluster.wait(&workflow, "nap")).await
        })
        .expect("another worker finishes the task")
        .unwrap();
    assert_eq!(output, 1_501);
    let status = rt.block_on(cluster.status("nap")).unwrap().unwrap();
    let napped = status.tasks.iter().find(|t| t.node == "napped").unwrap();
    assert_eq!(napped.attempts, 2, "claimed again after the lease expired");
    let [killed, finished] = napped.workers.as_slice() else {
        panic!("one worker per attempt: {napped:?}");
    };
    assert!(
        killed.contains(&format!(":{}:", first.pid()))
            && finished.contains(&format!(":{}:", second.pid())),
        "{napped:?}"
    );
    let (_, committed, lost) = second.stop();
    assert_eq!((committed, lost), (2, 0));
    let _ = std::fs::remove_file(&log);
}

#[test]
fn a_stalled_worker_s_late_commit_is_refused() {
    let _serial = serial();
    let Some(db) = Database::new("dist_zombie") else {
        return;
    };
    let log = scratch_log("zombie");
    let zombie = WorkerProcess::start(&db.url, 1_000, 1, 1, &log);
    let rt = runtime();
    let workflow = aqueduct_examples::dist::nap();
    let cluster = Cluster::connect(&db.url).unwrap();
    rt.block_on(cluster.submit(&workflow, "nap", (1_200,)))
        .unwrap();
    wait_for_line(&log, &format!("nap start {}", zombie.pid()));
    signal(zombie.pid(), "STOP");
    let other = WorkerProcess::start(&db.url, 1_000, 1, 1, &log);
    let output = rt
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(30), cluster.wait(&workflow, "nap")).await
        })
        .expect("the other worker finishes the run")
        .unwrap();
    assert_eq!(output, 1_201);
    // The stalled worker wakes up, finishes its nap, and tries to commit it.
    signal(zombie.pid(), "CONT");
    wait_for_line(&log, &format!("nap end {}", zombie.pid()));
    std::thread::sleep(Duration::from_millis(500));
    let (_, committed, lost) = zombie.stop();
    assert_eq!((committed, lost), (0, 1), "its late commit was refused");
    let outputs: i64 = db
        .sql()
        .query_one(
            "SELECT COUNT(*) FROM aqueduct_dist_tasks WHERE run_id = 'nap' AND data IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(outputs, 2, "`napped` and `after`, each once");
    other.stop();
    let _ = std::fs::remove_file(&log);
}

#[test]
fn a_task_that_crashes_every_worker_fails_after_three_lost_workers() {
    let _serial = serial();
    let Some(db) = Database::new("dist_crashes") else {
        return;
    };
    let log = scratch_log("crashes");
    let workers: Vec<WorkerProcess> = (0..4)
        .map(|_| WorkerProcess::start(&db.url, 500, 1, 1, &log))
        .collect();
    let rt = runtime();
    let workflow = aqueduct_examples::dist::nap();
    let cluster = Cluster::connect(&db.url).unwrap();
    rt.block_on(cluster.submit(&workflow, "crashes", (0,)))
        .unwrap();
    let ended = rt
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(60), cluster.wait(&workflow, "crashes")).await
        })
        .expect("the run ends");
    let error = ended.unwrap_err().to_string();
    assert!(error.contains("its worker was lost 3 times"), "{error}");
    // Three workers died with it; the fourth failed it without running it.
    let started = lines(&log)
        .iter()
        .filter(|l| l.starts_with("nap start"))
        .count();
    assert_eq!(started, 3);
    drop(workers);
    let _ = std::fs::remove_file(&log);
}

#[test]
fn workers_reconnect_after_the_server_restarts_and_the_run_finishes() {
    let _serial = serial();
    let Some(db) = Database::new("dist_restart") else {
        return;
    };
    let (Ok(bin), Ok(data)) = (
        std::env::var("AQUEDUCT_PG_BIN"),
        std::env::var("AQUEDUCT_PG_DATA"),
    ) else {
        println!("the restart is not tested: AQUEDUCT_PG_BIN or AQUEDUCT_PG_DATA is not set");
        return;
    };
    let width = 300;
    let log = scratch_log("restart");
    let workers: Vec<WorkerProcess> = (0..2)
        .map(|_| WorkerProcess::start(&db.url, 5_000, 2, width, &log))
        .collect();
    let rt = runtime();
    let workflow = aqueduct_examples::dist::spread(width);
    let expected = rt.block_on(workflow.run((3,))).unwrap();
    let _ = std::fs::remove_file(&log);
    let cluster = Cluster::connect(&db.url).unwrap();
    rt.block_on(cluster.submit(&workflow, "restarted", (3,)))
        .unwrap();
    // A task running across the whole outage: 10 s, from before the server stops to
    // after it is back.
    let nap = aqueduct_examples::dist::nap();
    rt.block_on(cluster.submit(&nap, "across", (10_000,)))
        .unwrap();
    // Once some tasks ran, and the nap started, restart the server.
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines(&log).len() < 50 || !lines(&log).iter().any(|l| l.starts_with("nap start")) {
        assert!(Instant::now() < deadline, "the runs do not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pg_ctl = format!("{bin}/pg_ctl");
    let server = |args: &[&str]| {
        let mut command = Command::new(if is_root() { "runuser" } else { &pg_ctl });
        if is_root() {
            command.args(["-u", "postgres", "--", &pg_ctl]);
        }
        command
            .args(["-D", &data])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(server(&["-m", "fast", "-w", "stop"]), "the server stops");
    // Down for longer than a lease (5 s): the leases of the attempts running lapse, and
    // are their workers' to renew once they reconnect, not reaped at once.
    std::thread::sleep(Duration::from_millis(6_000));
    let server_log = std::path::Path::new(&data).with_file_name("server.log");
    let server_log = server_log.to_string_lossy();
    assert!(
        server(&["-l", &server_log, "-w", "start"]),
        "the server starts again"
    );
    let output = rt
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(90),
                cluster.wait(&workflow, "restarted"),
            )
            .await
        })
        .expect("the run finishes after the restart")
        .unwrap();
    assert_eq!(output, expected);
    let napped = rt
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(90), cluster.wait(&nap, "across")).await
        })
        .expect("the nap's run finishes")
        .unwrap();
    assert_eq!(napped, 10_001);
    // The nap's lease lapsed while the server was down; its worker renewed it once it
    // was back instead of the task being reaped: it ran once, and nothing was lost.
    let starts = lines(&log)
        .iter()
        .filter(|l| l.starts_with("nap start"))
        .count();
    assert_eq!(starts, 1, "the nap ran once");
    let lost: u64 = workers.into_iter().map(|worker| worker.stop().2).sum();
    assert_eq!(lost, 0, "no worker lost a task to the outage");
    let _ = std::io::stdout().flush();
    let _ = std::fs::remove_file(&log);
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}
