//! Builds a case's workflow with the typed builder: every task node's closure reads its
//! inputs, logs the attempt, and does what the fault plan says for it. A node of a
//! cached task has its task's `CachePolicy` and, unless left bare, is registered with
//! `Builder::cache` (its key function: `cache::Keyed`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aqueduct::graph::{Builder, CacheKey, Decision, Handle, In, Params, Step};
use aqueduct::task::{CachePolicy, TaskInfo};
use aqueduct::{Kind as AKind, RetryPolicy, TaskError, Workflow};

use crate::case::Case;
use crate::model::node_value;
use crate::spec::{Body, Fault, Kind, Node, Ref, TASK_NAMES};
use crate::value::{H, Mixed, Read, Val};

pub(crate) type Wf = Workflow<(Val, Val), Val>;

pub(crate) fn task_info(case: &Case, task: usize) -> TaskInfo {
    let def = &case.spec.tasks[task];
    TaskInfo {
        name: TASK_NAMES[task],
        kind: if def.io { AKind::Io } else { AKind::Cpu },
        retry: RetryPolicy {
            retries: def.retries,
            delay: Duration::from_millis(def.delay_ms),
            backoff: def.backoff,
            max_delay: None,
            jitter: false,
            retry_panics: def.retry_panics,
        },
        timeout: def.timeout_ms.map(Duration::from_millis),
        outcome_inputs: def.mask,
        concurrency: def.concurrency,
        cache: def.cache.map(|c| CachePolicy {
            code: c.code,
            version: 0,
            module: "faults",
            ttl: c.ttl_ms.map(Duration::from_millis),
        }),
        code: 0,
    }
}

/// The workflow of a case: parameters `p0`, `p1`; durable with every top-level node
/// checkpointed if the case is.
pub(crate) fn build(case: &Arc<Case>) -> Wf {
    let spec = &case.spec;
    let (mut b, (p0, p1)) = Builder::<(Val, Val)>::new(format!("w{}", spec.seed), ["p0", "p1"]);
    if spec.durable {
        b.durable(1);
    }
    let (handles, decisions) = body(&mut b, case, &spec.top, &[H::One(p0), H::One(p1)], &[]);
    checkpoint(&mut b, case, &spec.top, &handles, &decisions, true);
    b.output(one(handles[&spec.top.tail]))
}

/// Checkpoints the nodes of a body the case checkpoints: every top-level node of a
/// durable case, and the nodes of fan-out bodies and sub-workflows marked so (each
/// item's under `f3[2].t7`, a sub-workflow's under `s5.t7`).
fn checkpoint<P: Params>(
    b: &mut Builder<P>,
    case: &Case,
    body_spec: &Body,
    handles: &HashMap<u32, H>,
    decisions: &HashMap<u32, Decision>,
    top: bool,
) {
    for node in &body_spec.nodes {
        if !case.spec.checkpointed(node, top) {
            continue;
        }
        if let Some(d) = decisions.get(&node.uid) {
            b.checkpoint(d.handle());
            continue;
        }
        match handles[&node.uid] {
            H::One(h) => b.checkpoint(h),
            H::Many(h) => b.checkpoint(h),
            H::Opt(h) => b.checkpoint(h),
        }
    }
}

/// The result of an attempt whose fault is an error or a panic (which it raises).
fn injected_failure<T>(fault: Fault, uid: u32, path: &[u32], attempt: u32) -> Result<T, TaskError> {
    match fault {
        Fault::Transient => Err(TaskError::msg(injected(
            "transient error",
            uid,
            path,
            attempt,
        ))),
        Fault::Permanent => Err(TaskError::permanent(TaskError::msg(injected(
            "permanent error",
            uid,
            path,
            attempt,
        )))),
        _ => panic!("{}", injected("panic", uid, path, attempt)),
    }
}

fn one(h: H) -> Handle<Val> {
    match h {
        H::One(h) => h,
        _ => panic!("harness: a body's output (or an arm's) must be a single value"),
    }
}

/// What adding a node gave.
enum Added {
    Value(H),
    Decision(Decision),
}

