//! Branches (`if`/`match`): how the generator makes them, how a decision picks its
//! arm, and how the model judges decisions, arms and branch nodes.
//!
//! A generated `if`/`match` is: optionally a fresh node whose outcome the decision
//! reads (a fallback: it is read by nothing else but the decision, the arm taken when
//! it succeeded and the branch, as `workflow!` would write it), the decision, each
//! arm's nodes (nested branches included), and the branch node, the only one in scope
//! after it.

use aqueduct::{Kind as AKind, TaskStatus};

use crate::generate::{Gen, Scoped, Shape};
use crate::model::{MV, NOT_OK, Res, Walker, is_bad, is_ok, node_value};
use crate::spec::{Input, Kind, Node, Ref, Rule};

use TaskStatus::{Cancelled, Failed, NotTaken, Skipped, Succeeded, TimedOut};

/// What a task sees of an `Option` branch that gave `None`.
pub(crate) const NONE: u64 = 0x6e6f_6e65_5f5f_3f3f;

/// The arm a decision picks from its inputs' hashes (`NOT_OK` for an input that did
/// not succeed, read as an outcome).
pub(crate) fn pick(uid: u32, rule: Rule, arms: u32, inputs: &[(u64, bool)]) -> u32 {
    match rule {
        Rule::Ok => u32::from(inputs.iter().any(|&(h, tolerant)| tolerant && h == NOT_OK)),
        Rule::Value => {
            let hashes: Vec<u64> = inputs.iter().map(|&(h, _)| h).collect();
            (node_value(uid, &hashes) % u64::from(arms)) as u32
        }
    }
}

/// The labels of a decision's arms (an `if` has two).
pub(crate) fn labels(arms: u32) -> &'static [&'static str] {
    match arms {
        2 => &["then", "else"],
        3 => &["a0", "a1", "a2"],
        _ => &["a0", "a1", "a2", "a3"],
    }
}