/// Adds a body's nodes; `params` are its parameters (as `Ref::Param` numbers them),
/// `ctx` the items of the fan-outs around it, outermost first. Returns the handles of
/// its nodes, and its decisions.
fn body<P: Params>(
    b: &mut Builder<P>,
    case: &Arc<Case>,
    body_spec: &Body,
    params: &[H],
    ctx: &[Handle<Val>],
) -> (HashMap<u32, H>, HashMap<u32, Decision>) {
    let mut handles: HashMap<u32, H> = HashMap::new();
    let mut decisions: HashMap<u32, Decision> = HashMap::new();
    for node in &body_spec.nodes {
        let at = Place {
            case,
            params,
            ctx,
            handles: &handles,
            decisions: &decisions,
        };
        // A node of an arm is added inside it (the innermost arm: nested arms are
        // reached through their decisions).
        let added = match node.arm {
            Some((d, k)) => {
                let decision = decisions[&d];
                let mut added = None;
                b.arm(decision, k, |b| {
                    added = Some(at.add(b, node));
                    decision.handle()
                });
                added.expect("the arm added its node")
            }
            None => at.add(b, node),
        };
        match added {
            Added::Value(h) => {
                handles.insert(node.uid, h);
            }
            Added::Decision(d) => {
                decisions.insert(node.uid, d);
            }
        }
    }
    (handles, decisions)
}

/// What adding a node of a body needs.
struct Place<'x> {
    case: &'x Arc<Case>,
    params: &'x [H],
    ctx: &'x [Handle<Val>],
    handles: &'x HashMap<u32, H>,
    decisions: &'x HashMap<u32, Decision>,
}

impl Place<'_> {
    fn get(&self, r: &Ref) -> H {
        match r {
            Ref::Param(k) => self.params[*k as usize],
            Ref::Node(u) => self.handles[u],
        }
    }

    fn add<P: Params>(&self, b: &mut Builder<P>, node: &Node) -> Added {
        let (case, ctx) = (self.case, self.ctx);
        let name = node.name();
        let h = match &node.kind {
            Kind::Decide { inputs, arms, rule } => {
                let mixed = Mixed {
                    data: inputs
                        .iter()
                        .map(|i| (self.get(&i.from), i.tolerant, false))
                        .collect(),
                    ctx: ctx.to_vec(),
                };
                let flags: Vec<bool> = inputs.iter().map(|i| i.tolerant).collect();
                let mask = flags
                    .iter()
                    .enumerate()
                    .filter(|&(i, t)| *t && i < 16)
                    .fold(0u16, |m, (i, _)| m | (1 << i));
                let (uid, rule, arms) = (node.uid, *rule, *arms);
                let case = Arc::clone(case);
                let text = format!("{rule:?}");
                let labels = crate::branches::labels(arms);
                let decision = b.decide(name, text, labels, mixed, mask, move |input| {
                    let (reads, ctx) = input.outcomes();
                    let hashes: Vec<u64> = reads.iter().map(Read::hash).collect();
                    let path: Vec<u32> = ctx.iter().map(|item| item.idx).collect();
                    let v = node_value(uid, &hashes);
                    let decider = case.spec.tasks.len();
                    let (mut guard, attempt, epoch) = case.start(uid, decider, path.clone(), v);
                    let fault = case.spec.fault(epoch, uid, &path, attempt);
                    let pairs: Vec<(u64, bool)> =
                        hashes.iter().copied().zip(flags.iter().copied()).collect();
                    let result = match fault {
                        Some(Fault::OutOfRange) => Ok(arms),
                        Some(f @ (Fault::Transient | Fault::Permanent | Fault::Panic)) => {
                            injected_failure(f, uid, &path, attempt)
                        }
                        _ => Ok(crate::branches::pick(uid, rule, arms, &pairs)),
                    };
                    guard.completed = true;
                    drop(guard);
                    result
                });
                return Added::Decision(decision);
            }
            Kind::Branch {
                decision,
                tails,
                option,
            } => {
                let decision = self.decisions[decision];
                let tail = |t: &Option<u32>| one(self.handles[&t.expect("an arm's node")]);
                if *option {
                    H::Opt(b.branch_option(name, decision, tail(&tails[0])))
                } else {
                    H::One(b.branch(name, decision, tails.iter().map(tail).collect()))
                }
            }
            Kind::Task {
                task,
                inputs,
                count,
                sub,
                work_us,
            } => {
                let info = task_info(case, *task);
                let mixed = Mixed {
                    data: inputs
                        .iter()
                        .map(|i| (self.get(&i.from), i.tolerant, i.moved))
                        .collect(),
                    ctx: ctx.to_vec(),
                };
                // Inputs taken by value: their nodes hand them over to this one.
                let taken: Vec<(usize, H)> = mixed
                    .data
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, _, moved))| *moved)
                    .map(|(at, (h, _, _))| (at, *h))
                    .collect();
                for (_, h) in &taken {
                    match *h {
                        H::One(h) => b.moved(h),
                        H::Many(h) => b.moved(h),
                        H::Opt(h) => b.moved(h),
                    }
                }
                let attempt = Attempt {
                    case: Arc::clone(case),
                    uid: node.uid,
                    seed: case.spec.value_seed(node.uid, *task),
                    origin: case.spec.origin_of(node.uid, *task),
                    task: *task,
                    count: *count,
                    sub: *sub,
                    work: Duration::from_micros(u64::from(*work_us)),
                    io: case.spec.tasks[*task].io,
                    timeout: case.spec.tasks[*task].timeout_ms.map(Duration::from_millis),
                };
                let cleanup = info.outcome_inputs != 0;
                // What the key function reads: the same inputs (those taken by value
                // peeked at through `In::peek`, before the call takes them).
                let keyed = case.spec.cached_call(node).then(|| {
                    let inputs = Mixed {
                        data: inputs
                            .iter()
                            .map(|i| (self.get(&i.from), i.tolerant, i.moved))
                            .collect(),
                        ctx: ctx.to_vec(),
                    };
                    let keyed = crate::cache::Keyed {
                        case: Arc::clone(case),
                        uid: node.uid,
                        task: *task,
                        count: *count,
                        sub: *sub,
                        moved: taken.clone(),
                    };
                    (inputs, keyed)
                });
                let h = b.node(info, name, mixed, move |input| {
                    // A cleanup task reads its inputs as outcomes (its required ones
                    // still as values: `Mixed` reads each input as its mask says).
                    let (mut reads, ctx) = if cleanup {
                        input.outcomes()
                    } else {
                        input.get()
                    };
                    for &(at, h) in &taken {
                        reads[at] = match h {
                            H::One(h) => Read::Owned(input.take(h).defused()),
                            H::Many(h) => Read::OwnedMany(
                                input.take(h).into_iter().map(Val::defused).collect(),
                            ),
                            H::Opt(h) => Read::OwnedOpt(input.take(h).map(Val::defused)),
                        };
                    }
                    let hashes: Vec<u64> = reads.iter().map(|r| r.hash()).collect();
                    let path: Vec<u32> = ctx.iter().map(|item| item.idx).collect();
                    attempt.run(path, &hashes)
                });
                if let Some((inputs, keyed)) = keyed {
                    b.cache(
                        h,
                        inputs,
                        move |input: In<'_, '_, Mixed>, key: &mut CacheKey| keyed.key(&input, key),
                    );
                }
                H::One(h)
            }
            Kind::FanOut {
                collection,
                imports,
                cap,
                body: inner,
            } => {
                let outer = Mixed {
                    data: imports
                        .iter()
                        .map(|r| (self.get(r), false, false))
                        .collect(),
                    ctx: ctx.to_vec(),
                };
                let n_imports = imports.len();
                let make = |ib: &mut Builder<()>, item: Handle<Val>, imported: Mixed| {
                    let mut inner_params = vec![H::One(item)];
                    inner_params.extend(imported.data.iter().map(|(h, _, _)| *h));
                    assert_eq!(inner_params.len(), n_imports + 1);
                    let mut inner_ctx = imported.ctx.clone();
                    inner_ctx.push(item);
                    let (hs, ds) = body(ib, case, inner, &inner_params, &inner_ctx);
                    checkpoint(ib, case, inner, &hs, &ds, false);
                    one(hs[&inner.tail])
                };
                let h = match self.get(collection) {
                    H::One(c) => b.fan_out(name, c, "item", outer, make),
                    H::Many(c) => b.fan_out(name, c, "item", outer, make),
                    H::Opt(_) => panic!("harness: a fan-out over an Option"),
                };
                if let Some(cap) = cap {
                    b.cap_items(h, *cap);
                }
                H::Many(h)
            }
            Kind::Subflow { args, body: inner } => {
                let mut all: Vec<Handle<Val>> = args.iter().map(|r| one(self.get(r))).collect();
                all.extend_from_slice(ctx);
                H::One(subflow(b, case, node.uid, inner, args.len(), &all))
            }
        };
        Added::Value(h)
    }
}

/// A sub-workflow node: the body built as its own workflow whose parameters are the
/// arguments, then the items of the enclosing fan-outs (passed along as arguments).
fn subflow<P: Params>(
    b: &mut Builder<P>,
    case: &Arc<Case>,
    uid: u32,
    inner: &Body,
    n_args: usize,
    all: &[Handle<Val>],
) -> Handle<Val> {
    const NAMES: [&str; 4] = ["a0", "a1", "a2", "a3"];
    let name = format!("s{uid}");
    let flow = format!("flow{uid}");
    macro_rules! arm {
        (@val $i:tt) => { Val };
        ($($i:tt)*) => {{
            let (mut sb, hs) = Builder::<($( arm!(@val $i), )*)>::new(flow, [$(NAMES[$i]),*]);
            let params: Vec<Handle<Val>> = vec![$(hs.$i),*];
            let data: Vec<H> = params[..n_args].iter().map(|h| H::One(*h)).collect();
            let (handles, decisions) = body(&mut sb, case, inner, &data, &params[n_args..]);
            if inner.nodes.iter().any(|n| case.spec.checkpointed(n, false)) {
                sb.durable(1);
                checkpoint(&mut sb, case, inner, &handles, &decisions, false);
            }
            let wf = sb.output(one(handles[&inner.tail]));
            b.subflow(name, &wf, ($(all[$i],)*))
        }};
    }
    match all.len() {
        1 => arm!(0),
        2 => arm!(0 1),
        3 => arm!(0 1 2),
        4 => arm!(0 1 2 3),
        n => panic!("harness: a sub-workflow of {n} parameters"),
    }
}