impl Gen {
    /// An `if`/`match` reading `scope`, in `arm` (nested: `nest` enclosing branches).
    /// Returns its nodes in order, the branch node last.
    pub(crate) fn branch(
        &mut self,
        scope: &[Scoped],
        depth: u32,
        nest: u32,
        in_subflow: bool,
        arm: Option<(u32, u32)>,
    ) -> Vec<Node> {
        let mut nodes = Vec::new();
        let rule = if self.r.chance(40) {
            Rule::Ok
        } else {
            Rule::Value
        };
        // The node whose outcome the decision reads: a fresh one (nothing else may
        // require it: its failure is handled).
        let checked = (rule == Rule::Ok || self.r.chance(30)).then(|| {
            let mut x = self.task(scope);
            x.arm = arm;
            x
        });
        let mut inputs: Vec<Input> = checked
            .iter()
            .map(|x| Input {
                from: Ref::Node(x.uid),
                tolerant: true,
                moved: false,
            })
            .collect();
        let n = self.r.below(3) as usize;
        inputs.extend(self.pick_inputs(scope, n).iter().map(|s| Input {
            from: s.r,
            tolerant: false,
            moved: false,
        }));
        let arms = if rule == Rule::Ok || self.r.chance(70) {
            2
        } else {
            self.r.range(3, 4) as u32
        };
        let checked_scope = checked.as_ref().map(|x| Scoped {
            r: Ref::Node(x.uid),
            shape: self.shape_of(x),
            param: false,
        });
        let x_uid = checked.as_ref().map(|x| x.uid);
        nodes.extend(checked);
        let decision = self.uid();
        nodes.push(Node {
            uid: decision,
            ckpt: false,
            arm,
            kind: Kind::Decide { inputs, arms, rule },
        });
        let mut tails = Vec::new();
        let mut last_is_tail = Vec::new();
        for k in 0..arms {
            let mut inner: Vec<Scoped> = scope.to_vec();
            // A fallback's value read in the arm taken when it succeeded.
            if let (Rule::Ok, 0, Some(x)) = (rule, k, checked_scope) {
                inner.push(x);
            }
            let here = (decision, k);
            let mut own: Vec<u32> = Vec::new();
            let want = self.r.below(4);
            for _ in 0..want {
                let collections = inner.iter().filter(|s| s.shape.len() > 0).count();
                let roll = self.r.below(100);
                let made: Vec<Node> = if nest < 1 && roll < 15 && self.budget > 3 {
                    self.branch(&inner, depth, nest + 1, in_subflow, Some(here))
                } else if !in_subflow && depth < 2 && roll < 25 && collections > 0 {
                    let mut f = self.fan_out(&inner, depth);
                    f.arm = Some(here);
                    vec![f]
                } else {
                    let mut t = self.task(&inner);
                    t.arm = Some(here);
                    vec![t]
                };
                let last = made.last().expect("a node");
                inner.push(Scoped {
                    r: Ref::Node(last.uid),
                    shape: self.shape_of(last),
                    param: false,
                });
                own.push(last.uid);
                nodes.extend(made);
            }
            let own_tail = nodes
                .iter()
                .rev()
                .find(|n| own.contains(&n.uid) && n.is_val())
                .map(|n| n.uid);
            let fallback = x_uid.filter(|_| rule == Rule::Ok && k == 0 && self.r.chance(50));
            let outer: Vec<u32> = scope
                .iter()
                .filter(|s| !s.param && matches!(s.shape, Shape::One { .. }))
                .filter_map(|s| match s.r {
                    Ref::Node(u) => Some(u),
                    Ref::Param(_) => None,
                })
                .collect();
            let tail = match (fallback, own_tail) {
                (Some(x), _) => x,
                (None, Some(t)) if !self.r.chance(15) || outer.is_empty() => t,
                _ if !outer.is_empty() => *self.r.pick(&outer),
                _ => {
                    let mut t = self.task(&inner);
                    t.arm = Some(here);
                    own.push(t.uid);
                    let uid = t.uid;
                    nodes.push(t);
                    uid
                }
            };
            // `branch_option` moves its arm's value: the arm's last node, read by
            // nothing else, and no shared branch (whose own arms it would move).
            last_is_tail.push(
                nodes
                    .last()
                    .is_some_and(|n| n.uid == tail && !matches!(n.kind, Kind::Branch { .. }))
                    && own.contains(&tail),
            );
            tails.push(tail);
        }
        let option = arms == 2 && last_is_tail[0] && self.r.chance(30);
        let uid = self.uid();
        nodes.push(Node {
            uid,
            ckpt: false,
            arm,
            kind: Kind::Branch {
                decision,
                tails: if option {
                    vec![Some(tails[0]), None]
                } else {
                    tails.into_iter().map(Some).collect()
                },
                option,
            },
        });
        nodes
    }
}

/// Whether `node` is in an arm its decision did not take (or in an arm of a decision
/// that was not taken itself), given how the nodes of its body ended.
pub(crate) fn not_taken(node: &Node, res: &std::collections::HashMap<u32, Res>) -> bool {
    let Some((d, k)) = node.arm else {
        return false;
    };
    let Some(r) = res.get(&d) else { return false };
    match (&r.value, r.status) {
        (_, NotTaken) => true,
        (Some(MV::Arm(a)), s) if is_ok(s) => *a != k,
        _ => false,
    }
}