/// What a task node's closure needs.
struct Attempt {
    case: Arc<Case>,
    uid: u32,
    /// What its value hash starts from (`Spec::value_seed`), and the origin its values
    /// count under (`Spec::origin_of`).
    seed: u32,
    origin: u32,
    task: usize,
    count: u32,
    sub: u32,
    work: Duration,
    io: bool,
    timeout: Option<Duration>,
}

fn injected(what: &str, uid: u32, path: &[u32], attempt: u32) -> String {
    format!("[injected] {what} in t{uid}{path:?} attempt {attempt}")
}

impl Attempt {
    fn run<'a>(&self, path: Vec<u32>, hashes: &[u64]) -> Step<'a, Val> {
        let v = node_value(self.seed, hashes);
        let idx = path.last().copied().unwrap_or(0);
        let (mut guard, attempt, epoch) = self.case.start(self.uid, self.task, path.clone(), v);
        let fault = self.case.spec.fault(epoch, self.uid, &path, attempt);
        let case = Arc::clone(&self.case);
        let (uid, count, sub, origin) = (self.uid, self.count, self.sub, self.origin);
        let bomb = self.case.bombs && self.case.spec.bomb(epoch, uid, &path);
        crate::exec::bump("values whose Drop panics", u64::from(bomb));
        let make = move |poison: bool| {
            let mut val = Val::tree(&case.counters, origin, v, idx, count, sub);
            val.poison = poison;
            val.bomb = bomb;
            val
        };
        let timeout = self.timeout.unwrap_or(Duration::from_millis(1));
        if !self.io {
            let result = match fault {
                None | Some(Fault::SerPanic | Fault::OutOfRange) => {
                    if !self.work.is_zero() {
                        std::thread::sleep(self.work);
                    }
                    Ok(make(fault == Some(Fault::SerPanic)))
                }
                Some(f @ (Fault::Transient | Fault::Permanent | Fault::Panic)) => {
                    injected_failure(f, uid, &path, attempt)
                }
                Some(Fault::Timeout) => {
                    // Cannot be preempted: sleeps a few ms past its timeout (so a retry
                    // may start while it still runs), returning early only if told to
                    // stop before its time is up (the run stopped). Past its timeout,
                    // `cancelled()` must turn true.
                    let started = Instant::now();
                    let extra = Duration::from_millis(3 + v % 8);
                    let limit = Duration::from_millis(300);
                    loop {
                        let elapsed = started.elapsed();
                        let told = aqueduct::task::cancelled();
                        if (told && (elapsed < timeout || elapsed >= timeout + extra))
                            || elapsed >= timeout + limit
                        {
                            if !told {
                                crate::case::lock(&self.case.violations).push((
                                    "cancel-signal".into(),
                                    format!(
                                        "run {epoch}: `aqueduct::task::cancelled()` was still false {limit:?} after \
                                         attempt {attempt} of t{uid}{path:?} ran past its timeout"
                                    ),
                                ));
                            }
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(TaskError::msg(injected(
                        "late attempt's own result",
                        uid,
                        &path,
                        attempt,
                    )))
                }
            };
            guard.completed = true;
            drop(guard);
            return Step::done(result);
        }
        let work = self.work;
        Step::pending(async move {
            if !work.is_zero() {
                tokio::time::sleep(work).await;
            }
            let result = match fault {
                None | Some(Fault::SerPanic | Fault::OutOfRange) => {
                    Ok(make(fault == Some(Fault::SerPanic)))
                }
                Some(f @ (Fault::Transient | Fault::Permanent | Fault::Panic)) => {
                    injected_failure(f, uid, &path, attempt)
                }
                Some(Fault::Timeout) => {
                    tokio::time::sleep(timeout + Duration::from_secs(20)).await;
                    Err(TaskError::msg(injected(
                        "late attempt's own result",
                        uid,
                        &path,
                        attempt,
                    )))
                }
            };
            guard.completed = true;
            drop(guard);
            result
        })
    }
}