impl Walker<'_> {
    /// A node of an arm not taken: reported not taken, never started.
    pub(crate) fn untaken(&mut self, node: &Node, name: &str, path: &[u32]) -> Res {
        let kind = node_kind(self, node);
        let (s, a) = self.observe(name, kind, (NotTaken, 0));
        if s != NotTaken {
            self.violation(
                "status",
                format!("`{name}` is in an arm its decision did not take, so it is not taken; the report says {s}"),
            );
        }
        let inside = match &node.kind {
            Kind::FanOut { body, .. } | Kind::Subflow { body, .. } => crate::spec::body_uids(body),
            _ => std::iter::once(node.uid).collect(),
        };
        if a != 0 || self.ran_inside(&inside, path) {
            self.violation(
                "attempts",
                format!("`{name}` is not taken, yet it ran ({a} attempts reported)"),
            );
        }
        if matches!(node.kind, Kind::Task { .. } | Kind::Decide { .. }) {
            // Faults are planned for it too (another run may take its arm).
            self.instances.push((node.uid, path.to_vec()));
        }
        Res {
            status: NotTaken,
            value: None,
            timeout: false,
            handled: false,
        }
    }

    /// A decision node.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn decide(
        &mut self,
        node: &Node,
        ins: &[(Res, bool)],
        arms: u32,
        rule: Rule,
        name: &str,
        path: &[u32],
    ) -> Res {
        let uid = node.uid;
        if let Some(res) = self.restored_node(node, AKind::Decision, name, path, None) {
            return res;
        }
        let m = self.recs(uid, path).len() as u32;
        if let Some(allowed) = self.blocked(ins) {
            let (s, a) = self.observe(name, AKind::Decision, (allowed[0], 0));
            if !allowed.contains(&s) {
                self.violation(
                    "status",
                    format!(
                        "decision `{name}`: its inputs ended {}, so it is {allowed:?}; the report says {s}",
                        Self::describe(ins)
                    ),
                );
            }
            if a != 0 || m != 0 {
                self.violation(
                    "attempts",
                    format!("decision `{name}` cannot run (inputs {}), yet the report counts {a} attempts and the log {m}", Self::describe(ins)),
                );
            }
            return Res::not_ok(s);
        }
        let hashes: Option<Vec<(u64, bool)>> = ins
            .iter()
            .map(|(r, t)| {
                if is_ok(r.status) {
                    r.value.as_ref().map(|v| (v.hash(), *t))
                } else {
                    Some((NOT_OK, *t))
                }
            })
            .collect();
        let fault = self.spec.fault(self.epoch, uid, path, 1);
        let planned = if fault.is_some() { Failed } else { Succeeded };
        let (s, a) = self.observe(name, AKind::Decision, (planned, 1));
        let fine = match s {
            _ if s == planned => a == 1 && m == 1,
            // Never started: the run stopped first.
            Cancelled => self.open && m == 0,
            _ => false,
        };
        if !fine {
            self.violation(
                "status",
                format!(
                    "decision `{name}` (inputs {}, fault {fault:?}): expected {planned} after 1 attempt{}; the report says {s} after {a}, the log has {m}",
                    Self::describe(ins),
                    if self.open { " or cancelled" } else { "" },
                ),
            );
        }
        if m > 1 {
            self.violation(
                "attempts",
                format!("decision `{name}` was called {m} times in one run"),
            );
        }
        if let Some(hashes) = &hashes {
            let raw: Vec<u64> = hashes.iter().map(|&(h, _)| h).collect();
            let v = node_value(uid, &raw);
            if self.recs(uid, path).iter().any(|rec| rec.v != v) {
                self.violation(
                    "value",
                    format!("decision `{name}` read inputs whose hash is not what the model computes from its inputs ({})", Self::describe(ins)),
                );
            }
        }
        if s == Failed {
            self.failures.push(name.to_owned());
            self.stopping.push(name.to_owned());
        }
        self.instances.push((uid, path.to_vec()));
        let arm = hashes.map(|h| pick(uid, rule, arms, &h));
        Res {
            status: s,
            value: arm.filter(|_| s == Succeeded).map(MV::Arm),
            timeout: false,
            handled: false,
        }
    }

    /// A branch node: the taken arm's value.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn branch(
        &mut self,
        node: &Node,
        decision: &Res,
        tails: &[Option<Res>],
        option: bool,
        name: &str,
        path: &[u32],
    ) -> Res {
        if let Some(res) = self.restored_node(node, AKind::Branch, name, path, None) {
            return res;
        }
        // Its decision is required, its tails are read whatever became of them.
        let mut ins = vec![(decision.clone(), false)];
        ins.extend(tails.iter().flatten().map(|t| (t.clone(), true)));
        let (expected, value): (TaskStatus, Option<MV>) = if let Some(allowed) = self.blocked(&ins)
        {
            (allowed[0], None)
        } else {
            let arm = match decision.value {
                Some(MV::Arm(a)) => a,
                _ => 0,
            };
            match tails.get(arm as usize) {
                Some(None) => (Succeeded, Some(MV::Opt(None))),
                Some(Some(t)) if is_ok(t.status) => {
                    let v = t.value.clone();
                    let v = if option {
                        v.map(|v| match v {
                            MV::One(m) => MV::Opt(Some(m)),
                            other => other,
                        })
                    } else {
                        v
                    };
                    (Succeeded, v)
                }
                Some(Some(t)) if is_bad(t.status) => (Skipped, None),
                Some(Some(t)) if t.status == NotTaken => (NotTaken, None),
                _ => (Cancelled, None),
            }
        };
        let (s, _) = self.observe(name, AKind::Branch, (expected, 0));
        // After a stop, a branch ready to resolve is cancelled like any node.
        if s != expected && !(self.open && s == Cancelled) {
            self.violation(
                "status",
                format!(
                    "branch `{name}`: its decision ended {} (arm {:?}) and its arms' values {}, so it is {expected}; the report says {s}",
                    decision.status,
                    decision.value,
                    tails
                        .iter()
                        .map(|t| t.as_ref().map_or("none".to_owned(), |t| t.status.to_string()))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            );
        }
        Res {
            status: s,
            value: value.filter(|_| s == Succeeded),
            timeout: false,
            handled: false,
        }
    }

    /// After decision `d` (of `node`): the failures of the inputs it read as outcomes
    /// are handled if it succeeded (reported `Handled`, no failure of the run).
    pub(crate) fn settle_handled(
        &mut self,
        node: &Node,
        res: &mut std::collections::HashMap<u32, Res>,
        name_of: &dyn Fn(&Node) -> String,
        body: &crate::spec::Body,
    ) {
        let Kind::Decide { inputs, .. } = &node.kind else {
            return;
        };
        let decided = res.get(&node.uid).is_some_and(|r| r.status == Succeeded);
        for input in inputs.iter().filter(|i| i.tolerant) {
            let Ref::Node(x) = input.from else { continue };
            let Some(xnode) = body.node(x) else { continue };
            let name = name_of(xnode);
            let Some(r) = res.get_mut(&x) else { continue };
            if !matches!(r.status, Failed | TimedOut) {
                continue;
            }
            let reported = self.handled_seen.remove(&name);
            if decided {
                r.handled = true;
                self.failures.retain(|f| *f != name);
            }
            if self.report.is_some() && reported != decided {
                self.violation(
                    "status",
                    format!(
                        "`{name}` {} and decision `{}` that reads its outcome {}, so it is {}; the report says {}",
                        r.status,
                        name_of(node),
                        if decided { "succeeded" } else { "did not succeed" },
                        if decided { "handled".to_owned() } else { r.status.to_string() },
                        if reported { "handled".to_owned() } else { r.status.to_string() },
                    ),
                );
            }
        }
    }
}

fn node_kind(w: &Walker<'_>, node: &Node) -> AKind {
    match &node.kind {
        Kind::Task { task, .. } => {
            if w.spec.tasks[*task].io {
                AKind::Io
            } else {
                AKind::Cpu
            }
        }
        Kind::FanOut { .. } => AKind::FanOut,
        Kind::Subflow { .. } => AKind::Workflow,
        Kind::Decide { .. } => AKind::Decision,
        Kind::Branch { .. } => AKind::Branch,
    }
}
